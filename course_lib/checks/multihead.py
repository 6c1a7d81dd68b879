"""Checks for chapter 05, multi-head attention: splitting heads, merging heads, the whole layer.

A `.view` after a transpose (merge_heads) crashes; core diagnoses that crash as "view_after_transpose".

Taught in: solutions/ and exercises/ 05_multi_head.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..attention import scaled_dot_product_attention
from ..multihead import MultiHeadAttention
from ..multihead import merge_heads as _merge_heads, split_heads as _split_heads
from .core import Case, CheckReport, Exercise, Mistake, Property, _gen, _randn, run_check
from .questions import exact_compare, number_compare, prediction, run_question

__all__ = ["check_split_heads", "check_merge_heads", "check_multi_head_attention", "check_predict_mha_parameters",
           "check_find_previous_token_head"]


# --------------------------------------------------------------------------------------------
# Exercise 1: split_heads.
# --------------------------------------------------------------------------------------------


def _split_without_transpose(x, num_heads):
    B, T, D = x.shape
    return x.reshape(B, num_heads, T, D // num_heads)  # (B, T, D) -> (B, H, T, Dh): whole tokens per head


def _split_wrong_head_order(x, num_heads):
    B, T, D = x.shape
    return x.reshape(B, T, D // num_heads, num_heads).permute(0, 3, 1, 2)  # head h gets features h, h+H, ...


def _split_transpose_forgotten(x, num_heads):
    B, T, D = x.shape
    return x.reshape(B, T, num_heads, D // num_heads)  # (B, T, H, Dh): the head dim is not moved forward


def check_split_heads(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``split_heads(x, num_heads)``: (B, T, D) -> (B, H, T, D / H), head h = features h*Dh..(h+1)*Dh-1.

    Taught in: notebooks/05_multi_head.ipynb.
    """
    g = _gen(seed)
    ex = Exercise(
        "split_heads",
        _split_heads,
        [
            Property("a hand-made example: 3 tokens [0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], 2 heads",
                     [Case((torch.arange(12.0).view(1, 3, 4), 2), label="x = torch.arange(12.).view(1, 3, 4)")]),
            Property("random shapes (B, T, D) -> (B, H, T, D/H)",
                     [Case((_randn(g, 2, 3, 6), 2)), Case((_randn(g, 1, 5, 8), 4)), Case((_randn(g, 3, 4, 12), 3))]),
            Property("one head (H = 1) and one feature per head (H = D)",
                     [Case((_randn(g, 2, 3, 4), 1)), Case((_randn(g, 2, 3, 4), 4))]),
            Property("float64 in, float64 out", [Case((_randn(g, 2, 4, 6, dtype=torch.float64), 3))]),
        ],
        [
            Mistake("split_without_transpose",
                    "Heads split with view but no transpose mix tokens: x.view(B, H, T, D // H) cuts the sequence of "
                    "numbers in memory into H blocks of whole tokens, so a 'head' holds several tokens' features. "
                    "Split the last dim first, x.view(B, T, H, D // H), then swap the token and head dims: .transpose(1, 2).",
                    _split_without_transpose),
            Mistake("wrong_head_order",
                    "Your heads take every H-th feature (head 0 gets features 0, H, 2H, ...). Each head owns a "
                    "contiguous block of D // H features: view(B, T, H, D // H), with H before D // H, then transpose(1, 2).",
                    _split_wrong_head_order),
            Mistake("transpose_forgotten",
                    "You returned (B, T, H, D/H): the head dim must come before the tokens, (B, H, T, D/H), so that "
                    "attention runs over the tokens of each head. Add .transpose(1, 2).",
                    _split_transpose_forgotten),
        ],
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Exercise 2: merge_heads.
# --------------------------------------------------------------------------------------------


def _merge_without_transpose(x):
    B, H, T, Dh = x.shape
    return x.reshape(B, T, H * Dh)  # glues different tokens of one head together


def _merge_interleaved(x):
    B, H, T, Dh = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, T, H * Dh)  # (B, T, Dh, H): features of the heads interleaved


def _merge_summed(x):
    return x.sum(dim=1)  # (B, T, Dh)


