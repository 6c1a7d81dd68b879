"""Tiled attention, the FlashAttention forward pass, written to be read beside the paper.

:func:`flash_attention` below follows Algorithm 1 of Dao et al. 2022 line by line, with the
paper's names: the queries are cut into ``T_r`` blocks ``Q_i`` of ``B_r`` rows, the keys and
values into ``T_c`` blocks ``K_j``, ``V_j`` of ``B_c`` rows, and each query row keeps two running
statistics, its largest score so far ``m`` and its softmax denominator so far ``l``. Only one
``B_r x B_c`` tile of scores ``S_ij`` exists at a time: on a GPU it lives in on-chip SRAM, and the
extra memory in HBM beyond the inputs and the output ``O`` is O(N): the row statistics ``l`` and ``m`` (Theorem 1).

Two additions to Algorithm 1, both from the paper's Algorithm 2: the softmax scale ``tau``
(``1/sqrt(d)`` by default) and a mask (``is_causal`` or ``attn_mask``). One guard that the paper
does not need: a query row whose keys are all masked has ``m = -inf``; it gets zeros, as
everywhere in course_lib, instead of ``exp(-inf - (-inf)) = NaN``.

:func:`tiled_attention` (from :mod:`course_lib.efficient.tiled_fast`) computes the same numbers
quickly on a CPU: row groups sized for the cache, a thread pool, in-place updates, and the
division by ``l`` done once at the end (FlashAttention-2's change). tests/test_efficient.py
checks that the two agree with each other and with ``F.scaled_dot_product_attention``.

Shapes: the paper writes Q, K, V as (N, d); here they carry PyTorch's legend and batch dims:
query (..., L, E), key (..., S, E), value (..., S, Ev).

Taught in: notebooks/09_efficient_attention.ipynb.
Source: Dao, Fu, Ermon, Rudra & Re 2022, "FlashAttention: Fast and Memory-Efficient Exact
Attention with IO-Awareness", Algorithm 1 (and Algorithm 2 for the scale and the mask); Dao 2023,
"FlashAttention-2", sec. 3.1 (the deferred division).
"""

from __future__ import annotations

import math

import torch

from .. import _validate as v
from ..attention import _check_mask
from .tiled_fast import _check_qkv, _check_scale, tiled_attention

__all__ = ["flash_attention", "tiled_attention"]

_HALF = (torch.float16, torch.bfloat16)


