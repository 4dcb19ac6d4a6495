"""The layout rules of the README's "Architecture" section, checked on the source itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("semseg_heads", "tools", "projects", "tests", "bootstrap")
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
    for path in (REPO / "semseg_heads").rglob("*.py"):
        top = {name.split(".")[0] for name in _imports(path)}
        assert not top & {"tools", "projects", "bootstrap"}, f"{path.relative_to(REPO)} imports {top}"


def test_importing_the_package_loads_no_generator() -> None:
    code = "import sys, semseg_heads; print(sorted(m for m in sys.modules if m.startswith('semseg_heads')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "semseg_heads.data.chair_segments" in out
    assert "semseg_heads.data.synthetic" not in out and "semseg_heads.data.backgrounds" not in out
    # ... and the generator is still there, loaded on first use.
    code = "import semseg_heads.data as d; print(d.generate_chair_segments.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "semseg_heads.data.synthetic"
