"""Checks for chapter 11: a small GPT (the causal LM loss, sampling filters, cached GQA decoding, a prediction).

Taught in: solutions/ and exercises/ 11_small_gpt.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..attention import softmax as _softmax
from ..gpt import grouped_query_attention as _gqa
from ..gpt import lm_loss as _lm_loss
from ..gpt import sampling_probs as _sampling_probs
from .efficient import _catching_cat_errors, _compare_step  # the cache-step comparison of chapter 09
from .core import Case, CheckReport, Exercise, Mistake, Property, _gen, _randn, run_check

__all__ = ["check_lm_loss", "check_sampling_probs", "check_gqa_decode_step", "check_predict_initial_loss"]


# --------------------------------------------------------------------------------------------
# Exercise 1: the causal language-modelling loss.
# --------------------------------------------------------------------------------------------


def _ids(g: torch.Generator, B: int, T: int, V: int) -> torch.Tensor:
    return torch.randint(V, (B, T), generator=g)


def _loss_variant(kind: str) -> Callable:
    def fn(logits, ids):
        V = logits.shape[-1]
        if kind == "not_shifted":
            return F.cross_entropy(logits.reshape(-1, V), ids.reshape(-1))
        if kind == "shifted_backwards":
            return F.cross_entropy(logits[:, 1:].reshape(-1, V), ids[:, :-1].reshape(-1))
        if kind == "summed":
            return F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1), reduction="sum")
        if kind == "shift_across_batch":
            return F.cross_entropy(logits.reshape(-1, V)[:-1], ids.reshape(-1)[1:])
        raise AssertionError(kind)

    return fn


def check_lm_loss(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``lm_loss(logits, ids)``: mean next-token cross-entropy, logits[:, t] scored on ids[:, t + 1].

    logits (B, T, V) float, ids (B, T) int64 -> a scalar tensor (shape ()).
    Taught in: notebooks/11_small_gpt.ipynb.
    """
    g = _gen(seed)

    def case(B, T, V, scale=1.0, dtype=torch.float32):
        return Case((_randn(g, B, T, V, scale=scale, dtype=dtype), _ids(g, B, T, V)))

    ex = Exercise(
        "lm_loss",
        _lm_loss,
        [
            Property("one sequence, (1, T, V)", [case(1, 5, 7), case(1, 9, 4)]),
            Property("a batch of sequences, (B, T, V)", [case(3, 6, 5), case(4, 8, 11)]),
            Property("large logits (a stable log-softmax)", [case(2, 5, 6, scale=300.0)]),
            Property("float64 in, float64 out", [case(2, 7, 5, dtype=torch.float64)]),
        ],
        [
            Mistake("targets_not_shifted", "Your targets are not shifted: position t is scored on ids[:, t], the token "
                    "it already reads, so a model could copy its input. Score logits[:, :-1] on ids[:, 1:], the "
                    "token *after* each position.", _loss_variant("not_shifted")),
            Mistake("shifted_backwards", "You shifted the wrong way: logits[:, 1:] scored on ids[:, :-1] asks each "
                    "position for the token *before* it. Use logits[:, :-1] with ids[:, 1:].",
                    _loss_variant("shifted_backwards")),
            Mistake("summed_not_mean", "You summed the losses: the loss is the *mean* over the B * (T - 1) "
                    "predictions (nats per token), so that it does not grow with the batch or the window.",
                    _loss_variant("summed")),
            Mistake("shift_across_batch", "You flattened the batch before shifting: the last position of sequence b "
                    "is then scored on the first token of sequence b + 1, which it never saw coming. Shift inside "
                    "each sequence (logits[:, :-1], ids[:, 1:]), then flatten.", _loss_variant("shift_across_batch")),
        ],
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Exercise 2: temperature, top-k and top-p.
# --------------------------------------------------------------------------------------------


def _top_p_keep(probs: torch.Tensor, top_p: float, *, rule: str = "right") -> torch.Tensor:
    if rule == "unsorted":
        cum = probs.cumsum(-1)
        keep = (cum - probs) < top_p
        return keep
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    cum = sorted_probs.cumsum(-1)
    keep_sorted = (cum < top_p) if rule == "below_p" else (cum - sorted_probs) < top_p
    keep_sorted[..., 0] = True
    return torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)


