"""The checking framework behind every ``check_<exercise>``: cases, properties, mistakes, reports.

A chapter's checks module (``course_lib/checks/<chapter>.py``) describes each exercise as an
:class:`Exercise`: the reference function, a few :class:`Property` groups of seeded
:class:`Case` inputs, and the known :class:`Mistake` variants, then calls :func:`run_check`.

Checking is split in two steps, so that the batch grader can run them in different processes:

1. :func:`compute_outcomes` calls the learner's function on every case and records what came
   back (:class:`Returned`) or what was raised (:class:`Raised`). In the notebook this runs in
   the learner's kernel; in batch it runs in the grader's sandbox process.
2. :func:`judge` turns those outcomes into a :class:`CheckReport` (pass/fail per property, the
   smallest failing input, the mistakes recognised). It is a pure function of the exercise and
   the outcomes, and the batch grader runs it in its own process.

:func:`run_check` does both, then prints. Under :func:`capture` it does neither: it records the
exercise (and the callable it was given) and returns, which is how the grader collects every
exercise of a chapter with the instructor's seed.

Devices: the cases are made on the CPU (the same inputs on every machine). ``run_check(...,
device=d)`` (every ``check_<exercise>(fn, device=None)`` passes its ``device`` through; ``None``
means the notebook's device, :func:`course_lib.get_device`, which honours ``COURSE_DEVICE``) calls
the learner's function with every tensor of the case moved to ``d`` (and every module spec built
on ``d``), requires every returned tensor to be on ``d``, and brings the results back to the CPU,
where they are judged against the reference. On ``meta`` (tensors without values) nothing can be
judged but shapes and dtypes: the report's status is ``"shapes only"`` (or ``"failed"`` when a
shape or dtype is wrong, or the function crashed, e.g. because it reads values on the host).
"""

from __future__ import annotations

import re
import functools
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator

import torch

from ..device import get_device

from .handwritten import hand_written_result, ready_made_in_function
from .base import (HAND_WRITTEN, NOT_IMPLEMENTED, Captured, Case, CheckReport, Exercise, Mistake,  # noqa: F401
                    Outcome, Property, PropertyResult, Raised, Returned, _fmt_tensor, _is_not_implemented)


_DTYPE_CHANGED = "returned dtype"  # how _difference starts a dtype reason (judge diagnoses it as dtype_changed)


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
    if got.dtype != expected.dtype:
        return f"{_DTYPE_CHANGED} {str(got.dtype).replace('torch.', '')}, expected " \
               f"{str(expected.dtype).replace('torch.', '')} (the dtype the task asks for: the inputs')"
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


def _fresh(a: Any) -> Any:
    """A copy of one argument that the learner's function may modify freely (tensors cloned)."""
    if isinstance(a, torch.Tensor):
        return a.clone()
    if isinstance(a, list):
        return [_fresh(x) for x in a]
    if isinstance(a, tuple):
        return tuple(_fresh(x) for x in a)
    if isinstance(a, dict):
        return {k: _fresh(x) for k, x in a.items()}
    return a


def _call(fn: Callable, case: Case):
    args = tuple(_fresh(a) for a in case.args)
    kwargs = {k: _fresh(a) for k, a in case.kwargs.items()}
    return fn(*args, **kwargs)


# Devices: the learner's function runs on the check's device, the judging on the CPU.
# --------------------------------------------------------------------------------------------

SHAPES_ONLY = "shapes only"  # the status of a check on the meta device: values cannot be judged


class WrongDeviceError(RuntimeError):
    """The learner's function returned a tensor on another device than its inputs'."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device a check runs the learner's function on.

    Args:
        device: None (the notebook's device: :func:`course_lib.get_device`, so ``COURSE_DEVICE``
            is honoured), ``"meta"``, or a device :func:`course_lib.get_device` accepts.
    Returns:
        torch.device
    Raises:
        TypeError / ValueError: as :func:`course_lib.get_device` (a device kind that is unknown or
            not available on this machine, e.g. "cuda" without a GPU).
    """
    if device is None:
        return get_device()
    if isinstance(device, (str, torch.device)) and str(device) == "meta":
        return torch.device("meta")
    return get_device(device)


def _on(t: torch.Tensor, device: torch.device) -> bool:
    return t.device.type == device.type and (device.index is None or t.device.index == device.index)


