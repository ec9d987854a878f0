"""The package's layout is its architecture: these tests keep it that way.

Executors unpickle the scoring function and import what it imports; if
executor code imported driver code (the job, the store, reports, the CLI),
a worker would drag Redis clients and Spark session helpers along, and a
cycle would make the import order matter. Read statically from the source,
lazy imports included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import skol_spark

ROOT = Path(skol_spark.__file__).parent
EXECUTOR_SIDE = ("scoring", "model")
DRIVER_SIDE = ("job", "store", "report", "cli", "local")


def module_imports() -> dict[str, set[str]]:
    """``{module: {skol_spark modules it imports}}`` for every module of the package."""
    modules = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(("skol_spark", *path.relative_to(ROOT).with_suffix("").parts))
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in names:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (ROOT / parts[1]).is_dir()) else ""


def test_the_package_has_no_import_cycles():
    assert cycles(module_imports()) == []


def test_executor_code_imports_nothing_driver_side():
    graph = module_imports()
    wrong = sorted((m, t) for m, targets in graph.items() if layer(m) in EXECUTOR_SIDE
                   for t in targets if layer(t) in DRIVER_SIDE)
    assert wrong == []


def test_the_checks_would_catch_a_cycle_and_a_wrong_import():
    """The walkers above are not vacuous: a synthetic graph with both faults is caught."""
    graph = {"skol_spark.a": {"skol_spark.b"}, "skol_spark.b": {"skol_spark.a"}, "skol_spark.c": set()}
    assert cycles(graph) == [["skol_spark.a", "skol_spark.b"]]
    real = module_imports()
    assert "skol_spark.model.artifact" in real["skol_spark.scoring.partition"] or \
        "skol_spark.model.cache" in real["skol_spark.scoring.partition"]
    assert layer("skol_spark.scoring.partition") == "scoring" and layer("skol_spark.job.run") == "job"
    assert layer("skol_spark.errors") == ""


def test_every_subpackage_says_what_runs_there():
    for package in [*EXECUTOR_SIDE, *DRIVER_SIDE]:
        assert (ROOT / package / "__init__.py").read_text().startswith('"""'), package
