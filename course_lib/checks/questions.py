"""What the predict-then-run questions and the investigations of every chapter share.

A **prediction** (``predict_<what>()``, in a cell tagged ``predict``) returns the learner's number or
option, written *before* running the cell that measures it. Its check passes within a tolerance
of the value computed with course_lib, names the common wrong predictions (each a :class:`Mistake`
that returns that wrong value), and, once the learner has predicted (right or wrong), prints why.

An **investigation** (``find_<what>(...)``, in a cell tagged ``investigation``) finds something by
experiment on the inputs the check gives it (a head, a temperature, a d_k) and returns it. Its
check repeats the experiment with course_lib, compares within a tolerance, and names the common
wrong findings; a right finding gets one line on what it shows.

Both are ordinary exercises for the batch grader (found by their check calls, scored by their
points in :mod:`~course_lib.checks.points`).
Taught in: every solutions/ and exercises/ notebook (the predict and investigation cells).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import torch

from .core import Case, CheckReport, Exercise, Mistake, Property, run_check

PREDICT_TAG = "predict"  # the cell metadata tag of a predict-then-run cell
INVESTIGATION_TAG = "investigation"  # the cell metadata tag of an investigation cell


def as_number(got: Any) -> float | None:
    """``got`` as a float when it is a real number (a Python or NumPy number, a 1-element tensor), else None."""
    if isinstance(got, bool):
        return None
    if isinstance(got, torch.Tensor) and got.numel() == 1 and got.device.type != "meta":
        return float(got.detach().cpu().reshape(()))
    if isinstance(got, numbers.Real):
        return float(got)
    return None


def number_compare(right: float | None = None, tolerance: float = 0.0, rel: float = 0.01, abs_tol: float = 1e-9,
                   unit: str = "") -> Callable[[Any, Any], str | None]:
    """A ``compare(got, expected)`` for numbers.

    Args:
        right: the right answer of a prediction (None for an investigation, whose answer varies by case).
        tolerance: how far a prediction may be from ``right`` (absolute, in the answer's unit).
        rel: the relative tolerance everywhere else (an investigation's answer, or a known wrong value
            matched to about 1 %, so that e.g. 0 and 1/V are told apart).
        abs_tol: the absolute tolerance everywhere else (the larger of the two applies).
        unit: shown in the reason (e.g. "nats").
    """

    def compare(got: Any, expected: Any) -> str | None:
        value = as_number(got)
        if value is None:
            return f"returned {type(got).__name__}: return a number" + (f" (in {unit})" if unit else "")
        if not math.isfinite(value):
            return f"returned {value}: the answer is a finite number"
        if expected is None:
            return f"returned {value:.4g}: the right finding is None"
        is_right = right is not None and math.isclose(expected, right, rel_tol=1e-9, abs_tol=1e-12)
        allowed = tolerance if is_right else max(abs_tol, rel * abs(expected))
        if abs(value - expected) > allowed:
            return f"{value:.4g} is not the right answer" + (f" (in {unit})" if unit else "")
        return None

    return compare


def _plain(x: Any) -> Any:
    """Tensors, tuples and torch.Size as plain Python (lists of ints, strings lower-cased)."""
    if isinstance(x, torch.Tensor) and x.device.type != "meta":
        return _plain(x.tolist())
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, str):
        return x.strip().lower()
    if isinstance(x, numbers.Integral) and not isinstance(x, bool):
        return int(x)
    return x


def exact_compare(what: str = "answer") -> Callable[[Any, Any], str | None]:
    """A ``compare(got, expected)`` for exact answers: an index, a list of positions, a shape, an option letter."""

    def compare(got: Any, expected: Any) -> str | None:
        g, e = _plain(got), _plain(expected)
        if type(g) is not type(e):
            return f"returned {type(got).__name__}, expected a {type(expected).__name__} ({what})"
        if g != e:
            return f"returned {g!r}: not the right {what}"
        return None

    return compare


def factor_compare(factor: float) -> Callable[[Any, Any], str | None]:
    """A ``compare(got, expected)`` for a finding on a grid of doubling values: right within ``factor``."""

    def compare(got: Any, expected: Any) -> str | None:
        if expected is None or got is None:
            return None if got is expected else f"returned {got!r}, expected {'None' if expected is None else 'a number'}"
        value = as_number(got)
        if value is None or value <= 0:
            return f"returned {got!r}: return a positive number (or None)"
        if not (expected / factor <= value <= expected * factor):
            return f"returned {value:.4g}: not the value the experiment finds"
        return None

    return compare


def run_question(exercise: Exercise, fn: Callable, device, why: str, on_pass_only: bool = False) -> CheckReport:
    """Run a prediction's or an investigation's check; then print ``why``.

    A prediction explains itself once the learner has predicted, right or wrong (``on_pass_only``
    False); an investigation only once it is right (its "why" would give the finding away). Nothing
    is printed for a stub, under capture, or on meta.
    """
    report = run_check(exercise, fn, device=device)
    if report.status == "passed" or (report.status == "failed" and not on_pass_only):
        print(f"  Why: {why}")
    return report


def prediction(name: str, answer: Any, title: str, mistakes: list[tuple[str, str, Any]], fn: Callable, device,
               why: str, compare: Callable[[Any, Any], str | None]) -> CheckReport:
    """Check the prediction ``fn()`` against ``answer``; ``mistakes`` are (key, message, wrong value)."""
    ex = Exercise(
        name,
        lambda: answer,
        [Property(title, [Case(())])],
        [Mistake(key, message, (lambda value=value: value)) for key, message, value in mistakes],
        compare=compare,
    )
    return run_question(ex, fn, device, why)