class _SpecOn:
    """A module spec (anything with ``build``) whose modules are built, then moved to ``device``."""

    def __init__(self, spec, device: torch.device):
        self._spec, self._device = spec, device

    def build(self, *args, **kwargs):
        return self._spec.build(*args, **kwargs).to(self._device)

    def __getattr__(self, name):
        return getattr(self._spec, name)

    def __repr__(self) -> str:
        return repr(self._spec)


def _to_device(a: Any, device: torch.device, moved: list) -> Any:
    """One argument with every tensor moved to ``device`` (a copy) and every module spec building there.

    Appends to ``moved`` for each tensor or spec moved.
    """
    if isinstance(a, torch.Tensor):
        moved.append(a)
        return a.to(device, copy=True)
    if isinstance(a, list):
        return [_to_device(x, device, moved) for x in a]
    if isinstance(a, tuple):
        return tuple(_to_device(x, device, moved) for x in a)
    if isinstance(a, dict):
        return {k: _to_device(x, device, moved) for k, x in a.items()}
    if callable(getattr(a, "build", None)):
        moved.append(a)
        return _SpecOn(a, device)
    return a


def _back(value: Any, device: torch.device | None, keep: bool) -> Any:
    """A returned value with its tensors checked to be on ``device`` (None: anywhere), then moved to the CPU
    (unless ``keep``)."""
    if isinstance(value, torch.Tensor):
        if device is not None and not _on(value, device):
            raise WrongDeviceError(f"returned a tensor on {value.device}, expected {device} (the device of the "
                                   f"inputs): create new tensors with device=<input>.device")
        return value if keep and value.device.type == "meta" else value.detach().cpu()
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        items = [_back(x, device, keep) for x in value]
        return items if type(value) is list else tuple(items)
    if type(value) is dict:
        return {k: _back(x, device, keep) for k, x in value.items()}
    return value


def on_device(fn: Callable, device: str | torch.device) -> Callable:
    """``fn`` called with its tensor arguments moved to ``device``, its tensor results brought back to the CPU.

    The batch grader's worker wraps the learner's callable with it; :func:`compute_outcomes` too.
    When a tensor (or module spec) was moved, a returned tensor that is not on ``device`` raises
    :class:`WrongDeviceError` (a function that creates tensors without ``device=`` fails here on
    a GPU); a function given no tensor (``causal_mask(L)``) may return tensors anywhere. On
    ``meta`` the results stay on ``meta`` (there are no values to bring back), and PyTorch's
    NotImplementedError for an operation without a meta kernel (``nonzero``, boolean indexing:
    data-dependent shapes) is raised as a RuntimeError, so that it does not read as an unfilled stub.
    """
    device = torch.device(device)
    keep = device.type == "meta"

    @functools.wraps(fn)
    def called(*args, **kwargs):
        moved: list = []
        args = [_to_device(a, device, moved) for a in args]
        kwargs = {k: _to_device(a, device, moved) for k, a in kwargs.items()}
        try:
            out = fn(*args, **kwargs)
        except NotImplementedError as exc:
            if keep and ("meta" in str(exc).lower() or "data-independent" in str(exc)):
                raise RuntimeError(f"PyTorch cannot run an operation of this function on meta tensors: "
                                   f"{str(exc).splitlines()[0][:200]}") from None
            raise
        return _back(out, device if moved else None, keep)

    return called


# Outcomes: what the learner's function did on each case (computed here or in a sandbox).
# --------------------------------------------------------------------------------------------


def compute_outcomes(exercise: Exercise, student_fn: Callable,
                     device: str | torch.device | None = "cpu") -> list[list[Outcome]]:
    """Call ``student_fn`` on every case of ``exercise``; one outcome per case, per property.

    Cases are run smallest first within each property (the order of the original check). Once
    the function raises NotImplementedError, it is not called again: every remaining case gets
    that same outcome.

    Args:
        exercise: the exercise.  student_fn: the learner's function.
        device: where to call it (see :func:`on_device`; default the CPU, None = the notebook's
            device). Returned tensors come back on the CPU (on meta, they stay on meta).
    Returns:
        ``outcomes[i][j]`` for ``exercise.properties[i].cases[j]``.
    """
    device = resolve_device(device)
    if device.type != "cpu":
        student_fn = on_device(student_fn, device)
    outcomes: list[list[Outcome]] = []
    stub: Raised | None = None
    for prop in exercise.properties:
        row: list[Outcome | None] = [None] * len(prop.cases)
        for j in sorted(range(len(prop.cases)), key=lambda j: prop.cases[j].size()):
            if stub is not None:
                row[j] = stub
                continue
            try:
                row[j] = Returned(_call(student_fn, prop.cases[j]))
            except Exception as exc:  # the learner's code may raise anything
                row[j] = Raised.from_exception(exc)
                if row[j].not_implemented:
                    stub = row[j]
        outcomes.append(row)  # type: ignore[arg-type]
    return outcomes


