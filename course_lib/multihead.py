"""Multi-head attention: several scaled dot-product attentions side by side, each in its own subspace.

One head compares every query with every key through a single pair of projections, so it can
express one notion of "relevant". Multi-head attention projects the input ``H`` times into
smaller spaces (``head_dim = D / H`` features each), runs attention in each, concatenates the
``H`` results and mixes them with an output projection:

    head_h = Attention(X W_query^h, X W_key^h, X W_value^h)
    MultiHead(X) = Concat(head_1, ..., head_H) W_out

The ``H`` per-head projections are stored as one ``D x D`` matrix each (the heads are slices of
its output features); :func:`split_heads` cuts the projected tensor into heads and
:func:`merge_heads` glues them back together.

Shapes use PyTorch's legend: B batch, H heads, L query length, S key/value length,
D model size (embed_dim), and ``head_dim = D / H`` (the E of each head).

Checked against ``torch.nn.MultiheadAttention(..., batch_first=True)`` in tests/test_multihead.py.

Source: Vaswani et al. 2017, "Attention Is All You Need", sec. 3.2.2 (multi-head attention).
"""

from __future__ import annotations

import torch
from torch import nn

from . import _validate as v
from .attention import scaled_dot_product_attention
from .masking import causal_mask, combine_masks, to_additive

