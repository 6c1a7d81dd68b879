"""Cheaper attention that is *not* exact: local (sliding-window) attention and linear attention.

Taught in: notebooks/09_efficient_attention.ipynb, which measures how far each is from exact attention.
Sources: Beltagy et al. 2020, "Longformer" (sliding windows); Katharopoulos et al. 2020,
"Transformers are RNNs" (linear attention, eq. 4-6).
"""

from __future__ import annotations

import torch

from .. import _validate as v
from .tiled_fast import _check_qkv

__all__ = ["sliding_window_mask", "elu_feature_map", "linear_attention"]


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
