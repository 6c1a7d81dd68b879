"""Checks for chapter 10, a real pretrained transformer: one layer's self-attention from the loaded
weights, a head's link score (finding the coreference head), mean pooling with a padding mask.

The inputs are random (seeded, on the CPU): the checks do not need the model package. The
solutions notebook then applies each function to the real model and compares with it.

Taught in: solutions/ and exercises/ 10_pretrained_attention.
"""

from __future__ import annotations

import copy
import functools
import math
from typing import Callable

import torch

from ..attention import scaled_dot_product_attention
from ..multihead import merge_heads, split_heads
import inspect

from ..pretrained import BertEncoder
from ..pretrained import mean_pool as _mean_pool
from .core import Case, CheckReport, Exercise, Mistake, Property, _gen, _randn, run_check
from .questions import exact_compare, number_compare, prediction, run_question

__all__ = ["check_bert_self_attention", "check_link_scores", "check_mean_pool", "check_predict_num_attention_maps",
           "check_find_most_important_head"]


def _random_padding(g: torch.Generator, B: int, T: int, full_first: bool = True) -> torch.Tensor:
    """A right-padded bool mask (B, T), True = real token; the first sentence is full length."""
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    if full_first:
        lengths[0] = T
    return torch.arange(T)[None, :] < lengths[:, None]  # (1, T) < (B, 1) -> (B, T)


# --------------------------------------------------------------------------------------------
# Exercise 1: bert_self_attention, from nn.Linear-shaped weights (out, in) with biases.
# --------------------------------------------------------------------------------------------


def _self_attention_variant(*, transpose=True, bias=True, scale="head_dim", mask="right", split="right"):
    def fn(x, key_padding_mask, W_query, b_query, W_key, b_key, W_value, b_value, W_out, b_out, num_heads):
        B, T, D = x.shape
        Dh = D // num_heads

        def linear(inp, W, b):
            y = inp @ (W.T if transpose else W)  # (B, T, D) @ (D, D) -> (B, T, D)
            return y + b if bias else y

        def to_heads(t):
            if split == "no_transpose":
                return t.reshape(B, num_heads, T, Dh)  # whole tokens per head: wrong
            return split_heads(t, num_heads)  # (B, T, D) -> (B, H, T, Dh)

        q, k, v = (to_heads(linear(x, W, b)) for W, b in ((W_query, b_query), (W_key, b_key), (W_value, b_value)))
        s = {"head_dim": 1.0 / math.sqrt(Dh), "model_dim": 1.0 / math.sqrt(D), "none": 1.0}[scale]
        keys = key_padding_mask.bool()
        if mask == "right":
            heads = scaled_dot_product_attention(q, k, v, attn_mask=keys[:, None, None, :], scale=s)  # (B, H, T, Dh)
        elif mask == "none":
            heads = scaled_dot_product_attention(q, k, v, scale=s)
        else:  # "inverted_nan": masked_fill(mask, -inf) + torch.softmax, NaN where every key is masked
            scores = (q @ k.transpose(-2, -1)) * s  # (B, H, T, Dh) @ (B, H, Dh, T) -> (B, H, T, T)
            scores = scores.masked_fill(keys[:, None, None, :], float("-inf"))
            heads = torch.softmax(scores, dim=-1) @ v  # (B, H, T, T) @ (B, H, T, Dh) -> (B, H, T, Dh)
        if split == "no_transpose":
            merged = heads.reshape(B, T, D)
        else:
            merged = merge_heads(heads)  # (B, H, T, Dh) -> (B, T, D)
        return linear(merged, W_out, b_out)
    return fn


def _inverted_mask_zero_rows(*args):
    x, key_padding_mask, *rest = args
    return _self_attention_variant()(x, ~key_padding_mask.bool(), *rest)


def _layer_case(g, B, T, D, H, dtype=torch.float32, padded=True, label=""):
    x = _randn(g, B, T, D, dtype=dtype)
    mask = _random_padding(g, B, T) if padded else torch.ones(B, T, dtype=torch.bool)
    weights = []
    for _ in range(4):
        weights += [_randn(g, D, D, dtype=dtype, scale=1.5 / math.sqrt(D)), _randn(g, D, dtype=dtype, scale=0.5)]
    return Case((x, mask, *weights, H), label=label)


