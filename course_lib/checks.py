"""Immediate, diagnostic feedback for the exercises, one ``check_<exercise>`` per exercise.

Each check calls the learner's function on seeded random inputs (several shapes and dtypes),
compares the result with course_lib's reference, and prints a verdict per property: what
passed, what failed on the smallest failing input, and — when the wrong answer matches a
mistake the course knows — what the mistake is, in plain words. It never shows the reference
code. An exercise that still raises ``NotImplementedError`` prints "not implemented yet" and
does not raise, so an unfilled exercise notebook runs top to bottom.

Usage in a notebook::

    from course_lib.checks import check_softmax
    check_softmax(softmax);

How a diagnosis works: every exercise lists the common mistakes as small wrong variants of the
reference (scale forgotten, softmax over the wrong axis, mask inverted, ...). When the learner's
output differs from the reference but equals a mistake's output on the same input, the check
names that mistake. A mistake is only named when its output differs from the right answer on
that input, so a correct function is never "diagnosed".

Taught in: every solutions/ and exercises/ notebook.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .attention import dot_product_scores, scaled_dot_product_attention, softmax as _softmax

__all__ = [
    "CheckReport",
    "check_dot",
    "check_cosine_similarity",
    "check_dot_product_scores",
    "check_softmax",
    "check_softmax_with_temperature",
    "check_soft_lookup",
    "check_scaled_scores",
    "check_attention",
    "check_softmax_jacobian",
]

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


# --------------------------------------------------------------------------------------------
# Chapter 01: dot products.
# --------------------------------------------------------------------------------------------


def _ref_dot(u, v):
    return (u * v).sum()


def _ref_cosine(u, v):
    return (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))


def check_dot(fn: Callable, seed: int = 0) -> CheckReport:
    """Check ``dot(u, v)``: u, v (E,) -> 0-d tensor, the sum of the elementwise products.

    Taught in: notebooks/01_dot_products.ipynb.
    """
    g = _gen(seed)
    ex = Exercise(
        "dot",
        _ref_dot,
        [
            Property("a hand-made example: [1, 2, 3] . [4, 5, 6] = 32",
                     [Case((torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0])))]),
            Property("random vectors, float32", [Case((_randn(g, e), _randn(g, e))) for e in (1, 4, 16)]),
            Property("random vectors, float64 (dtype kept)",
                     [Case((_randn(g, e, dtype=torch.float64), _randn(g, e, dtype=torch.float64))) for e in (3, 8)]),
        ],
        [
            Mistake("no_sum", "You returned the elementwise products; a dot product *sums* them into one number.",
                    lambda u, v: u * v),
            Mistake("norm_product", "You multiplied the lengths |u| |v|; the dot product multiplies matching entries and sums them.",
                    lambda u, v: u.norm() * v.norm()),
        ],
    )
    return run_check(ex, fn)


def check_cosine_similarity(fn: Callable, seed: int = 0) -> CheckReport:
    """Check ``cosine_similarity(u, v)``: u, v (..., E) -> (...), dot / (|u| |v|).

    Taught in: notebooks/01_dot_products.ipynb.
    """
    g = _gen(seed)
    ex = Exercise(
        "cosine_similarity",
        _ref_cosine,
        [
            Property("parallel vectors give 1, opposite give -1",
                     [Case((torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0]))),
                      Case((torch.tensor([1.0, -1.0]), torch.tensor([-2.0, 2.0])))]),
            Property("random vectors (E,)", [Case((_randn(g, e, scale=3.0), _randn(g, e))) for e in (3, 10)]),
            Property("batches (..., E) -> (...)", [Case((_randn(g, 4, 5), _randn(g, 4, 5))),
                                                  Case((_randn(g, 2, 3, 6, scale=2.0), _randn(g, 2, 3, 6)))]),
        ],
        [
            Mistake("raw_dot", "You returned the dot product; cosine similarity divides it by both lengths |u| |v|.",
                    lambda u, v: (u * v).sum(-1)),
            Mistake("one_norm", "You divided by only one of the two lengths; divide by |u| * |v|.",
                    lambda u, v: (u * v).sum(-1) / u.norm(dim=-1)),
            Mistake("squared_norms", "You divided by the squared lengths; use the lengths themselves (square roots).",
                    lambda u, v: (u * v).sum(-1) / ((u * u).sum(-1) * (v * v).sum(-1))),
            Mistake("sum_all", "You summed over every dim; sum over the last dim only (dim=-1) to keep the batch dims.",
                    lambda u, v: (u * v).sum() / (u.norm() * v.norm())),
        ],
    )
    return run_check(ex, fn)


def check_dot_product_scores(fn: Callable, seed: int = 0) -> CheckReport:
    """Check ``dot_product_scores(query, key)``: (..., L, E), (..., S, E) -> (..., L, S), raw QK^T.

    Taught in: notebooks/01_dot_products.ipynb.
    """
    g = _gen(seed)
    ex = Exercise(
        "dot_product_scores",
        lambda q, k: dot_product_scores(q, k),
        [
            Property("2-D inputs, L != S: (L, E), (S, E) -> (L, S)",
                     [Case((_randn(g, 3, 4), _randn(g, 5, 4))), Case((_randn(g, 6, 8), _randn(g, 2, 8)))]),
            Property("leading batch dims: (B, L, E), (B, S, E) -> (B, L, S)",
                     [Case((_randn(g, 2, 3, 4), _randn(g, 2, 5, 4))), Case((_randn(g, 2, 3, 4, 6), _randn(g, 2, 3, 7, 6)))]),
            Property("float64 in, float64 out", [Case((_randn(g, 4, 3, dtype=torch.float64), _randn(g, 5, 3, dtype=torch.float64)))]),
        ],
        [
            Mistake("key_query_swapped", "You computed key @ query^T, which is (S, L); the scores are query @ key^T, (L, S).",
                    lambda q, k: k @ q.transpose(-2, -1)),
            Mistake("scaled", "You scaled the scores; this exercise asks for the raw dot products (scaling comes in chapter 03).",
                    lambda q, k: dot_product_scores(q, k) / math.sqrt(q.shape[-1])),
        ],
    )
    return run_check(ex, fn)


# --------------------------------------------------------------------------------------------
# Chapter 02: softmax and the soft lookup.
# --------------------------------------------------------------------------------------------


def _naive_softmax(x, dim=-1):
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def _softmax_other_axis(x, dim=-1):
    other = 0 if (dim % x.dim()) != 0 else x.dim() - 1
    return _softmax(x, dim=other)


def check_softmax(fn: Callable, seed: int = 0) -> CheckReport:
    """Check ``softmax(x, dim=-1)``: stable, sums to 1 along ``dim``, any shape and dtype.

    Taught in: notebooks/02_softmax.ipynb.
    """
    g = _gen(seed)
    ex = Exercise(
        "softmax",
        _softmax,
        [
            Property("a small example: softmax([0, ln 2, ln 3]) = [1/6, 2/6, 3/6]",
                     [Case((torch.tensor([0.0, math.log(2.0), math.log(3.0)]),))]),
            Property("random rows, last dim", [Case((_randn(g, 5),)), Case((_randn(g, 3, 4),)), Case((_randn(g, 2, 3, 6, scale=3.0),))]),
            Property("the dim argument: dim=0 and dim=1",
                     [Case((_randn(g, 3, 4),), {"dim": 0}), Case((_randn(g, 2, 3, 5),), {"dim": 1})]),
            Property("stable on large scores, e.g. [1000, 1001, 1002] (no overflow)",
                     [Case((torch.tensor([1000.0, 1001.0, 1002.0]),)), Case((_randn(g, 3, 4, scale=400.0),))]),
            Property("float64 in, float64 out", [Case((_randn(g, 2, 7, dtype=torch.float64),))]),
        ],
        [
            Mistake("unstable_softmax", "Your softmax overflows on large scores (exp(1000) = inf, inf/inf = NaN): "
                    "subtract the maximum of each row before exp; it cancels in the ratio.", _naive_softmax),
            Mistake("softmax_wrong_axis", "Your softmax normalises over the wrong axis: the weights must sum to 1 "
                    "along `dim` (the keys, the last dim by default). Use keepdim=True so the sum broadcasts.",
                    _softmax_other_axis),
            Mistake("no_normalisation", "You forgot to divide by the sum, so the weights do not add up to 1.",
                    lambda x, dim=-1: torch.exp(x - x.amax(dim=dim, keepdim=True))),
            Mistake("global_sum", "You divided by the sum of *all* entries; each row must be divided by its own sum "
                    "(sum over `dim` with keepdim=True).",
                    lambda x, dim=-1: torch.exp(x - x.max()) / torch.exp(x - x.max()).sum()),
        ],
    )
    return run_check(ex, fn)


def check_softmax_with_temperature(fn: Callable, seed: int = 0) -> CheckReport:
    """Check ``softmax_with_temperature(x, temperature)`` = softmax(x / temperature) over the last dim.

    Taught in: notebooks/02_softmax.ipynb.
    """
    g = _gen(seed)
    ex = Exercise(
        "softmax_with_temperature",
        lambda x, temperature: _softmax(x / temperature),
        [
            Property("temperature 1 is the plain softmax", [Case((_randn(g, 6),), {"temperature": 1.0})]),
            Property("low temperature sharpens (T = 0.1, 0.5)",
                     [Case((_randn(g, 5),), {"temperature": 0.1}), Case((_randn(g, 2, 4),), {"temperature": 0.5})]),
            Property("high temperature flattens (T = 3, 10)",
                     [Case((_randn(g, 5),), {"temperature": 3.0}), Case((_randn(g, 3, 4),), {"temperature": 10.0})]),
            Property("stable on large scores with low temperature",
                     [Case((torch.tensor([10.0, 20.0, 30.0]),), {"temperature": 0.01})]),
        ],
        [
            Mistake("temperature_multiplied", "You multiplied by the temperature; divide the scores by it "
                    "(a high temperature must flatten the weights).", lambda x, temperature: _softmax(x * temperature)),
            Mistake("temperature_ignored", "The temperature has no effect in your function: use softmax(x / temperature).",
                    lambda x, temperature: _softmax(x)),
            Mistake("unstable_softmax", "Your softmax overflows on large scores: subtract the row maximum before exp.",
                    lambda x, temperature: _naive_softmax(x / temperature)),
            Mistake("temperature_after_softmax", "You applied the temperature after the softmax; divide the scores "
                    "*before* the softmax.", lambda x, temperature: _softmax(x) / temperature),
        ],
    )
    return run_check(ex, fn)


def _ref_soft_lookup(query, keys, values):
    weights = _softmax(keys @ query)  # (S, E) @ (E,) -> (S,)
    return weights @ values  # (S,) @ (S, Ev) -> (Ev,)


def check_soft_lookup(fn: Callable, seed: int = 0) -> CheckReport:
    """Check ``soft_lookup(query, keys, values)``: query (E,), keys (S, E), values (S, Ev) -> (Ev,).

    Taught in: notebooks/02_softmax.ipynb.
    """
    g = _gen(seed)
    table_keys = torch.eye(3) * 20.0
    table_values = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    ex = Exercise(
        "soft_lookup",
        _ref_soft_lookup,
        [
            Property("a sharp query returns (almost exactly) the matching value",
                     [Case((torch.tensor([0.0, 1.0, 0.0]), table_keys, table_values))]),
            Property("random tables, Ev != E",
                     [Case((_randn(g, 4), _randn(g, 6, 4), _randn(g, 6, 3))), Case((_randn(g, 8), _randn(g, 5, 8), _randn(g, 5, 2)))]),
            Property("float64 in, float64 out",
                     [Case((_randn(g, 3, dtype=torch.float64), _randn(g, 4, 3, dtype=torch.float64), _randn(g, 4, 5, dtype=torch.float64)))]),
        ],
        [
            Mistake("returned_weights", "You returned the attention weights; the lookup returns the weighted sum of "
                    "the values: weights @ values.", lambda q, k, v: _softmax(k @ q)),
            Mistake("no_softmax", "You used the raw scores as weights; turn them into weights with softmax first.",
                    lambda q, k, v: (k @ q) @ v),
            Mistake("hard_lookup", "You returned the single best-matching value (a hard lookup); the soft lookup mixes "
                    "all values by their softmax weights.", lambda q, k, v: v[(k @ q).argmax()]),
            Mistake("scaled", "You scaled the scores by 1/sqrt(E); this exercise uses the raw dot products.",
                    lambda q, k, v: _softmax(k @ q / math.sqrt(q.shape[-1])) @ v),
        ],
    )
    return run_check(ex, fn)


# --------------------------------------------------------------------------------------------
# Chapter 03: scaling, attention with a mask, the softmax Jacobian.
# --------------------------------------------------------------------------------------------


def check_scaled_scores(fn: Callable, seed: int = 0) -> CheckReport:
    """Check ``scaled_scores(query, key)``: (..., L, E), (..., S, E) -> (..., L, S) = QK^T / sqrt(E).

    Taught in: notebooks/03_scaling.ipynb.
    """
    g = _gen(seed)
    ex = Exercise(
        "scaled_scores",
        lambda q, k: dot_product_scores(q, k, scale=1.0 / math.sqrt(q.shape[-1])),
        [
            Property("2-D inputs, L != S != E", [Case((_randn(g, 3, 16), _randn(g, 5, 16))), Case((_randn(g, 2, 9), _randn(g, 7, 9)))]),
            Property("leading batch dims", [Case((_randn(g, 2, 3, 4), _randn(g, 2, 6, 4))), Case((_randn(g, 2, 2, 3, 25), _randn(g, 2, 2, 5, 25)))]),
            Property("float64 in, float64 out", [Case((_randn(g, 4, 36, dtype=torch.float64), _randn(g, 3, 36, dtype=torch.float64)))]),
        ],
        [
            Mistake("scale_forgotten", "You forgot the scale: divide the dot products by sqrt(d_k), d_k = query.shape[-1].",
                    lambda q, k: q @ k.transpose(-2, -1)),
            Mistake("scale_by_dk", "You divided by d_k; divide by its square root, sqrt(d_k) (the scores' standard "
                    "deviation, not their variance).", lambda q, k: q @ k.transpose(-2, -1) / q.shape[-1]),
            Mistake("scale_multiplied", "You multiplied by sqrt(d_k); divide by it.",
                    lambda q, k: q @ k.transpose(-2, -1) * math.sqrt(q.shape[-1])),
            Mistake("scale_by_length", "You scaled by the number of keys or queries; the scale is 1/sqrt(d_k) with "
                    "d_k the feature size, query.shape[-1].", lambda q, k: q @ k.transpose(-2, -1) / math.sqrt(k.shape[-2])),
            Mistake("key_query_swapped", "You computed key @ query^T, which is (S, L); the scores are query @ key^T, (L, S).",
                    lambda q, k: k @ q.transpose(-2, -1) / math.sqrt(q.shape[-1])),
        ],
    )
    return run_check(ex, fn)


def _attention_variant(*, scale="sqrt", mask_mode="before", softmax_dim=-1):
    def fn(q, k, v, mask=None):
        e = q.shape[-1]
        s = q @ k.transpose(-2, -1)  # (..., L, S)
        s = s / {"sqrt": math.sqrt(e), "dk": e, "none": 1.0}[scale]
        if mask is not None and mask_mode == "before":
            s = s.masked_fill(~mask, float("-inf"))
        elif mask is not None and mask_mode == "inverted":
            s = s.masked_fill(mask, float("-inf"))
        w = _softmax(s, dim=softmax_dim)
        if mask is not None and mask_mode == "after":
            w = w * mask
        return w @ v
    return fn


def _attention_cases(g: torch.Generator) -> list[Property]:
    def mask(*shape):
        m = torch.rand(*shape, generator=g) > 0.4
        m[..., 0] = True  # every query may attend to at least one key
        return m

    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    return [
        Property("no mask, L != S, Ev != E",
                 [Case((_randn(g, 3, 8), _randn(g, 5, 8), _randn(g, 5, 2))), Case((_randn(g, 2, 4, 16), _randn(g, 2, 6, 16), _randn(g, 2, 6, 3)))]),
        Property("boolean mask (True = may attend)",
                 [Case((_randn(g, 3, 8), _randn(g, 5, 8), _randn(g, 5, 2)), {"mask": mask(3, 5)}),
                  Case((_randn(g, 2, 4, 16), _randn(g, 2, 6, 16), _randn(g, 2, 6, 3)), {"mask": mask(2, 4, 6)})]),
        Property("causal mask (L, L) broadcast over a batch",
                 [Case((_randn(g, 2, 4, 9), _randn(g, 2, 4, 9), _randn(g, 2, 4, 5)), {"mask": causal})]),
        Property("float16 inputs with a mask",
                 [Case((_randn(g, 3, 8, dtype=torch.float16), _randn(g, 5, 8, dtype=torch.float16),
                        _randn(g, 5, 2, dtype=torch.float16)), {"mask": mask(3, 5)})]),
    ]


def check_attention(fn: Callable, seed: int = 0) -> CheckReport:
    """Check ``attention(query, key, value, mask=None)``: scaled dot-product attention with a boolean mask.

    Taught in: notebooks/03_scaling.ipynb.
    """
    ex = Exercise(
        "attention",
        lambda q, k, v, mask=None: scaled_dot_product_attention(q, k, v, attn_mask=mask),
        _attention_cases(_gen(seed)),
        [
            Mistake("scale_forgotten", "You forgot to divide the scores by sqrt(d_k).", _attention_variant(scale="none")),
            Mistake("scale_by_dk", "You divided the scores by d_k; divide by sqrt(d_k).", _attention_variant(scale="dk")),
            Mistake("mask_inverted", "Your mask is inverted: in course_lib (and F.scaled_dot_product_attention) "
                    "True means *may attend*, so fill the scores where the mask is False: masked_fill(~mask, -inf).",
                    _attention_variant(mask_mode="inverted")),
            Mistake("mask_after_softmax", "You applied the mask after the softmax: the remaining weights no longer sum "
                    "to 1. Set masked scores to -inf *before* the softmax.", _attention_variant(mask_mode="after")),
            Mistake("mask_ignored", "Your function ignores the mask: blocked keys still get weight.",
                    _attention_variant(mask_mode="none")),
            Mistake("softmax_wrong_axis", "Your softmax runs over the queries (dim=-2); the weights of each query must "
                    "sum to 1 over the keys (dim=-1).", _attention_variant(softmax_dim=-2)),
        ],
    )
    return run_check(ex, fn)


def check_softmax_jacobian(fn: Callable, seed: int = 0) -> CheckReport:
    """Check ``softmax_jacobian(p)``: p (S,) -> (S, S) = diag(p) - p p^T.

    Taught in: notebooks/03_scaling.ipynb.
    """
    g = _gen(seed)

    def probs(n, scale=1.0, dtype=torch.float32):
        return _softmax(_randn(g, n, scale=scale, dtype=torch.float64)).to(dtype)

    ex = Exercise(
        "softmax_jacobian",
        lambda p: torch.diag(p) - torch.outer(p, p),
        [
            Property("uniform weights [0.5, 0.5]", [Case((torch.tensor([0.5, 0.5]),))]),
            Property("random probability vectors", [Case((probs(4),)), Case((probs(7, scale=2.0),))]),
            Property("float64 in, float64 out", [Case((probs(5, dtype=torch.float64),))]),
        ],
        [
            Mistake("diagonal_only", "You computed only the diagonal p_i (1 - p_i); the off-diagonal entries are "
                    "-p_i p_j (raising one score lowers every other weight).", lambda p: torch.diag(p * (1 - p))),
            Mistake("sign_flipped", "Your Jacobian has the opposite sign: it is diag(p) - p p^T.",
                    lambda p: torch.outer(p, p) - torch.diag(p)),
            Mistake("missing_outer", "You forgot the - p p^T term.", lambda p: torch.diag(p)),
        ],
    )
    return run_check(ex, fn)
