"""No code of the project assigns into another library: no module attribute of an imported
name, no ``__class__``, no ``__dict__``, no ``setattr`` on anything but the object's own class
(CONTRIBUTING.md, "Nothing patched"). Checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for folder in ("semseg_heads", "tools", "projects") for p in (REPO / folder).rglob("*.py"))


def _imported_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
    return names


def _root(node: ast.expr) -> ast.expr:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node


def patches(path: Path) -> list[str]:
    """Lines of ``path`` that assign into something the module imported."""
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    tree = ast.parse(path.read_text(), str(path))
    imported = _imported_names(tree)
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            for t in ast.walk(target):
                if isinstance(t, ast.Attribute) and t.attr in ("__class__", "__dict__"):
                    found.append(f"{where}:{t.lineno}: assigns {t.attr}")
                if isinstance(t, ast.Attribute) and isinstance(t.ctx, ast.Store):
                    root = _root(t)
                    if isinstance(root, ast.Name) and root.id in imported:
                        found.append(f"{where}:{t.lineno}: assigns into imported '{root.id}'")
        if isinstance(node, ast.Attribute) and node.attr == "__dict__":
            found.append(f"{where}:{node.lineno}: uses __dict__")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr":
            first = node.args[0] if node.args else None
            if not (isinstance(first, ast.Name) and first.id in ("self", "cls")):
                found.append(f"{where}:{node.lineno}: setattr on another object")
    return found


def test_no_code_patches_another_library() -> None:
    found = [line for path in SOURCES for line in patches(path)]
    assert len(SOURCES) > 50 and not found, "\n".join(found)


def test_the_check_sees_patches(tmp_path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import torch.nn.functional as F\nfrom PIL import ImageFile\n"
        "F._check = None\nImageFile.LOAD_TRUNCATED_IMAGES = True\n"
        "def f(obj, other):\n    obj.__class__ = int\n    obj.__dict__.update(other.__dict__)\n"
        "    setattr(obj, 'x', 1)\n    self_made = dict(a=1)\n    self_made['a'] = 2\n"
    )
    found = sorted(line.split(": ", 1)[1] for line in patches(bad))
    assert found == sorted(
        [
            "assigns into imported 'F'",
            "assigns into imported 'ImageFile'",
            "assigns __class__",
            "uses __dict__",
            "uses __dict__",
            "setattr on another object",
        ]
    ), found