def check_bert_self_attention(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``bert_self_attention(x, key_padding_mask, W_query, b_query, W_key, b_key, W_value, b_value,
    W_out, b_out, num_heads)``: the self-attention of one BERT layer, (B, T, D) -> (B, T, D).

    The weights have nn.Linear's layout (out_features, in_features) = (D, D) and are applied as
    ``x @ W.T + b``; ``key_padding_mask`` (B, T) is True for real tokens. Every position gets an
    output (padded queries attend to the real tokens); padding keys get no weight.

    Taught in: notebooks/10_pretrained_attention.ipynb.
    """
    g = _gen(seed)
    ex = Exercise(
        "bert_self_attention",
        _self_attention_variant(),
        [
            Property("one sentence without padding, D = 8, H = 2", [_layer_case(g, 1, 5, 8, 2, padded=False)]),
            Property("a padded batch: padding keys get no weight",
                     [_layer_case(g, 3, 6, 8, 2), _layer_case(g, 4, 5, 12, 3)]),
            Property("one head (H = 1) and many heads (H = D / 2)",
                     [_layer_case(g, 2, 4, 6, 1), _layer_case(g, 2, 4, 8, 4)]),
            Property("the model's sizes: D = 384, H = 12", [_layer_case(g, 2, 6, 384, 12)]),
            Property("float64 in, float64 out", [_layer_case(g, 2, 5, 8, 2, dtype=torch.float64)]),
        ],
        [
            Mistake("weights_not_transposed",
                    "nn.Linear stores its weight as (out_features, in_features) and computes x @ W.T + b; you used "
                    "x @ W. Transpose the loaded weights: x @ W_query.T + b_query (the same for key, value, out).",
                    _self_attention_variant(transpose=False)),
            Mistake("bias_forgotten",
                    "You left out the biases: every projection of the pretrained layer has one, x @ W.T + b "
                    "(the output projection too).", _self_attention_variant(bias=False)),
            Mistake("scale_by_model_dim",
                    "You scaled the scores by 1/sqrt(D); each head compares head_dim = D / num_heads features, "
                    "so scale by 1/sqrt(head_dim) (1/sqrt(32) in MiniLM).", _self_attention_variant(scale="model_dim")),
            Mistake("scale_forgotten", "You forgot to scale the scores by 1/sqrt(head_dim).",
                    _self_attention_variant(scale="none")),
            Mistake("padding_ignored",
                    "Padding keys still get weight: apply key_padding_mask to the *keys* of every query and head, "
                    "as a (B, 1, 1, T) mask (True = may attend) before the softmax.",
                    _self_attention_variant(mask="none")),
            Mistake("mask_inverted",
                    "Your padding mask is inverted: key_padding_mask is True for *real* tokens (course_lib's "
                    "meaning, True = may attend), so block the keys where it is False: masked_fill(~mask, -inf).",
                    _inverted_mask_zero_rows),
            Mistake("mask_inverted",
                    "Your padding mask is inverted: key_padding_mask is True for *real* tokens (course_lib's "
                    "meaning, True = may attend), so block the keys where it is False: masked_fill(~mask, -inf).",
                    _self_attention_variant(mask="inverted_nan")),
            Mistake("split_without_transpose",
                    "Heads split with reshape(B, H, T, Dh) mix tokens: split the features, view(B, T, H, Dh), "
                    "then .transpose(1, 2) (and transpose back before merging).",
                    _self_attention_variant(split="no_transpose")),
        ],
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Exercise 2: link_scores, how much more one query attends to a key than the other queries do.
# --------------------------------------------------------------------------------------------


def _others(T: int, query: int) -> list[int]:
    return [q for q in range(T) if q != query]


def _ref_link_scores(weights, query, key):
    T = weights.shape[-2]
    return weights[..., query, key] - weights[..., _others(T, query), key].mean(-1)


def _link_transposed(weights, query, key):
    if query == key:  # then it equals the row-baseline mistake: name neither on this input
        return _ref_link_scores(weights, query, key)
    T = weights.shape[-1]
    return weights[..., key, query] - weights[..., key, _others(T, query)].mean(-1)


def _link_baseline_with_query(weights, query, key):
    return weights[..., query, key] - weights[..., :, key].mean(-1)


def _link_no_baseline(weights, query, key):
    return weights[..., query, key]


def _link_baseline_over_keys(weights, query, key):
    if query == key:  # then it equals the transposed reading: name neither on this input
        return _ref_link_scores(weights, query, key)
    T = weights.shape[-1]
    return weights[..., query, key] - weights[..., query, _others(T, key)].mean(-1)


def _attention_maps(g, *shape, dtype=torch.float32):
    """Random attention weights (..., T, T): each row a softmax, so it sums to 1."""
    return torch.softmax(_randn(g, *shape, dtype=torch.float64, scale=2.0), dim=-1).to(dtype)


def check_link_scores(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``link_scores(weights, query, key)``: weights (..., T, T) -> (...), how much more
    ``query`` attends to ``key`` than the other queries do on average:
    ``weights[..., query, key] - mean over q != query of weights[..., q, key]``.

    Taught in: notebooks/10_pretrained_attention.ipynb (section 4, "specificity").
    """
    g = _gen(seed)
    ex = Exercise(
        "link_scores",
        _ref_link_scores,
        [
            Property("a 3-token map of one head",
                     [Case((torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]]), 2, 0),
                           label="query 2, key 0")]),
            Property("every layer and head at once: (N, H, T, T) -> (N, H), and three leading dims",
                     [Case((_attention_maps(g, 6, 12, 13, 13), 8, 2), label="the lesson's sizes: it -> cat"),
                      Case((_attention_maps(g, 2, 3, 5, 5), 1, 4)), Case((_attention_maps(g, 3, 2, 4, 4), 3, 0)),
                      Case((_attention_maps(g, 2, 2, 3, 4, 4), 1, 2))]),
            Property("query and key at the ends, and query == key",
                     [Case((_attention_maps(g, 2, 2, 6, 6), 0, 5)), Case((_attention_maps(g, 2, 2, 6, 6), 5, 0)),
                      Case((_attention_maps(g, 1, 4, 5, 5), 2, 2))]),
            Property("float64 in, float64 out", [Case((_attention_maps(g, 2, 3, 5, 5, dtype=torch.float64), 1, 3))]),
        ],
        [
            Mistake("row_and_column_swapped",
                    "You read the map transposed. weights[..., q, k] is how much query q (a row) attends to key k "
                    "(a column): the link of 'it' to 'cat' is weights[..., it, cat], and the baseline is the column "
                    "of 'cat' in the other rows.", _link_transposed),
            Mistake("baseline_includes_query",
                    "Your baseline averages over *all* queries, the query itself included; average over the other "
                    "queries only (q != query), so that the score compares 'it' with the rest of the sentence.",
                    _link_baseline_with_query),
            Mistake("no_baseline",
                    "You returned the raw weight. Subtract what the other queries give the same key: a head that "
                    "makes every token look at 'cat' is not linking the pronoun in particular.", _link_no_baseline),
            Mistake("baseline_over_keys",
                    "Your baseline averages the query's weights on the other *keys* (its own row); the score compares "
                    "queries: subtract the mean of the key's column over the other queries.", _link_baseline_over_keys),
        ],
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Exercise 3: mean_pool, the masked mean over the real tokens.
# --------------------------------------------------------------------------------------------


