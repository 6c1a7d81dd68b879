"""The fast path of tiled attention: row groups sized for the cache, a thread pool, in-place updates.

:func:`course_lib.efficient.tiled.flash_attention` is the readable rendering of Dao et al. 2022,
algorithm 1; this module computes the same numbers quickly (tests/test_efficient.py checks that
the two agree). Learners read ``tiled.py``; this file is for the curious.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from .. import _validate as v
from ..attention import _check_mask

__all__ = ["tiled_attention"]

_HALF = (torch.float16, torch.bfloat16)

# Elements of one block of scores in tiled_attention (2**20 float32 = 4 MiB): small enough to stay
# in a CPU's L3 cache between the operations on it, large enough that Python's per-operation
# overhead stays small. Measured in benchmarks/attention_bench.py.
_BLOCK_ELEMENTS = 2**20


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

    Reads three numbers on the host (``float(...)``): call it for CPU tensors only, where that
    costs no device sync (on a GPU it would wait for the queued kernels; meta tensors have no values).
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
    The bound is read on the host, so this shortcut is taken **on the CPU only**, where the
    values are already in host memory: on any other device (CUDA, MPS, ``meta``) the running-max
    path always runs, and the function never reads a tensor value on the host (no GPU sync; on
    ``meta`` only shapes and dtypes propagate).

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
    batch = v.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
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
            # (the bound is read on the host: CPU only, where that costs no device sync)
            fast = (not self.float_mask and device.type == "cpu"
                    and _no_overflow_possible(q, k[n0:n1], val[n0:n1], 1.0, q.dtype))
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