def flash_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    block_rows: int = 64,
    block_cols: int = 64,
) -> torch.Tensor:
    """Exact attention, one ``B_r x B_c`` tile of scores at a time: Dao et al. 2022, Algorithm 1.

    Readable, not fast: each line of the loop is a line of the paper's algorithm, numbered in the
    comments. Use :func:`tiled_attention` for speed; the two give the same numbers.

    Args:
        query: float tensor (..., L, E), the paper's Q (N x d).
        key: float tensor (..., S, E), the paper's K.
        value: float tensor (..., S, Ev), the paper's V. All three share dtype and device;
            batch dims broadcast.
        attn_mask: optional mask broadcastable to (..., L, S): ``torch.bool`` with True = may
            attend, or a float tensor added to the scores.
        is_causal: if True, query i may attend to keys 0..i (top-left aligned, as PyTorch).
            Cannot be combined with ``attn_mask``.
        scale: the paper's tau, multiplier of the scores; ``None`` means 1/sqrt(E).
        block_rows: B_r, query rows per block (a positive int).
        block_cols: B_c, key rows per block (a positive int). On a GPU both are chosen so that
            the tiles fit in SRAM: B_c = ceil(M / 4d), B_r = min(B_c, d) for SRAM size M (line 1).
    Returns:
        output (..., L, Ev), the paper's O, in query's dtype and on its device. float16 and
        bfloat16 inputs are computed in float32 (as FlashAttention accumulates in float32).
    Shape:
        query (..., L, E), key (..., S, E), value (..., S, Ev) -> output (..., L, Ev).
    Raises:
        TypeError: if an input is not a floating tensor, dtypes differ, or block sizes / scale
            have a wrong type.
        ValueError: if E or S do not match, batch dims do not broadcast, the mask has a wrong
            shape, both attn_mask and is_causal are given, or a block size is < 1.
    Taught in: notebooks/09_efficient_attention.ipynb.  Source: Dao et al. 2022, Algorithm 1.
    """
    fn = "flash_attention"
    _check_qkv(query, key, value, fn)
    _check_scale(scale, fn)
    if not isinstance(is_causal, bool):
        raise TypeError(f"{fn}: is_causal must be a bool, got {type(is_causal).__name__}")
    B_r = v.positive_int(block_rows, "block_rows", fn)
    B_c = v.positive_int(block_cols, "block_cols", fn)
    if attn_mask is not None:
        if is_causal:
            raise ValueError(f"{fn}: give attn_mask or is_causal=True, not both")
        _check_mask(attn_mask, query, key, fn)

    out_dtype = query.dtype
    work = torch.float32 if out_dtype in _HALF else out_dtype
    Q, K, V = query.to(work), key.to(work), value.to(work)
    L, E, S = Q.shape[-2], Q.shape[-1], K.shape[-2]
    tau = 1.0 / math.sqrt(E) if scale is None else float(scale)
    batch = v.broadcast_shapes(Q.shape[:-2], K.shape[:-2], V.shape[:-2])
    if attn_mask is not None:
        attn_mask = attn_mask.expand(*attn_mask.shape[:-2], L, S)  # (..., L, S): a view, e.g. of a (..., 1, S) padding mask
        if attn_mask.dtype != torch.bool:
            attn_mask = attn_mask.to(work)

    # 2: initialise O = 0, l = 0, m = -inf (in HBM).
    O = torch.zeros(*batch, L, V.shape[-1], dtype=work, device=Q.device)  # (..., L, Ev)
    l = torch.zeros(*batch, L, 1, dtype=work, device=Q.device)  # (..., L, 1)
    m = torch.full((*batch, L, 1), float("-inf"), dtype=work, device=Q.device)  # (..., L, 1)

    # 3-4: divide Q, O, l, m into T_r blocks of B_r rows, and K, V into T_c blocks of B_c rows.
    row_blocks = [slice(r, min(r + B_r, L)) for r in range(0, L, B_r)]  # T_r blocks
    col_blocks = [slice(c, min(c + B_c, S)) for c in range(0, S, B_c)]  # T_c blocks

    for j in col_blocks:  # 5: for 1 <= j <= T_c
        K_j, V_j = K[..., j, :], V[..., j, :]  # 6: load K_j (..., B_c, E), V_j (..., B_c, Ev) to SRAM
        for i in row_blocks:  # 7: for 1 <= i <= T_r
            Q_i, O_i, l_i, m_i = Q[..., i, :], O[..., i, :], l[..., i, :], m[..., i, :]  # 8: load them
            S_ij = tau * Q_i @ K_j.transpose(-2, -1)  # 9: (..., B_r, E) @ (..., E, B_c) -> (..., B_r, B_c)
            S_ij = _mask_tile(S_ij, i, j, attn_mask, is_causal)  # Algorithm 2, line 11: MASK(S_ij)
            m_tilde = S_ij.amax(dim=-1, keepdim=True)  # 10: m~_ij = rowmax(S_ij), (..., B_r, 1)
            P_tilde = torch.exp(S_ij - _finite(m_tilde))  # 10: P~_ij = exp(S_ij - m~_ij), (..., B_r, B_c)
            l_tilde = P_tilde.sum(dim=-1, keepdim=True)  # 10: l~_ij = rowsum(P~_ij), (..., B_r, 1)
            m_new = torch.maximum(m_i, m_tilde)  # 11: m_i^new = max(m_i, m~_ij)
            old, new = torch.exp(m_i - _finite(m_new)), torch.exp(m_tilde - _finite(m_new))  # e^(m_i - m_new), e^(m~ - m_new)
            l_new = old * l_i + new * l_tilde  # 11: l_i^new
            # 12: O_i <- diag(l_i^new)^-1 (diag(l_i) e^(m_i - m_i^new) O_i + e^(m~_ij - m_i^new) P~_ij V_j)
            O[..., i, :] = (l_i * old * O_i + new * (P_tilde @ V_j)) / _nonzero(l_new)  # (..., B_r, Ev)
            l[..., i, :], m[..., i, :] = l_new, m_new  # 13: write l_i, m_i back
    return O.to(out_dtype)  # 16: return O


def _mask_tile(S_ij, i: slice, j: slice, attn_mask, is_causal: bool):
    """The scores of one tile with masked entries set to -inf (bool mask) or the mask added (float)."""
    if is_causal:
        rows = torch.arange(i.start, i.stop, device=S_ij.device)[:, None]  # (B_r, 1) query positions
        cols = torch.arange(j.start, j.stop, device=S_ij.device)[None, :]  # (1, B_c) key positions
        return S_ij.masked_fill(cols > rows, float("-inf"))
    if attn_mask is None:
        return S_ij
    tile = attn_mask[..., i, j]  # (..., B_r, B_c), broadcast like the scores
    if tile.dtype == torch.bool:
        return torch.where(tile, S_ij, torch.full_like(S_ij, float("-inf")))  # broadcasts both ways
    return S_ij + tile


def _finite(m: torch.Tensor) -> torch.Tensor:
    """A row max to subtract: -inf (a row with no visible key yet) becomes 0, so exp gives 0, not NaN."""
    return torch.where(torch.isneginf(m), torch.zeros_like(m), m)


def _nonzero(l_new: torch.Tensor) -> torch.Tensor:
    """The denominator: 1 where a row has seen no visible key (its O stays 0), else l_new."""
    return torch.where(l_new == 0, torch.ones_like(l_new), l_new)
