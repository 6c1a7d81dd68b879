"""Checks for chapter 04: causal masks, padding masks, masked attention, combining masks.

Every mask is boolean with course_lib's meaning, **True = may attend** (as
``F.scaled_dot_product_attention``). A mask answer must be a ``torch.bool`` tensor of the right
shape with the right entries; an attention answer is compared with the reference within the
dtype's tolerance, and a NaN where the answer is a row of zeros is a failure.

Taught in: solutions/ and exercises/ 04_masking.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..attention import scaled_dot_product_attention, softmax as _softmax
from ..masking import causal_mask, combine_masks, padding_mask
from .basics import _attention_variant
from .core import Case, CheckReport, Exercise, Mistake, Property, _gen, _randn, run_check
from .questions import exact_compare, number_compare, prediction, run_question

__all__ = ["check_make_causal_mask", "check_make_padding_mask", "check_masked_attention", "check_combine",
           "check_predict_causal_row_nonzeros", "check_find_leaking_positions"]


# --------------------------------------------------------------------------------------------
# Helpers: comparing boolean masks, mistakes that stay silent where they are ambiguous.
# --------------------------------------------------------------------------------------------


def _mask_difference(got, expected: torch.Tensor) -> str | None:
    """None when ``got`` is the same boolean mask as ``expected``, else the reason."""
    if not isinstance(got, torch.Tensor):
        return f"returned {type(got).__name__}, expected a torch.Tensor of dtype torch.bool"
    if tuple(got.shape) != tuple(expected.shape):
        return f"returned shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if expected.dtype != torch.bool and got.dtype != torch.bool:
        # matching the "mask_not_bool" variant: any 0/1 number mask with the right entries
        got, expected = got.double(), expected.double()
    if got.dtype != expected.dtype:
        return f"returned dtype {got.dtype}, expected {expected.dtype} (True = may attend)"
    if got.device != expected.device:
        return f"returned a tensor on {got.device}, expected {expected.device}"
    wrong = got != expected
    if wrong.any():
        where = tuple(int(i) for i in wrong.nonzero()[0])
        return (f"{int(wrong.sum())} of {wrong.numel()} entries are wrong; the first at index {where}: "
                f"got {bool(got[where])}, expected {bool(expected[where])}")
    return None


def _silent_when(condition: Callable[..., bool], fn: Callable) -> Callable:
    """A mistake variant that abstains (raises, so the framework skips it) where ``condition`` holds.

    Used where two mistakes give the same wrong answer on an input (e.g. a 1x1 causal mask is
    [[False]] both when the diagonal is excluded and when the mask is inverted), so that such an
    input names neither, and the diagnosis comes from the inputs that tell them apart.
    """

    def variant(*args, **kwargs):
        if condition(*args, **kwargs):
            raise ValueError("this mistake cannot be told apart from another one on this input")
        return fn(*args, **kwargs)

    return variant


_NOT_BOOL = ("You returned a mask of numbers, not of booleans. In course_lib (and F.scaled_dot_product_attention) a float mask is "
             "*added* to the scores (0 or -inf), so 1.0 / 0.0 would barely change the weights. Return a "
             "torch.bool tensor: True = may attend.")


# --------------------------------------------------------------------------------------------
# Exercise 1: make_causal_mask(L).
# --------------------------------------------------------------------------------------------


def _ones(L):
    return torch.ones(L, L, dtype=torch.bool)


def check_make_causal_mask(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``make_causal_mask(L)`` -> bool (L, L), True on and below the diagonal.

    Taught in: notebooks/04_masking.ipynb.
    """
    ex = Exercise(
        "make_causal_mask",
        lambda L: causal_mask(L),
        [
            Property("one token (L = 1) may attend to itself", [Case((1,))]),
            Property("short sequences, L = 2, 3, 4", [Case((2,)), Case((3,)), Case((4,))]),
            Property("longer sequences, L = 7 and 11", [Case((7,)), Case((11,))]),
        ],
        [
            Mistake("causal_off_by_one", "Your mask leaves out the diagonal: a token must attend to itself (query i "
                    "may see keys 0..i, *including* i). Use .tril() (diagonal=0), not .tril(-1); otherwise the first "
                    "token has nothing to attend to.",
                    _silent_when(lambda L: L < 2, lambda L: _ones(L).tril(-1))),
            Mistake("causal_inverted", "Your mask is inverted: True must mean *may attend* (the past and the token "
                    "itself, on and below the diagonal). You built the True = blocked mask that "
                    "nn.MultiheadAttention's attn_mask expects; flip it with ~.",
                    _silent_when(lambda L: L < 2, lambda L: _ones(L).triu(1))),
            Mistake("causal_transposed", "Your mask is transposed: True sits on and *above* the diagonal, so each "
                    "token sees the future and not the past. Query i (row i) may attend to keys j <= i: use .tril().",
                    lambda L: _ones(L).triu()),
            Mistake("mask_not_bool", _NOT_BOOL, lambda L: torch.ones(L, L).tril()),
        ],
        compare=_mask_difference,
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Exercise 2: make_padding_mask(lengths, S).
# --------------------------------------------------------------------------------------------


def _positions(lengths, S):
    return torch.arange(S, device=lengths.device)[None, :], lengths[:, None]  # (1, S), (B, 1)


def _padding_variant(mode):
    def fn(lengths, S):
        pos, n = _positions(lengths, S)
        if mode == "inverted":
            return pos >= n
        if mode == "plus_one":
            return pos <= n
        if mode == "minus_one":
            return pos < n - 1
        if mode == "ignores_S":
            pos, n = _positions(lengths, int(lengths.max()))
            return pos < n
        return (pos < n).float()

    return fn


_OFF_BY_ONE = ("Your mask is off by one: sequence b has exactly lengths[b] real tokens, at positions "
               "0 .. lengths[b] - 1. Compare the positions with `<` and the lengths themselves (not `<=`, and not "
               "lengths - 1).")


def check_make_padding_mask(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``make_padding_mask(lengths, S)``: lengths long (B,), S int -> bool (B, S), True for real tokens.

    Taught in: notebooks/04_masking.ipynb.
    """

    def lengths(*ns):
        return torch.tensor(ns, dtype=torch.long)

    ex = Exercise(
        "make_padding_mask",
        lambda lengths, S: padding_mask(lengths, S),
        [
            Property("a batch of different lengths, S = the longest",
                     [Case((lengths(3, 1, 4), 4)), Case((lengths(2, 5), 5))]),
            Property("S longer than every sequence (extra padding)",
                     [Case((lengths(2, 3), 6)), Case((lengths(1,), 3))]),
            Property("edge cases: a sequence with no padding and an empty one (length 0)",
                     [Case((lengths(4, 0, 2), 4)), Case((lengths(0, 6), 6))]),
        ],
        [
            Mistake("padding_inverted", "Your mask is inverted: True must mark the *real* tokens (may attend), False "
                    "the padding. You built the True = pad mask that nn.MultiheadAttention's key_padding_mask "
                    "expects; flip it with ~.", _padding_variant("inverted")),
            # one diagnosis for both directions (lengths + 1 and lengths - 1)
            Mistake("padding_off_by_one", _OFF_BY_ONE, _padding_variant("plus_one")),
            Mistake("padding_off_by_one", _OFF_BY_ONE, _padding_variant("minus_one")),
            Mistake("padding_ignores_S", "Your mask has as many columns as the longest sequence, but the batch is "
                    "padded to S: use torch.arange(S), not the largest length.", _padding_variant("ignores_S")),
            Mistake("mask_not_bool", _NOT_BOOL, _padding_variant("float")),
        ],
        compare=_mask_difference,
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Exercise 3: masked_attention(query, key, value, mask).
# --------------------------------------------------------------------------------------------


def _scaled_scores(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., L, E) @ (..., E, S) -> (..., L, S)


def _nan_on_fully_masked(q, k, v, mask):
    """-inf before the softmax, but a softmax that computes 0/0 = NaN on a row with no allowed key."""
    s = _scaled_scores(q, k).masked_fill(~mask, float("-inf"))
    return torch.softmax(s.float(), dim=-1).to(q.dtype) @ v  # (..., L, S) @ (..., S, Ev) -> (..., L, Ev)


def _smallest_finite_fill(q, k, v, mask):
    """A finite fill (torch.finfo(dtype).min): fine in every row but a fully masked one, which turns uniform."""
    s = _scaled_scores(q, k)
    s = s.masked_fill(~mask, torch.finfo(s.dtype).min)
    return _softmax(s, dim=-1) @ v  # (..., L, S) @ (..., S, Ev) -> (..., L, Ev)


def _masked_attention_cases(g: torch.Generator) -> list[Property]:
    def random_mask(*shape):
        m = torch.rand(*shape, generator=g) > 0.4
        m[..., 0] = True  # every query may attend to at least one key
        return m

    def qkv(batch, L, S, E, Ev, dtype=torch.float32):
        return (_randn(g, *batch, L, E, dtype=dtype), _randn(g, *batch, S, E, dtype=dtype),
                _randn(g, *batch, S, Ev, dtype=dtype))

    fully = random_mask(4, 6)
    fully[2] = False  # query 2 may attend to nothing
    fully16 = random_mask(3, 5)
    fully16[0] = False
    return [
        Property("a boolean mask (True = may attend), L != S, Ev != E",
                 [Case(qkv((), 3, 5, 8, 2), {"mask": random_mask(3, 5)}),
                  Case(qkv((2,), 4, 6, 16, 3), {"mask": random_mask(2, 4, 6)})]),
        Property("a causal mask (L, L) broadcast over 1 to 3 leading dims",
                 [Case(qkv((2,), 4, 4, 8, 5), {"mask": causal_mask(4)}),
                  Case(qkv((2, 2, 2), 4, 4, 8, 5), {"mask": causal_mask(4)})]),
        Property("a padding mask (B, 1, S) broadcast over the queries, and (B, 1, 1, 1, S) over 3 leading dims",
                 [Case(qkv((3,), 5, 5, 8, 4), {"mask": padding_mask([5, 2, 3])[:, None, :]}),
                  Case(qkv((3, 2, 2), 5, 5, 8, 4), {"mask": padding_mask([5, 2, 3])[:, None, None, None, :]})]),
        Property("a fully masked row gives zeros, not NaN",
                 [Case(qkv((), 4, 6, 8, 3), {"mask": fully}),
                  Case(qkv((2,), 3, 4, 8, 2), {"mask": padding_mask([3, 0], 4)[:, None, :]}),
                  Case(qkv((), 3, 5, 8, 2, dtype=torch.float16), {"mask": fully16})]),
        Property("float16 inputs with a mask",
                 [Case(qkv((), 3, 5, 8, 2, dtype=torch.float16), {"mask": random_mask(3, 5)}),
                  Case(qkv((2,), 4, 4, 16, 4, dtype=torch.float16), {"mask": causal_mask(4)})]),
    ]


def check_masked_attention(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``masked_attention(query, key, value, mask)``: scaled attention with a boolean mask
    (True = may attend); a query whose keys are all masked gets a row of zeros, not NaN.

    Taught in: notebooks/04_masking.ipynb.
    """
    half = (torch.float16, torch.bfloat16)
    ex = Exercise(
        "masked_attention",
        lambda q, k, v, mask: scaled_dot_product_attention(q, k, v, attn_mask=mask),
        _masked_attention_cases(_gen(seed)),
        [
            Mistake("mask_after_softmax", "You applied the mask after the softmax: the remaining weights no longer sum "
                    "to 1, and the blocked keys still count in the denominator. Set the masked scores to -inf "
                    "*before* the softmax.", _attention_variant(mask_mode="after")),
            Mistake("mask_inverted", "Your mask is inverted: in course_lib (and F.scaled_dot_product_attention) True "
                    "means *may attend*, so fill the scores where the mask is False: masked_fill(~mask, -inf).",
                    _attention_variant(mask_mode="inverted")),
            Mistake("nan_on_fully_masked", "A query whose keys are all masked gives NaN: every score in its row is "
                    "-inf and the softmax computes 0 / 0. Return zeros for such a row: use course_lib.softmax, or "
                    "set the weights of rows with no allowed key to 0 (torch.where(mask.any(-1, keepdim=True), "
                    "weights, 0)).", _nan_on_fully_masked),
            Mistake("fully_masked_uniform", "A query whose keys are all masked gets the *average* of all the values: "
                    "with a finite fill (-1e9, torch.finfo(dtype).min) such a row has equal scores, so the softmax "
                    "spreads its weight evenly over keys it must not see. Fill with float('-inf') and return zeros "
                    "for such a row.",
                    _silent_when(lambda q, k, v, mask: q.dtype not in half, _smallest_finite_fill)),
            Mistake("mask_ignored", "Your function ignores the mask: blocked keys still get weight.",
                    _attention_variant(mask_mode="none")),
            Mistake("scale_forgotten", "You forgot to divide the scores by sqrt(d_k), d_k = query.shape[-1].",
                    _attention_variant(scale="none")),
        ],
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Exercise 4: combine(causal, padding).
# --------------------------------------------------------------------------------------------


def check_combine(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``combine(causal, padding)``: causal bool (L, L), padding bool (B, L) -> bool (B, L, L),
    True where the key is both in the past (or the token itself) and a real token.

    Taught in: notebooks/04_masking.ipynb.
    """

    def case(L, *lengths):
        return Case((causal_mask(L), padding_mask(list(lengths), L)))

    ex = Exercise(
        "combine",
        lambda causal, padding: combine_masks(causal, padding[:, None, :]),
        [
            Property("a batch of 3 sentences of different lengths (B = 3, L = 5)", [case(5, 5, 2, 3)]),
            Property("one sentence without padding gives the causal mask (B = 1, L = 4)", [case(4, 4)]),
            Property("batch size equal to the length (B = L = 4), with an empty sentence", [case(4, 4, 1, 0, 3)]),
        ],
        [
            Mistake("combine_or", "You combined the masks with `or`: a key may be attended to only if *both* masks "
                    "allow it, so use `&` (logical and).",
                    lambda causal, padding: causal[None, :, :] | padding[:, None, :]),
            Mistake("padding_not_expanded", "The padding mask (B, S) needs a query dim before it can meet the causal "
                    "mask (L, S): padding[:, None, :] is (B, 1, S), which broadcasts to (B, L, S). Without it, "
                    "(B, S) lines up with (L, S) only by accident (when B == L or B == 1), and gives a wrong answer.",
                    lambda causal, padding: causal & padding),
            Mistake("padding_on_queries", "You masked the rows of the padded *queries*; a padding mask blocks the "
                    "padded *keys*, the columns: padding[:, None, :] (B, 1, S), not padding[:, :, None].",
                    lambda causal, padding: causal[None, :, :] & padding[:, :, None]),
            Mistake("mask_not_bool", _NOT_BOOL,
                    lambda causal, padding: causal[None, :, :].float() * padding[:, None, :].float()),
        ],
        compare=_mask_difference,
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Predict, then run: how many weights of a causal row are not zero.
# --------------------------------------------------------------------------------------------

_ROW_L, _ROW_I = 10, 3


def check_predict_causal_row_nonzeros(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``predict_causal_row_nonzeros()``: how many attention weights of row i = 3 (counting from 0)
    are not zero under a causal mask of length L = 10, predicted.

    Passes on the count course_lib's causal_mask gives (4); names the common wrong counts; explains.
    Taught in: notebooks/04_masking.ipynb.
    """
    L, i = _ROW_L, _ROW_I
    answer = int(causal_mask(L)[i].sum())
    return prediction(
        "predict_causal_row_nonzeros", answer, f"nonzero weights in row {i} of a causal mask of length {L}",
        [("forgot_itself", f"You counted the earlier tokens only ({i}). Query {i} may attend to itself too: keys "
          f"0 .. {i}, both ends included.", i),
         ("counted_the_future", f"You counted the *future* tokens ({L - i - 1}): those are the ones the mask "
          f"blocks. Query {i} keeps keys 0 .. {i}.", L - i - 1),
         ("future_and_itself", f"You counted the tokens from {i} to the end ({L - i}): a causal mask keeps the "
          f"*past* and the token itself, keys 0 .. {i}.", L - i),
         ("no_mask", f"{L} is the whole row, as without a mask: the causal mask sets the {L - i - 1} future scores "
          f"to -inf, and their weights become exactly 0.", L)],
        fn, device,
        why=f"row {i} is query {i}; a causal mask lets it see keys 0 .. {i} (True on and below the diagonal): "
            f"{i + 1} weights, which sum to 1. The {L - i - 1} future keys get -inf scores and weight exactly 0.",
        compare=number_compare(answer, tolerance=0.0))


# --------------------------------------------------------------------------------------------
# Investigation: which queries of a (possibly buggy) causal attention see the future?
# --------------------------------------------------------------------------------------------


class MaskedSelfAttention(nn.Module):
    """Self-attention of one sequence (L, E) -> (L, E) with its mask built from a recipe, right or buggy.

    ``kind``: "causal" (right), "next_token" (the mask shifted by one: query i also sees key i + 1),
    "one_leak" (query ``leak[0]`` also sees key ``leak[1]``), "after_softmax" (weights computed over
    every key, then the future weights zeroed: the denominator still reads the future).
    Query, key and value are the input itself (no parameters). Taught in: notebooks/04_masking.ipynb.
    """

    def __init__(self, kind: str = "causal", leak: tuple[int, int] = (0, 1)):
        super().__init__()
        self.kind, self.leak = kind, tuple(leak)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L, E = x.shape[-2:]
        scores = x @ x.transpose(-2, -1) / math.sqrt(E)  # (L, E) @ (E, L) -> (L, L)
        allowed = causal_mask(L, device=x.device)
        if self.kind == "next_token":
            allowed = torch.ones(L, L, dtype=torch.bool, device=x.device).tril(1)
        elif self.kind == "one_leak":
            allowed = allowed.clone()
            allowed[self.leak] = True
        if self.kind == "after_softmax":
            weights = _softmax(scores) * allowed
        else:
            weights = _softmax(scores.masked_fill(~allowed, float("-inf")))
        return weights @ x  # (L, L) @ (L, E) -> (L, E)

    def __repr__(self) -> str:
        return "<an attention module>"


def _leaks(attend: nn.Module, L: int, E: int, perturbed=None, count_self: bool = False) -> list[int]:
    """The queries whose output changes when a later token changes (perturbation, with course_lib's mask)."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(L, E, generator=g, dtype=torch.float64)
    base = attend(x)
    found: set[int] = set()
    for j in (range(L) if perturbed is None else perturbed):
        y = x.clone()
        y[j] = torch.randn(E, generator=g, dtype=torch.float64)
        changed = (attend(y) - base).abs().amax(-1) > 1e-9  # (L,)
        found |= {i for i in range(L) if changed[i] and (i < j or (count_self and i <= j))}
    return sorted(found)


def check_find_leaking_positions(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``find_leaking_positions(attend, L, E)`` -> the sorted list of query positions i whose output
    changes when some *later* token j > i changes (the positions that see the future).

    attend: a module mapping a float tensor (L, E) to (L, E) (self-attention meant to be causal).
    Returns a list of ints in increasing order ([] when the mask is right). Found by experiment:
    change one token at a time and see which earlier outputs move.
    Taught in: notebooks/04_masking.ipynb.
    """
    ex = Exercise(
        "find_leaking_positions",
        _leaks,
        [
            Property("a right causal mask: no leak", [Case((MaskedSelfAttention("causal"), 6, 4))]),
            Property("one query sees one future key", [Case((MaskedSelfAttention("one_leak", (1, 4)), 7, 4))]),
            Property("the mask shifted by one", [Case((MaskedSelfAttention("next_token"), 6, 4))]),
            Property("the mask applied after the softmax", [Case((MaskedSelfAttention("after_softmax"), 5, 3))]),
        ],
        [
            Mistake("last_token_only", "You changed only the last token: a leak from a middle token (query 1 reading "
                    "key 4) goes unseen. Change each token in turn.",
                    lambda a, L, E: _leaks(a, L, E, perturbed=[L - 1])),
            Mistake("counted_itself", "You counted a query whose output changes when *its own* token changes: "
                    "that is allowed (a token attends to itself). A leak is a change from a *later* token, j > i.",
                    lambda a, L, E: _leaks(a, L, E, count_self=True)),
        ],
        compare=exact_compare("list of positions"),
    )
    return run_question(ex, fn, device, on_pass_only=True,
                        why="a causal model's output at i may depend only on tokens 0 .. i, so changing a later "
                            "token must leave it unchanged. Masking after the softmax fails this: the softmax's "
                            "denominator has already read the future.")
