"""The package layout's rules: one-way dependencies between the four packages, no import cycle between
modules, every sub-package installed, no folder that grows into a junk drawer."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("extractors", "store", "trainers", "cli")
LAYER = {name: i for i, name in enumerate(PACKAGES)}
"""Dependencies point one way: extractors <- store <- trainers <- cli."""

MAX_MODULES_PER_FOLDER = 16


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return "affectcache." + ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for top in PACKAGES for p in sorted((ROOT / top).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, known: set[str], *, top_level_only: bool) -> set[str]:
    """affectcache modules imported by ``path`` (``from pkg import sub`` counts ``pkg.sub`` when it is a
    module); with ``top_level_only``, imports inside functions and TYPE_CHECKING blocks are skipped."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("affectcache."))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("affectcache"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in known else node.module)
            elif isinstance(node, ast.If) and _is_type_checking(node):
                if not top_level_only:
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                for block in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, block, []):
                        visit(child.body if isinstance(child, ast.ExceptHandler) else [child])
            elif isinstance(node, ast.ClassDef) or (
                    not top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))):
                visit(node.body)

    visit(tree.body)
    return {m for m in found if m in known}


def _package(module: str) -> str:
    return module.split(".")[1]


def test_every_sub_package_is_installed() -> None:
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {_module_name(p) for top in PACKAGES for p in (ROOT / top).rglob("__init__.py")}
    assert folders - declared == set(), "add these to [tool.setuptools] packages in pyproject.toml"


def test_dependencies_point_one_way() -> None:
    modules = _modules()
    known = set(modules)
    wrong = sorted(f"{mod} imports {dep}" for mod, path in modules.items()
                   for dep in _imports(path, known, top_level_only=False)
                   if LAYER[_package(dep)] > LAYER[_package(mod)])
    assert wrong == []


def test_no_import_cycle_between_modules() -> None:
    modules = _modules()
    known = set(modules)
    graph = {mod: _imports(path, known, top_level_only=True) - {mod} for mod, path in modules.items()}
    # A package's __init__ importing its own sub-modules is how registration works, not a cycle:
    # importing ``a.b`` runs ``a/__init__`` first, so edges from a module to its ancestors are implied.
    for mod in graph:
        graph[mod] = {dep for dep in graph[mod] if not mod.startswith(dep + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep):], dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod)


@pytest.mark.parametrize("top", PACKAGES)
def test_no_folder_is_a_junk_drawer(top: str) -> None:
    for folder in [ROOT / top, *(p for p in (ROOT / top).rglob("*") if p.is_dir())]:
        if folder.name == "__pycache__":
            continue
        count = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
        assert count <= MAX_MODULES_PER_FOLDER, f"{folder.relative_to(ROOT)} holds {count} modules"
