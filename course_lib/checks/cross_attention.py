"""Checks for chapter 06, cross-attention: where queries, keys and values come from, the masks of an
encoder-decoder model, and how well attention weights recover a known word alignment.

Taught in: solutions/ and exercises/ 06_cross_attention.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..attention import scaled_dot_product_attention, softmax as _softmax
from ..masking import causal_mask, padding_mask
from .core import Case, CheckReport, Exercise, Mistake, Property, _gen, _randn, run_check
from .questions import exact_compare, prediction, run_question

__all__ = ["check_cross_attention", "check_encoder_decoder_masks", "check_alignment_accuracy",
           "check_predict_cross_weights_shape", "check_find_reordered_words"]


# --------------------------------------------------------------------------------------------
# Exercise 1: cross_attention(x_dec, x_enc, W_query, W_key, W_value).
# --------------------------------------------------------------------------------------------


def _ref_cross_attention(x_dec, x_enc, W_query, W_key, W_value):
    query = x_dec @ W_query  # (B, L, D) @ (D, E) -> (B, L, E)
    key = x_enc @ W_key  # (B, S, D) @ (D, E) -> (B, S, E)
    value = x_enc @ W_value  # (B, S, D) @ (D, Ev) -> (B, S, Ev)
    return scaled_dot_product_attention(query, key, value)  # (B, L, Ev)


def _cross_variant(*, q_from="dec", k_from="enc", v_from="enc", scale="E", softmax_dim=-1, stable=True,
                   transpose="last2"):
    def fn(x_dec, x_enc, W_query, W_key, W_value):
        src = {"dec": x_dec, "enc": x_enc}
        q = src[q_from] @ W_query  # (B, ., E)
        k = src[k_from] @ W_key  # (B, ., E)
        v = src[v_from] @ W_value  # (B, ., Ev)
        kt = k.transpose(-2, -1) if transpose == "last2" else k.permute(*reversed(range(k.dim())))  # (B, E, .) or k.T
        scores = q @ kt  # (B, ., E) @ (B, E, .) -> (B, ., .)
        scores = scores / {"E": math.sqrt(q.shape[-1]), "D": math.sqrt(x_dec.shape[-1]), "none": 1.0}[scale]
        if stable:
            return _softmax(scores, dim=softmax_dim) @ v  # (B, ., .) @ (B, ., Ev) -> (B, ., Ev)
        e = scores.exp()  # overflows to inf for scores above 88.7 in float32
        return (e / e.sum(dim=softmax_dim, keepdim=True)) @ v  # (B, ., .) @ (B, ., Ev) -> (B, ., Ev)

    return fn


def _large_scores_case(g: torch.Generator, B: int, L: int, S: int, D: int, E: int, Ev: int, score: float) -> Case:
    """Float32 inputs whose scaled scores are all about ``score`` (+- 1): exp(score) overflows above 88.7.

    The projections W_query = W_key keep the first E features; x_dec and x_enc share a large first
    feature ``a`` with a^2 / sqrt(E) = score, and small random other features.
    """
    a = math.sqrt(score * math.sqrt(E))
    x_dec, x_enc = _randn(g, B, L, D, scale=0.5), _randn(g, B, S, D, scale=0.5)
    x_dec[..., 0], x_enc[..., 0] = a, a
    keep = torch.eye(D, E)  # (D, E): the first E features
    return Case((x_dec, x_enc, keep.clone(), keep.clone(), _randn(g, D, Ev, scale=0.5)), label=f"scores about {score:g}")


class LengthMismatchError(RuntimeError):
    """The learner's function runs when L == S but fails when L != S (raised by the check, not by torch)."""


def _guard_lengths(fn: Callable) -> Callable:
    """Wrap ``fn`` so that a crash that happens only when L != S is reported as such.

    Mixing a decoder-length tensor with an encoder-length one (keys from the decoder, values from
    the encoder) fails inside torch with a shape error whose text the framework would otherwise
    read as a batch-transpose mistake. When the same function runs on the same inputs cut to a
    common length, the crash is about L != S, and the report says so instead.
    """

    def guarded(x_dec, x_enc, W_query, W_key, W_value):
        try:
            return fn(x_dec, x_enc, W_query, W_key, W_value)
        except NotImplementedError:
            raise
        except Exception as exc:
            L, S = x_dec.shape[-2], x_enc.shape[-2]
            if L == S:
                raise
            n = min(L, S)
            try:
                fn(x_dec[..., :n, :].clone(), x_enc[..., :n, :].clone(), W_query.clone(), W_key.clone(), W_value.clone())
            except Exception:
                raise exc from None
            raise LengthMismatchError(
                f"{type(exc).__name__} with L={L} decoder and S={S} encoder tokens, but runs when both are {n}: "
                f"somewhere a tensor of the decoder's length L meets one of the encoder's length S (keys and "
                f"values must both come from x_enc)"
            ) from None

    return guarded