__all__ = ["split_heads", "merge_heads", "MultiHeadAttention"]


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Cut the feature dim into ``num_heads`` heads and move the head dim before the tokens.

    Feature ``h * head_dim + i`` of token ``t`` becomes feature ``i`` of token ``t`` in head
    ``h``: each head gets a contiguous block of ``head_dim = D / num_heads`` features of *every*
    token. The view splits the last dim (D -> H, head_dim) and the transpose then swaps the
    token and head dims; viewing straight to (B, H, T, head_dim) would instead hand each head a
    block of whole tokens and mix tokens across heads.

    Args:
        x: tensor (B, T, D), e.g. the output of the query projection.
        num_heads: number of heads H; must divide D.
    Returns:
        tensor (B, H, T, D / H), a view of ``x`` (no copy), same dtype and device.
    Shape:
        (B, T, D) -> (B, H, T, D / H)
    Raises:
        TypeError: if x is not a tensor or num_heads is not an int.
        ValueError: if x is not 3-D, or num_heads is not positive or does not divide D.
    Taught in: notebooks/05_multi_head.ipynb.  Source: Vaswani et al. 2017, sec. 3.2.2.
    """
    fn = "split_heads"
    v.tensor(x, "x", fn)
    num_heads = v.positive_int(num_heads, "num_heads", fn)
    if x.dim() != 3:
        raise ValueError(f"{fn}: x must be 3-D (B, T, D), got shape {v.shape_str(x)}")
    B, T, D = x.shape
    if D % num_heads != 0:
        raise ValueError(
            f"{fn}: the embed dim D={D} of x {v.shape_str(x)} is not divisible by num_heads={num_heads}; "
            f"each head needs D / num_heads features"
        )
    return x.view(B, T, num_heads, D // num_heads).transpose(1, 2)  # (B, T, H, Dh) -> (B, H, T, Dh)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Undo :func:`split_heads`: move the head dim back after the tokens and concatenate the heads.

    Token ``t`` of the result is ``Concat(head_1[t], ..., head_H[t])``, the concatenation in
    Vaswani et al.'s formula. The transpose must come first: reshaping (B, H, T, head_dim)
    straight to (B, T, D) would glue together different tokens of the same head.

    Args:
        x: tensor (B, H, T, head_dim), e.g. the per-head attention outputs.
    Returns:
        tensor (B, T, H * head_dim), same dtype and device. A copy when ``x`` is a contiguous
        (B, H, T, head_dim) tensor such as the heads' attention output (after the transpose its
        numbers are not in memory order, so ``view`` would fail and ``reshape`` copies); a view
        when ``x`` came straight from :func:`split_heads`.
    Shape:
        (B, H, T, head_dim) -> (B, T, H * head_dim)
    Raises:
        TypeError: if x is not a tensor.
        ValueError: if x is not 4-D.
    Taught in: notebooks/05_multi_head.ipynb.  Source: Vaswani et al. 2017, sec. 3.2.2 (Concat).
    """
    fn = "merge_heads"
    v.tensor(x, "x", fn)
    if x.dim() != 4:
        raise ValueError(f"{fn}: x must be 4-D (B, H, T, head_dim), got shape {v.shape_str(x)}")
    B, H, T, Dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * Dh)  # (B, H, T, Dh) -> (B, T, H, Dh) -> (B, T, D)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query, key, value and output projections (batch-first).

    ``forward`` projects the queries, keys and values with ``W_query``, ``W_key``, ``W_value``
    (each D -> D, all heads at once), splits each into ``num_heads`` heads of ``head_dim``
    features, runs :func:`course_lib.attention.scaled_dot_product_attention` in every head in
    parallel (scale ``1 / sqrt(head_dim)``), merges the heads and applies ``W_out``.

    The numbers equal ``torch.nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)``
    with the same weights (see :meth:`from_torch`); the differences are in the interface:

    - masks use course_lib's meaning, **True = may attend** (torch's boolean masks mean the
      opposite); ``key_padding_mask`` is True for real tokens;
    - ``is_causal=True`` applies the causal mask itself and may be combined with ``attn_mask``
      and ``key_padding_mask`` (torch treats it as a hint that needs ``attn_mask``);
    - ``need_weights`` defaults to False and returns per-head weights (B, H, L, S), not their
      average over heads;
    - a query whose keys are all masked gets zeros (output of attention and weights), not NaN.

    Args:
        embed_dim: model size D (the size of a query vector, and of the output).
        num_heads: number of heads H; must divide ``embed_dim``.
        dropout: probability of dropping an attention weight during training (0.0 = off).
        bias: if True, all four projections have a bias.
        kdim: feature size of the keys (default ``embed_dim``), for cross-attention.
        vdim: feature size of the values (default ``embed_dim``).
    Attributes:
        W_query: nn.Linear(embed_dim, embed_dim).  W_key: nn.Linear(kdim, embed_dim).
        W_value: nn.Linear(vdim, embed_dim).  W_out: nn.Linear(embed_dim, embed_dim).
        embed_dim, kdim, vdim, num_heads, head_dim (= embed_dim // num_heads), dropout.
    Shape:
        query (B, L, D), key (B, S, kdim), value (B, S, vdim) -> out (B, L, D),
        weights (B, H, L, S).
    Raises:
        TypeError: if a size is not an int, dropout is not a number or bias is not a bool.
        ValueError: if a size is not positive, embed_dim is not divisible by num_heads, or
            dropout is outside [0, 1).
    Parameters:
        4 D^2 + 4 D when kdim = vdim = D and bias=True (the same count as torch's module).
    Taught in: notebooks/05_multi_head.ipynb (cross-attention with kdim/vdim: 06_cross_attention).
    Source: Vaswani et al. 2017, sec. 3.2.2.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
    ) -> None:
        super().__init__()
        fn = "MultiHeadAttention"
        embed_dim = v.positive_int(embed_dim, "embed_dim", fn)
        num_heads = v.positive_int(num_heads, "num_heads", fn)
        kdim = embed_dim if kdim is None else v.positive_int(kdim, "kdim", fn)
        vdim = embed_dim if vdim is None else v.positive_int(vdim, "vdim", fn)
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"{fn}: embed_dim={embed_dim} is not divisible by num_heads={num_heads}; "
                f"each head needs embed_dim / num_heads features"
            )
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TypeError(f"{fn}: dropout must be a float in [0, 1), got {type(dropout).__name__}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{fn}: dropout must be a float in [0, 1), got {dropout!r}")
        bias = v.flag(bias, "bias", fn)
        self.embed_dim, self.kdim, self.vdim = embed_dim, kdim, vdim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = float(dropout)
        self.W_query = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.W_key = nn.Linear(kdim, embed_dim, bias=bias)
        self.W_value = nn.Linear(vdim, embed_dim, bias=bias)
        self.W_out = nn.Linear(embed_dim, embed_dim, bias=bias)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, dropout={self.dropout}"

    # ----------------------------------------------------------------------------------------
    # Input checks and masks.
    # ----------------------------------------------------------------------------------------

    def _check_inputs(self, query, key, value) -> None:
        fn = "MultiHeadAttention.forward"
        expected = (("query", query, self.embed_dim, "L", "embed_dim"), ("key", key, self.kdim, "S", "kdim"),
                    ("value", value, self.vdim, "S", "vdim"))
        for name, t, dim, length, dim_name in expected:
            v.tensor(t, name, fn, floating=True)
            if t.dim() != 3 or t.shape[-1] != dim:
                raise ValueError(
                    f"{fn}: {name} must be (B, {length}, {dim_name}) = (B, {length}, {dim}) (batch first), "
                    f"got shape {v.shape_str(t)}"
                )
        if not (query.shape[0] == key.shape[0] == value.shape[0]):
            raise ValueError(
                f"{fn}: query, key and value must share the batch size B, got query {v.shape_str(query)}, "
                f"key {v.shape_str(key)}, value {v.shape_str(value)}"
            )
        if key.shape[1] != value.shape[1]:
            raise ValueError(
                f"{fn}: key (B, S, kdim) and value (B, S, vdim) must share S, got key {v.shape_str(key)} "
                f"and value {v.shape_str(value)}"
            )
        weight_dtype = self.W_query.weight.dtype
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.dtype != weight_dtype:
                raise TypeError(
                    f"{fn}: {name} has dtype {t.dtype} but the module's parameters are {weight_dtype}; "
                    f"convert one of them (e.g. module.to({weight_dtype}) or {name}.to({weight_dtype}))"
                )
        v.same_device(fn, query=query, key=key, value=value, parameters=self.W_query.weight)

    def _mask(self, query, key, attn_mask, key_padding_mask, is_causal):
        """One mask broadcastable to the scores (B, H, L, S): bool (True = may attend) or float (added)."""
        fn = "MultiHeadAttention.forward"
        B, L, S, H = query.shape[0], query.shape[1], key.shape[1], self.num_heads
        bools: list[torch.Tensor] = []
        floats: list[torch.Tensor] = []
        if attn_mask is not None:
            if not isinstance(attn_mask, torch.Tensor):
                raise TypeError(f"{fn}: attn_mask must be a torch.Tensor or None, got {type(attn_mask).__name__}")
            shapes = {2: (L, S), 3: (B, L, S), 4: (B, H, L, S)}
            wanted = shapes.get(attn_mask.dim())
            ok = wanted is not None and all(a in (1, w) for a, w in zip(attn_mask.shape, wanted))
            if not ok:
                raise ValueError(
                    f"{fn}: attn_mask must be (L, S) = {v.shape_str((L, S))}, (B, L, S) = {v.shape_str((B, L, S))} "
                    f"or (B, H, L, S) = {v.shape_str((B, H, L, S))}, got shape {v.shape_str(attn_mask)}"
                )
            mask = attn_mask.to(query.device)
            if mask.dim() == 3:
                mask = mask[:, None]  # (B, L, S) -> (B, 1, L, S), the same for every head
            if mask.dtype == torch.bool:
                bools.append(mask)
            elif mask.is_floating_point():
                floats.append(mask.to(query.dtype))
            else:
                raise TypeError(
                    f"{fn}: attn_mask must be torch.bool (True = may attend) or a float mask (added to the "
                    f"scores), got {attn_mask.dtype}"
                )
        if key_padding_mask is not None:
            if not isinstance(key_padding_mask, torch.Tensor):
                raise TypeError(
                    f"{fn}: key_padding_mask must be a torch.Tensor or None, got {type(key_padding_mask).__name__}"
                )
            if tuple(key_padding_mask.shape) != (B, S):
                raise ValueError(
                    f"{fn}: key_padding_mask must be (B, S) = {v.shape_str((B, S))} (True = real token), "
                    f"got shape {v.shape_str(key_padding_mask)}"
                )
            mask = key_padding_mask.to(query.device)[:, None, None, :]  # (B, S) -> (B, 1, 1, S)
            if mask.dtype == torch.bool:
                bools.append(mask)
            elif mask.is_floating_point():
                floats.append(mask.to(query.dtype))
            else:
                raise TypeError(
                    f"{fn}: key_padding_mask must be torch.bool (True = real token) or a float mask (added to "
                    f"the scores), got {key_padding_mask.dtype}"
                )
        if not isinstance(is_causal, bool):
            raise TypeError(f"{fn}: is_causal must be a bool, got {type(is_causal).__name__}")
        if is_causal:
            bools.append(causal_mask(L, S, device=query.device))  # (L, S), top-left aligned
        if not bools and not floats:
            return None
        if not floats:
            return combine_masks(*bools)  # logical and, broadcast to at most (B, H, L, S)
        total = to_additive(combine_masks(*bools), query.dtype) if bools else None  # 0 / -inf
        for mask in floats:
            total = mask if total is None else total + mask  # additive masks add up
        return total

    # ----------------------------------------------------------------------------------------
    # Forward.
    # ----------------------------------------------------------------------------------------

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ):
        """Attend from every query to the keys in every head, then merge the heads.

        Args:
            query: float tensor (B, L, D).
            key: float tensor (B, S, kdim); default ``query`` (self-attention).
            value: float tensor (B, S, vdim); default ``key`` (which defaults to ``query``).
            attn_mask: optional mask, (L, S), (B, L, S) or (B, H, L, S) (dims of size 1
                broadcast): ``torch.bool`` with True = may attend, or a float mask added to the
                scores (0 / -inf).
            key_padding_mask: optional (B, S): ``torch.bool`` with True = real token (False =
                padding, never attended to), or a float mask added to the scores.
            is_causal: if True, query i may attend to keys 0..i only (top-left aligned). Combined
                with ``attn_mask`` and ``key_padding_mask`` by logical and (float masks are added).
            need_weights: if True, also return the per-head attention weights.
            Masks on another device than ``query`` are moved to it; query, key and value must be
            on the device of the module's parameters.
        Returns:
            out (B, L, D); and, if ``need_weights``, ``(out, weights)`` with weights
            (B, H, L, S), each row summing to 1 (rows whose keys are all masked are zeros,
            and so is their attention output before ``W_out``, whose bias is still added).
            Dropout (``self.dropout``) is applied to the weights in training mode only; the
            weights returned then are the dropped ones (zeros, survivors scaled by 1 / (1 - p)),
            whose rows no longer sum to 1 (their expectation does). Taught in 05, section 11.
        Shape:
            query (B, L, D), key (B, S, kdim), value (B, S, vdim) -> out (B, L, D),
            weights (B, H, L, S).
        Raises:
            TypeError: if an input is not a float tensor in the parameters' dtype, a mask has
                a wrong type, or is_causal or need_weights is not a bool.
            ValueError: if a shape is wrong (the message names the argument, the shape it got
                and the shape it needs), or query, key, value and the parameters are not on one
                device.
        """
        if key is None:
            key = query
            value = query if value is None else value
        elif value is None:
            value = key
        self._check_inputs(query, key, value)
        need_weights = v.flag(need_weights, "need_weights", "MultiHeadAttention.forward")
        mask = self._mask(query, key, attn_mask, key_padding_mask, is_causal)

        q = split_heads(self.W_query(query), self.num_heads)  # (B, L, D) -> (B, H, L, Dh)
        k = split_heads(self.W_key(key), self.num_heads)  # (B, S, kdim) -> (B, S, D) -> (B, H, S, Dh)
        val = split_heads(self.W_value(value), self.num_heads)  # (B, S, vdim) -> (B, S, D) -> (B, H, S, Dh)
        dropout_p = self.dropout if self.training else 0.0
        heads, weights = scaled_dot_product_attention(
            q, k, val, attn_mask=mask, dropout_p=dropout_p, return_weights=True
        )  # (B, H, L, Dh), (B, H, L, S); scale 1 / sqrt(head_dim)
        out = self.W_out(merge_heads(heads))  # (B, H, L, Dh) -> (B, L, D) @ W_out -> (B, L, D)
        if need_weights:
            return out, weights
        return out

    # ----------------------------------------------------------------------------------------
    # Conversion from PyTorch's module.
    # ----------------------------------------------------------------------------------------

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """Build a MultiHeadAttention with the same weights as a ``torch.nn.MultiheadAttention``.

        PyTorch stores the three input projections stacked in one ``in_proj_weight`` (3D, D)
        (rows 0..D-1 the query projection, then key, then value) when kdim = vdim = D, and as
        ``q_proj_weight``, ``k_proj_weight``, ``v_proj_weight`` otherwise; the biases are stacked
        in ``in_proj_bias`` (3D,). ``out_proj`` is the output projection. The copies are
        independent of ``mha`` (changing one does not change the other).

        Args:
            mha: a ``torch.nn.MultiheadAttention`` built with ``batch_first=True`` and without
                ``add_bias_kv`` or ``add_zero_attn``.
        Returns:
            MultiHeadAttention with the same sizes, dropout and weights, on the device and in the
            dtype of ``mha``'s parameters, in the same training/eval mode. Feed it the same
            (B, L, D) tensors, with masks converted to course_lib's meaning (``~mask``).
        Raises:
            TypeError: if mha is not a torch.nn.MultiheadAttention.
            ValueError: if mha has batch_first=False (its inputs are (L, B, D): convert your
                tensors and use batch_first=True), add_bias_kv=True or add_zero_attn=True (not
                supported here).
        Taught in: notebooks/05_multi_head.ipynb.
        """
        fn = "MultiHeadAttention.from_torch"
        if not isinstance(mha, nn.MultiheadAttention):
            raise TypeError(f"{fn}: mha must be a torch.nn.MultiheadAttention, got {type(mha).__name__}")
        if not mha.batch_first:
            raise ValueError(
                f"{fn}: mha has batch_first=False (inputs (L, B, D)), but course_lib's MultiHeadAttention is "
                f"batch-first (B, L, D); build mha with batch_first=True (the weights are the same)"
            )
        if mha.bias_k is not None or mha.bias_v is not None:
            raise ValueError(f"{fn}: mha was built with add_bias_kv=True, which is not supported")
        if mha.add_zero_attn:
            raise ValueError(f"{fn}: mha was built with add_zero_attn=True, which is not supported")
        ref = mha.out_proj.weight
        bias = mha.out_proj.bias is not None
        module = cls(mha.embed_dim, mha.num_heads, dropout=float(mha.dropout), bias=bias, kdim=mha.kdim, vdim=mha.vdim)
        module = module.to(device=ref.device, dtype=ref.dtype)
        D = mha.embed_dim
        with torch.no_grad():
            if mha.in_proj_weight is not None:
                w_q, w_k, w_v = mha.in_proj_weight.split(D, dim=0)  # (3D, D) -> 3 x (D, D)
            else:
                w_q, w_k, w_v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight  # (D, D), (D, kdim), (D, vdim)
            module.W_query.weight.copy_(w_q)
            module.W_key.weight.copy_(w_k)
            module.W_value.weight.copy_(w_v)
            module.W_out.weight.copy_(mha.out_proj.weight)
            if bias:
                b_q, b_k, b_v = mha.in_proj_bias.split(D)  # (3D,) -> 3 x (D,)
                module.W_query.bias.copy_(b_q)
                module.W_key.bias.copy_(b_k)
                module.W_value.bias.copy_(b_v)
                module.W_out.bias.copy_(mha.out_proj.bias)
        module.train(mha.training)
        return module
