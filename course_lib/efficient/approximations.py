"""Cheaper attention that is *not* exact: local (sliding-window) attention and linear attention.

Taught in: notebooks/09_efficient_attention.ipynb, which measures how far each is from exact attention.
Sources: Beltagy et al. 2020, "Longformer" (sliding windows); Katharopoulos et al. 2020,
"Transformers are RNNs" (linear attention, eq. 4-6).
"""

from __future__ import annotations

import torch

from .. import _validate as v
from .tiled_fast import _check_qkv

__all__ = ["sliding_window_mask", "elu_feature_map", "linear_attention", "strided_mask", "fixed_mask", "global_local_mask"]


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
    batch = v.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
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


def _grid(L, S, fn: str, device):
    """Validated (L, S) and the (L, 1) query and (1, S) key positions."""
    L = v.positive_int(L, "L", fn)
    S = L if S is None else v.positive_int(S, "S", fn)
    device = v.device(device, "device", fn)
    i = torch.arange(L, device=device)[:, None]  # (L, 1): query positions
    j = torch.arange(S, device=device)[None, :]  # (1, S): key positions
    return i, j


def strided_mask(
    L: int, stride: int, S: int | None = None, causal: bool = True, device: torch.device | str | None = None
) -> torch.Tensor:
    """The "strided" sparse pattern of the Sparse Transformer: a local window, plus every ``stride``-th key before it.

    Query i may attend to key j when ``|i - j| < stride`` (a local window) or when ``i - j`` is
    a multiple of ``stride`` (a "column" every ``stride`` positions). Child et al. give the two
    parts to two different heads (or to alternating layers); this mask is their union, one
    head that sees both. The paper's local part, A(1) = {max(0, i - l), ..., i}, holds l + 1
    keys; its first key i - l is also on the stride (A(2)), so the union is the same as with
    the window ``i - stride + 1 .. i`` used here. With ``stride`` about ``sqrt(L)``, each row keeps about
    ``2 sqrt(L)`` keys instead of L, and any key reaches any later query in two steps (through
    the local window, then a column). Suited to data with a period (images, rows of pixels).

    Causal (default): query i sees keys ``max(0, i - stride + 1) .. i`` and ``i - stride, i -
    2 stride, ... >= 0``, that is ``min(i + 1, stride) + i // stride`` keys. Two-sided: the same
    on both sides of i.

    Args:
        L: number of queries.  stride: the period l (positive int).
        S: number of keys (default L); positions are aligned top-left (query i = key i).
        causal: keys after the query are blocked (default True).
        device: torch device of the result (default: the CPU).
    Returns:
        torch.bool tensor (L, S), True = may attend.
    Shape:
        (L, S)
    Raises:
        TypeError: if L, S or stride is not an int, or causal is not a bool.
        ValueError: if L, S or stride is not positive.
    Taught in: notebooks/09_efficient_attention.ipynb.
    Source: Child et al. 2019, "Generating Long Sequences with Sparse Transformers", sec. 4.3
        (strided attention, A(1) and A(2)) and fig. 3(b).
    """
    fn = "strided_mask"
    stride = v.positive_int(stride, "stride", fn)
    causal = v.flag(causal, "causal", fn)
    i, j = _grid(L, S, fn, device)
    offset = i - j  # (L, S): how far back the key is
    allowed = (offset.abs() < stride) | (offset % stride == 0)  # local window | every stride-th key
    return allowed & (j <= i) if causal else allowed  # (L, S)


