"""Is the learner's function written by hand? Spotting ready-made functions in its source code.

Some exercises ask for a hand-written version of something PyTorch (or course_lib) already has:
a softmax without ``torch.softmax``, attention without ``F.scaled_dot_product_attention``. The
check reads the source code of the learner's function (and of the notebook's own helper
functions it calls) with :mod:`ast`, resolves each name through the notebook's imports, and
reports every use of a function listed in :data:`course_lib.checks.points.FORBIDDEN`, of
course_lib's own function of the exercise's name, or of anything in ``course_lib.checks``.

Two entry points, one analysis:

- :func:`ready_made_in_function`, in the notebook: the function object is at hand; names are
  resolved through its globals (``inspect.getsource``; silently skipped when there is no source).
- :func:`ready_made_in_cells`, in the batch grader: only the notebook's code is at hand, and it
  must not run; names are resolved through the import statements of the cells. Only torch,
  numpy, scipy and course_lib, which the grader trusts, are ever imported to compare objects.

This is a static check for honest mistakes: code that builds the name at run time
(``getattr(torch, "soft" + "max")``) is not detected. Taught in: every exercises/ notebook.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
import textwrap
import types
from typing import Any, Callable, Iterable

from .base import HAND_WRITTEN, PropertyResult
from .points import FORBIDDEN

_MISSING = object()
_TRUSTED_ROOTS = ("torch", "course_lib", "numpy", "scipy")
_MAX_HELPER_DEPTH = 3


def _trusted_resolve(dotted: str | None) -> Any:
    """The object a dotted name denotes, for names inside torch/numpy/scipy/course_lib; else _MISSING."""
    if not dotted or dotted.split(".")[0] not in _TRUSTED_ROOTS:
        return _MISSING
    parts = dotted.split(".")
    if parts[0] == "scipy" and "scipy" not in sys.modules:
        return _MISSING  # never import scipy just to look
    try:
        obj: Any = sys.modules.get(parts[0]) or importlib.import_module(parts[0])
    except Exception:  # noqa: BLE001
        return _MISSING
    for attr in parts[1:]:  # as `from a.b import c` does: the attribute first, then a submodule
        value = getattr(obj, attr, _MISSING)
        if value is _MISSING and isinstance(obj, types.ModuleType):
            try:
                value = importlib.import_module(f"{obj.__name__}.{attr}")
            except Exception:  # noqa: BLE001  neither an attribute nor a module
                return _MISSING
        if value is _MISSING:
            return _MISSING
        obj = value
    return obj


def _display(dotted: str) -> str:
    for long, short in (("torch.nn.functional.", "F."), ("torch.nn.", "nn."), ("torch.Tensor.", "Tensor.")):
        if dotted.startswith(long):
            return short + dotted[len(long):]
    return dotted


class _Rules:
    """What counts as ready-made for one exercise."""

    def __init__(self, exercise: str):
        self.exercise = exercise
        self.names = set(FORBIDDEN.get(exercise, ()))
        self.methods = {n.rsplit(".", 1)[1] for n in self.names if n.startswith("torch.Tensor.")}
        self.matmul = "@" in self.names
        self.objects: dict[int, str] = {}
        for name in self.names:
            obj = _trusted_resolve(name)
            if obj is not _MISSING and not isinstance(obj, types.ModuleType):
                self.objects.setdefault(id(obj), name)
        self._keep = [_trusted_resolve(n) for n in self.names]  # keep the objects (and their ids) alive

    def hit(self, dotted: str | None, obj: Any) -> str | None:
        """The ready-made function a name denotes (its qualified name), or None."""
        if dotted in self.names:
            return dotted
        if obj is not _MISSING and not isinstance(obj, types.ModuleType):
            if id(obj) in self.objects:
                return self.objects[id(obj)]
            module = getattr(obj, "__module__", None) or ""
            if module.startswith("course_lib"):
                if module.startswith("course_lib.checks"):
                    return f"{module}.{getattr(obj, '__name__', '?')}"
                if getattr(obj, "__name__", None) == self.exercise:
                    return f"{module}.{self.exercise}"
        if dotted and dotted.startswith("course_lib.checks.") and not isinstance(obj, types.ModuleType):
            return dotted
        return None


class _Scanner:
    """Walks function bodies; ``lookup(name)`` gives (dotted name or None, object or _MISSING)."""

    def __init__(self, rules: _Rules, lookup: Callable[[str], tuple[str | None, Any]]):
        self.rules, self.lookup, self.found = rules, lookup, []

    def resolve(self, node: ast.AST) -> tuple[str | None, Any]:
        if isinstance(node, ast.Name):
            return self.lookup(node.id)
        if isinstance(node, ast.Attribute):
            dotted, obj = self.resolve(node.value)
            if dotted is None and obj is _MISSING:
                return None, _MISSING
            attr_obj = _MISSING
            if isinstance(obj, (types.ModuleType, type)):
                attr_obj = getattr(obj, node.attr, _MISSING)
            elif dotted is not None:
                attr_obj = _trusted_resolve(f"{dotted}.{node.attr}")
            return (f"{dotted}.{node.attr}" if dotted else None), attr_obj
        return None, _MISSING

    def scan(self, tree: ast.AST) -> list[str]:
        """The local helper names the tree refers to (to scan next); hits go to ``self.found``."""
        helpers = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, ast.MatMult) and self.rules.matmul:
                self._add("@", "@")
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                helpers.append(node.id)
            if not isinstance(node, (ast.Name, ast.Attribute)) or not isinstance(node.ctx, ast.Load):
                continue
            dotted, obj = self.resolve(node)
            qualified = self.rules.hit(dotted, obj)
            if qualified is not None:
                self._add(ast.unparse(node), qualified)
            elif isinstance(node, ast.Attribute) and node.attr in self.rules.methods:
                base_dotted, base_obj = self.resolve(node.value)
                if base_dotted is None and not isinstance(base_obj, (types.ModuleType, type)):
                    self._add(f".{node.attr}(...)", f"torch.Tensor.{node.attr}")
        return helpers

    def _add(self, written: str, qualified: str) -> None:
        if written == "@":
            text = "the @ operator"
        elif written.startswith("."):
            text = f"the tensor method {written}"
        elif written in (qualified, _display(qualified)) or written.endswith((f" {qualified}", f" {_display(qualified)}")):
            text = written
        else:
            text = f"{written} (= {_display(qualified)})"
        if text not in self.found:
            self.found.append(text)


# --------------------------------------------------------------------------------------------
# In the batch grader: the notebook's code cells, never run.
# --------------------------------------------------------------------------------------------


def _bind_import(node: ast.Import | ast.ImportFrom, aliases: dict[str, str]) -> None:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                aliases[alias.asname] = alias.name
            else:
                root = alias.name.split(".")[0]
                aliases[root] = root
    elif node.module and not node.level:
        for alias in node.names:
            if alias.name != "*":
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"


def ready_made_in_cells(exercise: str, cells: Iterable[str]) -> list[str]:
    """Ready-made functions used by the notebook's function ``exercise``, read from its code cells.

    Args:
        exercise: the exercise (and function) name, e.g. "softmax".
        cells: the source of each code cell, in notebook order (magics already removed).
    Returns:
        one text per use, e.g. ``"F.softmax"`` or ``"sm (torch.softmax)"``; empty when the
        function is written by hand, or is not defined by a ``def``/``lambda``/assignment.
    """
    rules = _Rules(exercise)
    aliases: dict[str, str] = {}
    defs: dict[str, ast.AST] = {}
    for source in cells:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue
        for stmt in tree.body:
            _bind_top_level(stmt, aliases, defs)
        for node in ast.walk(tree):  # imports inside functions count too (e.g. `import torch` in the body)
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node not in tree.body:
                scratch: dict[str, str] = {}
                _bind_import(node, scratch)
                for name, dotted in scratch.items():
                    aliases.setdefault(name, dotted)
    if exercise not in defs and exercise not in aliases:
        return []

    def lookup(name: str) -> tuple[str | None, Any]:
        if name in defs:
            return None, _MISSING
        dotted = aliases.get(name)
        return dotted, _trusted_resolve(dotted)

    scanner = _Scanner(rules, lookup)
    if exercise in aliases:  # `softmax = torch.softmax` or `from torch import softmax`
        qualified = rules.hit(aliases[exercise], _trusted_resolve(aliases[exercise]))
        if qualified is not None:
            scanner._add(f"{exercise} = {aliases[exercise]}", qualified)
        return scanner.found
    seen: set[str] = set()
    queue = [(exercise, 0)]
    while queue:
        name, depth = queue.pop(0)
        if name in seen or name not in defs or depth > _MAX_HELPER_DEPTH:
            continue
        seen.add(name)
        for helper in scanner.scan(defs[name]):
            queue.append((helper, depth + 1))
    return scanner.found


def _bind_top_level(stmt: ast.stmt, aliases: dict[str, str], defs: dict[str, ast.AST]) -> None:
    """Update the names a top-level statement binds (imports, simple assignments, defs)."""
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        _bind_import(stmt, aliases)
        for alias in stmt.names:
            defs.pop(alias.asname or alias.name.split(".")[0], None)
    elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        defs[stmt.name] = stmt
        aliases.pop(stmt.name, None)
    elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        target = stmt.targets[0].id
        aliases.pop(target, None)
        defs.pop(target, None)
        if isinstance(stmt.value, ast.Lambda):
            defs[target] = stmt.value
        elif isinstance(stmt.value, (ast.Name, ast.Attribute)):
            dotted = _dotted_of(stmt.value, aliases)
            if dotted:
                aliases[target] = dotted
    elif isinstance(stmt, (ast.If, ast.Try, ast.With)):
        for inner in ast.iter_child_nodes(stmt):
            if isinstance(inner, ast.stmt):
                _bind_top_level(inner, aliases, defs)


def _dotted_of(node: ast.AST, aliases: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted_of(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    return None


# --------------------------------------------------------------------------------------------
# In the notebook: the function object itself.
# --------------------------------------------------------------------------------------------


def _function_tree(fn: Any) -> ast.AST | None:
    """The AST of ``fn``'s definition, or None when its source is unavailable or ambiguous."""
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError, ValueError):
        return None
    name = getattr(fn, "__name__", "")
    if name == "<lambda>":
        lambdas = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)]
        return lambdas[0] if len(lambdas) == 1 else None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return node
    return None