def _sampling_variant(*, softmax_first: str | None = None, multiply_temperature: bool = False,
                      top_p_rule: str = "right", top_p_before_top_k: bool = False) -> Callable:
    """The sampling filter, right or with one step wrong (computed in float64)."""

    def fn(logits, temperature, top_k, top_p):
        x = logits.double()
        x = x * temperature if multiply_temperature else x / temperature
        V = x.shape[-1]
        keep = torch.ones_like(x, dtype=torch.bool)
        if softmax_first is not None:
            probs = _softmax(x)
            if top_k is not None and top_k < V:
                keep &= torch.zeros_like(keep).scatter_(-1, probs.topk(top_k, dim=-1).indices, True)
            if top_p is not None and top_p < 1.0:
                keep &= _top_p_keep(torch.where(keep, probs, 0.0) / torch.where(keep, probs, 0.0).sum(-1, keepdim=True),
                                    top_p)
            if softmax_first == "softmax_again":  # the filtered probabilities treated as logits
                out = _softmax(probs.masked_fill(~keep, float("-inf")))
            else:  # "not_renormalised"
                out = probs.masked_fill(~keep, 0.0)
            return out.to(logits.dtype)
        full = _softmax(x)
        if top_k is not None and top_k < V:
            keep &= torch.zeros_like(keep).scatter_(-1, x.topk(top_k, dim=-1).indices, True)
            x = x.masked_fill(~keep, float("-inf"))
        if top_p is not None and top_p < 1.0:
            keep &= _top_p_keep(full if top_p_before_top_k else _softmax(x), top_p, rule=top_p_rule)
            x = x.masked_fill(~keep, float("-inf"))
        return _softmax(x).to(logits.dtype)

    return fn