def check_merge_heads(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``merge_heads(x)``: (B, H, T, Dh) -> (B, T, H * Dh), token t = Concat(head_1[t], ..., head_H[t]).

    Taught in: notebooks/05_multi_head.ipynb.
    """
    g = _gen(seed)
    ex = Exercise(
        "merge_heads",
        _merge_heads,
        [
            Property("a hand-made example: 2 heads, 2 tokens, 2 features per head",
                     [Case((torch.arange(8.0).view(1, 2, 2, 2),))]),
            Property("random shapes (B, H, T, Dh) -> (B, T, H*Dh)",
                     [Case((_randn(g, 2, 2, 3, 4),)), Case((_randn(g, 1, 4, 5, 2),)), Case((_randn(g, 3, 3, 2, 5),))]),
            Property("undoes split_heads: merge_heads(split_heads(x, H)) == x",
                     [Case((_split_heads(_randn(g, 2, 5, 6), 3),)), Case((_split_heads(_randn(g, 1, 3, 8), 2),))]),
            Property("float64 in, float64 out", [Case((_randn(g, 2, 2, 3, 3, dtype=torch.float64),))]),
        ],
        [
            Mistake("merge_without_transpose",
                    "You merged without transposing back: reshaping (B, H, T, Dh) straight to (B, T, D) glues together "
                    "different tokens of the same head. Move the heads back after the tokens first: "
                    "x.transpose(1, 2) -> (B, T, H, Dh), then reshape to (B, T, H * Dh).",
                    _merge_without_transpose),
            Mistake("heads_interleaved",
                    "Your merged features interleave the heads (feature 0 of every head, then feature 1, ...). "
                    "Concatenate whole heads: transpose(1, 2) to (B, T, H, Dh), then reshape, so head 0's Dh features come first.",
                    _merge_interleaved),
            Mistake("heads_summed",
                    "You summed (or averaged) the heads; multi-head attention *concatenates* them, keeping every head's "
                    "features: the result has H * Dh features per token.",
                    _merge_summed),
        ],
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Exercise 3: the whole multi-head self-attention (no bias, weights used as x @ W).
# --------------------------------------------------------------------------------------------


def _naive_attention(q, k, v, scale):
    e = torch.exp(q @ k.transpose(-2, -1) * scale)  # (..., T, T): inf for scores above 88.7 in float32
    return e / e.sum(dim=-1, keepdim=True) @ v  # (..., T, T) @ (..., T, Dh) -> (..., T, Dh)


def _mha_variant(*, split="right", merge="right", scale="head_dim", out_proj=True, transpose_weights=False,
                 stable=True):
    def fn(x, W_query, W_key, W_value, W_out, num_heads):
        B, T, D = x.shape
        Dh = D // num_heads

        def proj(W):
            return x @ (W.T if transpose_weights else W)  # (B, T, D) @ (D, D) -> (B, T, D)

        def split_(t):
            if split == "no_transpose":
                return t.reshape(B, num_heads, T, Dh)
            return _split_heads(t, num_heads)

        q, k, v = split_(proj(W_query)), split_(proj(W_key)), split_(proj(W_value))  # (B, H, T, Dh) each
        s = {"head_dim": 1.0 / math.sqrt(Dh), "model_dim": 1.0 / math.sqrt(D), "none": 1.0}[scale]
        heads = scaled_dot_product_attention(q, k, v, scale=s) if stable else _naive_attention(q, k, v, s)  # (B, H, T, Dh)
        if split == "no_transpose" or merge == "no_transpose":
            merged = heads.reshape(B, T, D)
        else:
            merged = _merge_heads(heads)  # (B, T, D)
        if not out_proj:
            return merged
        W = W_out.T if transpose_weights else W_out
        return merged @ W  # (B, T, D) @ (D, D) -> (B, T, D)
    return fn


def _mha_case(g, B, T, D, H, dtype=torch.float32, label=""):
    x = _randn(g, B, T, D, dtype=dtype)
    ws = [_randn(g, D, D, dtype=dtype, scale=1.5 / math.sqrt(D)) for _ in range(4)]
    return Case((x, *ws, H), label=label)


def _mha_large_case(g, B, T, D, H, score: float) -> Case:
    """Float32 inputs whose head-0 scores are all about ``score`` (+- 1): a plain exp overflows above 88.7.

    W_query = W_key = identity; every token shares a large feature 0 (in head 0), a^2 / sqrt(Dh) = score.
    """
    a = math.sqrt(score * math.sqrt(D // H))
    x = _randn(g, B, T, D, scale=0.5)
    x[..., 0] = a
    eye = torch.eye(D)
    return Case((x, eye.clone(), eye.clone(), _randn(g, D, D, scale=0.3), _randn(g, D, D, scale=0.3), H),
                label=f"scores about {score:g}")


def check_multi_head_attention(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``multi_head_attention(x, W_query, W_key, W_value, W_out, num_heads)``: self-attention, (B, T, D) -> (B, T, D).

    The four weights are (D, D) tensors used as ``x @ W`` (no bias).

    Taught in: notebooks/05_multi_head.ipynb.
    """
    g = _gen(seed)
    ex = Exercise(
        "multi_head_attention",
        _mha_variant(),
        [
            Property("one sentence, D = 8, H = 2", [_mha_case(g, 1, 5, 8, 2)]),
            Property("batches and several head counts (H = 2, 3, 4)",
                     [_mha_case(g, 2, 4, 8, 4), _mha_case(g, 3, 3, 12, 3), _mha_case(g, 2, 6, 12, 2)]),
            Property("H = 1 is single-head attention with an output projection", [_mha_case(g, 2, 4, 6, 1)]),
            Property("float64 in, float64 out", [_mha_case(g, 2, 3, 8, 2, dtype=torch.float64)]),
            Property("large scores do not overflow (about 120 in float32, where exp overflows past 88)",
                     [_mha_large_case(g, 2, 4, 8, 2, 120.0)]),
        ],
        [
            Mistake("split_without_transpose",
                    "Heads split with view but no transpose mix tokens: x.view(B, H, T, D // H) gives each head a block "
                    "of whole tokens. Split the features: view(B, T, H, D // H).transpose(1, 2) (and transpose back "
                    "before merging).", _mha_variant(split="no_transpose")),
            Mistake("merge_without_transpose",
                    "You split the heads correctly but merged without transposing back: reshaping (B, H, T, Dh) straight "
                    "to (B, T, D) glues different tokens together. transpose(1, 2) first, then reshape.",
                    _mha_variant(merge="no_transpose")),
            Mistake("scale_by_model_dim",
                    "You scaled the scores by 1/sqrt(D), the model size; each head compares head_dim = D / H "
                    "features, so scale by 1/sqrt(head_dim).", _mha_variant(scale="model_dim")),
            Mistake("scale_forgotten", "You forgot to scale the scores by 1/sqrt(head_dim).", _mha_variant(scale="none")),
            Mistake("output_projection_forgotten",
                    "You forgot the output projection: after merging the heads, multiply by W_out, which mixes "
                    "the heads' results.", _mha_variant(out_proj=False)),
            Mistake("unstable_softmax", "Your softmax overflows on large scores: exp(89) is inf in float32 (inf / inf = "
                    "NaN). Subtract each row's max before exp, or use course_lib's softmax.", _mha_variant(stable=False)),
            Mistake("weights_transposed",
                    "You used the weights transposed (x @ W.T, as nn.Linear / F.linear does); in this exercise the "
                    "weights are used as x @ W.", _mha_variant(transpose_weights=True)),
        ],
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Predict, then run: the number of parameters of multi-head attention.
# --------------------------------------------------------------------------------------------

_E, _H = 512, 8


def check_predict_mha_parameters(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``predict_mha_parameters()``: the number of parameters of MultiHeadAttention(embed_dim=512,
    num_heads=8) with biases, predicted.

    Passes on the count of course_lib's module (4 * (512 * 512 + 512) = 1,050,624, the same as
    torch.nn.MultiheadAttention); names the common wrong counts; explains the answer.
    Taught in: notebooks/05_multi_head.ipynb.
    """
    E, H = _E, _H
    answer = sum(p.numel() for p in MultiHeadAttention(E, H).parameters())
    return prediction(
        "predict_mha_parameters", answer, f"parameters of multi-head attention, E = {E}, H = {H}, with biases",
        [("no_biases", f"You counted the four E x E weight matrices ({4 * E * E:,}) but not their biases: each "
          f"projection has E = {E} more.", 4 * E * E),
         ("no_output_projection", f"You counted W_query, W_key and W_value ({3 * (E * E + E):,}) but not the "
          f"output projection W_out, which mixes the concatenated heads: E x E + E more.", 3 * (E * E + E)),
         ("full_width_per_head", "You gave every head its own E x E projections. The heads *split* the width: "
          f"each head's query, key and value are E / H = {E // H} wide, so all H heads together are one E x E "
          "matrix per projection.", H * 3 * (E * E + E) + E * E + E),
         ("parameters_times_heads", f"You multiplied by the number of heads: the H = {H} heads share the same "
          "four E x E matrices (each reads its own E / H columns), so the count does not depend on H.",
          H * (4 * E * E + 4 * E))],
        fn, device,
        why=f"four projections (query, key, value, output), each an E x E matrix and E biases: 4 (E^2 + E) = "
            f"{answer:,}. The H heads split the E columns between them, so H does not change the count.",
        compare=number_compare(answer, tolerance=0.0))


# --------------------------------------------------------------------------------------------
# Investigation: which head attends to the previous token?
# --------------------------------------------------------------------------------------------

_PATTERNS = ("previous", "self", "next", "first", "spread")


def _head_weights(g: torch.Generator, L: int, order: list[int], dtype=torch.float32) -> torch.Tensor:
    """Attention weights (H, L, L), one head per pattern of _PATTERNS (in ``order``), each row summing to 1."""
    peak = {"previous": 0.75, "self": 0.8, "next": 0.8, "first": 0.97, "spread": 0.0}
    heads = []
    for h in order:
        kind = _PATTERNS[h]
        i = torch.arange(L)
        target = {"previous": (i - 1).clamp(min=0), "self": i, "next": (i + 1).clamp(max=L - 1),
                  "first": torch.zeros_like(i), "spread": i}[kind]
        noise = torch.softmax(torch.randn(L, L, generator=g, dtype=torch.float64), dim=-1)  # (L, L)
        onehot = torch.nn.functional.one_hot(target, L).double()  # (L, L)
        heads.append(peak[kind] * onehot + (1 - peak[kind]) * noise)
    return torch.stack(heads).to(dtype)  # (H, L, L)


def _head_on(weights: torch.Tensor, offset: int) -> int:
    """The head with the largest mean weight on key i + offset, over the queries that have one."""
    return int(weights.double().diagonal(offset=offset, dim1=-2, dim2=-1).mean(-1).argmax())  # (H, L - |o|) -> (H,)


def check_find_previous_token_head(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``find_previous_token_head(weights)`` -> the index of the head whose queries attend most to the
    token just before them.

    weights: float tensor (H, L, L), one sentence's attention weights per head (rows sum to 1). Returns an
    int: the head with the largest mean weight w[h, i, i - 1] over the queries i = 1 .. L - 1.
    Taught in: notebooks/05_multi_head.ipynb.
    """
    g = _gen(seed)

    def case(L, dtype=torch.float32):
        order = torch.randperm(len(_PATTERNS), generator=g).tolist()
        return Case((_head_weights(g, L, order, dtype),))

    ex = Exercise(
        "find_previous_token_head",
        lambda w: _head_on(w, -1),
        [
            Property("5 heads over 6 tokens", [case(6), case(6)]),
            Property("5 heads over 10 tokens", [case(10)]),
            Property("float64 weights", [case(8, torch.float64)]),
        ],
        [
            Mistake("next_token", "You found the head that attends to the *next* token: w[h, i, i + 1], "
                    "diagonal(offset=1), is query i reading key i + 1. The previous token is key i - 1: "
                    "diagonal(offset=-1).", lambda w: _head_on(w, 1)),
            Mistake("itself", "You found the head that attends to the token itself (the main diagonal). The "
                    "previous token is one below it: diagonal(offset=-1).", lambda w: _head_on(w, 0)),
            Mistake("largest_weight", "You picked the head with the single largest weight: that head is the sharpest, "
                    "not the one that looks back. Average each head's weight on key i - 1 over the queries.",
                    lambda w: int(w.double().flatten(1).amax(-1).argmax())),
        ],
        compare=exact_compare("head index"),
    )
    return run_question(ex, fn, device, on_pass_only=True,
                        why="heads specialise: each learns its own pattern (previous token, itself, the first "
                            "token, ...). Averaging one head's weights along one diagonal measures one pattern.")
