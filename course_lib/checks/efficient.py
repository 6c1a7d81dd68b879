"""Checks for chapter 09: efficient attention (online softmax, tiled attention, the KV cache).

Taught in: solutions/ and exercises/ 09_efficient_attention.
"""

from __future__ import annotations

import math
import weakref
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from ..attention import scaled_dot_product_attention as _attention
from ..attention import softmax as _softmax
from ..efficient.approximations import linear_attention as _linear_attention
from ..efficient.cost import loglog_slope
from ..efficient.memory import MemoryTracker
from .core import Case, CheckReport, Exercise, Mistake, Property, _difference, _gen, _randn, run_check
from .questions import number_compare, prediction, run_question

__all__ = ["check_online_softmax", "check_tiled_attention", "check_kv_cache_step", "check_predict_score_matrix_mib",
           "check_find_memory_exponent"]


# --------------------------------------------------------------------------------------------
# Exercise 1: online softmax over the last dim.
# --------------------------------------------------------------------------------------------


def _online_softmax_variant(*, rescale: str = "right", normalise: bool = True, start: str = "empty"):
    """The online softmax, element by element, with the rescaling of the running sum done right or wrong.

    rescale: "right" (d * exp(m - m')), "none" (d + ... : the old sum is not rescaled),
    "flipped" (d * exp(m' - m)), "no_max" (no running max at all: d += exp(x_j); unstable).
    start: "empty" (m = -inf, d = 0, as in the paper) or "first" (m = x_0, d = 1, then x_1 ...).
    """

    def fn(x):
        work = x  # in the input's dtype, as a learner would: overflow happens where theirs does
        if start == "first":
            m, d, first = work[..., 0].clone(), torch.ones(work.shape[:-1], dtype=x.dtype), 1
            if rescale == "no_max":
                d = torch.exp(work[..., 0])
        else:
            m = torch.full(work.shape[:-1], float("-inf"), dtype=x.dtype)
            d, first = torch.zeros(work.shape[:-1], dtype=x.dtype), 0
        for j in range(first, work.shape[-1]):
            xj = work[..., j]
            if rescale == "no_max":
                d = d + torch.exp(xj)
                continue
            m_new = torch.maximum(m, xj)
            if rescale == "right":
                d = d * torch.exp(m - m_new) + torch.exp(xj - m_new)
            elif rescale == "none":
                d = d + torch.exp(xj - m_new)
            else:  # flipped
                d = d * torch.exp(m_new - m) + torch.exp(xj - m_new)
            m = m_new
        if rescale == "no_max":
            out = torch.exp(work) / d[..., None]
        else:
            out = torch.exp(work - m[..., None])
            if normalise:
                out = out / d[..., None]
        return out.to(x.dtype)

    return fn


