"""The package's layers import one way, and no modules import each other in a cycle (lazy imports included).

    CLI (cli, __main__, commands) -> API (the package __init__, api) -> wiring (jobs) -> stages -> library (the rest)

A module may import its own layer or any layer below it, never one above. Imports inside `if TYPE_CHECKING:` are
type annotations, not imports at run time, and are left out. Module names follow pyproject's package-dir, so the
test reads the same tree the wheel is built from.
"""

import ast
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("library", "stages", "wiring", "api", "cli")


def package_dirs() -> dict[str, Path]:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / path for name, path in setuptools["package-dir"].items()}


def module_files() -> dict[str, Path]:
    """dra_pipeline.X.Y -> its file, for every .py file of every mapped package directory."""
    modules = {}
    for package, folder in package_dirs().items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if any(p.startswith(".") or p == "__pycache__" for p in parts):
                continue
            name = ".".join((package, *parts))
            modules[name.removesuffix(".__init__")] = path
    return modules


def layer(module: str) -> str:
    if module in ("dra_pipeline", "dra_pipeline.api"):
        return "api"
    if module in ("dra_pipeline.cli", "dra_pipeline.__main__") or module.startswith("dra_pipeline.commands"):
        return "cli"
    if module.startswith("dra_pipeline.jobs"):
        return "wiring"
    if module.startswith("dra_pipeline.stages"):
        return "stages"
    return "library"


def _runtime_nodes(tree: ast.AST):
    """Every node except the bodies of `if TYPE_CHECKING:` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports(source: str, known: set[str]) -> set[str]:
    """The dra_pipeline modules `source` imports anywhere (module level or inside functions)."""
    out = set()
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                out.add(child if child in known else node.module)
    return {m for m in out if m == "dra_pipeline" or m.startswith("dra_pipeline.")}


def graph(sources: dict[str, str]) -> dict[str, set[str]]:
    known = set(sources)
    return {name: imports(text, known) - {name} for name, text in sources.items()}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    return sorted(
        f"{a} ({layer(a)}) imports {b} ({layer(b)})"
        for a, targets in edges.items()
        for b in targets
        if rank[layer(b)] > rank[layer(a)]
    )


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def package_graph() -> dict[str, set[str]]:
    return graph({name: path.read_text() for name, path in module_files().items()})


def test_no_module_imports_a_layer_above_its_own():
    assert upward_imports(package_graph()) == []


def test_no_import_cycles():
    assert cycles(package_graph()) == []


def test_every_import_of_the_package_names_a_module_that_exists():
    known = set(module_files())
    missing = sorted({b for targets in package_graph().values() for b in targets if b not in known})
    assert missing == []


def test_the_checks_catch_an_upward_import_and_a_cycle():
    sources = {
        "dra_pipeline.losses": "def f():\n    from dra_pipeline.jobs.train import run_training\n",
        "dra_pipeline.jobs.train": "import dra_pipeline.losses\n",
        "dra_pipeline.models": "if TYPE_CHECKING:\n    import dra_pipeline.jobs.train\n",
    }
    edges = graph(sources)
    assert upward_imports(edges) == [
        "dra_pipeline.losses (library) imports dra_pipeline.jobs.train (wiring)"
    ]  # the TYPE_CHECKING import of models is not one
    assert cycles(edges) == [["dra_pipeline.jobs.train", "dra_pipeline.losses"]]
