"""The checks' shared types: cases, properties, mistakes, outcomes and reports.

This module imports nothing else of :mod:`course_lib.checks`, so every other checks module (the
framework :mod:`~course_lib.checks.core`, :mod:`~course_lib.checks.handwritten`, the chapters)
can import it without a circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Union

import torch

NOT_IMPLEMENTED = "not implemented yet"
HAND_WRITTEN = "written by hand"  # the title of the property added when a ready-made function is used


# --------------------------------------------------------------------------------------------
# The framework: cases, properties, mistakes, reports.
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One call of the learner's function: positional args, keyword args and a short label."""

    args: tuple
    kwargs: dict = field(default_factory=dict)
    label: str = ""

    def size(self) -> int:
        return sum(a.numel() for a in (*self.args, *self.kwargs.values()) if isinstance(a, torch.Tensor))

    def describe(self, values: bool = True) -> str:
        """The call's arguments as text: small tensors in full, others as dtype and shape.

        With ``values=False`` (batch feedback, where inputs stay hidden) every tensor is shown as
        dtype and shape only, and other arguments by their type.
        """
        parts = []
        items = [(None, a) for a in self.args] + list(self.kwargs.items())
        for name, a in items:
            prefix = f"{name}=" if name else ""
            if not values and not isinstance(a, torch.Tensor):
                shown = repr(a) if isinstance(a, (bool, int)) or a is None else f"<{type(a).__name__}>"
                parts.append(prefix + shown)
            elif isinstance(a, torch.Tensor):
                if a.numel() <= 8 and values:
                    parts.append(prefix + _fmt_tensor(a))
                else:
                    parts.append(f"{prefix}<{a.dtype} tensor of shape {tuple(a.shape)}>".replace("torch.", ""))
            else:
                parts.append(prefix + repr(a))
        text = ", ".join(parts)
        return f"({text})" + (f"  [{self.label}]" if self.label else "")


@dataclass
class Property:
    """A named group of cases; it passes when the learner's output is right on all of them."""

    title: str
    cases: list[Case]


@dataclass
class Mistake:
    """A known wrong variant of the reference, and what to tell the learner when it matches."""

    key: str
    message: str
    fn: Callable[..., Any]


@dataclass
class PropertyResult:
    title: str
    passed: bool
    detail: str = ""


@dataclass
class CheckReport:
    """The outcome of one check. ``score`` is the fraction of properties passed (0 to 1)."""

    exercise: str
    status: str  # "passed", "failed", "not implemented", "error" ("captured" under capture())
    results: list[PropertyResult] = field(default_factory=list)
    diagnoses: list[str] = field(default_factory=list)  # keys of the mistakes recognised

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def score(self) -> float:
        return self.passed / self.total if self.total else 0.0

    def __repr__(self) -> str:
        return f"CheckReport({self.exercise!r}, status={self.status!r}, passed={self.passed}/{self.total})"


@dataclass
class Exercise:
    """One exercise: the learner's function ``name`` is compared with ``reference`` on every case.

    ``mistakes`` are the known wrong variants to recognise; ``compare(got, expected)`` returns a
    reason when the two differ (default: same shape, floating dtype, device and values within
    the dtype's tolerance).
    """

    name: str
    reference: Callable[..., Any]
    properties: list[Property]
    mistakes: list[Mistake] = field(default_factory=list)
    compare: Callable[[Any, Any], str | None] | None = None  # returns a reason when different

    def __post_init__(self) -> None:
        # Every exercise that takes matrices also gets them as non-contiguous views (see
        # non_contiguous_property): a `.view(...)` on an input, or code that assumes a
        # row-major layout, fails there and nowhere else.
        extra = non_contiguous_property(self.properties)
        if extra is not None:
            self.properties.append(extra)


NON_CONTIGUOUS = "non-contiguous inputs (the same values stored in reverse dim order, as after a transpose or permute)"


def _as_strided_view(a: Any) -> Any:
    """``a`` with the same shape and values, stored in reverse dim order (not contiguous).

    Every dim's stride is reversed (column-major for a matrix), so a ``.view`` that merges any two
    dims raises, as it does on a transposed or permuted tensor. A tensor that stays contiguous
    (fewer than 2 dims, or all dims but one of size 1) is returned as it is, as is anything else.
    """
    if not isinstance(a, torch.Tensor) or a.dim() < 2:
        return a
    order = tuple(range(a.dim() - 1, -1, -1))
    out = a.permute(order).contiguous().permute(order)  # same shape, strides (1, s0, s0*s1, ...)
    return a if out.is_contiguous() else out


def non_contiguous_property(properties: list[Property]) -> Property | None:
    """A property that repeats one case of ``properties`` with every matrix input non-contiguous.

    The case chosen is the first one with the most inputs that can be made non-contiguous (ties:
    the most dims). Exercises whose inputs are no matrices (sizes, vectors, predictions) get
    none, and a list that already has this property is left as it is.

    Returns:
        The property, or None when no case has an input of 2 or more dims with 2 dims > 1.
    """
    if any(p.title == NON_CONTIGUOUS for p in properties):
        return None
    best, best_key = None, (0, 0)
    for prop in properties:
        for case in prop.cases:
            values = (*case.args, *case.kwargs.values())
            changed = [a for a in values if _as_strided_view(a) is not a]
            key = (len(changed), max((a.dim() for a in changed), default=0))
            if key > best_key:
                best, best_key = case, key
    if best is None:
        return None
    case = Case(tuple(_as_strided_view(a) for a in best.args),
                {k: _as_strided_view(a) for k, a in best.kwargs.items()},
                (best.label + "; " if best.label else "") + "inputs in reverse dim order")
    return Property(NON_CONTIGUOUS, [case])


def _fmt_tensor(t: torch.Tensor) -> str:
    if t.dim() == 0:
        return f"{t.item():.4g}"
    values = ", ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in t.flatten().tolist())
    if t.dim() == 1:
        return f"[{values}]"
    return f"tensor of shape {tuple(t.shape)} [{values}]"


def _is_not_implemented(exc: BaseException) -> bool:
    return isinstance(exc, NotImplementedError)


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Returned:
    """The learner's function returned ``value`` on a case."""

    value: Any


@dataclass(frozen=True)
class Raised:
    """The learner's function raised on a case: the exception's type name and message.

    ``not_implemented`` is True for NotImplementedError (and its subclasses): the exercise is
    still the unfilled stub.
    """

    type_name: str
    message: str = ""
    not_implemented: bool = False

    @classmethod
    def from_exception(cls, exc: BaseException) -> "Raised":
        return cls(type(exc).__name__, str(exc), _is_not_implemented(exc))

    def reason(self) -> str:
        first = self.message.splitlines()[0] if self.message else ""
        return f"raised {self.type_name}: {first}".rstrip(": ")


Outcome = Union[Returned, Raised]


@dataclass
class Captured:
    """An exercise recorded by :func:`run_check` under :func:`capture`, with the callable it was given.

    ``fn`` is the learner's function itself, or a wrapper around it when the chapter's check
    adapts the function before checking it.
    """

    exercise: Exercise
    fn: Any