def check_online_softmax(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``online_softmax(x)``: softmax over the last dim with a running max and a running sum.

    x (..., N) -> (..., N), rows sum to 1, stable on large values, dtype kept.
    Taught in: notebooks/09_efficient_attention.ipynb.
    """
    g = _gen(seed)
    ex = Exercise(
        "online_softmax",
        lambda x: _softmax(x, dim=-1),
        [
            Property("a small example: online_softmax([0, ln 2, ln 3]) = [1/6, 2/6, 3/6]",
                     [Case((torch.tensor([0.0, math.log(2.0), math.log(3.0)]),))]),
            Property("an increasing row (every element raises the running max)",
                     [Case((torch.arange(0.0, 8.0),)), Case((torch.sort(_randn(g, 3, 6, scale=3.0)).values,))]),
            Property("random rows with 0 to 3 leading dims (..., N)",
                     [Case((_randn(g, 7),)), Case((_randn(g, 3, 5, scale=2.0),)), Case((_randn(g, 2, 3, 6),)),
                      Case((_randn(g, 2, 2, 2, 5),))]),
            Property("large values, e.g. [1000, 1001, 1002] (no overflow)",
                     [Case((torch.tensor([[1000.0, 1001.0, 1002.0], [0.0, 1.0, 2.0]]),)),
                      Case((_randn(g, 3, 4, scale=400.0),))]),
            Property("float64 in, float64 out", [Case((_randn(g, 2, 9, dtype=torch.float64),))]),
        ],
        [
            Mistake("sum_not_rescaled", "When a new element raises the running max from m to m', the old running "
                    "sum was computed relative to m: multiply it by exp(m - m') before adding exp(x_j - m'). "
                    "Your sum skips that rescaling, so the weights do not add up to 1 once the max changes.",
                    _online_softmax_variant(rescale="none")),
            *[Mistake("rescale_sign_flipped", "Your rescaling factor is exp(m' - m), which is >= 1 (and inf when "
                      "m = -inf at the start); moving the old sum from the old max m to the new max m' >= m "
                      "multiplies it by exp(m - m') <= 1.", _online_softmax_variant(rescale="flipped", start=s))
              for s in ("empty", "first")],
            Mistake("no_running_max", "Your sum adds exp(x_j) without subtracting a running max: exp(1000) = inf in "
                    "float32. Keep the largest value seen so far, m, and sum exp(x_j - m) (rescaling the sum when "
                    "m grows).", _online_softmax_variant(rescale="no_max")),
            Mistake("no_normalisation", "You returned exp(x - m) without dividing by the running sum d: the weights "
                    "must add up to 1.", _online_softmax_variant(normalise=False)),
        ],
    )
    return run_check(ex, fn, device=device)


# --------------------------------------------------------------------------------------------
# Exercise 2: tiled attention (FlashAttention's forward pass), no mask.
# --------------------------------------------------------------------------------------------


def _naive_attention_variant(query, key, value, block_size):
    """Attention with a plain exp (no max subtracted): NaN once a score passes 88.7 in float32."""
    e = torch.exp(query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1]))  # (..., L, S)
    return e / e.sum(dim=-1, keepdim=True) @ value  # (..., L, S) @ (..., S, Ev) -> (..., L, Ev)


def _shared_feature(g: torch.Generator, *shape: int, a: float) -> torch.Tensor:
    t = _randn(g, *shape, scale=0.5)
    t[..., 0] = a  # every vector shares a large first feature: every score is about a^2 / sqrt(E)
    return t


def _large_scores_case(g: torch.Generator, L: int, S: int, E: int, Ev: int, score: float, block_size: int) -> Case:
    """Float32 query (L, E), key (S, E), value (S, Ev) whose scaled scores are all about ``score`` (+- 1)."""
    a = math.sqrt(score * math.sqrt(E))
    return Case((_shared_feature(g, L, E, a=a), _shared_feature(g, S, E, a=a), _randn(g, S, Ev), block_size),
                label=f"scores about {score:g}")


def _large_step_case(g: torch.Generator, P: int, E: int, Ev: int, B: int, score: float) -> Case:
    """One decoding step (B, 1, E) over a cache (B, P, E) whose scaled scores are all about ``score``."""
    a = math.sqrt(score * math.sqrt(E))
    return Case((_shared_feature(g, B, 1, E, a=a), _shared_feature(g, B, 1, E, a=a), _randn(g, B, 1, Ev),
                 _shared_feature(g, B, P, E, a=a), _randn(g, B, P, Ev)), label=f"scores about {score:g}")


def _tiled_variant(*, rescale_acc=True, rescale_sum=True, scaled=True, divide=True, drop_last=False,
                   per_block=False):
    """Tiled attention over key blocks, right or with one step wrong (computed in float64)."""

    def fn(query, key, value, block_size):
        q, k, v = query.double(), key.double(), value.double()
        S, E = k.shape[-2], q.shape[-1]
        scale = 1.0 / math.sqrt(E) if scaled else 1.0
        m = torch.full((*q.shape[:-1], 1), float("-inf"), dtype=torch.float64)
        l_sum = torch.zeros((*q.shape[:-1], 1), dtype=torch.float64)
        acc = torch.zeros((*q.shape[:-1], v.shape[-1]), dtype=torch.float64)
        stop = S - block_size + 1 if drop_last else S
        blocks = range(0, max(stop, 0), block_size)
        for start in blocks:
            kb, vb = k[..., start:start + block_size, :], v[..., start:start + block_size, :]
            s = q @ kb.transpose(-2, -1) * scale  # (..., L, b)
            if per_block:
                acc = acc + _softmax(s) @ vb
                continue
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
            p = torch.exp(s - m_new)
            alpha = torch.exp(m - m_new)
            l_sum = (l_sum * alpha if rescale_sum else l_sum) + p.sum(dim=-1, keepdim=True)
            acc = (acc * alpha if rescale_acc else acc) + p @ vb
            m = m_new
        if per_block:
            out = acc / max(len(blocks), 1)
        else:
            out = acc / l_sum if divide else acc
        return out.to(query.dtype)

    return fn


def _needs_tiling(L: int, S: int, block_size: int) -> bool:
    """Cases where the (L, S) weights are much larger than one (L, block_size) block: memory is checked."""
    return S >= 8 * block_size and L * S >= 2**16


class _PeakTensorBytes(TorchFunctionMode):
    """Peak bytes of the tensors that torch functions return while active (views and in-place add nothing).

    A lighter cousin of course_lib.efficient.MemoryTracker, at the level of torch functions
    (``@``, ``torch.exp``, tensor methods) rather than of dispatched operations: entering a
    TorchFunctionMode does not import torch._dynamo, whose import writes a temporary directory
    (refused inside the batch grader's sandbox).
    """

    def __init__(self):
        super().__init__()
        self.current = self.peak = 0
        self._live: dict[int, list[int]] = {}

    def _release(self, key: int) -> None:
        entry = self._live.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self.current -= entry[0]
                del self._live[key]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                      if isinstance(t, torch.Tensor)}
            for t in tree_flatten(out)[0]:
                if not isinstance(t, torch.Tensor):
                    continue
                key = t.untyped_storage().data_ptr()
                if key not in self._live:
                    if key in inputs:
                        continue  # a view of, or an in-place update on, an existing tensor
                    self._live[key] = [t.untyped_storage().nbytes(), 0]
                    self.current += self._live[key][0]
                    self.peak = max(self.peak, self.current)
                self._live[key][1] += 1
                weakref.finalize(t, self._release, key)
        except Exception:  # noqa: BLE001  measuring must never break the learner's function
            pass
        return out


def _tiled_memory_guard(fn: Callable) -> Callable:
    """Wrap ``fn``: on large cases, measure its peak memory; building the (L, S) weights is reported.

    Returns the output, or ``{"materialised": True, "peak_bytes": ..., "weights_bytes": ...}`` when
    the tensors alive at one moment reach the size of the whole weight matrix.
    """

    def wrapped(query, key, value, block_size):
        L, S = query.shape[-2], key.shape[-2]
        if not (isinstance(block_size, int) and block_size > 0 and _needs_tiling(L, S, block_size)):
            return fn(query, key, value, block_size)
        batch = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2])
        weights_bytes = math.prod(batch) * L * S * query.element_size()
        with _PeakTensorBytes() as tracker:
            out = fn(query, key, value, block_size)
        if tracker.peak >= weights_bytes:
            return {"materialised": True, "peak_bytes": int(tracker.peak), "weights_bytes": int(weights_bytes)}
        return out

    return wrapped


def _compare_tiled(got: Any, expected: Any) -> str | None:
    got_big = isinstance(got, dict) and got.get("materialised") is True
    expected_big = isinstance(expected, dict) and expected.get("materialised") is True
    if got_big and expected_big:
        return None
    if got_big:
        return (f"{got.get('peak_bytes', 0):,} bytes of tensors were alive at once, as much as the whole (L, S) "
                f"weight matrix ({got.get('weights_bytes', 0):,} bytes)")
    if expected_big:
        return "returned an output where the whole (L, S) weight matrix was expected"
    return _difference(got, expected)


def check_tiled_attention(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``tiled_attention(query, key, value, block_size)``: exact attention, keys in blocks.

    query (..., L, E), key (..., S, E), value (..., S, Ev), block_size int -> (..., L, Ev), equal to
    softmax(Q K^T / sqrt(E)) V.
    Taught in: notebooks/09_efficient_attention.ipynb.
    """
    g = _gen(seed)

    def case(L, S, E, Ev, block_size, *batch, scale=1.0, dtype=torch.float32):
        return Case((_randn(g, *batch, L, E, scale=scale, dtype=dtype),
                     _randn(g, *batch, S, E, scale=scale, dtype=dtype),
                     _randn(g, *batch, S, Ev, dtype=dtype), block_size))

    ex = Exercise(
        "tiled_attention",
        lambda q, k, v, block_size: _attention(q, k, v),
        [
            Property("one block holds every key (block_size >= S)", [case(3, 4, 4, 4, 4), case(2, 3, 5, 2, 10)]),
            Property("several blocks of equal size (S a multiple of block_size)",
                     [case(4, 6, 4, 3, 2), case(5, 8, 8, 8, 4)]),
            Property("a shorter last block (S not a multiple of block_size)",
                     [case(3, 7, 4, 4, 3), case(4, 10, 6, 5, 4)]),
            Property("block_size = 1 (one key at a time)", [case(3, 5, 4, 2, 1)]),
            Property("leading batch dims, (B, L, E), (B, H, L, E) and three leading dims, L != S",
                     [case(3, 9, 8, 4, 4, 2, 3), case(6, 5, 4, 4, 2, 2), case(4, 7, 4, 3, 3, 2, 2, 2)]),
            Property("large scores (where the running max matters): exp(score) overflows past 88 in float32",
                     [case(4, 9, 8, 4, 3, scale=6.0), _large_scores_case(g, 4, 9, 8, 4, 120.0, block_size=3)]),
            Property("float64 in, float64 out", [case(3, 7, 4, 3, 3, dtype=torch.float64)]),
            Property("never holds the whole (L, S) weight matrix (L = S = 512, blocks of 32 keys)",
                     [case(512, 512, 16, 16, 32)]),
        ],
        [
            Mistake("materialised_weights", "Your output is right, but your function builds the whole (L, S) matrix "
                    "of scores or weights (or keeps every block): tiling exists so that only one (L, block_size) "
                    "block is alive at a time. Loop over the key blocks and keep only the running max, the running "
                    "sum and the running output.", _tiled_memory_guard(lambda q, k, v, block_size: _attention(q, k, v))),
            Mistake("accumulator_not_rescaled", "When a block raises the running max from m to m', the output "
                    "accumulated so far was weighted by exp(score - m): multiply it by exp(m - m') before adding "
                    "the new block's exp(scores - m') @ V. You rescaled the running sum but not the accumulator.",
                    _tiled_variant(rescale_acc=False)),
            Mistake("sum_not_rescaled", "When a block raises the running max from m to m', multiply the running sum "
                    "of exp(scores - m) by exp(m - m') before adding the new block's sum. You rescaled the "
                    "accumulator but not the running sum.", _tiled_variant(rescale_sum=False)),
            Mistake("no_scale", "You forgot to scale the scores: multiply query @ key^T by 1 / sqrt(E) in every block.",
                    _tiled_variant(scaled=False)),
            Mistake("no_final_division", "You returned the accumulator without dividing it by the running sum: "
                    "the output is acc / l after the last block.", _tiled_variant(divide=False)),
            Mistake("last_block_dropped", "Your loop skips the last, shorter block when S is not a multiple of "
                    "block_size: use range(0, S, block_size) and slice keys[..., start:start + block_size, :] "
                    "(slicing past the end is fine).", _tiled_variant(drop_last=True)),
            Mistake("no_running_max", "Your exp overflows on large scores (exp(89) is inf in float32, inf / inf = NaN): "
                    "keep the running max m of the scores seen so far and use exp(scores - m'), rescaling what was "
                    "accumulated by exp(m - m') when the max grows.", _naive_attention_variant),
            Mistake("per_block_softmax", "You normalised each block on its own (a softmax per block) and combined "
                    "the block outputs: the weights must be normalised over *all* keys. Keep a running max and a "
                    "running sum across blocks, and divide once at the end.", _tiled_variant(per_block=True)),
        ],
        compare=_compare_tiled,
    )
    return run_check(ex, _tiled_memory_guard(fn), device=device)


# --------------------------------------------------------------------------------------------
# Exercise 3: one decoding step with a KV cache.
# --------------------------------------------------------------------------------------------

_CAT_ERROR = "Sizes of tensors must match except in dimension"


def _catching_cat_errors(fn: Callable) -> Callable:
    """Wrap ``fn``: a torch.cat size error comes back as a value, so it can be compared and diagnosed.

    Appending along the wrong dim raises inside torch.cat for these shapes; returning the error
    as ``{"raised": ..., "message": ...}`` lets the check name the mistake. Other exceptions
    (NotImplementedError included) pass through unchanged.
    """

    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RuntimeError as exc:
            text = str(exc).splitlines()[0] if str(exc) else ""
            if _CAT_ERROR in text:
                return {"raised": type(exc).__name__, "message": text[:300]}
            raise

    wrapped.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapped


def _compare_step(got: Any, expected: Any) -> str | None:
    """(output, cache_keys, cache_values) against the reference; a cat error is reported as raised."""
    if isinstance(got, dict) and "raised" in got:
        if isinstance(expected, dict) and "raised" in expected:
            return None  # both appended along a wrong dim (the dim may differ; the mistake is the same)
        return f"raised {got.get('raised', 'RuntimeError')}: {got.get('message', '')}"
    if isinstance(expected, dict):
        return "returned a result where appending along this dim fails"
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        return f"returned {type(got).__name__}, expected a tuple (output, cache_keys, cache_values)"
    for name, a, b in zip(("output", "new cache_keys", "new cache_values"), got, expected):
        reason = _difference(a, b)
        if reason is not None:
            return f"{name}: {reason}"
    return None


def _step_variant(*, cat_dim=-2, attend_new=True, update_cache=True, prepend=False, scaled=True):
    def fn(query, key, value, cache_keys, cache_values):
        if prepend:
            keys, values = torch.cat([key, cache_keys], dim=cat_dim), torch.cat([value, cache_values], dim=cat_dim)
        else:
            keys, values = torch.cat([cache_keys, key], dim=cat_dim), torch.cat([cache_values, value], dim=cat_dim)
        attend_k, attend_v = (keys, values) if attend_new else (cache_keys, cache_values)
        scale = None if scaled else 1.0
        out = _attention(query, attend_k, attend_v, scale=scale)
        if update_cache:
            return out, keys, values
        return out, cache_keys, cache_values

    return _catching_cat_errors(fn)


def _naive_step(query, key, value, cache_keys, cache_values):
    keys, values = torch.cat([cache_keys, key], dim=-2), torch.cat([cache_values, value], dim=-2)  # (..., P+1, E)
    return _naive_attention_variant(query, keys, values, None), keys, values


def check_kv_cache_step(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``kv_cache_step(query, key, value, cache_keys, cache_values)`` -> (output, cache_keys, cache_values).

    query, key (..., 1, E), value (..., 1, Ev): the newest token; cache_keys (..., P, E),
    cache_values (..., P, Ev): the P earlier tokens (P may be 0). The new key and value are
    appended after the cached ones along the sequence dim (-2), and the output is the new query's
    attention over all P + 1 positions.
    Taught in: notebooks/09_efficient_attention.ipynb.
    """
    g = _gen(seed)

    def case(P, E, Ev, *batch, dtype=torch.float32):
        return Case((_randn(g, *batch, 1, E, dtype=dtype), _randn(g, *batch, 1, E, dtype=dtype),
                     _randn(g, *batch, 1, Ev, dtype=dtype), _randn(g, *batch, P, E, dtype=dtype),
                     _randn(g, *batch, P, Ev, dtype=dtype)))

    ex = Exercise(
        "kv_cache_step",
        _step_variant(),
        [
            Property("the first token: an empty cache (P = 0) gives output = value", [case(0, 4, 3, 2)]),
            Property("a cache of earlier tokens, (B, P, E)", [case(3, 4, 3, 2), case(5, 8, 8, 1)]),
            Property("a cache per head, (B, H, P, E), and three leading dims",
                     [case(2, 4, 4, 2, 3), case(6, 8, 5, 1, 2), case(3, 4, 4, 2, 2, 2)]),
            Property("the new cache holds the old tokens, then the new one", [case(4, 6, 2, 3)]),
            Property("float64 in, float64 out", [case(3, 5, 4, 2, dtype=torch.float64)]),
            Property("large scores do not overflow (about 120 in float32, where exp overflows past 88)",
                     [_large_step_case(g, 4, 8, 3, 2, 120.0)]),
        ],
        [
            Mistake("unstable_softmax", "Your softmax overflows on large scores: exp(89) is inf in float32 (inf / inf "
                    "= NaN). Subtract the max of the scores before exp.", _catching_cat_errors(_naive_step)),
            *[Mistake("cache_wrong_dim", "You appended the new key/value along the wrong dim: the cache grows "
                      "along the sequence dim, -2 (the T in (..., T, E)), whatever the number of leading dims. "
                      "Use torch.cat([cache_keys, key], dim=-2).", _step_variant(cat_dim=d)) for d in (0, 1, -1)],
            Mistake("new_token_not_attended", "Your query attends only to the cached tokens: append the new key "
                    "and value first, then attend over all P + 1 positions (a token attends to itself too).",
                    _step_variant(attend_new=False)),
            Mistake("cache_not_returned", "You returned the old cache: return the caches with the new key and "
                    "value appended, so that the next step can use them.", _step_variant(update_cache=False)),
            Mistake("new_token_prepended", "You put the new token *before* the cached ones. The output is the same "
                    "(attention does not care about the order of its keys), but the cache must keep positions "
                    "in order: torch.cat([cache_keys, key], dim=-2).", _step_variant(prepend=True)),
            Mistake("no_scale", "You forgot to scale the scores by 1 / sqrt(E).", _step_variant(scaled=False)),
        ],
        compare=_compare_step,
    )
    return run_check(ex, _catching_cat_errors(fn), device=device)


# --------------------------------------------------------------------------------------------
# Predict, then run: the memory of one L x L score matrix.
# --------------------------------------------------------------------------------------------

_SCORES_L = 4096


def check_predict_score_matrix_mib(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``predict_score_matrix_mib()``: the memory of one L x L float32 score matrix at L = 4096, in MiB
    (2**20 bytes), predicted.

    Passes within 1 % of L * L * 4 / 2**20 = 64; names the common wrong predictions; explains the answer.
    Taught in: notebooks/09_efficient_attention.ipynb.
    """
    L = _SCORES_L
    nbytes = L * L * torch.empty((), dtype=torch.float32).element_size()
    answer = nbytes / 2 ** 20
    return prediction(
        "predict_score_matrix_mib", answer, f"MiB of one {L} x {L} float32 score matrix",
        [("entries_not_bytes", f"You predicted the number of entries in millions ({L * L / 2 ** 20:g} Mi): each "
          f"float32 entry takes 4 bytes.", L * L / 2 ** 20),
         ("megabytes_not_mebibytes", f"You predicted megabytes (10**6 bytes, {nbytes / 1e6:.1f} MB). A MiB is "
          f"2**20 = 1,048,576 bytes.", nbytes / 1e6),
         ("gibibytes", f"You predicted GiB ({nbytes / 2 ** 30:g}); the question asks for MiB (2**20 bytes).",
          nbytes / 2 ** 30),
         ("linear_in_length", f"You counted one row (L * 4 bytes): the score matrix has L rows of L scores, "
          f"L^2 = {L * L:,} entries.", L * 4 / 2 ** 20),
         ("float64", "You counted 8 bytes per entry: float32 takes 4.", 2 * answer)],
        fn, device,
        why=f"{L} x {L} = {L * L:,} scores, 4 bytes each: {nbytes:,} bytes = {answer:g} MiB, for *one* head of one "
            f"sentence. Twice the length, four times the memory: tiled attention never stores this matrix.",
        compare=number_compare(answer, tolerance=0.01 * answer, unit="MiB"))


# --------------------------------------------------------------------------------------------
# Investigation: the exponent of memory against sequence length, measured.
# --------------------------------------------------------------------------------------------


def _memory_peaks(attention: Callable, lengths, head_dim: int) -> list[int]:
    g = torch.Generator().manual_seed(0)
    peaks = []
    for L in lengths:
        q, k, v = (torch.randn(L, head_dim, generator=g) for _ in range(3))  # (L, E) each
        with MemoryTracker() as tracker:
            attention(q, k, v)
        peaks.append(tracker.peak)
    return peaks


def _memory_exponent(attention: Callable, lengths, head_dim: int) -> float:
    return loglog_slope(lengths, _memory_peaks(attention, lengths, head_dim))


def check_find_memory_exponent(fn: Callable, seed: int = 0, device=None) -> CheckReport:
    """Check ``find_memory_exponent(attention, lengths, head_dim)`` -> p in memory ~ L^p, measured.

    attention: a function (query, key, value) -> output, each (L, E); lengths: a list of ints; head_dim: E.
    Measure the peak memory of ``attention`` on random float32 (L, head_dim) inputs at each length (with
    MemoryTracker) and return the log-log slope of peak bytes against L, a float. Passes within 0.15 of
    course_lib's measurement.
    Taught in: notebooks/09_efficient_attention.ipynb.
    """
    ex = Exercise(
        "find_memory_exponent",
        _memory_exponent,
        [
            Property("exact attention, L = 128 .. 512", [Case((_attention, [128, 256, 512], 16))]),
            Property("linear attention, L = 128 .. 512", [Case((_linear_attention, [128, 256, 512], 16))]),
            Property("exact attention, longer: L = 256 .. 1024", [Case((_attention, [256, 512, 1024], 16))]),
        ],
        [
            Mistake("ratio_not_exponent", "You returned how many times the memory grew from the shortest to the "
                    "longest length; the exponent p is the *slope* of log(memory) against log(L): fit it "
                    "(loglog_slope), or divide log(ratio) by log(L ratio).",
                    lambda a, ls, e: (lambda p: p[-1] / p[0])(_memory_peaks(a, ls, e))),
            Mistake("log_ratio_not_divided", "You returned log(memory ratio) without dividing by log(length ratio): "
                    "p = log(m2 / m1) / log(L2 / L1).",
                    lambda a, ls, e: (lambda p: math.log(p[-1] / p[0]))(_memory_peaks(a, ls, e))),
        ],
        compare=number_compare(rel=0.0, abs_tol=0.15),
    )
    return run_question(ex, fn, device, on_pass_only=True,
                        why="exact attention stores the L x L weights: memory grows as L^2 (p near 2). Linear "
                            "attention never forms them: p near 1.")