def _ref_mean_pool(hidden, attention_mask):
    return _mean_pool(hidden, attention_mask, normalize=False)


def _pool_padding_included(hidden, attention_mask):
    return hidden.mean(dim=1)


def _pool_padding_in_denominator(hidden, attention_mask):
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * m).sum(dim=1) / hidden.shape[1]


def _pool_over_features(hidden, attention_mask):
    m = attention_mask.to(hidden.dtype)  # (B, T)
    return (hidden.mean(dim=-1) * m)  # (B, T): averaged the features of each token


def _pool_normalized(hidden, attention_mask):
    pooled = _ref_mean_pool(hidden, attention_mask)
    return pooled / pooled.norm(dim=-1, keepdim=True)


def _pool_case(g, B, T, D, dtype=torch.float32, int_mask=False, label=""):
    mask = _random_padding(g, B, T)
    if int_mask:
        mask = mask.long()
    return Case((_randn(g, B, T, D, dtype=dtype), mask), label=label)


def check_mean_pool(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``mean_pool(hidden, attention_mask)``: hidden (B, T, D), attention_mask (B, T) (True or
    1 = real token) -> (B, D), the mean of each sentence's vectors over its real tokens only (not
    normalised).

    Taught in: notebooks/10_pretrained_attention.ipynb.
    """
    g = _gen(seed)
    ex = Exercise(
        "mean_pool",
        _ref_mean_pool,
        [
            Property("one sentence without padding: the plain mean over tokens",
                     [Case((_randn(g, 1, 4, 3), torch.ones(1, 4, dtype=torch.bool)))]),
            Property("a padded batch: padding positions are left out",
                     [_pool_case(g, 3, 5, 4), _pool_case(g, 4, 7, 8), _pool_case(g, 2, 6, 384)]),
            Property("a 0/1 integer mask (as Hugging Face tokenizers return)", [_pool_case(g, 3, 6, 5, int_mask=True)]),
            Property("float64 in, float64 out", [_pool_case(g, 3, 5, 4, dtype=torch.float64)]),
        ],
        [
            Mistake("padding_included",
                    "You averaged over all T positions, padding included. Padding positions have vectors too "
                    "(the model computes them), so the embedding of a short sentence would depend on the longest "
                    "sentence of its batch. Multiply by the mask, sum over tokens, and divide by the number of "
                    "real tokens.", _pool_padding_included),
            Mistake("padding_in_denominator",
                    "You summed only the real tokens but divided by T, which counts the padding: divide by the "
                    "number of real tokens of each sentence, mask.sum(dim=1).", _pool_padding_in_denominator),
            Mistake("mean_over_features",
                    "You averaged over the features of each token (dim=-1); average over the tokens (dim=1), "
                    "keeping the D features: the result is (B, D).", _pool_over_features),
            Mistake("normalized",
                    "You also scaled the result to length 1. That is the next step (sentence-transformers' Normalize "
                    "module); mean_pool returns the plain mean.", _pool_normalized),
        ],
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Predict, then run: how many attention maps MiniLM computes per sentence.
# --------------------------------------------------------------------------------------------


def check_predict_num_attention_maps(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``predict_num_attention_maps()``: how many attention maps (one T x T matrix per head per layer)
    all-MiniLM-L6-v2 computes for one sentence, predicted.

    Passes on course_lib's BertEncoder configuration (6 layers x 12 heads = 72); names the common wrong
    counts; explains the answer.
    Taught in: notebooks/10_pretrained_attention.ipynb.
    """
    defaults = inspect.signature(BertEncoder).parameters
    N, H, D = (defaults[name].default for name in ("num_layers", "num_heads", "embed_dim"))
    answer = N * H
    return prediction(
        "predict_num_attention_maps", answer, "attention maps of all-MiniLM-L6-v2 for one sentence",
        [("heads_only", f"You counted the heads of one layer ({H}): each of the {N} layers has its own {H} heads.",
          H),
         ("layers_only", f"You counted the layers ({N}): each layer has {H} heads, each with its own map.", N),
         ("layers_plus_heads", f"You added layers and heads ({N + H}): every layer has all {H} heads, so multiply.",
          N + H),
         ("hidden_size", f"{D} is the hidden size D: the heads split it ({H} heads of {D // H} dimensions), but "
          f"the number of maps is layers x heads.", D)],
        fn, device,
        why=f"{N} layers x {H} heads = {answer} maps, each (T, T), for every sentence: that is why reading "
            f"'what the model attends to' needs care, and why ablating heads one by one is a better test.",
        compare=number_compare(answer, tolerance=0.0))