def judge(exercise: Exercise, outcomes: list[list[Outcome]], show_values: bool = True) -> CheckReport:
    """The verdict on one exercise, from the learner's outcomes: a pure function, no learner code runs.

    Args:
        exercise: the exercise (reference, properties, mistakes, compare).
        outcomes: ``outcomes[i][j]`` is what the learner's function did on
            ``exercise.properties[i].cases[j]`` (see :func:`compute_outcomes`).
        show_values: show small input tensors in full in the failure details (the notebook);
            ``False`` shows dtypes and shapes only (batch feedback, where inputs stay hidden).
    Returns:
        a CheckReport: ``status`` "passed", "failed" or "not implemented"; one result per property;
        ``diagnoses``, the keys of the mistakes recognised, most often seen first.
    Raises:
        ValueError: if ``outcomes`` does not have one entry per case.
    """
    if len(outcomes) != len(exercise.properties) or any(
        len(row) != len(prop.cases) for row, prop in zip(outcomes, exercise.properties)
    ):
        raise ValueError(f"{exercise.name}: outcomes do not match the exercise's cases")
    report = CheckReport(exercise.name, "passed")
    compare = exercise.compare or _difference
    mistake_votes: dict[str, int] = {}
    crash_votes: dict[str, int] = {}  # mistakes that crash as the learner's function did: confirmed below
    for prop, row in zip(exercise.properties, outcomes):
        failure: tuple[Case, str] | None = None
        for j in sorted(range(len(prop.cases)), key=lambda j: prop.cases[j].size()):
            case, outcome = prop.cases[j], row[j]
            if isinstance(outcome, Raised):
                if outcome.not_implemented:
                    report.status = "not implemented"
                    report.results = []
                    return report
                for key in _diagnose_exception_text(outcome.message, case):
                    mistake_votes[key] = mistake_votes.get(key, 0) + 1
                for key in _same_crash(exercise, case, outcome):
                    crash_votes[key] = crash_votes.get(key, 0) + 1
                failure = failure or (case, outcome.reason())
                continue
            expected = _call(exercise.reference, case)
            got = outcome.value
            reason = compare(got, expected)
            if reason is None:
                continue
            failure = failure or (case, reason)
            if reason.startswith(_DTYPE_CHANGED) and isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor) \
                    and got.is_floating_point() and expected.is_floating_point() and got.dtype != expected.dtype:
                mistake_votes["dtype_changed"] = mistake_votes.get("dtype_changed", 0) + 1
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
            report.results.append(PropertyResult(prop.title, False, f"on input {case.describe(show_values)}: {reason}"))
    for key, votes in crash_votes.items():
        if any(_behaves_like(exercise, m, outcomes, compare) for m in exercise.mistakes if m.key == key):
            mistake_votes[key] = mistake_votes.get(key, 0) + votes
    if report.passed < report.total:
        report.status = "failed"
        ranked = sorted(mistake_votes.items(), key=lambda kv: -kv[1])
        report.diagnoses = [key for key, _ in ranked]
    return report