def _learner_functions(fn: Any) -> list[Any]:
    """``fn`` itself, or the learner's function(s) inside a wrapper that a check put around it.

    A check's wrapper (in ``course_lib.checks``) closes over the learner's function only; what it
    holds may be course_lib's own function (``check_softmax(course_lib.softmax)``), so it is kept.
    """
    module = getattr(fn, "__module__", None) or ""
    if not module.startswith("course_lib.checks"):
        return [fn]
    inner = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if callable(value) and not (getattr(value, "__module__", None) or "").startswith("course_lib.checks"):
            inner.append(value)
    return inner


def ready_made_in_function(exercise: str, fn: Any) -> list[str]:
    """Ready-made functions used by the learner's function object ``fn`` (see the module doc).

    Returns:
        one text per use; empty when none is found or the source is unavailable.
    """
    rules = _Rules(exercise)
    found: list[str] = []
    for learner_fn in _learner_functions(fn):
        direct = rules.hit(None, learner_fn)  # the ready-made function itself: `softmax = course_lib.softmax`
        if direct is not None:
            found.append(f"{exercise} = {_display(direct)}")
            continue
        try:
            found += [f for f in _scan_function(rules, learner_fn) if f not in found]
        except Exception:  # noqa: BLE001  a best-effort hint: never break the check itself
            continue
    return found


