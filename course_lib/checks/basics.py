"""Checks for chapters 01-03: dot products, softmax, scaling and masked attention.

Taught in: solutions/ and exercises/ 01_dot_products, 02_softmax, 03_scaling.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..attention import dot_product_scores, scaled_dot_product_attention, softmax as _softmax
from .core import Case, CheckReport, Exercise, Mistake, Property, _gen, _randn, run_check

_INF = float("inf")

__all__ = [
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


BATCH_TRANSPOSE = ("It works for 2-D inputs but not with leading batch dims: `.T` reverses *all* dims. "
                   "Transpose only the last two: key.transpose(-2, -1).")


def _all_dims_reversed(t: torch.Tensor) -> torch.Tensor:
    """What ``t.T`` does to a tensor of any rank (without its deprecation warning): every dim reversed."""
    return t.permute(*reversed(range(t.dim())))  # (d0, ..., dn) -> (dn, ..., d0)


def _large_scores_case(g: torch.Generator, L: int, S: int, E: int, Ev: int, score: float, dtype) -> Case:
    """query (L, E), key (S, E), value (S, Ev) whose scaled scores are all about ``score`` (+- 1).

    Query and key share a large first feature ``a`` with a^2 / sqrt(E) = score; the other features
    are small random numbers that make the keys differ. A softmax without max-subtraction computes
    exp(score): inf in float32 above 88.7, in float16 above 11.1.
    """
    a = math.sqrt(score * math.sqrt(E))
    q, k = _randn(g, L, E, dtype=torch.float64), _randn(g, S, E, dtype=torch.float64)
    q[:, 0], k[:, 0] = a, a
    return Case((q.to(dtype), k.to(dtype), _randn(g, S, Ev, dtype=dtype, scale=0.25)),
                label=f"scores about {score:g}, {str(dtype).replace('torch.', '')}")


# --------------------------------------------------------------------------------------------
# Chapter 01: dot products.
# --------------------------------------------------------------------------------------------


def _ref_dot(u, v):
    return (u * v).sum()


def _ref_cosine(u, v):
    return (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))


def check_dot(fn: Callable, seed: int = 0, device=None) -> CheckReport:
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
    return run_check(ex, fn, device=device)


def check_cosine_similarity(fn: Callable, seed: int = 0, device=None) -> CheckReport:
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
            Property("batches (..., E) -> (...), 1 to 3 leading dims",
                     [Case((_randn(g, 4, 5), _randn(g, 4, 5))), Case((_randn(g, 2, 3, 6, scale=2.0), _randn(g, 2, 3, 6))),
                      Case((_randn(g, 2, 2, 3, 4), _randn(g, 2, 2, 3, 4)))]),
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
    return run_check(ex, fn, device=device)


def check_dot_product_scores(fn: Callable, seed: int = 0, device=None) -> CheckReport:
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
            Property("leading batch dims, 1 to 3: (..., L, E), (..., S, E) -> (..., L, S)",
                     [Case((_randn(g, 2, 3, 4), _randn(g, 2, 5, 4))), Case((_randn(g, 2, 3, 4, 6), _randn(g, 2, 3, 7, 6))),
                      Case((_randn(g, 2, 2, 2, 3, 5), _randn(g, 2, 2, 2, 4, 5)))]),
            Property("float64 in, float64 out", [Case((_randn(g, 4, 3, dtype=torch.float64), _randn(g, 5, 3, dtype=torch.float64)))]),
        ],
        [
            Mistake("key_query_swapped", "You computed key @ query^T, which is (S, L); the scores are query @ key^T, (L, S).",
                    lambda q, k: k @ q.transpose(-2, -1)),
            Mistake("scaled", "You scaled the scores; this exercise asks for the raw dot products (scaling comes in chapter 03).",
                    lambda q, k: dot_product_scores(q, k) / math.sqrt(q.shape[-1])),
            Mistake("batch_transpose", BATCH_TRANSPOSE, lambda q, k: q @ _all_dims_reversed(k)),
        ],
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Chapter 02: softmax and the soft lookup.
# --------------------------------------------------------------------------------------------


def _naive_softmax(x, dim=-1):
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def _unguarded_softmax(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))  # NaN where a whole row is -inf
    return e / e.sum(dim=dim, keepdim=True)


def _softmax_other_axis(x, dim=-1):
    other = 0 if (dim % x.dim()) != 0 else x.dim() - 1
    return _softmax(x, dim=other)


def check_softmax(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``softmax(x, dim=-1)``: stable, sums to 1 along ``dim``, any shape and dtype; zeros on an all -inf slice.

    Taught in: notebooks/02_softmax.ipynb.
    """
    g = _gen(seed)
    ex = Exercise(
        "softmax",
        _softmax,
        [
            Property("a small example: softmax([0, ln 2, ln 3]) = [1/6, 2/6, 3/6]",
                     [Case((torch.tensor([0.0, math.log(2.0), math.log(3.0)]),))]),
            Property("random rows, last dim, 0 to 3 leading dims",
                     [Case((_randn(g, 5),)), Case((_randn(g, 3, 4),)), Case((_randn(g, 2, 3, 6, scale=3.0),)),
                      Case((_randn(g, 2, 2, 3, 5),))]),
            Property("the dim argument: dim=0 and dim=1",
                     [Case((_randn(g, 3, 4),), {"dim": 0}), Case((_randn(g, 2, 3, 5),), {"dim": 1})]),
            Property("stable on large scores, e.g. [1000, 1001, 1002] (no overflow)",
                     [Case((torch.tensor([1000.0, 1001.0, 1002.0]),)), Case((_randn(g, 3, 4, scale=400.0),))]),
            Property("float64 in, float64 out", [Case((_randn(g, 2, 7, dtype=torch.float64),))]),
            Property("a fully masked row (all -inf) gives zeros, not NaN",
                     [Case((torch.tensor([[1000.0, 1001.0, 1002.0], [-_INF, -_INF, -_INF], [0.5, -_INF, 1.5]]),)),
                      Case((torch.tensor([[-_INF, 1000.0], [-_INF, 999.0]]),), {"dim": 0})]),
        ],
        [
            Mistake("unstable_softmax", "Your softmax overflows on large scores (exp(1000) = inf, inf/inf = NaN): "
                    "subtract the maximum of each row before exp; it cancels in the ratio.", _naive_softmax),
            Mistake("nan_on_fully_masked", "Your softmax returns NaN on a row that is all -inf (a fully masked row): "
                    "its max is -inf, and -inf - (-inf) is NaN. Give such a row zeros: subtract 0 where the max is "
                    "-inf (torch.where), and divide by a sum that is not 0.", _unguarded_softmax),
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
    return run_check(ex, fn, device=device)


def check_softmax_with_temperature(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``softmax_with_temperature(x, temperature)`` = softmax(x / temperature) over the last dim.

    Taught in: notebooks/02_softmax.ipynb.
    """
    g = _gen(seed)
    ex = Exercise(
        "softmax_with_temperature",
        lambda x, temperature: _softmax(x / temperature),
        [
            # T = 1 alone cannot tell x / T from x * T (or from no temperature at all): it counts only
            # together with T = 2, so a formula that is right at T = 1 by coincidence earns nothing here
            Property("temperature 1 is the plain softmax, and T = 2 halves the scores",
                     [Case((_randn(g, 6),), {"temperature": 1.0}),
                      Case((torch.tensor([1.0, -2.0, 0.5, 3.0]),), {"temperature": 2.0})]),
            Property("low temperature sharpens (T = 0.1, 0.5), 0 to 3 leading dims",
                     [Case((_randn(g, 5),), {"temperature": 0.1}), Case((_randn(g, 2, 4),), {"temperature": 0.5}),
                      Case((_randn(g, 2, 2, 3, 4),), {"temperature": 0.5})]),
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
    return run_check(ex, fn, device=device)


def _ref_soft_lookup(query, keys, values):
    weights = _softmax(keys @ query)  # (S, E) @ (E,) -> (S,)
    return weights @ values  # (S,) @ (S, Ev) -> (Ev,)


def check_soft_lookup(fn: Callable, seed: int = 0, device=None) -> CheckReport:
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
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Chapter 03: scaling, attention with a mask, the softmax Jacobian.
# --------------------------------------------------------------------------------------------


def check_scaled_scores(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``scaled_scores(query, key)``: (..., L, E), (..., S, E) -> (..., L, S) = QK^T / sqrt(E).

    Taught in: notebooks/03_scaling.ipynb.
    """
    g = _gen(seed)
    ex = Exercise(
        "scaled_scores",
        lambda q, k: dot_product_scores(q, k, scale=1.0 / math.sqrt(q.shape[-1])),
        [
            Property("2-D inputs, L != S != E", [Case((_randn(g, 3, 16), _randn(g, 5, 16))), Case((_randn(g, 2, 9), _randn(g, 7, 9)))]),
            Property("leading batch dims, 1 to 3",
                     [Case((_randn(g, 2, 3, 4), _randn(g, 2, 6, 4))), Case((_randn(g, 2, 2, 3, 25), _randn(g, 2, 2, 5, 25))),
                      Case((_randn(g, 2, 2, 2, 3, 9), _randn(g, 2, 2, 2, 4, 9)))]),
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
            Mistake("batch_transpose", BATCH_TRANSPOSE, lambda q, k: q @ _all_dims_reversed(k) / math.sqrt(q.shape[-1])),
        ],
    )
    return run_check(ex, fn, device=device)


def _attention_variant(*, scale="sqrt", mask_mode="before", softmax_dim=-1, stable=True, transpose="last2"):
    def fn(q, k, v, mask=None):
        e = q.shape[-1]
        kt = k.transpose(-2, -1) if transpose == "last2" else _all_dims_reversed(k)  # (..., E, S)
        s = q @ kt  # (..., L, S)
        s = s / {"sqrt": math.sqrt(e), "dk": e, "none": 1.0}[scale]
        if mask is not None and mask_mode == "before":
            s = s.masked_fill(~mask, float("-inf"))
        elif mask is not None and mask_mode == "inverted":
            s = s.masked_fill(mask, float("-inf"))
        w = _softmax(s, dim=softmax_dim) if stable else _naive_softmax(s, dim=softmax_dim)
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
        Property("no mask, L != S, Ev != E, 0 to 3 leading dims",
                 [Case((_randn(g, 3, 8), _randn(g, 5, 8), _randn(g, 5, 2))), Case((_randn(g, 2, 4, 16), _randn(g, 2, 6, 16), _randn(g, 2, 6, 3))),
                  Case((_randn(g, 2, 2, 2, 3, 8), _randn(g, 2, 2, 2, 4, 8), _randn(g, 2, 2, 2, 4, 3)))]),
        Property("boolean mask (True = may attend)",
                 [Case((_randn(g, 3, 8), _randn(g, 5, 8), _randn(g, 5, 2)), {"mask": mask(3, 5)}),
                  Case((_randn(g, 2, 4, 16), _randn(g, 2, 6, 16), _randn(g, 2, 6, 3)), {"mask": mask(2, 4, 6)})]),
        Property("causal mask (L, L) broadcast over 1 to 3 leading dims",
                 [Case((_randn(g, 2, 4, 9), _randn(g, 2, 4, 9), _randn(g, 2, 4, 5)), {"mask": causal}),
                  Case((_randn(g, 2, 2, 2, 4, 9), _randn(g, 2, 2, 2, 4, 9), _randn(g, 2, 2, 2, 4, 5)), {"mask": causal})]),
        Property("float16 inputs with a mask",
                 [Case((_randn(g, 3, 8, dtype=torch.float16), _randn(g, 5, 8, dtype=torch.float16),
                        _randn(g, 5, 2, dtype=torch.float16)), {"mask": mask(3, 5)})]),
        Property("large scores do not overflow (about 120 in float32, 14 in float16, where exp overflows past 88 and 11)",
                 [_large_scores_case(g, 3, 5, 8, 2, 120.0, torch.float32),
                  _large_scores_case(g, 4, 6, 8, 3, 14.0, torch.float16)]),
    ]


def check_attention(fn: Callable, seed: int = 0, device=None) -> CheckReport:
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
            Mistake("unstable_softmax", "Your softmax overflows on large scores: exp(89) is inf in float32, and exp(12) "
                    "already in float16 (inf / inf = NaN). Subtract each row's max before exp, or use course_lib's softmax.",
                    _attention_variant(stable=False)),
            Mistake("batch_transpose", BATCH_TRANSPOSE, _attention_variant(transpose="all")),
        ],
    )
    return run_check(ex, fn, device=device)


def check_softmax_jacobian(fn: Callable, seed: int = 0, device=None) -> CheckReport:
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
    return run_check(ex, fn, device=device)