def check_cross_attention(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``cross_attention(x_dec, x_enc, W_query, W_key, W_value)``: single-head cross-attention.

    Queries come from ``x_dec`` (B, L, D), keys and values from ``x_enc`` (B, S, D); the weights
    (D, E), (D, E), (D, Ev) are applied as ``x @ W``; scores are scaled by 1/sqrt(E); the result is
    (B, L, Ev).

    Taught in: notebooks/06_cross_attention.ipynb.
    """
    g = _gen(seed)

    def case(B, L, S, D, E, Ev, dtype=torch.float32, label=""):
        return Case(
            (_randn(g, B, L, D, dtype=dtype), _randn(g, B, S, D, dtype=dtype), _randn(g, D, E, dtype=dtype, scale=0.8),
             _randn(g, D, E, dtype=dtype, scale=0.8), _randn(g, D, Ev, dtype=dtype)),
            label=label,
        )

    # A hand-made example: identity projections, 2 decoder tokens, 3 encoder tokens. Decoder token 0
    # matches encoder token 2, decoder token 1 matches encoder token 0.
    eye = torch.eye(2)
    hand = Case((torch.tensor([[[0.0, 2.0], [3.0, 0.0]]]), torch.tensor([[[3.0, 0.0], [1.0, 1.0], [0.0, 3.0]]]),
                 eye, eye, eye), label="identity projections")
    ex = Exercise(
        "cross_attention",
        _ref_cross_attention,
        [
            Property("a hand-made example: each decoder token finds the encoder token it matches (L=2, S=3)", [hand]),
            Property("L != S: x_dec (B, L, D), x_enc (B, S, D) -> (B, L, Ev), with E != Ev",
                     [case(1, 2, 5, 4, 3, 2), case(2, 3, 6, 8, 4, 5), case(3, 7, 4, 6, 2, 3)]),
            Property("L == S: keys and values still come from x_enc", [case(2, 4, 4, 6, 3, 2), case(1, 5, 5, 4, 8, 4)]),
            Property("float64 in, float64 out", [case(2, 3, 5, 4, 6, 2, dtype=torch.float64)]),
            Property("large scores do not overflow (about 120 in float32, where exp overflows past 88)",
                     [_large_scores_case(g, 2, 3, 5, 6, 4, 3, 120.0)]),
        ],
        [
            Mistake("queries_from_encoder", "Your queries come from the encoder (or queries and keys/values are swapped): "
                    "the *decoder* asks, so query = x_dec @ W_query, and the output has one row per decoder token, "
                    "(B, L, Ev), not (B, S, Ev).", _cross_variant(q_from="enc", k_from="dec", v_from="dec")),
            Mistake("queries_from_encoder", "Your queries come from the encoder (or queries and keys/values are swapped): "
                    "the *decoder* asks, so query = x_dec @ W_query, and the output has one row per decoder token, "
                    "(B, L, Ev), not (B, S, Ev).", _cross_variant(q_from="enc")),
            Mistake("keys_from_decoder", "Your keys come from the decoder: the keys are what the decoder's queries are "
                    "matched against, the encoder's tokens, so key = x_enc @ W_key (and value = x_enc @ W_value).",
                    _cross_variant(k_from="dec")),
            Mistake("keys_from_decoder", "Your keys come from the decoder: the keys are what the decoder's queries are "
                    "matched against, the encoder's tokens, so key = x_enc @ W_key (and value = x_enc @ W_value).",
                    _cross_variant(k_from="dec", v_from="dec")),
            Mistake("scale_forgotten", "You forgot to divide the scores by sqrt(E), E = W_query.shape[-1] (d_k).",
                    _cross_variant(scale="none")),
            Mistake("scale_by_model_dim", "You scaled by sqrt(D), the model width; the scale is 1/sqrt(E) with E the "
                    "size of a query/key vector after the projection, W_query.shape[-1].", _cross_variant(scale="D")),
            Mistake("softmax_wrong_axis", "Your softmax runs over the queries (dim=-2); each decoder token's weights "
                    "must sum to 1 over the encoder tokens (dim=-1).", _cross_variant(softmax_dim=-2)),
            Mistake("unstable_softmax", "Your softmax overflows on large scores: exp(89) is inf in float32 (inf / inf = "
                    "NaN). Subtract each row's max before exp, or use course_lib's softmax.", _cross_variant(stable=False)),
            Mistake("batch_transpose", "It works for 2-D inputs but not with a batch dim: `.T` reverses *all* dims of "
                    "(B, S, E). Transpose only the last two: key.transpose(-2, -1).", _cross_variant(transpose="all")),
        ],
    )
    return run_check(ex, _guard_lengths(fn) if callable(fn) else fn, device=device)


# --------------------------------------------------------------------------------------------
# Exercise 2: encoder_decoder_masks(tgt_len, src_lengths).
# --------------------------------------------------------------------------------------------


def _lengths_list(src_lengths) -> list[int]:
    return [int(n) for n in (src_lengths.tolist() if isinstance(src_lengths, torch.Tensor) else src_lengths)]


def _ref_masks(tgt_len, src_lengths):
    lengths = _lengths_list(src_lengths)
    self_mask = causal_mask(tgt_len)  # (L, L)
    cross_mask = padding_mask(lengths)[:, None, :].expand(len(lengths), tgt_len, max(lengths))  # (B, 1, S) -> (B, L, S)
    return self_mask, cross_mask


def _masks_variant(*, self_kind="causal", cross_kind="padding"):
    def fn(tgt_len, src_lengths):
        lengths = _lengths_list(src_lengths)
        B, L, S = len(lengths), tgt_len, max(lengths)
        ones = torch.ones(L, L, dtype=torch.bool)
        self_mask = {"causal": ones.tril(), "strict": ones.tril(-1), "peek": ones.tril(1), "inverted": ones.triu(1)}[self_kind]
        pad = padding_mask(lengths)[:, None, :].expand(B, L, S)  # (B, L, S)
        if cross_kind == "causal":
            cross = pad & torch.ones(L, S, dtype=torch.bool).tril()  # (B, L, S)
        elif cross_kind == "inverted":
            cross = ~pad
        elif cross_kind == "b1s":
            cross = padding_mask(lengths)[:, None, :]  # (B, 1, S)
        else:
            cross = pad
        return self_mask, cross

    return fn


def _compare_masks(got: Any, expected: tuple) -> str | None:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"returned {type(got).__name__}, expected a pair (self_mask, cross_mask)"
    for name, g, e in zip(("self_mask", "cross_mask"), got, expected):
        if not isinstance(g, torch.Tensor):
            return f"{name} is a {type(g).__name__}, expected a torch.Tensor"
        if g.dtype != torch.bool:
            return f"{name} has dtype {g.dtype}, expected torch.bool (True = may attend)"
        if tuple(g.shape) != tuple(e.shape):
            return f"{name} has shape {tuple(g.shape)}, expected {tuple(e.shape)}"
        if not torch.equal(g.cpu(), e.cpu()):
            wrong = (g.cpu() != e.cpu()).nonzero()[0].tolist()
            return f"{name} is wrong, e.g. at index {tuple(wrong)}: {bool(g.cpu()[tuple(wrong)])}, expected {bool(e[tuple(wrong)])}"
    return None


def check_encoder_decoder_masks(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``encoder_decoder_masks(tgt_len, src_lengths)`` -> (self_mask (L, L), cross_mask (B, L, S)).

    ``self_mask`` is the decoder's causal mask; ``cross_mask[b, i, j]`` is True when source token j
    of sequence b is real (S = max(src_lengths)), for every target position i. Both are torch.bool,
    True = may attend.

    Taught in: notebooks/06_cross_attention.ipynb.
    """
    g = _gen(seed)
    random_lengths = (torch.randint(1, 8, (4,), generator=g)).tolist()
    random_lengths[0] = 7  # S = 7
    ex = Exercise(
        "encoder_decoder_masks",
        _ref_masks,
        [
            Property("one source sentence, no padding (L=3, S=4)", [Case((3, [4]))]),
            Property("a padded batch: cross_mask is True exactly on real source tokens, for every target position",
                     [Case((4, [5, 2, 3])), Case((5, random_lengths))]),
            Property("src_lengths as a 1-D tensor", [Case((4, torch.tensor([3, 6])))]),
            Property("more target positions than source tokens (L > S), and fewer (L < S)",
                     [Case((6, [2, 1])), Case((2, [3, 1]))]),
        ],
        [
            Mistake("cross_attention_made_causal", "Your cross-attention mask is causal: target position i may see "
                    "*every* real source token, also those after position i (the whole source sentence is known before "
                    "decoding starts). Only the decoder's self-attention is causal; cross-attention masks padding only.",
                    _masks_variant(cross_kind="causal")),
            Mistake("causal_off_by_one", "Your causal mask is off by one: position i may attend to positions 0..i, "
                    "itself included and nothing after it (torch.ones(L, L, dtype=torch.bool).tril(), diagonal=0).",
                    _masks_variant(self_kind="strict")),
            Mistake("causal_off_by_one", "Your causal mask is off by one: position i may attend to positions 0..i, "
                    "itself included and nothing after it (torch.ones(L, L, dtype=torch.bool).tril(), diagonal=0).",
                    _masks_variant(self_kind="peek")),
            Mistake("mask_inverted", "Your masks mean True = blocked (torch.nn.MultiheadAttention's convention); in "
                    "course_lib and F.scaled_dot_product_attention True means *may attend*.",
                    _masks_variant(self_kind="inverted", cross_kind="inverted")),
            Mistake("mask_inverted", "Your masks mean True = blocked (torch.nn.MultiheadAttention's convention); in "
                    "course_lib and F.scaled_dot_product_attention True means *may attend*.",
                    _masks_variant(self_kind="inverted")),
            Mistake("mask_inverted", "Your masks mean True = blocked (torch.nn.MultiheadAttention's convention); in "
                    "course_lib and F.scaled_dot_product_attention True means *may attend*.",
                    _masks_variant(cross_kind="inverted")),
            Mistake("cross_mask_not_expanded", "Your cross_mask is (B, 1, S); that broadcasts, but the exercise asks for "
                    "the full (B, L, S): one row per target position (use .expand(B, L, S)).",
                    _masks_variant(cross_kind="b1s")),
        ],
        compare=_compare_masks,
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Exercise 3: alignment_accuracy(weights, alignment).
# --------------------------------------------------------------------------------------------


def _ref_alignment_accuracy(weights, alignment):
    hits = weights.argmax(dim=-1) == alignment  # (L,) bool: the most-attended source token is the right one
    return hits.to(weights.dtype).mean()  # 0-d


def check_alignment_accuracy(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``alignment_accuracy(weights, alignment)``: weights (L, S), alignment (L,) long -> 0-d float.

    The result is the fraction of target positions i whose largest weight falls on the right
    source token, ``weights[i].argmax() == alignment[i]``.

    Taught in: notebooks/06_cross_attention.ipynb.
    """
    g = _gen(seed)

    def rows(L, S, hits, dtype=torch.float32):
        w = _softmax(_randn(g, L, S, scale=2.0, dtype=torch.float64)).to(dtype)  # (L, S), rows sum to 1
        best = w.argmax(dim=-1)  # (L,)
        wrong = (best + 1 + torch.randint(0, S - 1, (L,), generator=g)) % S  # (L,) never the argmax
        keep = torch.arange(L) < hits  # the first `hits` rows are right
        order = torch.randperm(L, generator=g)
        return Case((w, torch.where(keep[order], best, wrong)))

    hand_w = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.2, 0.2, 0.5, 0.1], [0.1, 0.6, 0.2, 0.1]])
    ex = Exercise(
        "alignment_accuracy",
        _ref_alignment_accuracy,
        [
            Property("a hand-made example: 2 of 3 rows peak on the right source token -> 2/3",
                     [Case((hand_w, torch.tensor([0, 2, 3])))]),
            Property("L != S, random weights, some rows right and some wrong",
                     [rows(5, 7, 3), rows(6, 4, 2), rows(8, 3, 5)]),
            Property("L == S (a reordering of the source)", [rows(5, 5, 2), rows(6, 6, 4)]),
            Property("all right gives 1, none right gives 0", [rows(4, 6, 4), rows(4, 6, 0)]),
            Property("float64 in, float64 out", [rows(5, 3, 2, dtype=torch.float64)]),
        ],
        [
            Mistake("argmax_wrong_axis", "You took the argmax over the target positions (dim=0); for each target "
                    "position (a row), find the source token (column) with the largest weight: weights.argmax(dim=-1).",
                    lambda w, a: (w.argmax(dim=0) == a).to(w.dtype).mean()),
            Mistake("mean_weight_instead_of_accuracy", "You averaged the weight on the right source token; the "
                    "exercise asks for an accuracy: the fraction of rows whose *largest* weight is on the right token "
                    "(argmax, compare, then mean).",
                    lambda w, a: w[torch.arange(w.shape[0]), a].mean()),
            Mistake("count_instead_of_fraction", "You returned the number of right rows; divide by the number of "
                    "target positions L to get a fraction (use .mean() on the float hits).",
                    lambda w, a: (w.argmax(dim=-1) == a).to(w.dtype).sum()),
        ],
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Predict, then run: the shape of the cross-attention weights.
# --------------------------------------------------------------------------------------------

_B, _L, _S, _E = 2, 5, 7, 8


def check_predict_cross_weights_shape(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``predict_cross_weights_shape()``: the shape of the cross-attention weights of a batch of B = 2,
    a decoder of L = 5 tokens (the queries) and an encoder of S = 7 tokens (keys and values), one head,
    predicted as a tuple.

    Passes on the shape course_lib's attention returns, (2, 5, 7); names the common wrong shapes; explains.
    Taught in: notebooks/06_cross_attention.ipynb.
    """
    g = _gen(0)
    query, memory = _randn(g, _B, _L, _E), _randn(g, _B, _S, _E)
    _, weights = scaled_dot_product_attention(query, memory, memory, return_weights=True)  # (B, L, S)
    answer = tuple(weights.shape)
    B, L, S = answer
    return prediction(
        "predict_cross_weights_shape", answer, f"the shape of the weights: B = {B}, L = {L} decoder, S = {S} encoder",
        [("transposed", f"You predicted (B, S, L) = {(B, S, L)}: one row per *encoder* token. The rows are the "
          f"queries, which come from the decoder: one row per decoder token, one column per encoder token.",
          (B, S, L)),
         ("decoder_self_attention", f"You predicted (B, L, L) = {(B, L, L)}, the shape of the decoder's *self*-"
          f"attention. In cross-attention the keys come from the encoder: S = {S} columns.", (B, L, L)),
         ("encoder_self_attention", f"You predicted (B, S, S) = {(B, S, S)}, the shape of the encoder's self-"
          f"attention. In cross-attention the queries come from the decoder: L = {L} rows.", (B, S, S))],
        fn, device,
        why=f"the weights are softmax(Q K^T / sqrt(E)): Q (B, L, E) from the decoder times K^T (B, E, S) from the "
            f"encoder gives (B, L, S) = {answer}: each decoder token spreads its weight over the encoder tokens.",
        compare=exact_compare("shape (a tuple)"))


# --------------------------------------------------------------------------------------------
# Investigation: where does a translation change the word order?
# --------------------------------------------------------------------------------------------


def _reordered(weights: torch.Tensor, dim: int = -1, shift: int = 0) -> list[int]:
    """The target positions t >= 1 whose most-read source position is before that of target t - 1."""
    read = weights.double().argmax(dim=dim).tolist()  # (L,): the source each target reads most
    return [t - shift for t in range(1, len(read)) if read[t] < read[t - 1]]


def _alignment_weights(g: torch.Generator, order: list[int], S: int, dtype=torch.float32) -> torch.Tensor:
    """Cross-attention weights (L, S) whose target t reads source ``order[t]`` most."""
    scores = torch.randn(len(order), S, generator=g, dtype=torch.float64)  # (L, S)
    scores[torch.arange(len(order)), torch.tensor(order)] += 4.0
    return _softmax(scores).to(dtype)


def check_find_reordered_words(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``find_reordered_words(weights)`` -> the target positions where the translation changes the order:
    the t >= 1 whose most-attended source position comes *before* the one of target t - 1.

    weights: float tensor (L, S), a translator's cross-attention weights (row t: target token t's weights
    over the S source tokens). Returns a list of ints in increasing order ([] for a word-for-word order).
    Taught in: notebooks/06_cross_attention.ipynb.
    """
    g = _gen(seed)
    ex = Exercise(
        "find_reordered_words",
        _reordered,
        [
            Property("word for word: nothing reordered", [Case((_alignment_weights(g, [0, 1, 2, 3, 4], 5),))]),
            Property("one adjective after its noun (as in French)",
                     [Case((_alignment_weights(g, [0, 2, 1, 3, 4], 5),)),
                      Case((_alignment_weights(g, [0, 1, 3, 2, 4, 5], 6),))]),
            Property("a longer source than target (L != S)",
                     [Case((_alignment_weights(g, [0, 1, 4, 2, 5, 6], 8, torch.float64),))]),
        ],
        [
            Mistake("argmax_over_targets", "You took the argmax over the *targets* (dim 0): for each source word, the "
                    "target that reads it. Each row t is target t's weights over the source: argmax(dim=-1).",
                    lambda w: _reordered(w, dim=0)),
            Mistake("off_by_one", "You returned t - 1, the target *before* the reordered one. Return t, the target "
                    "whose source comes before its predecessor's.", lambda w: _reordered(w, shift=1)),
        ],
        compare=exact_compare("list of target positions"),
    )
    return run_question(ex, fn, device, on_pass_only=True,
                        why="cross-attention lets each target token read any source token, in any order: the "
                            "alignment (each row's argmax) shows where the translation swaps words, which a "
                            "left-to-right copy could not.")
