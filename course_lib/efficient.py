"""Efficient attention: online softmax, tiled (FlashAttention) attention, the KV cache, local and linear attention.

Plain attention builds the whole (L, S) matrix of weights: its time and memory grow with L * S,
so doubling the sequence length quadruples both (chapter 09 measures it). This module holds the
exact and approximate ways around that cost, each checked against plain attention in
tests/test_efficient.py:

- :func:`online_softmax`: softmax in one pass over the data, with a running max and a running
  sum (Milakov & Gimelshein 2018). The building block of tiled attention.
- :func:`tiled_attention`: the FlashAttention forward pass (Dao et al. 2022): keys and values
  are processed block by block with an online softmax, so the (L, S) weight matrix is never
  stored. *Exact*: the same numbers as ``F.scaled_dot_product_attention``.
- :class:`KVCache` and :func:`decode_step`: generation one token at a time, reusing the keys and
  values of the earlier tokens instead of recomputing them. Exact.
- :func:`sliding_window_mask` (local attention, as in Longformer and Mistral) and
  :func:`linear_attention` (Katharopoulos et al. 2020): cheaper, but *different* attention;
  chapter 09 measures how far they are from exact attention.
- :class:`MemoryTracker`: counts the bytes of every tensor PyTorch creates inside a ``with``
  block, on any device and deterministically, to measure peak memory.

Shapes use PyTorch's legend: B batch, H heads, L query length, S key/value length, E query/key
size (d_k), Ev value size; ``...`` any leading batch dims.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode
from torch.utils._pytree import tree_flatten

from . import _validate as v
from .attention import _check_mask, scaled_dot_product_attention

__all__ = [
    "online_softmax",
    "tiled_attention",
    "KVCache",
    "decode_step",
    "sliding_window_mask",
    "elu_feature_map",
    "linear_attention",
    "MemoryTracker",
]

_HALF = (torch.float16, torch.bfloat16)

# Elements of one block of scores in tiled_attention (2**20 float32 = 4 MiB): small enough to stay
# in a CPU's L3 cache between the operations on it, large enough that Python's per-operation
# overhead stays small. Measured in benchmarks/attention_bench.py.
_BLOCK_ELEMENTS = 2**20


# --------------------------------------------------------------------------------------------
# Online softmax.
# --------------------------------------------------------------------------------------------


def online_softmax(x: torch.Tensor, dim: int = -1, block_size: int = 1) -> torch.Tensor:
    """Softmax computed with one pass for its normaliser: a running max and a running sum.

    The usual stable softmax reads the data three times: once for the max, once for the sum of
    ``exp(x - max)``, once to divide. The online form keeps, while it walks along ``dim``, the
    largest value seen so far ``m`` and the sum ``d`` of ``exp(x_j - m)`` so far. When a new value
    raises the max from ``m`` to ``m'``, the old sum is *rescaled* by ``exp(m - m')`` so that it
    is again relative to the new max:

        m' = max(m, x_j)
        d' = d * exp(m - m') + exp(x_j - m')

    After the last element, ``d`` is the normaliser and ``exp(x - m) / d`` the softmax. The same
    update, applied to blocks of ``block_size`` elements at once, is the heart of
    :func:`tiled_attention`.

    Entries equal to ``-inf`` get weight 0; a slice that is all ``-inf`` gives all zeros (as
    ``course_lib.softmax``). float16/bfloat16 inputs are computed in float32.

    Args:
        x: float tensor of any shape (at least one dim).
        dim: the dimension that sums to 1 (default: the last).
        block_size: how many elements the loop takes per step (1 = the element-by-element
            algorithm of the paper; larger blocks give the same result in fewer steps).
    Returns:
        weights, same shape, dtype and device as ``x``.
    Shape:
        (*) -> (*)
    Raises:
        TypeError: if ``x`` is not a floating tensor, ``dim`` is not an int, or ``block_size`` is
            not an int.
        ValueError: if ``x`` has no dims, ``dim`` is out of range, or ``block_size`` < 1.
    Taught in: notebooks/09_efficient_attention.ipynb.  Source: Milakov & Gimelshein 2018,
    "Online normalizer calculation for softmax", algorithm 3.
    """
    fn = "online_softmax"
    v.tensor(x, "x", fn, min_dim=1, floating=True)
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{fn}: dim must be an int, got {type(dim).__name__}")
    if not -x.dim() <= dim < x.dim():
        raise ValueError(f"{fn}: dim={dim} is out of range for x of shape {v.shape_str(x)}")
    block_size = v.positive_int(block_size, "block_size", fn)
    work = (x.float() if x.dtype in _HALF else x).movedim(dim, -1)  # (..., N): the softmax dim last
    N = work.shape[-1]
    running_max = torch.full(work.shape[:-1], float("-inf"), dtype=work.dtype, device=work.device)  # (...)
    running_sum = torch.zeros(work.shape[:-1], dtype=work.dtype, device=work.device)  # (...)
    for start in range(0, N, block_size):
        block = work[..., start:start + block_size]  # (..., b)
        new_max = torch.maximum(running_max, block.amax(dim=-1))  # (...)
        # A slice that is all -inf so far has max -inf; shift by 0 there (exp(-inf - 0) = 0, not NaN).
        shift = torch.where(torch.isneginf(new_max), torch.zeros_like(new_max), new_max)
        running_sum = running_sum * torch.exp(running_max - shift) + torch.exp(block - shift[..., None]).sum(dim=-1)
        running_max = new_max
    shift = torch.where(torch.isneginf(running_max), torch.zeros_like(running_max), running_max)
    total = torch.where(running_sum == 0, torch.ones_like(running_sum), running_sum)  # all -inf: 0 / 1 = 0
    out = torch.exp(work - shift[..., None]) / total[..., None]  # (..., N)
    return out.movedim(-1, dim).to(x.dtype)


# --------------------------------------------------------------------------------------------
# Tiled attention (FlashAttention's forward pass).
# --------------------------------------------------------------------------------------------


def _check_qkv(query, key, value, fn: str) -> None:
    for name, t in (("query", query), ("key", key), ("value", value)):
        v.tensor(t, name, fn, min_dim=2, floating=True)
    if not (query.dtype == key.dtype == value.dtype):
        raise TypeError(f"{fn}: query, key and value must share a dtype, got {query.dtype}, {key.dtype}, {value.dtype}")
    if not (query.device == key.device == value.device):
        raise ValueError(f"{fn}: query, key and value must be on one device, got {query.device}, {key.device}, "
                         f"{value.device}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"{fn}: query (..., L, E) and key (..., S, E) must share E, got query "
                         f"{v.shape_str(query)} and key {v.shape_str(key)}")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"{fn}: key (..., S, E) and value (..., S, Ev) must share S, got key "
                         f"{v.shape_str(key)} and value {v.shape_str(value)}")
    v.broadcast_batch(query, key, ("query", "key"), fn)
    v.broadcast_batch(key, value, ("key", "value"), fn)
    v.broadcast_batch(query, value, ("query", "value"), fn)


def _check_scale(scale, fn: str) -> None:
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
        raise TypeError(f"{fn}: scale must be a float or None, got {type(scale).__name__}")


def _no_overflow_possible(query, key, value, scale: float, work_dtype: torch.dtype) -> bool:
    """True when every score lies in [-U, U] with exp(U) far from overflow (Cauchy-Schwarz bound).

    |q . k| <= |q| |k|, so ``scale * max|q| * max|k|`` bounds every score. When that bound U is
    small, exp(score) can be used directly, without subtracting a running max, and the sums
    ``sum exp(score) * value`` stay far inside the dtype's range.
    """
    if query.numel() == 0 or key.numel() == 0:
        return True
    bound = abs(scale) * float(query.norm(dim=-1).amax()) * float(key.norm(dim=-1).amax())
    limit = 0.25 * math.log(torch.finfo(work_dtype).max)  # float32: 22.2, float64: 177
    if not bound <= limit:  # also False for NaN / inf
        return False
    largest_value = float(value.abs().amax()) if value.numel() else 0.0
    return math.exp(bound) * key.shape[-2] * max(largest_value, 1.0) < 1e-3 * torch.finfo(work_dtype).max


def tiled_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    block_size: int = 256,
) -> torch.Tensor:
    """Exact attention that never stores the (L, S) weight matrix: FlashAttention's forward pass.

    The keys and values are cut into blocks of ``block_size`` keys. For each block, every query
    computes its scores against the block only, and merges them into three running quantities
    per query: the largest score so far ``m``, the softmax denominator so far ``l`` and the
    un-normalised output so far ``acc`` (an online softmax, see :func:`online_softmax`). When a
    block raises the max from ``m`` to ``m'``, the old ``l`` and ``acc`` are rescaled by
    ``exp(m - m')``. After the last block, ``acc / l`` is exactly
    ``softmax(Q K^T * scale + mask) V``. Only one (rows, block_size) block of scores exists at a
    time, so the extra memory grows like L * block_size instead of L * S.

    Implementation notes (why it is fast for PyTorch code): the scale is folded into the queries
    once; every operation on a block is in place (``exp_``, ``mul_``, ``baddbmm_``) into one
    reused buffer; rows (batch and query positions together) are grouped so that a block holds
    about 2**20 scores, which stays in a CPU's cache between operations; with ``is_causal``,
    blocks above the diagonal are skipped. On a CPU with several threads, large inputs are split
    into row groups that worker threads process with single-threaded operations (each thread
    with its own 4 MiB block buffer), so that the threads meet once per call instead of once per
    operation (which matters on a machine shared with other programs).

    The running max exists only to keep ``exp`` from overflowing. When the Cauchy-Schwarz bound
    ``scale * max|q| * max|k|`` of a row group proves that none of its scores can leave
    [-22, 22] (float32; [-177, 177] in float64), ``exp(score)`` is used directly and nothing
    needs rescaling: the result is the same, since softmax does not depend on the shift.
    FlashAttention-4 skips rescaling in the same spirit, when the max has not changed enough to
    matter. Otherwise (large scores, or a float mask) the running-max algorithm above runs.

    A query whose keys are all masked gets zeros, as ``course_lib.scaled_dot_product_attention``
    (PyTorch gives zeros as well).

    Args:
        query: float tensor (..., L, E).
        key: float tensor (..., S, E).
        value: float tensor (..., S, Ev). All three share dtype and device; batch dims broadcast.
        attn_mask: optional mask broadcastable to (..., L, S): ``torch.bool`` with True = may
            attend, or a float tensor in query's dtype added to the scores.
        is_causal: if True, query i may attend to keys 0..i (top-left aligned, as PyTorch).
            Cannot be combined with ``attn_mask``.
        scale: multiplier of the scores; ``None`` means 1/sqrt(E).
        block_size: number of keys per block (a positive int).
    Returns:
        output (..., L, Ev), same dtype and device as ``query``. float16/bfloat16 inputs are
        computed in float32.
    Shape:
        query (..., L, E), key (..., S, E), value (..., S, Ev) -> output (..., L, Ev).
    Raises:
        TypeError: if an input is not a floating tensor, dtypes differ, attn_mask has a wrong
            dtype, or block_size / scale has a wrong type.
        ValueError: if E or S do not match, batch dims do not broadcast, attn_mask has a wrong
            shape, both attn_mask and is_causal are given, block_size < 1, or an input requires
            grad while autograd is on (this is the forward pass only, as a teaching kernel).
    Taught in: notebooks/09_efficient_attention.ipynb.  Source: Dao et al. 2022, "FlashAttention:
    Fast and Memory-Efficient Exact Attention with IO-Awareness", algorithm 1 (forward pass).
    """
    fn = "tiled_attention"
    _check_qkv(query, key, value, fn)
    if torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad):
        raise ValueError(f"{fn}: computes the forward pass only (its in-place block updates cannot be "
                         f"differentiated); call it under torch.no_grad(), or train with "
                         f"F.scaled_dot_product_attention (query/key/value require grad)")
    block_size = v.positive_int(block_size, "block_size", fn)
    _check_scale(scale, fn)
    if attn_mask is not None:
        if is_causal:
            raise ValueError(f"{fn}: give attn_mask or is_causal=True, not both; to use both, pass "
                             f"combine_masks(causal_mask(L, S), your_mask) as attn_mask")
        _check_mask(attn_mask, query, key, fn)

    L, E, S, Ev = query.shape[-2], query.shape[-1], key.shape[-2], value.shape[-1]
    batch = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    out_dtype = query.dtype
    work_dtype = torch.float32 if out_dtype in _HALF else out_dtype
    scale = 1.0 / math.sqrt(E) if scale is None else float(scale)
    device = query.device

    # Flatten the batch dims into one: (N, L, E), (N, S, E), (N, S, Ev): views when the inputs are
    # contiguous; inputs that broadcast (e.g. one key head shared by all query heads) are copied, O(S E).
    N = math.prod(batch)
    q = query.to(work_dtype).expand(*batch, L, E).reshape(N, L, E)
    k = key.to(work_dtype).expand(*batch, S, E).reshape(N, S, E)
    val = value.to(work_dtype).expand(*batch, S, Ev).reshape(N, S, Ev)
    if N == 0 or L == 0 or S == 0:
        return torch.zeros(*batch, L, Ev, dtype=out_dtype, device=device)
    out = torch.empty(N, L, Ev, dtype=work_dtype, device=device)  # (N, L, Ev): the accumulator acc

    float_mask = attn_mask is not None and attn_mask.dtype != torch.bool

    # A mask without batch dims applies to every row group as is; a mask with batch dims is
    # expanded to (N, ...) one block at a time (never all of (N, L, S) at once).
    mask_has_batch = attn_mask is not None and attn_mask.dim() > 2 and math.prod(attn_mask.shape[:-2]) > 1
    mask_full = attn_mask.expand(*batch, L, S) if mask_has_batch else None
    mask_2d = None
    if attn_mask is not None and not mask_has_batch:
        mask_2d = attn_mask.reshape(attn_mask.shape[-2:]).expand(L, S)  # (L, S), a view

    # Rows per block: all batch entries and as many queries as fit in _BLOCK_ELEMENTS scores.
    bs = min(block_size, S)
    if mask_has_batch:
        n_chunk = N
        q_chunk = max(1, min(L, _BLOCK_ELEMENTS // max(1, N * bs)))
    else:
        q_chunk = max(1, min(L, _BLOCK_ELEMENTS // bs))
        n_chunk = max(1, min(N, _BLOCK_ELEMENTS // (q_chunk * bs)))
    threads = _threads_for(device, N * L * S)
    while threads > 1 and math.ceil(N / n_chunk) * math.ceil(L / q_chunk) < threads \
            and (q_chunk > 1 or (n_chunk > 1 and not mask_has_batch)):
        if n_chunk > 1 and not mask_has_batch:
            n_chunk = math.ceil(n_chunk / 2)  # more, smaller row groups: one per thread at least
        else:
            q_chunk = math.ceil(q_chunk / 2)
    tasks = [(n0, min(N, n0 + n_chunk), q0, min(L, q0 + q_chunk))
             for n0 in range(0, N, n_chunk) for q0 in range(0, L, q_chunk)]
    job = _TiledJob(q, k, val, out, scale, S, bs, is_causal, attn_mask is not None, float_mask, mask_has_batch,
                    mask_full, mask_2d, N, tasks)
    # One scores buffer and one set of row statistics per thread, allocated here (in the calling thread).
    threads = min(threads, len(tasks))
    buffers = [(torch.empty(n_chunk * q_chunk * bs, dtype=work_dtype, device=device),
                torch.empty(4, n_chunk * q_chunk, dtype=work_dtype, device=device)) for _ in range(threads)]
    if threads == 1:
        job.run(*buffers[0])
    else:
        futures = [_pool(threads).submit(job.run, *b) for b in buffers]
        for future in futures:
            future.result()  # re-raises a worker's exception here
    return out.reshape(*batch, L, Ev).to(out_dtype)


# Splitting the row groups over threads: on a CPU with several threads, PyTorch runs each operation
# in parallel and all threads meet at the end of every operation. The loop above makes many
# operations, and on a machine shared with other programs one late thread stalls every one of
# them. Instead, each worker thread below runs single-threaded operations on its own row groups,
# from start to end, and the threads meet once.
_PARALLEL_MIN_SCORES = 2**22
_POOL: ThreadPoolExecutor | None = None
_POOL_KEY: tuple[int, int] | None = None
_POOL_LOCK = threading.Lock()


def _threads_for(device: torch.device, scores: int) -> int:
    if device.type != "cpu" or scores < _PARALLEL_MIN_SCORES:
        return 1
    if _get_current_dispatch_mode() is not None:
        return 1  # MemoryTracker, FlopCounterMode: they see the operations of the calling thread only
    return max(1, torch.get_num_threads())  # 1 inside a worker thread: no nesting


def _pool(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` worker threads, each limited to one intra-op thread (rebuilt after a fork)."""
    global _POOL, _POOL_KEY
    key = (threads, os.getpid())
    with _POOL_LOCK:
        if _POOL is None or _POOL_KEY != key:
            if _POOL is not None and _POOL_KEY[1] == key[1]:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="course_lib_tiled",
                                       initializer=torch.set_num_threads, initargs=(1,))
            _POOL_KEY = key
        return _POOL


class _TiledJob:
    """The block loop of tiled_attention over a list of row groups, shared by the threads that run it."""

    def __init__(self, q, k, val, out, scale, S, bs, is_causal, has_mask, float_mask, mask_has_batch, mask_full,
                 mask_2d, N, tasks):
        self.q, self.k, self.val, self.out = q, k, val, out  # (N, L, E), (N, S, E), (N, S, Ev), (N, L, Ev)
        self.scale, self.S, self.bs, self.is_causal = scale, S, bs, is_causal
        self.has_mask, self.float_mask = has_mask, float_mask
        self.mask_has_batch, self.mask_full, self.mask_2d = mask_has_batch, mask_full, mask_2d
        self.N = N
        self._tasks = iter(tasks)
        self._lock = threading.Lock()

    def _next_task(self):
        with self._lock:  # row groups are handed out one at a time: a slow thread simply takes fewer
            return next(self._tasks, None)

    def run(self, buffer: torch.Tensor, row_stats: torch.Tensor) -> None:
        k, val, out, S, bs = self.k, self.val, self.out, self.S, self.bs
        device, neg_inf = k.device, float("-inf")
        while (task := self._next_task()) is not None:
            n0, n1, q0, q1 = task
            q = self.q[n0:n1, q0:q1] * self.scale  # (n, lq, E): the scale folded into the queries once
            out[n0:n1, q0:q1].zero_()
            # The running max is needed only when some score could overflow exp (float masks: always).
            fast = not self.float_mask and _no_overflow_possible(q, k[n0:n1], val[n0:n1], 1.0, q.dtype)
            rows = (n1 - n0) * (q1 - q0)
            running_max, running_sum, block_max, block_sum = (
                s[:rows].view(n1 - n0, q1 - q0, 1) for s in row_stats)  # (n, lq, 1) each
            running_max.fill_(neg_inf)
            running_sum.zero_()
            for k0 in range(0, S, bs):
                k1 = min(S, k0 + bs)
                r0 = max(q0, k0) if self.is_causal else q0  # causal: queries before k0 see none of this block
                if r0 >= q1:
                    break  # causal: this block and all later ones lie above the diagonal
                acc = out[n0:n1, r0:q1]  # (n, lq, Ev), a view: updated in place
                qi = q[:, r0 - q0:]  # (n, lq, E)
                m, l_sum = running_max[:, r0 - q0:], running_sum[:, r0 - q0:]  # (n, lq, 1)
                b_max, b_sum = block_max[:, r0 - q0:], block_sum[:, r0 - q0:]
                lq, lk = q1 - r0, k1 - k0
                scores = buffer[: (n1 - n0) * lq * lk].view(n1 - n0, lq, lk)  # (n, lq, lk)
                torch.bmm(qi, k[n0:n1, k0:k1].transpose(1, 2), out=scores)  # (n, lq, E) @ (n, E, lk) -> (n, lq, lk)

                if self.is_causal and k1 - 1 > r0:  # the block crosses the diagonal: hide keys j > i
                    rows_i = torch.arange(r0, q1, device=device)[:, None]  # (lq, 1)
                    cols_j = torch.arange(k0, k1, device=device)[None, :]  # (1, lk)
                    scores.masked_fill_(cols_j > rows_i, neg_inf)
                elif self.has_mask:
                    if self.mask_has_batch:
                        block_mask = self.mask_full[..., r0:q1, k0:k1].reshape(self.N, lq, lk)[n0:n1]  # (n, lq, lk)
                    else:
                        block_mask = self.mask_2d[r0:q1, k0:k1]  # (lq, lk), broadcast over n
                    if self.float_mask:
                        scores.add_(block_mask.to(scores.dtype))
                    else:
                        scores.masked_fill_(~block_mask, neg_inf)

                if fast:
                    # No score can overflow exp: weights relative to a fixed shift of 0.
                    scores.exp_()
                else:
                    torch.amax(scores, dim=-1, keepdim=True, out=b_max)  # (n, lq, 1)
                    torch.maximum(m, b_max, out=b_max)  # the new running max m'
                    # rows that have seen only -inf so far keep shift 0 (exp(-inf - 0) = 0, not NaN)
                    shift = torch.where(torch.isneginf(b_max), torch.zeros_like(b_max), b_max)
                    rescale = m.sub_(shift).exp_()  # exp(m - m'), in m's storage
                    l_sum.mul_(rescale)
                    acc.mul_(rescale)
                    scores.sub_(shift).exp_()
                    m.copy_(b_max)
                torch.sum(scores, dim=-1, keepdim=True, out=b_sum)
                l_sum.add_(b_sum)
                acc.baddbmm_(scores, val[n0:n1, k0:k1])  # acc += (n, lq, lk) @ (n, lk, Ev)
            # fully masked rows have l = 0 and acc = 0: divide by 1 to give zeros, not NaN
            total = running_sum.masked_fill(running_sum == 0, 1.0)
            out[n0:n1, q0:q1].div_(total)


# --------------------------------------------------------------------------------------------
# The KV cache.
# --------------------------------------------------------------------------------------------


class KVCache:
    """The keys and values of the tokens seen so far, for generation one token at a time.

    In causal self-attention, the key and value of token t depend only on token t, and earlier
    tokens never attend to later ones: so when token t+1 arrives, the keys and values of tokens
    0..t are unchanged and can be kept instead of recomputed. ``append`` adds the new ones along
    the sequence dim (-2) and returns all of them.

    The storage grows by doubling (amortised O(1) per token, like a Python list); ``keys`` and
    ``values`` are views of the filled part.

    Args:
        max_length: optional limit on the number of cached positions (``append`` raises past it).
    Shape:
        key (..., T, E), value (..., T, Ev) per append -> keys (..., P, E), values (..., P, Ev),
        P = number of positions cached so far.
    Taught in: notebooks/09_efficient_attention.ipynb.  Source: Pope et al. 2022, "Efficiently
    Scaling Transformer Inference", sec. 2 (the KV cache); Vaswani et al. 2017, sec. 3.2.3.
    """

    def __init__(self, max_length: int | None = None):
        if max_length is not None:
            max_length = v.positive_int(max_length, "max_length", "KVCache")
        self.max_length = max_length
        self._keys: torch.Tensor | None = None  # (..., capacity, E)
        self._values: torch.Tensor | None = None  # (..., capacity, Ev)
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        shape = "empty" if self._keys is None else f"keys {v.shape_str(self.keys)}, values {v.shape_str(self.values)}"
        return f"KVCache({self._length} positions, {shape})"

    @property
    def keys(self) -> torch.Tensor | None:
        """All cached keys (..., P, E), or None before the first append."""
        return None if self._keys is None else self._keys[..., : self._length, :]

    @property
    def values(self) -> torch.Tensor | None:
        """All cached values (..., P, Ev), or None before the first append."""
        return None if self._values is None else self._values[..., : self._length, :]

    def reset(self) -> None:
        """Forget everything (start a new sequence)."""
        self._keys = self._values = None
        self._length = 0

    def append(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the keys and values of T new positions; return all cached keys and values.

        Args:
            key: float tensor (..., T, E); value: float tensor (..., T, Ev), same batch dims, T,
                dtype and device (and, after the first call, the same as the cached ones).
        Returns:
            (keys (..., P + T, E), values (..., P + T, Ev)): views of the cache.
        Raises:
            TypeError: if key/value are not floating tensors or their dtype differs from the cache.
            ValueError: if shapes disagree with each other or with the cache, the device differs,
                or ``max_length`` would be exceeded.
        """
        fn = "KVCache.append"
        v.tensor(key, "key", fn, min_dim=2, floating=True)
        v.tensor(value, "value", fn, min_dim=2, floating=True)
        if key.dtype != value.dtype:
            raise TypeError(f"{fn}: key and value must share a dtype, got {key.dtype} and {value.dtype}")
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(f"{fn}: key (..., T, E) and value (..., T, Ev) must share the batch dims and T, "
                             f"got key {v.shape_str(key)} and value {v.shape_str(value)}")
        T = key.shape[-2]
        if self._keys is not None:
            if key.dtype != self._keys.dtype:
                raise TypeError(f"{fn}: key has dtype {key.dtype}, the cache holds {self._keys.dtype}")
            if key.device != self._keys.device:
                raise ValueError(f"{fn}: key is on {key.device}, the cache is on {self._keys.device}")
            cached_k, cached_v = self.keys, self.values
            if key.shape[:-2] != cached_k.shape[:-2] or key.shape[-1] != cached_k.shape[-1] \
                    or value.shape[-1] != cached_v.shape[-1]:
                raise ValueError(f"{fn}: new key {v.shape_str(key)} / value {v.shape_str(value)} do not fit the "
                                 f"cache's keys {v.shape_str(cached_k)} / values {v.shape_str(cached_v)}: only "
                                 f"the sequence dim (-2) may differ")
        new_length = self._length + T
        if self.max_length is not None and new_length > self.max_length:
            raise ValueError(f"{fn}: {new_length} positions would exceed max_length={self.max_length}")
        capacity = 0 if self._keys is None else self._keys.shape[-2]
        if new_length > capacity:
            capacity = max(new_length, 2 * capacity, 16)
            if self.max_length is not None:
                capacity = min(capacity, self.max_length)
            grown_k = key.new_empty(*key.shape[:-2], capacity, key.shape[-1])  # (..., capacity, E)
            grown_v = value.new_empty(*value.shape[:-2], capacity, value.shape[-1])  # (..., capacity, Ev)
            if self._length:
                grown_k[..., : self._length, :] = self.keys
                grown_v[..., : self._length, :] = self.values
            self._keys, self._values = grown_k, grown_v
        self._keys[..., self._length:new_length, :] = key  # appended along the sequence dim (-2)
        self._values[..., self._length:new_length, :] = value
        self._length = new_length
        return self.keys, self.values


def decode_step(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cache: KVCache,
    scale: float | None = None,
) -> torch.Tensor:
    """Causal self-attention for the newest T tokens, reusing the cached keys and values.

    Appends ``key`` and ``value`` to ``cache``, then lets the T new queries attend to every
    cached position up to their own: new token i (at position P + i, after P cached ones) sees
    positions 0 .. P + i. With T = 1 (one generated token) that is simply all cached positions.
    The outputs equal the last T rows of causal attention over the whole sequence, recomputed
    from scratch (tests/test_efficient.py checks it); the work per token grows like P instead
    of P squared.

    Args:
        query: float tensor (..., T, E), the queries of the new tokens.
        key: float tensor (..., T, E); value: float tensor (..., T, Ev): their keys and values.
        cache: a :class:`KVCache` holding the earlier positions (updated in place).
        scale: multiplier of the scores; ``None`` means 1/sqrt(E).
    Returns:
        output (..., T, Ev), the attention output of the new tokens.
    Shape:
        query (..., T, E), key (..., T, E), value (..., T, Ev) -> (..., T, Ev).
    Raises:
        TypeError: if ``cache`` is not a KVCache, or inputs have wrong dtypes.
        ValueError: if T differs between query and key, or shapes do not fit the cache.
    Taught in: notebooks/09_efficient_attention.ipynb.  Source: Pope et al. 2022, sec. 2.
    """
    fn = "decode_step"
    if not isinstance(cache, KVCache):
        raise TypeError(f"{fn}: cache must be a KVCache, got {type(cache).__name__}")
    v.tensor(query, "query", fn, min_dim=2, floating=True)
    v.tensor(key, "key", fn, min_dim=2, floating=True)
    if query.shape[-2] != key.shape[-2]:
        raise ValueError(f"{fn}: query (..., T, E) and key (..., T, E) must hold the same new tokens, got "
                         f"query {v.shape_str(query)} and key {v.shape_str(key)}")
    keys, values = cache.append(key, value)  # (..., P + T, E), (..., P + T, Ev)
    T, total = query.shape[-2], keys.shape[-2]
    mask = None
    if T > 1:  # new token i sits at position P + i: it may see positions 0 .. P + i
        mask = torch.ones(T, total, dtype=torch.bool, device=query.device).tril(diagonal=total - T)  # (T, P + T)
    return scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=scale)


# --------------------------------------------------------------------------------------------
# Local attention and linear attention (cheaper, not exact).
# --------------------------------------------------------------------------------------------


def sliding_window_mask(
    L: int,
    window: int,
    S: int | None = None,
    causal: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Boolean mask of local attention: each query sees only the keys near it (True = may attend).

    - ``causal=True`` (Mistral-style): query i sees keys ``i - window + 1 .. i``, the last
      ``window`` positions including its own.
    - ``causal=False`` (Longformer-style): query i sees keys ``j`` with ``|i - j| <= window // 2``,
      ``window // 2`` positions on each side and its own.

    Positions are aligned top-left (query i and key i are the same position), as in
    :func:`course_lib.causal_mask`. A window of at least L (causal) or 2 * (L - 1) + 1 (both
    sides) allows everything that the causal or full mask allows. Each row has at most
    ``window`` (causal) or ``2 * (window // 2) + 1`` True entries, so the attention cost grows
    like L * window instead of L * S, if the kernel skips the blocked entries.

    Args:
        L: number of queries.  window: the window size (positive int).
        S: number of keys (default L).  causal: one-sided (default) or two-sided window.
        device: torch device of the result (default: the CPU).
    Returns:
        torch.bool tensor (L, S).
    Shape:
        (L, S)
    Raises:
        TypeError: if L, S or window is not an int, or causal is not a bool.
        ValueError: if L, S or window is not positive.
    Taught in: notebooks/09_efficient_attention.ipynb.  Source: Beltagy et al. 2020, "Longformer",
    sec. 3.1 (sliding window); Jiang et al. 2023, "Mistral 7B", sec. 2 (causal sliding window).
    """
    fn = "sliding_window_mask"
    L = v.positive_int(L, "L", fn)
    window = v.positive_int(window, "window", fn)
    S = L if S is None else v.positive_int(S, "S", fn)
    if not isinstance(causal, bool):
        raise TypeError(f"{fn}: causal must be a bool, got {type(causal).__name__}")
    i = torch.arange(L, device=device)[:, None]  # (L, 1): query positions
    j = torch.arange(S, device=device)[None, :]  # (1, S): key positions
    if causal:
        return (j <= i) & (j > i - window)  # (L, S)
    return (i - j).abs() <= window // 2  # (L, S)


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """The feature map of linear attention: ``elu(x) + 1``, positive everywhere.

    Args:
        x: float tensor, any shape.
    Returns:
        a tensor of x's shape, dtype and device, all entries > 0.
    Taught in: notebooks/09_efficient_attention.ipynb.  Source: Katharopoulos et al. 2020, eq. 7.
    """
    v.tensor(x, "x", "elu_feature_map", floating=True)
    return torch.nn.functional.elu(x) + 1.0


def linear_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    is_causal: bool = False,
    feature_map=None,
    eps: float = 1e-6,
    chunk_size: int = 64,
) -> torch.Tensor:
    """Linear attention: softmax's exp(q . k) replaced by a product of features phi(q) . phi(k).

    With a similarity that factorises, the sum over keys can be done first, once for all queries:

        out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i)^T sum_j phi(k_j))

    The (E, Ev) matrix ``sum_j phi(k_j) v_j^T`` costs S * E * Ev to build and each query then
    costs E * Ev: time and memory grow linearly in L and S. It is a *different* attention, not
    an approximation with a guarantee: chapter 09 measures how far it is from softmax attention.

    With ``is_causal`` (L == S), query i sums over keys 0..i only: the running sums are carried
    from one chunk of ``chunk_size`` positions to the next, and inside a chunk a small masked
    (chunk, chunk) product is used, so memory stays O(L * chunk + E * Ev) per head.

    Args:
        query: float tensor (..., L, E).  key: float tensor (..., S, E).
        value: float tensor (..., S, Ev). Same dtype and device; batch dims broadcast.
        is_causal: if True, query i sees keys 0..i (needs L == S).
        feature_map: callable applied to queries and keys, must return positive features
            (default :func:`elu_feature_map`, elu(x) + 1).
        eps: added to the denominator (avoids 0 / 0).
        chunk_size: positions per chunk in the causal form.
    Returns:
        output (..., L, Ev), dtype and device of ``query``.
    Shape:
        query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev).
    Raises:
        TypeError: if inputs are not floating tensors, dtypes differ, or feature_map is not callable.
        ValueError: if shapes do not match, or is_causal with L != S.
    Taught in: notebooks/09_efficient_attention.ipynb.  Source: Katharopoulos et al. 2020,
    "Transformers are RNNs", eq. 4-6 (non-causal) and eq. 8-9 (causal).
    """
    fn = "linear_attention"
    _check_qkv(query, key, value, fn)
    if feature_map is None:
        feature_map = elu_feature_map
    if not callable(feature_map):
        raise TypeError(f"{fn}: feature_map must be callable, got {type(feature_map).__name__}")
    chunk_size = v.positive_int(chunk_size, "chunk_size", fn)
    L, S = query.shape[-2], key.shape[-2]
    phi_q, phi_k = feature_map(query), feature_map(key)  # (..., L, E), (..., S, E)
    if not is_causal:
        kv = phi_k.transpose(-2, -1) @ value  # (..., E, S) @ (..., S, Ev) -> (..., E, Ev)
        z = phi_k.sum(dim=-2)  # (..., E)
        numerator = phi_q @ kv  # (..., L, E) @ (..., E, Ev) -> (..., L, Ev)
        denominator = phi_q @ z[..., :, None]  # (..., L, E) @ (..., E, 1) -> (..., L, 1)
        return numerator / (denominator + eps)
    if L != S:
        raise ValueError(f"{fn}: is_causal needs L == S (self-attention), got query {v.shape_str(query)} "
                         f"and key {v.shape_str(key)}")
    batch = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    E, Ev = query.shape[-1], value.shape[-1]
    kv = query.new_zeros(*batch, E, Ev)  # (..., E, Ev): sum of phi(k_j) v_j^T over earlier chunks
    z = query.new_zeros(*batch, E)  # (..., E): sum of phi(k_j) over earlier chunks
    outputs = []
    for c0 in range(0, L, chunk_size):
        c1 = min(L, c0 + chunk_size)
        pq, pk, vc = phi_q[..., c0:c1, :], phi_k[..., c0:c1, :], value[..., c0:c1, :]  # (..., C, E), (..., C, Ev)
        within = (pq @ pk.transpose(-2, -1)).tril()  # (..., C, E) @ (..., E, C) -> (..., C, C), j <= i only
        numerator = pq @ kv + within @ vc  # (..., C, Ev)
        denominator = pq @ z[..., :, None] + within.sum(dim=-1, keepdim=True)  # (..., C, 1)
        outputs.append(numerator / (denominator + eps))
        kv = kv + pk.transpose(-2, -1) @ vc  # (..., E, C) @ (..., C, Ev) -> (..., E, Ev)
        z = z + pk.sum(dim=-2)
    return torch.cat(outputs, dim=-2)  # (..., L, Ev)


# --------------------------------------------------------------------------------------------
# Measuring memory: the bytes of every tensor created, on any device.
# --------------------------------------------------------------------------------------------


class MemoryTracker(TorchDispatchMode):
    """Count the bytes of the tensors PyTorch creates inside a ``with`` block: current and peak.

    Every PyTorch operation run inside the block is seen (a ``TorchDispatchMode``); each new
    storage an operation returns is counted until the last tensor using it is freed. Views and
    in-place results share their input's storage and add nothing. Tensors that existed before
    the block are not counted, so ``peak`` is the *extra* memory of the code in the block.

    The count is deterministic (the same on every run and every device: it adds tensor sizes,
    it does not read the allocator), which makes it usable in tests. It does not see memory a
    kernel allocates internally without returning it as a tensor (for example the per-thread
    scratch blocks of a fused attention kernel); ``torch.cuda.max_memory_allocated`` or the
    process's peak RSS include those.

    Attributes:
        current: bytes of tracked tensors alive now.
        peak: the largest value ``current`` reached.
        ops: names of the operations run, in order (e.g. "bmm", "exp_").
    Example::

        with MemoryTracker() as tracker:
            out = scaled_dot_product_attention(q, k, v)
        tracker.peak  # bytes; 3 * L * S * 4 for one float32 head in course_lib's version

    Taught in: notebooks/09_efficient_attention.ipynb.
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self.ops: list[str] = []
        self._live: dict[tuple, list[int]] = {}  # storage key -> [nbytes, tensors alive]

    def _release(self, key) -> None:
        entry = self._live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self._live[key]

    @staticmethod
    def _key(t: torch.Tensor) -> tuple:
        return (t.device, t.untyped_storage().data_ptr())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops.append(func.overloadpacket.__name__)
        inputs = {self._key(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            key = self._key(t)
            if key not in self._live:
                if key in inputs:
                    continue  # a view of (or in-place result on) a tensor from before the block
                self._live[key] = [t.untyped_storage().nbytes(), 0]
                self.current += self._live[key][0]
                self.peak = max(self.peak, self.current)
            self._live[key][1] += 1
            weakref.finalize(t, self._release, key)
        return out