def fixed_mask(
    L: int, block: int, summary: int = 1, S: int | None = None, causal: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The "fixed" sparse pattern of the Sparse Transformer: your own block, plus the last ``summary`` keys of every block.

    The positions are cut into blocks of ``block`` (Child et al.'s l). Query i may attend to
    every key of its own block (``j // block == i // block``) and to the "summary" keys, the
    last ``summary`` positions of every block (``j % block >= block - summary``, c in the
    paper). The summary keys carry information between blocks, so every key reaches every
    later query in two steps. Suited to data without a period (text).

    Causal (default): keys after the query are blocked too; query i then sees
    ``i % block + 1 + (i // block) * summary`` keys (its block so far, and the summary keys of
    the blocks before).

    Args:
        L: number of queries.  block: block length l (positive int).
        summary: number of summary keys per block, c (1 <= summary <= block; 1 by default).
        S: number of keys (default L); positions aligned top-left.
        causal: keys after the query are blocked (default True).
        device: torch device of the result (default: the CPU).
    Returns:
        torch.bool tensor (L, S), True = may attend.
    Shape:
        (L, S)
    Raises:
        TypeError: if an int argument is not an int, or causal is not a bool.
        ValueError: if L, S, block or summary is not positive, or summary > block.
    Taught in: notebooks/09_efficient_attention.ipynb.
    Source: Child et al. 2019, "Generating Long Sequences with Sparse Transformers", sec. 4.3
        (fixed attention: A(1) = {j : floor(j/l) = floor(i/l)}, A(2) = {j : j mod l in {t, ..., l}},
        t = l - c) and fig. 3(c).
    """
    fn = "fixed_mask"
    block = v.positive_int(block, "block", fn)
    summary = v.positive_int(summary, "summary", fn)
    if summary > block:
        raise ValueError(f"{fn}: summary={summary} must be at most block={block} (summary keys per block)")
    causal = v.flag(causal, "causal", fn)
    i, j = _grid(L, S, fn, device)
    same_block = (i // block) == (j // block)  # (L, S)
    summary_key = (j % block) >= block - summary  # (1, S): the last `summary` positions of each block
    allowed = same_block | summary_key  # (L, S)
    return allowed & (j <= i) if causal else allowed


def global_local_mask(
    L: int, window: int, global_tokens=1, S: int | None = None, causal: bool = False,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Local attention plus global tokens (Longformer, BigBird): a sliding window, and a few tokens that see and are seen by all.

    Every query sees the keys of its sliding window (as :func:`sliding_window_mask`); a
    *global* token (e.g. [CLS], or the question in question answering) attends to every key,
    and every query attends to it. Information then crosses the whole sequence in two steps
    through a global token, while the cost stays about ``L * (window + 2 g)`` for g global tokens.

    Two-sided (default, as in Longformer's encoder): query i sees keys ``|i - j| <= window // 2``;
    a non-global row has ``(its window) + (global tokens outside it)`` True entries, a global
    row and a global column are all True. Causal: one-sided window (the last ``window``
    positions), and keys after the query stay blocked also for global tokens.

    Args:
        L: number of queries.  window: the window size (positive int).
        global_tokens: an int g (the first g positions are global, 0 for none) or a sequence
            of positions (e.g. ``[0, L - 1]``).
        S: number of keys (default L); positions aligned top-left, and a global position p is
            global both as query p and as key p.
        causal: one-sided window and no future keys (default False).
        device: torch device of the result (default: the CPU).
    Returns:
        torch.bool tensor (L, S), True = may attend.
    Shape:
        (L, S)
    Raises:
        TypeError: if L, S or window is not an int, causal is not a bool, or global_tokens is
            not an int or a sequence of ints.
        ValueError: if L, S or window is not positive, or a global position is outside
            0 .. max(L, S) - 1 (or the int is negative).
    Taught in: notebooks/09_efficient_attention.ipynb.
    Source: Beltagy et al. 2020, "Longformer", sec. 3.1 (sliding window + global attention,
        fig. 2(d)); Zaheer et al. 2020, "Big Bird", sec. 2 (global tokens, ITC).
    """
    fn = "global_local_mask"
    window = v.positive_int(window, "window", fn)
    causal = v.flag(causal, "causal", fn)
    i, j = _grid(L, S, fn, device)
    L, S = i.shape[0], j.shape[1]
    n = max(L, S)
    if isinstance(global_tokens, bool):
        raise TypeError(f"{fn}: global_tokens must be an int or a sequence of ints, got bool")
    if isinstance(global_tokens, int):
        if not 0 <= global_tokens <= n:
            raise ValueError(f"{fn}: global_tokens={global_tokens} must be in 0 .. {n} (the first g positions)")
        positions = list(range(global_tokens))
    else:
        try:
            positions = list(global_tokens)
        except TypeError:
            raise TypeError(f"{fn}: global_tokens must be an int or a sequence of ints, "
                            f"got {type(global_tokens).__name__}") from None
        if any(isinstance(p, bool) or not isinstance(p, int) for p in positions):
            raise TypeError(f"{fn}: global_tokens must hold ints, got {positions!r}")
        if any(not 0 <= p < n for p in positions):
            raise ValueError(f"{fn}: global positions {positions} must lie in 0 .. {n - 1}")
    is_global = torch.zeros(n, dtype=torch.bool, device=i.device)  # (n,)
    if positions:
        is_global[torch.tensor(positions, device=i.device)] = True
    local = sliding_window_mask(L, window, S=S, causal=causal, device=i.device)  # (L, S)
    allowed = local | is_global[:L, None] | is_global[None, :S]  # (L, S): window | global row | global column
    return allowed & (j <= i) if causal else allowed
