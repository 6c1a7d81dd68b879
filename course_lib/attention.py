"""Scaled dot-product attention, written from scratch.

Everything here is checked against PyTorch's own ``F.scaled_dot_product_attention`` in
tests/test_attention.py. Shapes use PyTorch's legend:

    B batch, H heads, L query length, S key/value length, E query/key size (d_k), Ev value size.

Leading batch dims ``...`` may be anything that broadcasts, as in PyTorch.

Source: Vaswani et al. 2017, "Attention Is All You Need", sec. 3.2.1, eq. 1:
``Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import _validate as v

__all__ = ["dot_product_scores", "softmax", "scaled_dot_product_attention", "attention_entropy", "AdditiveAttention"]

_HALF = (torch.float16, torch.bfloat16)


def dot_product_scores(query: torch.Tensor, key: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """All query-key dot products at once: ``scores = query @ key^T`` (times ``scale`` if given).

    Entry ``[..., i, j]`` is the dot product of query ``i`` with key ``j``: large when the two
    vectors point the same way *and* are long (unlike cosine similarity, magnitude counts).

    Args:
        query: float tensor (..., L, E).
        key: float tensor (..., S, E), same dtype and device as ``query``.
        scale: optional float multiplied into the scores. ``None`` means no scaling (the raw
            dot products of chapter 01); attention uses ``1 / sqrt(E)`` (chapter 03).
    Returns:
        scores, same dtype and device as the inputs. In float16/bfloat16 the scores are those
        of the format: a dot product above 65504 is ``inf`` in float16 (attention upcasts first).
    Shape:
        query (..., L, E), key (..., S, E) -> scores (..., L, S); batch dims broadcast.
    Raises:
        TypeError: if an input is not a floating tensor, the dtypes differ, or scale is not a
            float (a bool is not a scale).
        ValueError: if E differs between query and key, the batch dims do not broadcast, the
            two tensors are on different devices, or scale is not finite.
    Taught in: notebooks/01_dot_products.ipynb.  Source: Vaswani et al. 2017, sec. 3.2.1 (Q K^T).
    """
    fn = "dot_product_scores"
    v.tensor(query, "query", fn, min_dim=2, floating=True)
    v.tensor(key, "key", fn, min_dim=2, floating=True)
    if query.dtype != key.dtype:
        raise TypeError(f"{fn}: query and key must have the same dtype, got {query.dtype} and {key.dtype}")
    v.same_device(fn, query=query, key=key)
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"{fn}: query (..., L, E) and key (..., S, E) must share E, got query {v.shape_str(query)} "
            f"and key {v.shape_str(key)}"
        )
    v.broadcast_batch(query, key, ("query", "key"), fn)
    if scale is not None:
        scale = v.real(scale, "scale", fn)
    scores = query @ key.transpose(-2, -1)  # (..., L, E) @ (..., E, S) -> (..., L, S)
    if scale is not None:
        scores = scores * scale
    return scores


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable softmax, from scratch: ``exp(x - max) / sum(exp(x - max))``.

    Subtracting the row maximum changes nothing mathematically (it cancels in the ratio) but
    keeps ``exp`` from overflowing: ``exp(1000.)`` is ``inf`` in float32, ``exp(0.)`` is 1.

    Entries equal to ``-inf`` get weight exactly 0 (that is how masks work). A slice whose
    entries are *all* ``-inf`` (a query that may attend to nothing) returns all zeros, never
    NaN; a naive softmax returns NaN there (0 / 0).

    float16/bfloat16 inputs are computed in float32 and the weights cast back to the input's
    dtype (what ``torch.softmax(x, dim, dtype=torch.float32).to(x.dtype)`` gives): the sum of
    many ``exp`` terms and the division keep float32's precision, and the only error is the
    final rounding to the half format (at most half an ulp, 2**-11 relative in float16,
    2**-8 in bfloat16).

    Args:
        x: float tensor of any shape.
        dim: the dimension that sums to 1 (default: the last).
    Returns:
        weights, same shape, dtype and device as ``x``; each slice along ``dim`` sums to 1
        (or is all zeros if it was all ``-inf``).
    Shape:
        (*) -> (*)
    Raises:
        TypeError: if ``x`` is not a floating tensor or ``dim`` is not an int.
        ValueError: if ``dim`` is out of range for ``x``.
    Taught in: notebooks/02_softmax.ipynb.  Source: Bridle 1990; the max trick as in
    Goodfellow et al. 2016, "Deep Learning", sec. 4.1.
    """
    fn = "softmax"
    v.tensor(x, "x", fn, floating=True)
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{fn}: dim must be an int, got {type(dim).__name__}")
    if not -max(x.dim(), 1) <= dim < max(x.dim(), 1):
        raise ValueError(f"{fn}: dim={dim} is out of range for x of shape {v.shape_str(x)}")
    work = x.float() if x.dtype in _HALF else x
    row_max = work.amax(dim=dim, keepdim=True)
    # An all -inf slice has max -inf; shifting by it would give -inf - -inf = NaN. Shift by 0 there.
    row_max = torch.where(torch.isneginf(row_max), torch.zeros_like(row_max), row_max)
    if torch.is_grad_enabled() and x.requires_grad:
        exp = torch.exp(work - row_max)
    else:  # no gradient needed: one new tensor instead of three (the same numbers)
        exp = (work - row_max).exp_()
    total = exp.sum(dim=dim, keepdim=True)
    # An all -inf slice sums to 0: divide by 1 instead, so its weights are 0, not 0/0 = NaN.
    total = torch.where(total == 0, torch.ones_like(total), total)
    if torch.is_grad_enabled() and x.requires_grad:
        return (exp / total).to(x.dtype)
    return exp.div_(total).to(x.dtype)


