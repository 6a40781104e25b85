"""No import cycle in smae or smae.kernels: a module never needs, directly or through others,
a module that needs it. Every import counts, at module level or inside a function (a deferred
import only hides a cycle from Python's import order, not from the reader)."""
import ast
import graphlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"smae": REPO / "smae", "smae.kernels": REPO / "kernels"}  # setup.py's package_dir


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of both packages (a package is its __init__)."""
    modules = {}
    for package, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of `modules` that the file imports: `import a.b`, `from a import b` (b a module
    or a name of a), relative imports resolved against the module's package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names)
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def test_the_graph_sees_the_imports_it_must():
    """The parser itself: known edges of each kind (absolute, relative, function-level)."""
    graph = import_graph()
    assert "smae.kernels.backend" in graph["smae.kernels.attention"]  # from .backend import ...
    assert "smae.errors" in graph["smae.data.pairs"]  # from smae.errors import UserError
    assert "smae.data.gpu_decode" in graph["smae.data.pair_source"]


def test_a_planted_cycle_is_found():
    graph = import_graph()
    graph["smae.errors"] = graph["smae.errors"] | {"smae.data.pairs"}
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(graph).prepare()


def test_no_import_cycle():
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as error:
        pytest.fail("import cycle: " + " -> ".join(error.args[1]))
