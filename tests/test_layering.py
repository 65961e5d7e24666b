"""Layering: engine/ is the library and never imports the layers built on it
(nodes/, ui/) nor the toy world (toyworld/, test and demo material). Read
from the source with ``ast`` (nothing is imported), so an import hidden in a
function body, a relative ``..toyworld`` or an ``importlib.import_module``
string counts too. See docs/developer.md, "Where things live"."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "livelayers"
FORBIDDEN_IN_ENGINE = ("nodes", "ui", "toyworld")


def module_name(path: Path, root: Path = ROOT) -> str:
    """engine/regions/editors.py -> livelayers.engine.regions.editors (a package's
    __init__.py names the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, anywhere in it.

    ``from X import a`` yields X and X.a (``a`` may be a submodule:
    ``from .. import toyworld``); relative imports are resolved against the
    file's package; ``importlib.import_module("…")`` / ``__import__("…")`` with
    a literal absolute name count as imports."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.append((node.lineno, mod))
            found += [(node.lineno, f"{mod}.{a.name}") for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            fname = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if fname in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def offending(folder: str, forbidden, root: Path = ROOT) -> list[str]:
    """'file:line imports module' for every import of folder/**/*.py that reaches
    livelayers.<forbidden>, a bare top-level <forbidden> (as when the repo root
    itself is on sys.path) or livelayers.engine.<forbidden> (a shim or the old
    home of the toy world, e.g. ``..toyworld`` written in engine/regions/)."""
    bad = []
    for path in sorted((root / folder).rglob("*.py")):
        for line, mod in imported_modules(path, root):
            parts = mod.split(".")
            top = parts[1] if parts[0] == PACKAGE and len(parts) > 1 else parts[0]
            in_engine = parts[:2] == [PACKAGE, "engine"] and len(parts) > 2 and parts[2] in forbidden
            if top in forbidden or in_engine:
                bad.append(f"{path.relative_to(root)}:{line} imports {mod}")
    return sorted(set(bad))


def test_the_import_reader_sees_every_form(tmp_path):
    """The checker itself: each way of importing the toy world, nodes or ui is
    caught, and engine-internal relative imports are not mistaken for them."""
    sub = tmp_path / "engine" / "regions"
    sub.mkdir(parents=True)
    (tmp_path / "engine" / "__init__.py").write_text("")
    (sub / "__init__.py").write_text("from .. import toyworld_like\n")  # a name inside the engine: fine
    (sub / "a.py").write_text(
        "import livelayers.toyworld.scenes\n"                 # 1 absolute
        "from ...toyworld import scenes\n"                    # 2 relative to livelayers
        "from ... import nodes\n"                             # 3 a package by name
        "def f():\n"
        "    from livelayers.ui.panel import x\n"             # 5 inside a function
        "    import importlib\n"
        "    importlib.import_module('livelayers.toyworld.clips')\n"  # 7 by string
        "from ..errors import InputError\n"                   # 8 engine-internal: fine
        "from ..toyworld import y\n")                         # 9 a toy world inside the engine
    bad = offending("engine", FORBIDDEN_IN_ENGINE, tmp_path)
    assert all(b.startswith("engine/regions/a.py:") for b in bad), bad
    lines = sorted({int(b.split(":")[1].split()[0]) for b in bad})
    assert lines == [1, 2, 3, 5, 7, 9]


def test_engine_imports_no_nodes_ui_or_toyworld():
    files = list((ROOT / "engine").rglob("*.py"))
    assert len(files) > 30  # the walk really reads the engine
    bad = offending("engine", FORBIDDEN_IN_ENGINE)
    assert not bad, "engine/ must not import nodes/, ui/ or toyworld/:\n" + "\n".join(bad)


def test_toy_world_lives_outside_the_engine():
    assert not (ROOT / "engine" / "toyworld").exists()
    assert not (ROOT / "engine" / "atlas" / "synthetic.py").exists()
    assert (ROOT / "toyworld" / "scenes.py").is_file() and (ROOT / "toyworld" / "clips.py").is_file()
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert "livelayers.toyworld" in packages
    assert not [p for p in packages if p.startswith("livelayers.engine.toy")]


def code_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal in the file that is not a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_engine_has_no_built_in_toy_model_paths():
    """The toy models are found through their plugin.json catalogue entries like
    any model; no engine code knows where they are shipped (a missing model is
    a ModelNotFoundError, never a silent toy substitute)."""
    bad = [f"{p.relative_to(ROOT)}:{line} {text!r}" for p in sorted((ROOT / "engine").rglob("*.py"))
           for line, text in code_strings(p) if "tests/assets" in text]
    assert not bad, "\n".join(bad)