# --------------------------------------------------------------------------------------------
# Investigation: the head whose ablation changes the output most.
# --------------------------------------------------------------------------------------------


def _small_encoder(seed: int, important: tuple[int, int], sharp: tuple[int, int]) -> BertEncoder:
    """A small random encoder (eval mode) with one head made important and another made sharp."""
    with torch.random.fork_rng(devices=[]):  # the notebook's random state is left as it was
        torch.manual_seed(seed)
        model = BertEncoder(vocab_size=40, embed_dim=32, num_layers=2, num_heads=4, ffn_dim=64, max_positions=16)
    model.eval()
    d = 32 // 4
    with torch.no_grad():
        for (layer, head), part, factor in ((important, "W_value", 4.0), (sharp, "W_query", 8.0),
                                            (sharp, "W_value", 0.7)):
            getattr(model.layers[layer].attention, part).weight[head * d:(head + 1) * d] *= factor
    return model


def _ablation_changes(model: BertEncoder, input_ids: torch.Tensor, keep_only: bool = False) -> torch.Tensor:
    """(N, H): how much the last hidden state moves (Frobenius norm) when each head is ablated (or kept alone)."""
    N, H = model.num_layers, model.num_heads
    with torch.no_grad():
        full = model(input_ids).last_hidden_state  # (B, T, D)
        changes = torch.zeros(N, H)
        for layer in range(N):
            for head in range(H):
                mask = torch.zeros(N, H) if keep_only else torch.ones(N, H)
                mask[layer, head] = 1.0 if keep_only else 0.0
                changes[layer, head] = (model(input_ids, head_mask=mask).last_hidden_state - full).norm()
    return changes