def _shape_of(value: Any) -> Any:
    """Tensors as (shape, dtype), containers element by element, numbers by their type only."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype)
    if isinstance(value, (list, tuple)):
        return [_shape_of(x) for x in value]
    if isinstance(value, dict):
        return {k: _shape_of(x) for k, x in value.items()}
    if isinstance(value, (bool, int, float)):
        return type(value).__name__
    return repr(value)


_ON_META = " (shapes and dtypes only, on meta)"
_HOST_READ_TEXTS = ("cannot be called on meta tensors", "Cannot copy out of meta tensor", "on meta tensors")


def judge_shapes(exercise: Exercise, outcomes: list[list[Outcome]]) -> CheckReport:
    """The verdict on outcomes computed on the ``meta`` device: shapes and dtypes only, no values.

    Each property passes when, on every case, the learner's function ran and returned the
    reference's structure (same shapes and dtypes, computed on the CPU). The status is
    ``"shapes only"`` when all pass (values were not judged: there are none on meta), else
    ``"failed"``; "not implemented" as in :func:`judge`.
    """
    if len(outcomes) != len(exercise.properties) or any(
        len(row) != len(prop.cases) for row, prop in zip(outcomes, exercise.properties)
    ):
        raise ValueError(f"{exercise.name}: outcomes do not match the exercise's cases")
    report = CheckReport(exercise.name, SHAPES_ONLY)
    for prop, row in zip(exercise.properties, outcomes):
        failure = None
        for j in sorted(range(len(prop.cases)), key=lambda j: prop.cases[j].size()):
            case, outcome = prop.cases[j], row[j]
            if isinstance(outcome, Raised):
                if outcome.not_implemented:
                    return CheckReport(exercise.name, "not implemented")
                reason = outcome.reason()
                if any(text in outcome.message for text in _HOST_READ_TEXTS):
                    reason += (" (it reads a tensor's value on the host: .item(), bool(t), float(t), .tolist() or a "
                               "data-dependent shape; on a GPU that waits for the device)")
                failure = failure or (case, reason)
                continue
            got, expected = _shape_of(outcome.value), _shape_of(_call(exercise.reference, case))
            if got != expected:
                failure = failure or (case, f"returned {got}, expected {expected}")
        title = f"{prop.title}{_ON_META}"
        if failure is None:
            report.results.append(PropertyResult(title, True))
        else:
            case, reason = failure
            report.results.append(PropertyResult(title, False, f"on input {case.describe(False)}: {reason}"))
    if report.passed < report.total:
        report.status = "failed"
    return report


# --------------------------------------------------------------------------------------------
# Capturing exercises (the batch grader) instead of running them.
# --------------------------------------------------------------------------------------------


_CAPTURING: ContextVar[list | None] = ContextVar("course_lib_checks_capturing", default=None)


@contextmanager
def capture() -> Iterator[list[Captured]]:
    """Record exercises instead of checking them: inside, run_check appends and returns at once.

    Usage (the batch grader)::

        with capture() as captured:
            check_softmax(placeholder, seed=instructor_seed)
        exercise = captured[0].exercise

    Yields:
        the list that each run_check call appends a :class:`Captured` to. Nothing is printed and
        the learner's function is never called.
    """
    records: list[Captured] = []
    token = _CAPTURING.set(records)
    try:
        yield records
    finally:
        _CAPTURING.reset(token)


# --------------------------------------------------------------------------------------------
# run_check: compute the outcomes here, judge them, add the hand-written check, print.
# --------------------------------------------------------------------------------------------


def run_check(exercise: Exercise, student_fn: Callable, verbose: bool = True,
              device: str | torch.device | None = None) -> CheckReport:
    """Run every property of ``exercise`` on ``student_fn``; print and return a CheckReport.

    Under :func:`capture`, record the exercise and return a report with status "captured"
    instead (the function is not called, nothing is printed).

    Args:
        exercise: the exercise.  student_fn: the learner's function.  verbose: print the report.
        device: where the learner's function runs (None: :func:`course_lib.get_device`, which
            honours ``COURSE_DEVICE``). Its inputs are moved there, its outputs must come back
            there and are judged on the CPU. On ``"meta"``, shapes and dtypes only (status
            "shapes only", see :func:`judge_shapes`).
    Raises:
        ValueError: if ``device`` is unknown or not available here (e.g. "cuda" without a GPU).
    """
    records = _CAPTURING.get()
    if records is not None:
        records.append(Captured(exercise, student_fn))
        return CheckReport(exercise.name, "captured")
    if not callable(student_fn):
        report = CheckReport(exercise.name, "error")
        report.results.append(PropertyResult("is a function", False, f"got {type(student_fn).__name__}, not a function"))
        _print(report, verbose)
        return report
    device = resolve_device(device)
    if device.type == "meta":
        report = judge_shapes(exercise, compute_outcomes(exercise, student_fn, device))
        _print(report, verbose, exercise)
        return report
    report = judge(exercise, compute_outcomes(exercise, student_fn, device))
    if report.status != "not implemented":
        result = hand_written_result(exercise.name, ready_made_in_function(exercise.name, student_fn))
        if result is not None:
            report.results.append(result)
            report.status = "failed"
    _print(report, verbose, exercise)
    return report


_EXCEPTION_HINTS = {
    "finite_fill_half": "Your mask fill value does not fit in float16 (its largest magnitude is 65504): "
    "fill with float('-inf') (or torch.finfo(scores.dtype).min), not -1e9.",
    "batch_transpose": "It works for 2-D inputs but not with leading batch dims: `.T` reverses *all* dims. "
    "Transpose only the last two: key.transpose(-2, -1).",
    "dtype_changed": "Your function returns a different dtype than its inputs (e.g. float32 for float64 input): "
    "keep the input's dtype, computing in x.dtype or converting back at the end with .to(x.dtype).",
    "view_after_transpose": "`.view(...)` fails on a tensor that is not contiguous in memory: one you transposed, "
    "or an input that arrives as a transposed view (the checks pass such inputs, as real code does). "
    "Use `.reshape(...)` (or `.contiguous().view(...)`), which copies only when it must.",
}


def _diagnose_exception_text(text: str, case: Case) -> list[str]:
    """Diagnoses that an error message alone proves (its text names the cause)."""
    keys = []
    if "cannot be converted to type" in text and "Half" in text:
        keys.append("finite_fill_half")
    if "view size is not compatible" in text:
        keys.append("view_after_transpose")
    return keys


_FLOAT_TEXT = re.compile(r"(?<![\w.])-?\d+\.\d+(?:e[-+]?\d+)?")


def _crash_text(message: str) -> str:
    """An error message reduced to what survives the batch grader's sanitising (first line, no decimals)."""
    first = message.splitlines()[0] if message else ""
    return _FLOAT_TEXT.sub("<number>", " ".join(first.split()))[:200]


