"""The package's layout holds: imports run one way, no two modules import each other, no giant modules.

The layers (ARCHITECTURE.md), from the floor up: the lesson modules (course_lib/*.py and
course_lib/efficient/) -> data/ and viz/ (viz may use data, never the reverse) -> checks/ ->
grading/ and authoring/. A module may import its own layer or the layers below, never above.
Every import counts, also one inside a function (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "course_lib"

# Layer of each top-level part of course_lib (a module name or a sub-package name).
LAYERS = {"lesson": 0, "data": 1, "viz": 2, "checks": 3, "grading": 4, "authoring": 4}
SUBPACKAGES = {"data", "viz", "checks", "grading", "authoring"}  # efficient/ is lesson code
MAX_LINES = 600
LESSON_MAX_LINES = 1100  # a lesson module may be as long as its lesson


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _part(module: str) -> str:
    """'course_lib.viz.plots' -> 'viz'; 'course_lib.attention' -> 'lesson'."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in SUBPACKAGES:
        return parts[1]
    return "lesson"


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The course_lib modules that ``module`` imports, anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{alias.name}" for alias in node.names]  # a name or a module of prefix
        for target in targets:
            # the longest known module that the target names (a name imported from a module -> that module)
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


@functools.lru_cache(maxsize=1)
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, set(modules)) for name, path in modules.items()}


def _is_reexport(module: str) -> bool:
    """Package __init__ files re-export their children; they are not a dependency of their own children."""
    return (PACKAGE / Path(*module.split(".")[1:]) / "__init__.py").exists() or module == "course_lib"


def test_the_graph_is_not_empty():
    graph = _graph()
    assert "course_lib.attention" in graph and "course_lib.grading.cli" in graph
    assert "course_lib.attention" in graph["course_lib.multihead"]  # the parser sees relative imports
    assert "course_lib.checks.core" in graph["course_lib.grading.scoring"]


def test_no_import_cycles_between_modules():
    graph = {m: {d for d in deps if not _is_reexport(d)} for m, deps in _graph().items() if not _is_reexport(m)}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [node, dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("module", sorted(_modules()))
def test_imports_run_one_way(module):
    if _is_reexport(module):
        return  # an __init__ re-exports what is below it
    layer = LAYERS[_part(module)]
    upward = []
    for dep in _graph()[module]:
        if dep == "course_lib" or _is_reexport(dep) and _part(dep) == _part(module):
            continue
        if LAYERS[_part(dep)] > layer:
            upward.append(dep)
        if _part(module) == "data" and _part(dep) == "viz":
            upward.append(dep)
    assert not upward, f"{module} (layer {_part(module)}) imports from a layer above it: {sorted(upward)}"


def test_the_lesson_floor_imports_no_package_init():
    """A lesson module importing course_lib (the __init__) would import everything above it."""
    for module, deps in _graph().items():
        if _part(module) == "lesson" and not _is_reexport(module):
            assert "course_lib" not in deps, f"{module} imports the course_lib package itself"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_giant_modules(path):
    lines = len(path.read_text().splitlines())
    limit = LESSON_MAX_LINES if _part(_module_name(path)) == "lesson" else MAX_LINES
    assert lines <= limit, f"{path.name} has {lines} lines (limit {limit}): split it by job"