def _pick(scores: torch.Tensor, largest: bool = True) -> tuple[int, int]:
    flat = int(scores.flatten().argmax() if largest else scores.flatten().argmin())
    return flat // scores.shape[1], flat % scores.shape[1]


def _sharpest_head(model: BertEncoder, input_ids: torch.Tensor) -> tuple[int, int]:
    with torch.no_grad():
        maps = torch.stack(model(input_ids).attentions)  # (N, B, H, T, T)
    return _pick(maps.amax(-1).mean((1, 3)))  # (N, H): each head's mean largest weight


def check_find_most_important_head(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``find_most_important_head(model, input_ids)`` -> (layer, head): the head whose ablation moves
    the model's output most.

    model: a BertEncoder in eval mode; input_ids: long tensor (B, T). Ablate one head at a time
    (``head_mask`` (num_layers, num_heads) of ones with a 0 for that head) and measure the change of
    ``last_hidden_state``, the norm of (ablated - full) over the whole batch; return the head with the
    largest change as a tuple of ints (layer, head).
    Taught in: notebooks/10_pretrained_attention.ipynb.
    """
    def case(model_seed, important, sharp, B=2, T=6):  # fixed models and sentences (every seed), checked
        ids = torch.randint(1, 40, (B, T), generator=torch.Generator().manual_seed(model_seed))  # to tell apart
        return Case((_small_encoder(model_seed, important, sharp), ids))  # the right head and each mistake's

    ex = Exercise(
        "find_most_important_head",
        lambda model, ids: _pick(_ablation_changes(model, ids)),
        [
            Property("2 layers x 4 heads, the important head in layer 0", [case(1, (0, 2), (1, 1))]),
            Property("the important head in the last layer", [case(2, (1, 3), (0, 0))]),
            Property("another model and sentences", [case(5, (1, 0), (0, 3), B=3, T=5)]),
        ],
        [
            Mistake("sharpest_attention", "You picked the head with the most peaked attention weights. A sharp map "
                    "is not an important head: this one looks hard at one token but passes on almost nothing. "
                    "Ablate each head and measure the change of the output.", _sharpest_head),
            Mistake("smallest_change", "You returned the head whose ablation changes the output *least*: the "
                    "important head is the one with the largest change.",
                    lambda model, ids: _pick(_ablation_changes(model, ids), largest=False)),
            Mistake("mask_inverted", "Your head_mask keeps only one head (a 1 for it, 0 elsewhere): the mask "
                    "multiplies each head's output, 1 keeps a head and 0 ablates it. Use ones with a single 0.",
                    lambda model, ids: _pick(_ablation_changes(model, ids, keep_only=True))),
        ],
        compare=exact_compare("(layer, head)"),
    )
    def on_the_ids_device(model, input_ids):  # the check moves the ids; a copy of the model goes with them
        return fn(copy.deepcopy(model).to(input_ids.device), input_ids)

    wrapped = functools.wraps(fn)(on_the_ids_device) if callable(fn) else fn
    return run_question(ex, wrapped, device, on_pass_only=True,
                        why="ablation asks the model, not the attention map: a head matters when removing it "
                            "changes the output. The most peaked head was not the most important one.")