def _scan_function(rules: _Rules, fn: Any) -> list[str]:
    home = getattr(fn, "__module__", None)
    scanner: _Scanner | None = None
    seen: set[int] = set()
    queue = [(fn, 0)]
    while queue:
        current, depth = queue.pop(0)
        if id(current) in seen or depth > _MAX_HELPER_DEPTH:
            continue
        seen.add(id(current))
        tree = _function_tree(current)
        if tree is None:
            continue
        namespace = dict(getattr(current, "__globals__", {}))
        code = getattr(current, "__code__", None)
        if code is not None and current.__closure__:
            for var, cell in zip(code.co_freevars, current.__closure__):
                try:
                    namespace[var] = cell.cell_contents
                except ValueError:
                    pass

        local_imports: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                _bind_import(node, local_imports)

        def lookup(name: str, namespace=namespace, local_imports=local_imports) -> tuple[str | None, Any]:
            if name in local_imports:
                return local_imports[name], _trusted_resolve(local_imports[name])
            value = namespace.get(name, _MISSING)
            if isinstance(value, types.ModuleType):
                return value.__name__, value
            return None, value

        scanner = _Scanner(rules, lookup) if scanner is None else scanner
        scanner.lookup = lookup
        for helper in scanner.scan(tree):
            value = namespace.get(helper)
            if isinstance(value, types.FunctionType) and value.__module__ == home and value is not current:
                queue.append((value, depth + 1))
    return scanner.found if scanner else []


def hand_written_result(exercise: str, found: list[str]) -> PropertyResult | None:
    """The failed property to add to a report when ready-made functions were found, else None."""
    if not found:
        return None
    names = FORBIDDEN.get(exercise)
    what = _display(names[0]) if names else f"course_lib.{exercise}"
    return PropertyResult(
        f"{HAND_WRITTEN} (not the ready-made {what})",
        False,
        f"uses {', '.join(found)}: this exercise asks you to write it yourself",
    )
