"""The layout rules of the README's "Architecture" section, checked on the source itself: the
library (``semseg_heads``) imports no project, tool or set-up code; the Chair Segments project
(``chairseg``) imports no tool; a tool imports no other tool; nothing edits ``sys.path``; the
modules of each package import each other without circles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("semseg_heads", "tools", "projects", "tests", "bootstrap")
PROJECT = REPO / "projects" / "ChairSegments"  # holds the package chairseg
SOURCES = sorted(p for folder in FOLDERS for p in (REPO / folder).rglob("*.py"))
TOOLS = {p.stem for p in (REPO / "tools").glob("*.py")}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_nothing_edits_sys_path() -> None:
    found = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for path in SOURCES
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    ]
    assert len(SOURCES) > 50 and not found, f"sys.path used at {found}: import the package instead"


def test_no_tool_imports_another_and_the_library_imports_no_tool_or_project() -> None:
    for path in (REPO / "tools").glob("*.py"):
        assert not (_imports(path) & TOOLS), f"{path.name} imports another tool"
    for room, banned in ((REPO / "semseg_heads", {"chairseg"}), (PROJECT / "chairseg", set())):
        for path in room.rglob("*.py"):
            top = {name.split(".")[0] for name in _imports(path)}
            found = top & (banned | {"tools", "projects", "bootstrap", "run_study"})
            assert not found, f"{path.relative_to(REPO)} imports {found}"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> modules of ``package`` it imports (at the top or inside a function), with
    relative imports resolved and ``from pkg import module`` counted as that module."""
    files = {_module_name(p, root): p for p in (root / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")
                    base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                edges.add(module)
                edges |= {f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in files}
        graph[name] = {e for e in edges if e in files and e != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles_within_the_packages() -> None:
    """Modules of one package import each other one way only (package ``__init__`` files that
    gather their modules' names count as modules like any other)."""
    for root, package in ((REPO, "semseg_heads"), (PROJECT, "chairseg")):
        graph = _import_graph(root, package)
        assert len(graph) > 5 and not _cycles(graph), f"{package}: import circles {_cycles(graph)}"


def test_the_circle_check_sees_a_circle(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (tmp_path / "pkg" / "b.py").write_text("from . import a\n")
    (tmp_path / "pkg" / "c.py").write_text("from pkg import a\n")
    assert _cycles(_import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b"]]


def test_importing_the_library_loads_no_project_module() -> None:
    code = "import sys, semseg_heads; print(sorted(m for m in sys.modules if m.startswith('chairseg')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_test_helpers_have_unique_names_and_no_test_imports_conftest() -> None:
    """pytest's prepend import mode puts each test folder on ``sys.path``: helper modules with the
    same name in two folders (or ``import conftest``) would make one folder's helpers shadow the
    other's, and a run over several folders fail at collection."""
    tests = REPO / "tests"
    helpers = [p for p in tests.rglob("*.py") if not p.name.startswith("test_") and p.name != "conftest.py"]
    names = [p.stem for p in helpers]
    assert len(names) == len(set(names)), sorted(str(p.relative_to(REPO)) for p in helpers)
    found = [str(p.relative_to(REPO)) for p in tests.rglob("*.py") if "conftest" in _imports(p)]
    assert not found, f"{found} import conftest: put shared helpers in a uniquely named module"