def _check_mask(attn_mask, query: torch.Tensor, key: torch.Tensor, fn: str) -> None:
    if not isinstance(attn_mask, torch.Tensor):
        raise TypeError(f"{fn}: attn_mask must be a torch.Tensor or None, got {type(attn_mask).__name__}")
    if attn_mask.dtype != torch.bool and attn_mask.dtype != query.dtype:
        raise TypeError(
            f"{fn}: attn_mask must be torch.bool (True = may attend) or a float mask in query's dtype "
            f"{query.dtype} (added to the scores), got {attn_mask.dtype}"
        )
    L, S = query.shape[-2], key.shape[-2]
    target = v.broadcast_shapes(query.shape[:-2], key.shape[:-2]) + (L, S)
    try:
        ok = v.broadcast_shapes(attn_mask.shape, target) == target
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"{fn}: attn_mask of shape {v.shape_str(attn_mask)} does not broadcast to the scores' shape "
            f"{v.shape_str(target)} (..., L, S); a padding mask (B, S) needs two new dims: mask[:, None, :] "
            f"for (B, L, S) or mask[:, None, None, :] for (B, H, L, S)"
        )


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    return_weights: bool = False,
):
    """Scaled dot-product attention: ``softmax(Q K^T * scale + mask) V``.

    The same numbers as ``torch.nn.functional.scaled_dot_product_attention``, written out so
    that every step can be read, and optionally returning the attention weights.

    Steps: scores = Q K^T * scale (scale defaults to 1/sqrt(E)); masked scores become -inf
    (boolean mask, True = may attend) or get the float mask added; weights = softmax over the
    keys; output = weights @ V, a weighted average of the value vectors.

    A query row whose keys are all masked yields zeros (output and weights), never NaN, as
    PyTorch does.

    float16 and bfloat16 inputs are computed in float32 (scores, mask, softmax and
    ``weights @ V``) and the output and weights cast back, as PyTorch's MATH backend does: a
    float16 score above 65504 would be ``inf`` and its softmax NaN. float32 and float64 inputs
    are computed in their own dtype.

    Nothing here reads a tensor's values on the host (no ``.item()``, no data-dependent shape):
    the function runs on the ``meta`` device and compiles with ``torch.compile(fullgraph=True)``.

    Args:
        query: float tensor (..., L, E).
        key: float tensor (..., S, E).
        value: float tensor (..., S, Ev). All three share dtype and device (and so does
            ``attn_mask``; nothing is moved between devices for you).
        attn_mask: optional mask broadcastable to (..., L, S): ``torch.bool`` with True = may
            attend, or a float tensor in query's dtype that is *added* to the scores (0 / -inf).
        dropout_p: float in [0, 1), the probability of zeroing a weight (0.0 = off; kept
            weights are scaled by 1/(1-p)). Use 0.0 in evaluation.
        is_causal: bool; if True, query i may attend to keys 0..i only (top-left aligned, as PyTorch).
            Cannot be combined with ``attn_mask`` (combine the masks with
            ``course_lib.masking.combine_masks`` instead), as in PyTorch.
        scale: float multiplier of the scores; ``None`` means 1/sqrt(E).
        return_weights: bool; if True, also return the attention weights.
    Returns:
        output (..., L, Ev), and if ``return_weights``, weights (..., L, S) whose rows sum to 1
        (or are all zeros for fully masked rows). Same dtype and device as ``query``.
    Shape:
        query (..., L, E), key (..., S, E), value (..., S, Ev), attn_mask broadcastable to
        (..., L, S) -> output (..., L, Ev), weights (..., L, S).
    Raises:
        TypeError: if an input is not a floating tensor, dtypes differ, attn_mask has a wrong
            dtype, scale or dropout_p is not a float (a bool is not), or is_causal or
            return_weights is not a bool.
        ValueError: if E differs between query and key, S differs between key and value, batch
            dims do not broadcast, attn_mask has a wrong shape, the tensors are not all on one
            device, dropout_p is outside [0, 1), scale is not finite, or both attn_mask and
            is_causal are given.
    Taught in: notebooks/02_softmax.ipynb (weights @ V), notebooks/03_scaling.ipynb (the scale),
        notebooks/04_masking.ipynb (masks).
    Source: Vaswani et al. 2017, sec. 3.2.1, eq. 1; masking: sec. 3.2.3.
    """
    fn = "scaled_dot_product_attention"
    for name, t in (("query", query), ("key", key), ("value", value)):
        v.tensor(t, name, fn, min_dim=2, floating=True)
    if not (query.dtype == key.dtype == value.dtype):
        raise TypeError(
            f"{fn}: query, key and value must share a dtype, got {query.dtype}, {key.dtype}, {value.dtype}"
        )
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"{fn}: query (..., L, E) and key (..., S, E) must share E, got query {v.shape_str(query)} "
            f"and key {v.shape_str(key)}"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"{fn}: key (..., S, E) and value (..., S, Ev) must share S, got key {v.shape_str(key)} "
            f"and value {v.shape_str(value)}"
        )
    v.broadcast_batch(query, key, ("query", "key"), fn)
    v.broadcast_batch(key, value, ("key", "value"), fn)
    dropout_p = v.probability(dropout_p, "dropout_p", fn)
    is_causal = v.flag(is_causal, "is_causal", fn)
    return_weights = v.flag(return_weights, "return_weights", fn)
    if scale is not None:
        scale = v.real(scale, "scale", fn)
    if attn_mask is not None:
        if is_causal:
            raise ValueError(
                f"{fn}: give attn_mask or is_causal=True, not both; to use both, pass "
                f"combine_masks(causal_mask(L, S), your_mask) as attn_mask"
            )
        _check_mask(attn_mask, query, key, fn)
    v.same_device(fn, query=query, key=key, value=value, attn_mask=attn_mask)

    L, E, S = query.shape[-2], query.shape[-1], key.shape[-2]
    if scale is None:
        scale = 1.0 / math.sqrt(E)
    dtype = query.dtype
    if dtype in _HALF:  # float16 overflows at 65504: compute in float32, cast back at the end
        query, key, value = query.float(), key.float(), value.float()
    # Scaling the (L, E) queries instead of the (L, S) scores gives the same scores for less work.
    scores = dot_product_scores(query * scale, key)  # (..., L, E) @ (..., E, S) -> (..., L, S)
    # The scores are a new tensor of our own, so the masks are applied in place (autograd allows it:
    # the matrix product's backward needs its inputs, not its output).
    if is_causal:
        allowed = torch.ones(L, S, dtype=torch.bool, device=query.device).tril()  # (L, S), top-left aligned
        scores.masked_fill_(~allowed, float("-inf"))
    elif attn_mask is not None:
        fits = v.broadcast_shapes(attn_mask.shape, scores.shape) == scores.shape  # else the mask adds dims
        if attn_mask.dtype == torch.bool:
            blocked = ~attn_mask
            scores = scores.masked_fill_(blocked, float("-inf")) if fits else scores.masked_fill(blocked, float("-inf"))
        else:
            scores = scores.add_(attn_mask) if fits else scores + attn_mask  # a half mask adds exactly in float32
    weights = softmax(scores, dim=-1)  # (..., L, S), each row sums to 1 (or is all 0)
    if dropout_p > 0.0:
        weights = torch.nn.functional.dropout(weights, p=dropout_p, training=True)
    output = weights @ value  # (..., L, S) @ (..., S, Ev) -> (..., L, Ev)
    if return_weights:
        return output.to(dtype), weights.to(dtype)  # no-ops for float32/float64
    return output.to(dtype)


