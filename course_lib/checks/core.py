"""The checking framework behind every ``check_<exercise>``: cases, properties, mistakes, reports.

A chapter's checks module (``course_lib/checks/<chapter>.py``) describes each exercise as an
:class:`Exercise`: the reference function, a few :class:`Property` groups of seeded
:class:`Case` inputs, and the known :class:`Mistake` variants, then calls :func:`run_check`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

NOT_IMPLEMENTED = "not implemented yet"


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

    def describe(self) -> str:
        parts = []
        items = [(None, a) for a in self.args] + list(self.kwargs.items())
        for name, a in items:
            prefix = f"{name}=" if name else ""
            if isinstance(a, torch.Tensor):
                if a.numel() <= 8:
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
    status: str  # "passed", "failed", "not implemented", "error"
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
    name: str
    reference: Callable[..., Any]
    properties: list[Property]
    mistakes: list[Mistake] = field(default_factory=list)
    compare: Callable[[Any, Any], str | None] | None = None  # returns a reason when different


def _fmt_tensor(t: torch.Tensor) -> str:
    if t.dim() == 0:
        return f"{t.item():.4g}"
    values = ", ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in t.flatten().tolist())
    if t.dim() == 1:
        return f"[{values}]"
    return f"tensor of shape {tuple(t.shape)} [{values}]"


def _tolerance(dtype: torch.dtype) -> tuple[float, float]:
    if dtype == torch.float64:
        return 1e-7, 1e-9
    if dtype in (torch.float16, torch.bfloat16):
        return 2e-2, 2e-3
    return 1e-4, 1e-5


def _difference(got: Any, expected: torch.Tensor) -> str | None:
    """None when ``got`` equals ``expected`` within the dtype's tolerance, else the reason."""
    if not isinstance(got, torch.Tensor):
        return f"returned {type(got).__name__}, expected a torch.Tensor"
    if tuple(got.shape) != tuple(expected.shape):
        return f"returned shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if not got.is_floating_point():
        return f"returned dtype {got.dtype}, expected a floating tensor"
    if got.device != expected.device:
        return f"returned a tensor on {got.device}, expected {expected.device}"
    g, e = got.detach().double(), expected.detach().double()
    if not torch.isfinite(g).all() and torch.isfinite(e).all():
        return "returned inf or NaN where the answer is finite"
    rtol, atol = _tolerance(expected.dtype)
    if not torch.allclose(g, e, rtol=rtol, atol=atol, equal_nan=True):
        worst = (g - e).abs().nan_to_num(float("inf")).max().item()
        return f"values differ from the right answer (largest difference {worst:.3g})"
    return None


def _call(fn: Callable, case: Case):
    args = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in case.args)
    kwargs = {k: (a.clone() if isinstance(a, torch.Tensor) else a) for k, a in case.kwargs.items()}
    return fn(*args, **kwargs)


def _is_not_implemented(exc: BaseException) -> bool:
    return isinstance(exc, NotImplementedError)


def run_check(exercise: Exercise, student_fn: Callable, verbose: bool = True) -> CheckReport:
    """Run every property of ``exercise`` on ``student_fn``; print and return a CheckReport."""
    report = CheckReport(exercise.name, "passed")
    if not callable(student_fn):
        report.status = "error"
        report.results.append(PropertyResult("is a function", False, f"got {type(student_fn).__name__}, not a function"))
        _print(report, verbose)
        return report
    compare = exercise.compare or _difference
    mistake_votes: dict[str, int] = {}
    for prop in exercise.properties:
        failure: tuple[Case, str] | None = None
        for case in sorted(prop.cases, key=Case.size):
            expected = _call(exercise.reference, case)
            try:
                got = _call(student_fn, case)
            except Exception as exc:  # the learner's code may raise anything
                if _is_not_implemented(exc):
                    report.status = "not implemented"
                    report.results = []
                    _print(report, verbose)
                    return report
                reason = f"raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
                for key in _diagnose_exception(exc, case):
                    mistake_votes[key] = mistake_votes.get(key, 0) + 1
                failure = failure or (case, reason)
                continue
            reason = compare(got, expected)
            if reason is None:
                continue
            failure = failure or (case, reason)
            for mistake in exercise.mistakes:
                try:
                    wrong = _call(mistake.fn, case)
                except Exception:
                    continue
                if compare(wrong, expected) is not None and compare(got, wrong) is None:
                    mistake_votes[mistake.key] = mistake_votes.get(mistake.key, 0) + 1
        if failure is None:
            report.results.append(PropertyResult(prop.title, True))
        else:
            case, reason = failure
            report.results.append(PropertyResult(prop.title, False, f"on input {case.describe()}: {reason}"))
    if report.passed < report.total:
        report.status = "failed"
        ranked = sorted(mistake_votes.items(), key=lambda kv: -kv[1])
        report.diagnoses = [key for key, _ in ranked]
    _print(report, verbose, exercise)
    return report


_EXCEPTION_HINTS = {
    "finite_fill_half": "Your mask fill value does not fit in float16 (its largest magnitude is 65504): "
    "fill with float('-inf') (or torch.finfo(scores.dtype).min), not -1e9.",
    "batch_transpose": "It works for 2-D inputs but not with leading batch dims: `.T` reverses *all* dims. "
    "Transpose only the last two: key.transpose(-2, -1).",
}


def _diagnose_exception(exc: BaseException, case: Case) -> list[str]:
    text = str(exc)
    keys = []
    if "cannot be converted to type" in text and "Half" in text:
        keys.append("finite_fill_half")
    if any(isinstance(a, torch.Tensor) and a.dim() > 2 for a in case.args) and (
        "mat1 and mat2" in text or "must match the size" in text or "broadcast" in text or "Expected size" in text
    ):
        keys.append("batch_transpose")
    return keys


def _print(report: CheckReport, verbose: bool, exercise: Exercise | None = None) -> None:
    if not verbose:
        return
    name = report.exercise
    if report.status == "not implemented":
        print(f"{name}: {NOT_IMPLEMENTED} (replace the `raise NotImplementedError` line with your code, then re-run)")
        return
    mark = "all properties passed" if report.status == "passed" else f"{report.passed}/{report.total} properties passed"
    print(f"{name}: {mark}")
    for r in report.results:
        print(f"  [{'pass' if r.passed else 'FAIL'}] {r.title}")
        if not r.passed:
            print(f"         {r.detail}")
    messages = {m.key: m.message for m in exercise.mistakes} if exercise else {}
    messages.update(_EXCEPTION_HINTS)
    for key in report.diagnoses:
        print(f"  Diagnosis: {messages.get(key, key)}")
    if report.status == "failed" and not report.diagnoses:
        print("  No known mistake matches; compare your steps with the lesson, one shape at a time.")


# --------------------------------------------------------------------------------------------
# Random inputs (seeded, on the CPU: the same inputs on every machine).
# --------------------------------------------------------------------------------------------


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(g: torch.Generator, *shape: int, dtype=torch.float32, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)
