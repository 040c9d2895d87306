"""The import graph of ``app/``: every import at the top of its module, and no cycles.

Read from the source with ``ast`` (nothing is imported), so a cycle is caught even where Python
would tolerate it at run time because of the order modules happen to load in. An import of a
submodule also depends on its parent packages (Python runs their ``__init__`` first), so those
edges count too; that is why package ``__init__`` files stay empty.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"

# The one exception to "every import at the top": the modules a process runs as ``__main__``
# (``backchannel`` / ``python -m app.cli``, ``scripts/serve``). uvicorn's ``--workers`` start
# by spawn, and a spawned worker imports ``__main__`` again before it can answer the
# supervisor's 5-second health check, so on a busy machine a heavy ``__main__`` gets its
# workers killed as dead (tests/realtime/test_scaleout.py::test_workers_share_one_system).
# These two import a command's heavy parts (uvicorn, alembic, the demo, argon2) inside the
# command; their late imports still count as edges below, so they cannot hide a cycle.
LIGHT_MAIN = {"app.cli", "app.serve"}
HEAVY = ("uvicorn", "alembic", "httpx", "argon2")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def app_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(APP.rglob("*.py"))}


def parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _absolute(module: str | None, level: int, importer: str, is_package: bool) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imported_names(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> list[str]:
    """The modules an import statement loads (``from a import b`` loads ``a.b`` when that is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = _absolute(node.module, node.level, importer, is_package)
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


class ImportFinder(ast.NodeVisitor):
    def __init__(self) -> None:
        self.top: list[ast.Import | ast.ImportFrom] = []
        self.nested: list[tuple[ast.Import | ast.ImportFrom, str]] = []
        self._scopes: list[str] = []

    def _scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self._scopes.append(getattr(node, "name", "<lambda>"))
        self.generic_visit(node)
        self._scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _scope

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        if self._scopes:
            self.nested.append((node, self._scopes[-1]))
        else:
            self.top.append(node)

    visit_Import = visit_ImportFrom = _import


def scan() -> tuple[dict[str, set[str]], list[str]]:
    """The graph (module -> app modules it needs loaded first) and every function-level import."""
    modules = app_modules()
    graph: dict[str, set[str]] = {}
    nested: list[str] = []
    for name, path in modules.items():
        finder = ImportFinder()
        finder.visit(ast.parse(path.read_text(), filename=str(path)))
        is_package = path.name == "__init__.py"
        needs = {parent for parent in parents(name) if parent in modules}
        late = [node for node, _ in finder.nested] if name in LIGHT_MAIN else []
        for node in [*finder.top, *late]:
            for target in imported_names(node, name, is_package):
                needs.update(t for t in [*parents(target), target] if t in modules and t != name)
        graph[name] = needs
        for node, function in finder.nested if name not in LIGHT_MAIN else []:
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            nested.append(f"{where} in {function}(): {ast.unparse(node)}")
    return graph, nested


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:  # recursion depth is bounded by the number of modules
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, set(component)) for component in components]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path back to the start, inside the component: the cycle to show."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def test_every_import_is_at_the_top_of_its_module() -> None:
    _, nested = scan()
    assert nested == [], "imports inside functions (move them to the top; a cycle is not a reason):\n" + "\n".join(
        nested
    )


def test_the_app_has_no_import_cycles() -> None:
    graph, _ = scan()
    cycles = [" -> ".join(cycle) for cycle in find_cycles(graph)]
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_the_checks_see_what_they_should() -> None:
    # The scan finds the known edges, and the cycle finder names a planted cycle.
    graph, _ = scan()
    assert "app.state" in graph["app.main"] and "app.store.runner" in graph["app.state"]
    assert "app.console" in graph["app.console.hub"]  # a submodule needs its package first
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycles(planted) == [["a", "b", "c", "a"]]
    tree = ast.parse("def f():\n    import os\n")
    finder = ImportFinder()
    finder.visit(tree)
    assert [scope for _, scope in finder.nested] == ["f"]


def test_the_command_line_does_not_load_the_metrics_instruments() -> None:
    # prometheus_client picks single- or multi-process mode when app.instruments is first imported,
    # and `serve --workers N` prepares the shared folder first (app/multiprocess.py).
    graph, _ = scan()
    for start in ("app.cli", "app.serve", "app.multiprocess"):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        assert not {"app.instruments", "app.metrics"} & seen, start


def test_the_processes_main_modules_stay_light() -> None:
    for module in sorted(LIGHT_MAIN):
        code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
        loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        assert loaded.stdout.split() == [], f"{module} imports {loaded.stdout.strip()} at load (see LIGHT_MAIN)"