def attention_entropy(weights: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Entropy in nats of attention weights along ``dim``: how spread out each query's attention is.

    ``H(w) = -sum_j w_j ln w_j``, with ``0 ln 0 = 0``. A one-hot row (all weight on one key)
    gives 0; a uniform row over S keys gives ln S, the largest possible value. Temperature and
    the 1/sqrt(d_k) scale move it between the two.

    Args:
        weights: float tensor (..., S) of weights that sum to 1 along ``dim``.
        dim: the dim that holds the keys.
    Returns:
        float tensor (...), same dtype and device (no host read).
    Shape:
        (..., S) -> (...)
    Raises:
        TypeError: if weights is not a floating tensor.
    Taught in: notebooks/02_softmax.ipynb (temperature), used by the explorers.
    Source: Shannon 1948, "A Mathematical Theory of Communication", sec. 6.
    """
    v.tensor(weights, "weights", "attention_entropy", min_dim=1, floating=True)
    return -torch.special.xlogy(weights, weights).sum(dim=dim)



class AdditiveAttention(nn.Module):
    """Additive (Bahdanau) attention: a small feed-forward network scores each query-key pair.

    Before the dot product became the norm, Bahdanau et al. scored a query ``q`` (the decoder
    state) against a key ``k`` (an encoder state) with one hidden layer::

        score(q, k) = w_v^T tanh(W_query q + W_key k)

    then took the softmax over the keys and the weighted sum of the values, exactly as in
    :func:`scaled_dot_product_attention`. Query and key may have different sizes (``Eq`` and
    ``Ek``), and the score is not bilinear: ``tanh`` lets it saturate. The price is memory and
    time: the (..., L, S, hidden_dim) tensor of hidden features is built before it is reduced
    to the (..., L, S) scores, where the dot product goes straight to (..., L, S) with one
    matrix product (``benchmarks/additive_vs_dot.py`` measures both).

    Masks follow :func:`scaled_dot_product_attention`: a boolean mask means True = may attend,
    a float mask is added to the scores, and a query whose keys are all masked gets zeros
    (output and weights), never NaN. Nothing reads a tensor's values on the host (the module
    runs on the ``meta`` device).

    Args:
        query_dim: Eq, the size of a query vector (the paper's decoder state size n).
        key_dim: Ek, the size of a key vector (2n in the paper: a bidirectional encoder).
        hidden_dim: the size of the hidden layer (n' in the paper).
    Attributes:
        W_query: nn.Linear(query_dim, hidden_dim, bias=False) (the paper's W_a).
        W_key: nn.Linear(key_dim, hidden_dim, bias=False) (the paper's U_a).
        w_v: nn.Linear(hidden_dim, 1, bias=False) (the paper's v_a).
    Shape:
        query (..., L, Eq), key (..., S, Ek), value (..., S, Ev), attn_mask broadcastable to
        (..., L, S) -> out (..., L, Ev), weights (..., L, S).
    Raises:
        TypeError: if a size is not an int; in forward, if an input is not a floating tensor in
            the parameters' dtype or attn_mask has a wrong dtype.
        ValueError: if a size is not positive; in forward, if a feature size differs from the
            module's, S differs between key and value, batch dims do not broadcast, attn_mask
            has a wrong shape, or the tensors are not on the parameters' device.
    Taught in: notebooks/06_cross_attention.ipynb, sec. 6 (beside the dot product: its cost, and
        what it learns on the toy translation it was made for).
    Source: Bahdanau, Cho & Bengio 2015, "Neural Machine Translation by Jointly Learning to
        Align and Translate", sec. 3.1 (eq. 5-6) and appendix A.1.2 (e_ij = v_a^T tanh(W_a
        s_{i-1} + U_a h_j)).
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int) -> None:
        super().__init__()
        fn = "AdditiveAttention"
        self.query_dim = v.positive_int(query_dim, "query_dim", fn)
        self.key_dim = v.positive_int(key_dim, "key_dim", fn)
        self.hidden_dim = v.positive_int(hidden_dim, "hidden_dim", fn)
        self.W_query = nn.Linear(self.query_dim, self.hidden_dim, bias=False)
        self.W_key = nn.Linear(self.key_dim, self.hidden_dim, bias=False)
        self.w_v = nn.Linear(self.hidden_dim, 1, bias=False)

    def extra_repr(self) -> str:
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, hidden_dim={self.hidden_dim}"

    def _check(self, query, key, value, attn_mask) -> None:
        fn = "AdditiveAttention.forward"
        for name, t, dim, dim_name in (("query", query, self.query_dim, "L, query_dim"),
                                       ("key", key, self.key_dim, "S, key_dim"), ("value", value, None, "S, Ev")):
            v.tensor(t, name, fn, min_dim=2, floating=True)
            if dim is not None and t.shape[-1] != dim:
                raise ValueError(f"{fn}: {name} must be (..., {dim_name}={dim}), got shape {v.shape_str(t)}")
        weight = self.W_query.weight
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.dtype != weight.dtype:
                raise TypeError(
                    f"{fn}: {name} has dtype {t.dtype} but the module's parameters are {weight.dtype}; "
                    f"convert one of them (module.to({t.dtype}) or {name}.to({weight.dtype}))"
                )
        if key.shape[-2] != value.shape[-2]:
            raise ValueError(
                f"{fn}: key (..., S, Ek) and value (..., S, Ev) must share S, got key {v.shape_str(key)} "
                f"and value {v.shape_str(value)}"
            )
        v.broadcast_batch(query, key, ("query", "key"), fn)
        v.broadcast_batch(key, value, ("key", "value"), fn)
        if attn_mask is not None:
            _check_mask(attn_mask, query, key, fn)
        v.same_device(fn, query=query, key=key, value=value, attn_mask=attn_mask, parameters=weight)

    def scores(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """The unnormalised scores ``w_v^T tanh(W_query q_i + W_key k_j)`` for every pair (i, j).

        Shape: query (..., L, Eq), key (..., S, Ek) -> (..., L, S).
        """
        q = self.W_query(query)  # (..., L, Eq) @ (Eq, hidden) -> (..., L, hidden)
        k = self.W_key(key)  # (..., S, Ek) @ (Ek, hidden) -> (..., S, hidden)
        features = torch.tanh(q.unsqueeze(-2) + k.unsqueeze(-3))  # (..., L, 1, h) + (..., 1, S, h) -> (..., L, S, h)
        return self.w_v(features).squeeze(-1)  # (..., L, S, h) @ (h, 1) -> (..., L, S, 1) -> (..., L, S)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attn_mask: torch.Tensor | None = None):
        """Attend from each query to the keys with additive scores; return the output and the weights.

        Args:
            query: float tensor (..., L, query_dim).
            key: float tensor (..., S, key_dim).
            value: float tensor (..., S, Ev). All in the parameters' dtype and on their device.
            attn_mask: optional, broadcastable to (..., L, S): ``torch.bool`` with True = may
                attend, or a float tensor in query's dtype added to the scores (0 / -inf).
        Returns:
            ``(out, weights)``: out (..., L, Ev), weights (..., L, S) whose rows sum to 1 (all
            zeros for a row whose keys are all masked, and then its output is zeros too).
        Shape:
            query (..., L, Eq), key (..., S, Ek), value (..., S, Ev) -> (..., L, Ev), (..., L, S).
        Raises:
            TypeError / ValueError: see the class docstring; messages name the argument and shapes.
        """
        self._check(query, key, value, attn_mask)
        scores = self.scores(query, key)  # (..., L, S)
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:  # blocked -> -inf; where() also broadcasts a mask with more dims
                scores = torch.where(attn_mask, scores, torch.full((), float("-inf"), dtype=scores.dtype,
                                                                   device=scores.device))  # (..., L, S)
            else:
                scores = scores + attn_mask  # additive mask, 0 / -inf
        weights = softmax(scores, dim=-1)  # (..., L, S); an all -inf row gives zeros, not NaN
        out = weights @ value  # (..., L, S) @ (..., S, Ev) -> (..., L, Ev)
        return out, weights