def _same_crash(exercise: Exercise, case: Case, outcome: Raised) -> list[str]:
    """The mistakes whose variant crashes on ``case`` exactly as the learner's function did.

    A crash is evidence for a mistake only when the mistake itself crashes the same way (the
    same exception type and message): a `.T` on a batched tensor is named because `q @ k.T`
    raises that very error on that very input, not because some shape error happened.
    """
    keys = []
    text = _crash_text(outcome.message)
    for mistake in exercise.mistakes:
        try:
            _call(mistake.fn, case)
        except Exception as exc:  # noqa: BLE001  the variant's own crash
            if type(exc).__name__ == outcome.type_name and _crash_text(str(exc)) == text and mistake.key not in keys:
                keys.append(mistake.key)
    return keys


def _behaves_like(exercise: Exercise, mistake: Mistake, outcomes: list[list[Outcome]], compare) -> bool:
    """True when ``mistake`` does what the learner's function did on *every* case: the same crash where it
    crashed, the same values where it returned. A shared crash on one input is not enough evidence."""
    for prop, row in zip(exercise.properties, outcomes):
        for case, outcome in zip(prop.cases, row):
            try:
                wrong = _call(mistake.fn, case)
            except Exception as exc:  # noqa: BLE001  the variant's own crash
                if not (isinstance(outcome, Raised) and type(exc).__name__ == outcome.type_name
                        and _crash_text(str(exc)) == _crash_text(outcome.message)):
                    return False
                continue
            if isinstance(outcome, Raised):
                return False
            try:
                if compare(outcome.value, wrong) is not None:
                    return False
            except Exception:  # noqa: BLE001  values the comparison cannot handle: no evidence
                return False
    return True


def diagnosis_message(exercise: Exercise | None, key: str) -> str:
    """The plain-words message for a diagnosis key: the exercise's own mistake, else a crash hint."""
    for mistake in exercise.mistakes if exercise else ():
        if mistake.key == key:
            return mistake.message
    return _EXCEPTION_HINTS.get(key, key)


def _print(report: CheckReport, verbose: bool, exercise: Exercise | None = None) -> None:
    if not verbose or report.status == "captured":
        return
    name = report.exercise
    if report.status == "not implemented":
        print(f"{name}: {NOT_IMPLEMENTED} (replace the `raise NotImplementedError` line with your code, then re-run)")
        return
    mark = "all properties passed" if report.status == "passed" else f"{report.passed}/{report.total} properties passed"
    on_meta = report.status == SHAPES_ONLY or any(r.title.endswith(_ON_META) for r in report.results)
    if on_meta:
        mark += "; on the meta device values cannot be judged: shapes and dtypes only"
    print(f"{name}: {mark}")
    for r in report.results:
        print(f"  [{'pass' if r.passed else 'FAIL'}] {r.title}")
        if not r.passed:
            print(f"         {r.detail}")
    for key in report.diagnoses:
        print(f"  Diagnosis: {diagnosis_message(exercise, key)}")
    if report.status == "failed" and not on_meta and not report.diagnoses and any(
        not r.passed and not r.title.startswith(HAND_WRITTEN) for r in report.results
    ):
        print("  No known mistake matches; compare your steps with the lesson, one shape at a time.")


# --------------------------------------------------------------------------------------------
# Random inputs (seeded, on the CPU: the same inputs on every machine).
# --------------------------------------------------------------------------------------------


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(g: torch.Generator, *shape: int, dtype=torch.float32, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)
