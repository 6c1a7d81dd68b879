"""Predict-then-run questions and investigations of chapters 01-03 (dot products, softmax, scaling).

Their function exercises are in :mod:`~course_lib.checks.basics`; what predictions and
investigations share is in :mod:`~course_lib.checks.questions`.
Taught in: solutions/ and exercises/ 01_dot_products, 02_softmax, 03_scaling.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..attention import dot_product_scores, softmax as _softmax
from .core import Case, CheckReport, Exercise, Mistake, Property, _gen
from .questions import factor_compare, number_compare, prediction, run_question

__all__ = [
    "check_predict_cosine",
    "check_find_flip_scale",
    "check_predict_shifted_softmax",
    "check_find_temperature",
    "check_predict_score_std",
    "check_find_saturating_dk",
]


# --------------------------------------------------------------------------------------------
# 01: the cosine of two vectors that point the same way; how much longer a key must be to win.
# --------------------------------------------------------------------------------------------

_U, _V = (3.0, 4.0), (6.0, 8.0)


def _cosine(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return dot_product_scores(u[None], v[None])[0, 0] / (u.norm() * v.norm())


def check_predict_cosine(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``predict_cosine()``: the cosine similarity of u = (3, 4) and v = (6, 8), predicted.

    Passes within 0.01 of the value course_lib computes (1); names the common wrong predictions;
    explains the answer once the learner has predicted.
    Taught in: notebooks/01_dot_products.ipynb.
    """
    u, v = torch.tensor(_U, dtype=torch.float64), torch.tensor(_V, dtype=torch.float64)
    answer = float(_cosine(u, v))
    dot = float(dot_product_scores(u[None], v[None])[0, 0])
    return prediction(
        "predict_cosine", answer, "the cosine similarity of u = (3, 4) and v = (6, 8)",
        [("dot_product", f"You predicted the dot product, {dot:g}. The cosine divides it by both lengths "
          f"(5 and 10), so it lies between -1 and 1.", dot),
         ("length_ratio", "You predicted how much longer v is than u (2). The cosine ignores the lengths: it "
          "only measures the angle between the vectors.", 2.0),
         ("inverse_length_ratio", "You predicted |u| / |v| = 0.5. The cosine ignores the lengths: it only "
          "measures the angle between the vectors.", 0.5)],
        fn, device,
        why=f"v = 2u points the same way as u: the angle is 0 and the cosine is 1, whatever the lengths. The "
            f"dot product, {dot:g} = 5 * 10 * 1, grows with the lengths: that is why a long key can win "
            f"attention over a better-aligned short one.",
        compare=number_compare(answer, tolerance=0.01))


def _flip_scale(query, key_a, key_b):
    """The factor s at which (s key_b) . query reaches key_a . query (the reference, from dot products)."""
    scores = dot_product_scores(query[None], torch.stack([key_a, key_b]))[0]  # (2,)
    return float(scores[0] / scores[1])


def _flip_case(g: torch.Generator, E: int, dtype=torch.float32) -> Case:
    """A query and two keys: key_b is better aligned (higher cosine), key_a has the larger dot product."""
    while True:
        q, a, b = (torch.randn(E, generator=g, dtype=torch.float64) for _ in range(3))
        b = b / b.norm() * 0.5 * float(torch.rand((), generator=g, dtype=torch.float64) + 0.5)
        a = a / a.norm() * 4.0
        ca, cb = float(_cosine(q, a)), float(_cosine(q, b))
        if 0.2 < ca < cb - 0.2 and float(q @ a) > 1.5 * float(q @ b) > 0:
            return Case((q.to(dtype), a.to(dtype), b.to(dtype)))