def check_sampling_probs(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``sampling_probs(logits, temperature, top_k, top_p)`` -> the probabilities to sample from.

    logits (..., V); temperature > 0; top_k an int or None; top_p a float in (0, 1] or None. Temperature
    first, then top-k on the logits, then top-p on the renormalised distribution; the kept tokens'
    probabilities are renormalised to sum to 1, the others are 0.
    Taught in: notebooks/11_small_gpt.ipynb.
    """
    g = _gen(seed)

    def case(shape, temperature=1.0, top_k=None, top_p=None, scale=2.0, dtype=torch.float32):
        return Case((_randn(g, *shape, scale=scale, dtype=dtype), temperature, top_k, top_p))

    ex = Exercise(
        "sampling_probs",
        _sampling_probs,
        [
            Property("temperature only (no filter)", [case((6,), 1.0), case((2, 8), 0.5), case((3, 5), 2.0)]),
            Property("top-k: only the k largest logits keep probability",
                     [case((8,), 1.0, top_k=3), case((2, 10), 0.7, top_k=1), case((3, 6), 1.5, top_k=4)]),
            Property("top-p: the smallest set of most likely tokens with mass >= p",
                     [case((8,), 1.0, top_p=0.5), case((3, 10), 0.8, top_p=0.9), case((2, 6), 1.0, top_p=0.3)]),
            Property("top-k, then top-p on what top-k kept, 1 to 3 leading dims",
                     [case((2, 10), 1.0, top_k=5, top_p=0.6), case((3, 12), 1.3, top_k=6, top_p=0.8),
                      case((2, 2, 2, 9), 0.9, top_k=5, top_p=0.8)]),
            Property("top_k >= V and top_p = 1.0 filter nothing", [case((2, 5), 1.5, top_k=9, top_p=1.0)]),
            Property("float64 in, float64 out", [case((2, 7), 0.8, top_k=4, top_p=0.7, dtype=torch.float64)]),
        ],
        [
            Mistake("softmax_before_top_k", "You applied the softmax first and then filtered and applied a softmax "
                    "again: the second softmax treats probabilities as logits, which flattens the distribution "
                    "(e^0.9 / e^0.1 is only 2.2, not 9). Filter the *logits* (set the others to -inf), then take one "
                    "softmax.", _sampling_variant(softmax_first="softmax_again")),
            Mistake("not_renormalised", "You zeroed the filtered tokens' probabilities but did not renormalise: the "
                    "kept probabilities must sum to 1 again (filtering the logits with -inf and then taking the "
                    "softmax does that for you).", _sampling_variant(softmax_first="not_renormalised")),
            Mistake("temperature_multiplied", "You multiplied the logits by the temperature: divide them by it "
                    "(T < 1 sharpens the distribution, T > 1 flattens it).",
                    _sampling_variant(multiply_temperature=True)),
            Mistake("top_p_drops_crossing_token", "Your top-p keeps only the tokens whose running total stays *below* "
                    "p, so the kept mass is < p. Keep the token that crosses p as well: a token stays while the mass "
                    "of the tokens *before* it (cumsum - p_i) is < p.", _sampling_variant(top_p_rule="below_p")),
            Mistake("top_p_unsorted", "Your running total follows the vocabulary order: sort the probabilities in "
                    "descending order first, so that the nucleus is made of the *most likely* tokens, then map the "
                    "kept set back to vocabulary order (scatter with the sort's indices).",
                    _sampling_variant(top_p_rule="unsorted")),
            Mistake("top_p_before_top_k", "Your top-p measured the mass on the distribution *before* top-k: after "
                    "top-k, renormalise (a softmax over the kept logits) and take the nucleus of that distribution.",
                    _sampling_variant(top_p_before_top_k=True)),
        ],
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Exercise 3: one decoding step with a KV cache and grouped key/value heads.
# --------------------------------------------------------------------------------------------


def _gqa_step_variant(*, cat_dim=-2, tiled=False, attend_new=True, update_cache=True, scaled=True):
    def fn(query, key, value, cache_keys, cache_values):
        keys = torch.cat([cache_keys, key], dim=cat_dim)
        values = torch.cat([cache_values, value], dim=cat_dim)
        k, val = (keys, values) if attend_new else (cache_keys, cache_values)
        G = query.shape[-3] // k.shape[-3]
        if tiled:  # head h reads key/value head h % Hkv instead of h // G
            k, val = k.repeat(1, G, 1, 1), val.repeat(1, G, 1, 1)
        scale = None if scaled else 1.0
        out = _gqa(query, k, val, scale=scale)
        return (out, keys, values) if update_cache else (out, cache_keys, cache_values)

    return _catching_cat_errors(fn)


def check_gqa_decode_step(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``gqa_decode_step(query, key, value, cache_keys, cache_values)`` -> (output, cache_keys, cache_values).

    query (B, H, 1, E): the newest token's query heads; key (B, Hkv, 1, E), value (B, Hkv, 1, Ev): its
    key/value heads; cache_keys (B, Hkv, P, E), cache_values (B, Hkv, P, Ev): the P earlier tokens. Query
    head h reads key/value head h // (H / Hkv). Output (B, H, 1, Ev); caches grown to P + 1 along dim -2.
    Taught in: notebooks/11_small_gpt.ipynb.
    """
    g = _gen(seed)

    def case(B, H, Hkv, P, E, Ev, dtype=torch.float32):
        return Case((_randn(g, B, H, 1, E, dtype=dtype), _randn(g, B, Hkv, 1, E, dtype=dtype),
                     _randn(g, B, Hkv, 1, Ev, dtype=dtype), _randn(g, B, Hkv, P, E, dtype=dtype),
                     _randn(g, B, Hkv, P, Ev, dtype=dtype)))

    ex = Exercise(
        "gqa_decode_step",
        _gqa_step_variant(),
        [
            Property("the first token: an empty cache (P = 0)", [case(2, 2, 2, 0, 4, 3)]),
            Property("one key/value head per query head (H = Hkv, multi-head)", [case(2, 3, 3, 4, 4, 4)]),
            Property("grouped-query attention (H = 4, Hkv = 2)", [case(1, 4, 2, 3, 4, 3), case(2, 4, 2, 2, 8, 4)]),
            Property("multi-query attention (Hkv = 1)", [case(2, 4, 1, 5, 4, 4)]),
            Property("the new cache holds the old tokens, then the new one", [case(1, 6, 3, 2, 4, 2)]),
            Property("float64 in, float64 out", [case(1, 4, 2, 3, 4, 4, dtype=torch.float64)]),
        ],
        [
            *[Mistake("cache_wrong_axis", "You appended the new key/value along the wrong axis: the cache grows along "
                      "the sequence axis, -2 (the P in (B, Hkv, P, E)); axis 1 holds the heads. Use "
                      "torch.cat([cache_keys, key], dim=-2).", _gqa_step_variant(cat_dim=d)) for d in (0, 1, -1)],
            Mistake("heads_tiled_not_grouped", "Your query heads read the wrong key/value heads: query head h belongs "
                    "to group h // (H / Hkv), so heads 0 .. G-1 share key/value head 0. key.repeat(...) tiles the "
                    "heads (0, 1, 0, 1, ...); use key.repeat_interleave(G, dim=1), or view the queries as "
                    "(B, Hkv, G, 1, E).", _gqa_step_variant(tiled=True)),
            Mistake("new_token_not_attended", "Your query attends only to the cached tokens: append the new key and "
                    "value first, then attend over all P + 1 positions (a token attends to itself too).",
                    _gqa_step_variant(attend_new=False)),
            Mistake("cache_not_returned", "You returned the old cache: return the caches with the new key and value "
                    "appended, so that the next step can use them.", _gqa_step_variant(update_cache=False)),
            Mistake("no_scale", "You forgot to scale the scores by 1 / sqrt(E).", _gqa_step_variant(scaled=False)),
        ],
        compare=_compare_step,
    )
    return run_check(ex, _catching_cat_errors(fn), device=device)


# --------------------------------------------------------------------------------------------
# Predict, then run: the loss of the untrained model.
# --------------------------------------------------------------------------------------------

#: The size of the course's character vocabulary (course_lib/data/shakespeare.txt has 76 characters).
_VOCAB = 76
#: How far a prediction may be from ln V (nats): an untrained GPT's loss lies within a few hundredths of it.
_PREDICTION_TOLERANCE = 0.25
_UNIGRAM = 3.31  # the unigram baseline of the lesson, nats per character


def _compare_prediction(got: Any, expected: Any) -> str | None:
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        return f"returned {type(got).__name__}: return a number (your prediction, in nats per character)"
    if not math.isfinite(got):
        return f"returned {got}: a loss of a model that gives every character some probability is finite"
    # The right answer is ln V, with some slack; a known wrong answer is matched when it is that number
    # (to about 1 %), so that e.g. 0 and 1/V are told apart.
    right = abs(expected - math.log(_VOCAB)) < 1e-12
    tolerance = _PREDICTION_TOLERANCE if right else max(0.005, 0.01 * abs(expected))
    if abs(got - expected) > tolerance:
        return f"your prediction {got:.3g} is not the untrained model's loss"
    return None


def _explain_initial_loss() -> None:
    print(f"  Why: at initialisation every logit is close to 0 (weights of size 0.02), so the softmax spreads the "
          f"probability almost evenly over the V = {_VOCAB} characters: p = 1/{_VOCAB} for the right one, and "
          f"the loss -ln p = ln {_VOCAB} = {math.log(_VOCAB):.2f} nats. Training must bring it below the unigram "
          f"baseline (about {_UNIGRAM}) and the bigram baseline.")


def check_predict_initial_loss(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``predict_initial_loss()``: the learner's prediction of the untrained model's loss (nats/char).

    Passes within 0.25 of ln V (V = 76 characters); names the common wrong predictions; always
    explains the answer once the learner has predicted.
    Taught in: notebooks/11_small_gpt.ipynb.
    """
    V = _VOCAB
    ex = Exercise(
        "predict_initial_loss",
        lambda: math.log(V),
        [Property(f"the loss of an untrained model over V = {V} characters, in nats", [Case(())])],
        [
            Mistake("vocabulary_size", f"You predicted the number of characters, {V}. The loss is the *log* of the "
                    f"number of equally likely choices: -ln(1/V).", lambda: float(V)),
            Mistake("probability_not_loss", f"You predicted the probability of the right character, 1/{V}. The loss "
                    f"is its negative log: -ln(1/{V}).", lambda: 1.0 / V),
            Mistake("bits_not_nats", f"You predicted log2({V}) = {math.log2(V):.2f}: that is in bits. PyTorch's "
                    f"cross_entropy uses the natural log (nats): ln({V}).", lambda: math.log2(V)),
            Mistake("zero_loss", "A loss of 0 means certainty: probability 1 on the right character. An untrained "
                    "model knows nothing yet, so it is as unsure as it can be.", lambda: 0.0),
            Mistake("unigram_loss", f"About {_UNIGRAM} is the loss of a model that has *learned* how often each "
                    f"character occurs (the unigram baseline). The untrained model has not: its probabilities are "
                    f"almost uniform.", lambda: _UNIGRAM),
        ],
        compare=_compare_prediction,
    )
    report = run_check(ex, fn, device=device)
    if report.status in ("passed", "failed"):
        _explain_initial_loss()
    return report
