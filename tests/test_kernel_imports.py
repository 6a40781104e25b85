"""The kernels package has no import cycle: no module imports one that imports it back, lazily
or not (a launcher never reaches back into its caller), and the dispatch-side modules need no
Triton."""
import ast
import pathlib

KERNELS = pathlib.Path(__file__).resolve().parents[1] / "kernels"


def relative_imports(path: pathlib.Path) -> set[str]:
    """The kernels modules `path` imports, at any depth of its code (`from .x import y`, `from . import x`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
    return found


def test_no_import_cycle():
    graph = {path.stem: relative_imports(path) for path in KERNELS.glob("*.py")}

    def reaches(start: str, target: str, seen: set) -> bool:
        return any(name == target or (name not in seen and reaches(name, target, seen | {name}))
                   for name in graph.get(start, ()))

    cycles = [module for module in graph if reaches(module, module, {module})]
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_plans_and_limits_need_no_triton():
    for name in ("gpus", "propagation_plan", "support", "backend"):
        source = (KERNELS / f"{name}.py").read_text()
        assert "import triton" not in source, name