def check_find_flip_scale(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``find_flip_scale(query, key_a, key_b)`` -> the factor s by which key_b must be multiplied
    so that its dot product with the query reaches key_a's (to 1 %).

    query, key_a, key_b: float tensors (E,); key_b has the higher cosine with the query, key_a the
    larger dot product. Returns a float s > 1 (found by experiment: scale key_b until it wins).
    Taught in: notebooks/01_dot_products.ipynb.
    """
    g = _gen(seed)
    ref = lambda q, a, b: _flip_scale(q.double(), a.double(), b.double())  # noqa: E731
    ex = Exercise(
        "find_flip_scale",
        ref,
        [
            Property("two keys in 2-D", [_flip_case(g, 2), _flip_case(g, 2)]),
            Property("two keys in 16-D", [_flip_case(g, 16), _flip_case(g, 16)]),
            Property("float64 vectors", [_flip_case(g, 8, torch.float64)]),
        ],
        [
            Mistake("length_ratio", "You returned |key_a| / |key_b|: lengthening key_b by that much makes it as long "
                    "as key_a, but the dot product also weighs the angle (|q| |k| cos). Scale key_b until its "
                    "*dot product* with the query reaches key_a's.",
                    lambda q, a, b: float(a.double().norm() / b.double().norm())),
            Mistake("inverted_ratio", "You returned (query . key_b) / (query . key_a), a factor below 1: that "
                    "shrinks key_b. The factor that makes key_b *win* is the inverse.",
                    lambda q, a, b: 1.0 / ref(q, a, b)),
            Mistake("cosine_ratio", "You returned the ratio of the cosines: the cosine ignores the lengths, and "
                    "lengths are what the factor changes. Compare the dot products.",
                    lambda q, a, b: float(_cosine(q.double(), a.double()) / _cosine(q.double(), b.double()))),
        ],
        compare=number_compare(rel=0.01),
    )
    return run_question(ex, fn, device, on_pass_only=True,
                        why="a key's score is |q| |k| cos(angle): a longer key can beat a better-aligned one, by "
                            "exactly the ratio of the dot products. Attention scores measure alignment *and* size.")


# --------------------------------------------------------------------------------------------
# 02: softmax ignores a constant added to every score; the temperature that gives a target weight.
# --------------------------------------------------------------------------------------------


def check_predict_shifted_softmax(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``predict_shifted_softmax()``: the largest weight of softmax([101, 102, 103]), predicted.

    Passes within 0.01 of the value course_lib's softmax computes (0.665, as for [1, 2, 3]); names the
    common wrong predictions; explains the answer once the learner has predicted.
    Taught in: notebooks/02_softmax.ipynb.
    """
    answer = float(_softmax(torch.tensor([101.0, 102.0, 103.0], dtype=torch.float64)).max())
    return prediction(
        "predict_shifted_softmax", answer, "the largest weight of softmax([101, 102, 103])",
        [("one_hot", "You predicted 1: large scores do not make softmax one-hot by themselves; only the "
          "*differences* between scores count, and they are still 1 and 2.", 1.0),
         ("uniform", "You predicted 1/3, as if 101, 102 and 103 were 'about equal'. Softmax does not look at "
          "ratios (103 / 101) but at differences (103 - 101 = 2), which did not change.", 1.0 / 3.0)],
        fn, device,
        why=f"softmax(x + c) = softmax(x): e^(x_i + c) / sum e^(x_j + c), and e^c cancels. The weights are those of "
            f"[1, 2, 3]: the largest is {answer:.3f}. The stable softmax uses exactly this, with c = -max(x).",
        compare=number_compare(answer, tolerance=0.01))


def _temperature(scores: torch.Tensor, target: float) -> float:
    """The temperature T at which softmax(scores / T).max() == target (bisection on log T)."""
    lo, hi = math.log(1e-3), math.log(1e3)
    for _ in range(60):  # the largest weight falls as T grows
        mid = (lo + hi) / 2
        if float(_softmax(scores.double() / math.exp(mid)).max()) > target:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


def check_find_temperature(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``find_temperature(scores, target)`` -> the temperature T at which the largest weight of
    softmax(scores / T) is ``target`` (to 1 %).

    scores: float tensor (S,) with distinct values; target: a float between 1/S and 1. Returns a float
    T > 0 (found by experiment: try temperatures until the largest weight is the target).
    Taught in: notebooks/02_softmax.ipynb.
    """
    g = _gen(seed)

    def case(S, target, dtype=torch.float32):
        return Case((torch.randn(S, generator=g, dtype=torch.float64).mul(2).to(dtype), target))

    ex = Exercise(
        "find_temperature",
        _temperature,
        [
            Property("a sharp target (0.9)", [case(4, 0.9), case(6, 0.9)]),
            Property("a flat target (just above 1/S)", [case(4, 0.3), case(8, 0.2)]),
            Property("float64 scores", [case(5, 0.5, torch.float64)]),
        ],
        [
            Mistake("temperature_multiplied", "You multiplied the scores by T instead of dividing: your T is the "
                    "inverse of the temperature. softmax(scores / T): T < 1 sharpens, T > 1 flattens.",
                    lambda s, t: 1.0 / _temperature(s, t)),
        ],
        compare=number_compare(rel=0.01),
    )
    return run_question(ex, fn, device, on_pass_only=True,
                        why="the largest weight falls steadily as T grows (from 1 at T -> 0 to 1/S at T -> inf), so "
                            "one temperature gives each target: a bisection finds it.")


# --------------------------------------------------------------------------------------------
# 03: the spread of q . k; the d_k at which unscaled softmax saturates.
# --------------------------------------------------------------------------------------------

_DK = 64
DK_GRID = tuple(2 ** i for i in range(10))  # 1, 2, 4, ..., 512: the d_k values find_saturating_dk tries


def check_predict_score_std(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``predict_score_std()``: the standard deviation of q . k for q, k with d_k = 64 independent
    entries of mean 0 and variance 1, predicted.

    Passes within 0.5 of sqrt(64) = 8; names the common wrong predictions; explains the answer.
    Taught in: notebooks/03_scaling.ipynb.
    """
    answer = math.sqrt(_DK)
    return prediction(
        "predict_score_std", answer, f"the standard deviation of q . k at d_k = {_DK}",
        [("variance_not_std", f"You predicted the *variance*, {_DK}: the sum of {_DK} products of variance 1. The "
          f"standard deviation is its square root.", float(_DK)),
         ("already_scaled", "You predicted 1, the spread *after* dividing by sqrt(d_k). Before scaling, the "
          "spread grows with d_k.", 1.0),
         ("inverse_sqrt", "You predicted 1 / sqrt(d_k), the scale factor itself. The spread of the raw scores is "
          "sqrt(d_k), which the factor cancels.", 1 / math.sqrt(_DK))],
        fn, device,
        why=f"q . k is a sum of d_k = {_DK} independent products q_i k_i, each of mean 0 and variance 1; variances "
            f"add, so Var = {_DK} and std = sqrt({_DK}) = {answer:g}. Dividing by sqrt(d_k) brings it back to 1.",
        compare=number_compare(answer, tolerance=0.5))


def _saturating_dk(threshold: float, num_keys: int, scaled: bool = False, any_draw: bool = False):
    """The smallest d_k of DK_GRID at which the mean largest weight of softmax(q . k) exceeds ``threshold``."""
    g = torch.Generator().manual_seed(1234)
    for dk in DK_GRID:
        q = torch.randn(1000, 1, dk, generator=g)  # (draws, 1, E)
        k = torch.randn(1000, num_keys, dk, generator=g)  # (draws, S, E)
        scores = dot_product_scores(q, k) / (math.sqrt(dk) if scaled else 1.0)  # (draws, 1, S)
        largest = _softmax(scores).amax(-1)  # (draws, 1)
        if float(largest.max() if any_draw else largest.mean()) > threshold:
            return dk
    return None


def check_find_saturating_dk(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``find_saturating_dk(threshold, num_keys)`` -> the smallest d_k in 1, 2, 4, ..., 512 at which
    *unscaled* softmax saturates: the largest weight of softmax(q . k) over ``num_keys`` keys, averaged
    over at least 1000 random draws of q and the keys (entries of mean 0, variance 1), exceeds
    ``threshold``; None if no d_k up to 512 does.

    Passes within one step of the grid (random draws differ); names the common wrong findings.
    Taught in: notebooks/03_scaling.ipynb.
    """
    ex = Exercise(
        "find_saturating_dk",
        _saturating_dk,
        [
            Property("8 keys, threshold 0.5", [Case((0.5, 8))]),
            Property("8 keys, threshold 0.9", [Case((0.9, 8))]),
            Property("4 keys, threshold 0.8", [Case((0.8, 4))]),
            Property("16 keys, threshold 0.99: not reached by d_k = 512 (None)", [Case((0.99, 16))]),
        ],
        [
            Mistake("scaled_scores", "You divided the scores by sqrt(d_k): scaled softmax never saturates (its "
                    "largest weight stays the same at every d_k), which is the point of the scaling. The "
                    "experiment asks for the *unscaled* scores q . k.",
                    lambda t, s: _saturating_dk(t, s, scaled=True)),
            Mistake("any_draw_not_mean", "You stopped at the first d_k where *some* draw exceeds the threshold. "
                    "Saturation is about the typical draw: average the largest weight over all draws, then compare.",
                    lambda t, s: _saturating_dk(t, s, any_draw=True)),
        ],
        compare=factor_compare(2.0),
    )
    return run_question(ex, fn, device, on_pass_only=True,
                        why="unscaled scores spread as sqrt(d_k), so the largest score pulls away from the others "
                            "and takes almost all the weight: softmax saturates and its gradients vanish. Dividing "
                            "by sqrt(d_k) keeps the spread at 1 for every d_k.")
