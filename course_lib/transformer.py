"""A complete transformer from course_lib's parts: layers, stacks, an encoder-decoder model, decoding.

Every attention here is :class:`course_lib.multihead.MultiHeadAttention` (chapter 05) and every
position signal comes from :mod:`course_lib.positional` (chapter 07). What this module adds is
the wiring of Vaswani et al. (2017, sec. 3.1 and fig. 1) around them:

- :class:`FeedForward`: the position-wise two-layer network, ``linear2(act(linear1(x)))``.
- :class:`EncoderLayer`: self-attention, then the feed-forward network, each inside a residual
  connection with a LayerNorm.
- :class:`DecoderLayer`: causal self-attention, cross-attention to the encoder's output (the
  *memory*), then the feed-forward network; three residual connections, three LayerNorms.
- :class:`Encoder`, :class:`Decoder`: stacks of layers (with a final LayerNorm when pre-LN).
- :class:`Seq2SeqTransformer`: token embeddings + positions, an Encoder, a Decoder, a readout.
- :func:`shift_right`, :func:`teacher_forcing_loss`, :func:`train_seq2seq`,
  :func:`teacher_forced_exact_match`, :func:`greedy_decode`: training and inference.
- :func:`alignment_weight`, :func:`find_alignment_head`: how much cross-attention weight lies
  on a known alignment.

Two placements of the LayerNorm (``norm_first``):

- **pre-LN** (``norm_first=True``, the default here, as in GPT-2 and most models since): each
  sub-layer reads a normalised copy and adds its result to the untouched residual stream,
  ``x = x + sublayer(norm(x))``. Gradients reach every layer through the identity path, so it
  trains without learning-rate warm-up (Xiong et al. 2020). A final LayerNorm closes each stack.
- **post-LN** (``norm_first=False``, the original paper's and PyTorch's default):
  ``x = norm(x + sublayer(x))``.

Conventions as everywhere in course_lib: batch first; a boolean mask means **True = may attend**
(PyTorch's ``nn.Transformer*`` modules use the opposite meaning for boolean masks); a key padding
mask is True for real tokens. ``from_torch`` converts PyTorch's layers (same weights, same
numbers); tests/test_transformer.py checks the outputs to 1e-5 in float32.

Shapes: B batch, H heads, S source (encoder) length, L target (decoder) length, D model size
(``embed_dim``), F feed-forward size (``dim_feedforward``), V vocabulary size.

Taught in: notebooks/08_tiny_transformer.ipynb.
Source: Vaswani et al. 2017, "Attention Is All You Need", sec. 3.1-3.4 and fig. 1; pre-LN:
Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate as v
from .multihead import MultiHeadAttention
from .positional import LearnedPositionalEmbedding, sinusoidal_encoding

__all__ = [
    "FeedForward",
    "EncoderLayer",
    "DecoderLayer",
    "Encoder",
    "Decoder",
    "AttentionMaps",
    "Seq2SeqTransformer",
    "shift_right",
    "teacher_forcing_loss",
    "teacher_forced_exact_match",
    "train_seq2seq",
    "greedy_decode",
    "alignment_matrix",
    "alignment_weight",
    "find_alignment_head",
]

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": F.relu, "gelu": F.gelu}


# --------------------------------------------------------------------------------------------
# Argument checks shared by the modules.
# --------------------------------------------------------------------------------------------


def _activation(activation, fn: str) -> tuple[str | None, Callable[[torch.Tensor], torch.Tensor]]:
    """(name or None, function) for "relu", "gelu" or a callable."""
    if isinstance(activation, str):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"{fn}: activation must be 'relu', 'gelu' or a callable, got {activation!r}")
        return activation, _ACTIVATIONS[activation]
    if callable(activation):
        return None, activation
    raise TypeError(f"{fn}: activation must be 'relu', 'gelu' or a callable, got {type(activation).__name__}")


def _dropout(dropout, fn: str) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
        raise TypeError(f"{fn}: dropout must be a float in [0, 1), got {type(dropout).__name__}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{fn}: dropout must be a float in [0, 1), got {dropout!r}")
    return float(dropout)


def _bool(value, name: str, fn: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{fn}: {name} must be a bool, got {type(value).__name__}")
    return value


def _eps(value, fn: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{fn}: layer_norm_eps must be a positive float, got {value!r}")
    return float(value)


def _check_sequence(x, name: str, embed_dim: int, length: str, fn: str) -> None:
    v.tensor(x, name, fn, floating=True)
    if x.dim() != 3 or x.shape[-1] != embed_dim:
        raise ValueError(
            f"{fn}: {name} must be (B, {length}, embed_dim) = (B, {length}, {embed_dim}) (batch first), "
            f"got shape {v.shape_str(x)}"
        )


def _check_ids(ids, name: str, fn: str) -> None:
    v.tensor(ids, name, fn)
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool or ids.dim() != 2:
        raise ValueError(
            f"{fn}: {name} must be a 2-D integer tensor (B, T) of token ids, got {ids.dtype} of shape {v.shape_str(ids)}"
        )


def _values_readable(t: torch.Tensor) -> bool:
    """True when reading ``t``'s values costs no device sync: ``t`` is on the CPU.

    On a GPU, ``bool(t.any())`` waits for every queued kernel; a ``meta`` tensor has no values. So
    value checks (ids in range, an aligned position) run on CPU tensors only.
    """
    return t.device.type == "cpu"


def _check_torch_layer(layer, cls, fn: str) -> None:
    if not isinstance(layer, cls):
        raise TypeError(f"{fn}: layer must be a torch.nn.{cls.__name__}, got {type(layer).__name__}")
    if not layer.self_attn.batch_first:
        raise ValueError(
            f"{fn}: layer has batch_first=False (inputs (T, B, D)), but course_lib is batch-first (B, T, D); "
            f"build the layer with batch_first=True (the weights are the same)"
        )


def _torch_activation(layer) -> str | Callable:
    act = layer.activation
    if act is F.relu or isinstance(act, nn.ReLU):
        return "relu"
    if act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none"):
        return "gelu"
    return act


# --------------------------------------------------------------------------------------------
# The position-wise feed-forward network.
# --------------------------------------------------------------------------------------------


class FeedForward(nn.Module):
    """The position-wise feed-forward network: ``linear2(dropout(act(linear1(x))))``.

    The same two-layer network is applied to every token separately (no token sees another
    here: mixing tokens is attention's job). It widens each vector from D to F features, applies
    a nonlinearity, and projects back to D.

    Args:
        embed_dim: model size D.
        dim_feedforward: hidden size F (the paper uses F = 4 D: 2048 for D = 512).
        activation: "relu" (the paper), "gelu" (BERT, GPT-2) or a callable.
        dropout: dropout probability after the activation (training mode only).
        bias: if True, both linear layers have a bias.
    Attributes:
        linear1: nn.Linear(D, F).  linear2: nn.Linear(F, D).  activation: the function.
    Shape:
        x (..., D) -> (..., D)
    Raises:
        TypeError / ValueError: for a bad size, activation or dropout.
    Taught in: notebooks/08_tiny_transformer.ipynb.  Source: Vaswani et al. 2017, sec. 3.3, eq. 2.
    """

    def __init__(self, embed_dim: int, dim_feedforward: int, activation="relu", dropout: float = 0.0,
                 bias: bool = True) -> None:
        super().__init__()
        fn = "FeedForward"
        embed_dim = v.positive_int(embed_dim, "embed_dim", fn)
        dim_feedforward = v.positive_int(dim_feedforward, "dim_feedforward", fn)
        self.activation_name, self.activation = _activation(activation, fn)
        self.linear1 = nn.Linear(embed_dim, dim_feedforward, bias=bias)
        self.linear2 = nn.Linear(dim_feedforward, embed_dim, bias=bias)
        self.dropout = nn.Dropout(_dropout(dropout, fn))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(self.linear1(x))  # (..., D) @ (D, F) -> (..., F)
        return self.linear2(self.dropout(hidden))  # (..., F) @ (F, D) -> (..., D)


# --------------------------------------------------------------------------------------------
# One encoder layer, one decoder layer.
# --------------------------------------------------------------------------------------------


class EncoderLayer(nn.Module):
    """One transformer encoder layer: self-attention and a feed-forward network, each with a residual.

    Pre-LN (``norm_first=True``, default)::

        x = x + dropout1(self_attention(norm1(x)))        # tokens exchange information
        x = x + dropout2(feed_forward(norm2(x)))          # each token is processed alone

    Post-LN (``norm_first=False``, the original paper and PyTorch's default)::

        x = norm1(x + dropout1(self_attention(x)))
        x = norm2(x + dropout2(feed_forward(x)))

    The self-attention is bidirectional unless a mask says otherwise: with ``is_causal=True``
    the same layer is a GPT (decoder-only) block.

    Args:
        embed_dim: model size D.
        num_heads: heads H of the self-attention; must divide D.
        dim_feedforward: hidden size F of the feed-forward network (default 4 D).
        dropout: dropout on the attention weights, after the activation and on each sub-layer's
            output before the residual addition (training mode only), as PyTorch's layer.
        activation: "relu", "gelu" or a callable.
        norm_first: True for pre-LN, False for post-LN.
        layer_norm_eps: the LayerNorms' epsilon.
        bias: if True, the linear layers and LayerNorms have biases.
    Attributes:
        self_attention (MultiHeadAttention), feed_forward (FeedForward), norm1, norm2
        (nn.LayerNorm), dropout1, dropout2, norm_first, embed_dim, num_heads.
    Shape:
        src (B, S, D) -> (B, S, D); weights (B, H, S, S).
    Raises:
        TypeError / ValueError: for bad sizes or options (the message names the argument).
    Taught in: notebooks/08_tiny_transformer.ipynb.
    Source: Vaswani et al. 2017, sec. 3.1 (encoder) and 5.4 (residual dropout); pre-LN: Xiong et al. 2020.
    """

    def __init__(self, embed_dim: int, num_heads: int, dim_feedforward: int | None = None, dropout: float = 0.0,
                 activation="relu", norm_first: bool = True, layer_norm_eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        fn = "EncoderLayer"
        embed_dim = v.positive_int(embed_dim, "embed_dim", fn)
        dim_feedforward = 4 * embed_dim if dim_feedforward is None else v.positive_int(dim_feedforward, "dim_feedforward", fn)
        dropout = _dropout(dropout, fn)
        self.norm_first = _bool(norm_first, "norm_first", fn)
        eps = _eps(layer_norm_eps, fn)
        self.embed_dim = embed_dim
        self.self_attention = MultiHeadAttention(embed_dim, num_heads, dropout=dropout, bias=bias)
        self.num_heads = self.self_attention.num_heads
        self.feed_forward = FeedForward(embed_dim, dim_feedforward, activation, dropout, bias)
        self.norm1 = nn.LayerNorm(embed_dim, eps=eps, bias=bias)
        self.norm2 = nn.LayerNorm(embed_dim, eps=eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def extra_repr(self) -> str:
        return f"norm_first={self.norm_first}"

    def _self_attention_block(self, x, src_mask, src_key_padding_mask, is_causal):
        out, weights = self.self_attention(x, attn_mask=src_mask, key_padding_mask=src_key_padding_mask,
                                           is_causal=is_causal, need_weights=True)  # (B, S, D), (B, H, S, S)
        return self.dropout1(out), weights

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor | None = None,
                src_key_padding_mask: torch.Tensor | None = None, is_causal: bool = False, need_weights: bool = False):
        """Run the layer on a batch of sequences.

        Args:
            src: float tensor (B, S, D).
            src_mask: optional mask (S, S), (B, S, S) or (B, H, S, S): bool (True = may attend)
                or float (added to the scores).
            src_key_padding_mask: optional bool (B, S), True for real tokens (pads are never
                attended to).
            is_causal: if True, token i attends to tokens 0..i only (a decoder-only block).
            need_weights: if True, also return the self-attention weights.
        Returns:
            out (B, S, D); with ``need_weights``, ``(out, weights)``, weights (B, H, S, S).
        Raises:
            TypeError / ValueError: if src is not a float (B, S, D) tensor or a mask does not fit.
        """
        _check_sequence(src, "src", self.embed_dim, "S", "EncoderLayer.forward")
        x = src
        if self.norm_first:
            attended, weights = self._self_attention_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + attended  # residual: (B, S, D) + (B, S, D)
            x = x + self.dropout2(self.feed_forward(self.norm2(x)))
        else:
            attended, weights = self._self_attention_block(x, src_mask, src_key_padding_mask, is_causal)
            x = self.norm1(x + attended)
            x = self.norm2(x + self.dropout2(self.feed_forward(x)))
        return (x, weights) if need_weights else x

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> "EncoderLayer":
        """An EncoderLayer with the sizes, options and weights of a ``torch.nn.TransformerEncoderLayer``.

        PyTorch's attributes map one to one: ``self_attn`` -> ``self_attention`` (via
        :meth:`MultiHeadAttention.from_torch`), ``linear1``/``linear2`` -> ``feed_forward``,
        ``norm1``/``norm2`` -> ``norm1``/``norm2``. The copy is independent of ``layer``.

        Args:
            layer: built with ``batch_first=True``; any ``norm_first``, ``activation`` ("relu",
                "gelu" or a callable), ``dropout``, ``bias``.
        Returns:
            EncoderLayer on ``layer``'s device and dtype, in the same train/eval mode. Feed it
            masks in course_lib's meaning (``~mask`` for a PyTorch boolean mask).
        Raises:
            TypeError: if layer is not a torch.nn.TransformerEncoderLayer.
            ValueError: if layer has batch_first=False.
        """
        fn = "EncoderLayer.from_torch"
        _check_torch_layer(layer, nn.TransformerEncoderLayer, fn)
        ref = layer.linear1.weight
        module = cls(layer.self_attn.embed_dim, layer.self_attn.num_heads, layer.linear1.out_features,
                     dropout=float(layer.dropout.p), activation=_torch_activation(layer), norm_first=layer.norm_first,
                     layer_norm_eps=layer.norm1.eps, bias=layer.linear1.bias is not None)
        module = module.to(device=ref.device, dtype=ref.dtype)
        module.self_attention = MultiHeadAttention.from_torch(layer.self_attn)
        module.feed_forward.linear1.load_state_dict(layer.linear1.state_dict())
        module.feed_forward.linear2.load_state_dict(layer.linear2.state_dict())
        module.norm1.load_state_dict(layer.norm1.state_dict())
        module.norm2.load_state_dict(layer.norm2.state_dict())
        module.train(layer.training)
        return module


class DecoderLayer(nn.Module):
    """One transformer decoder layer: causal self-attention, cross-attention, feed-forward; three residuals.

    Pre-LN (``norm_first=True``, default)::

        x = x + dropout1(self_attention(norm1(x), causal))          # the target so far
        x = x + dropout2(cross_attention(norm2(x), memory, memory))  # read the source
        x = x + dropout3(feed_forward(norm3(x)))

    Post-LN (``norm_first=False``)::

        x = norm1(x + dropout1(self_attention(x, causal)))
        x = norm2(x + dropout2(cross_attention(x, memory, memory)))
        x = norm3(x + dropout3(feed_forward(x)))

    The queries of the cross-attention come from the decoder, its keys and values from the
    ``memory`` (the encoder's output, not normalised again here: a pre-LN encoder ends with its
    own LayerNorm). The self-attention is causal by default (``tgt_is_causal=True``): position
    i must not see the target tokens after it. The cross-attention is never causal: the whole
    source is known; it only hides the source's padding (``memory_key_padding_mask``).

    Args:
        embed_dim: model size D (of the decoder and of the memory).
        num_heads: heads H of both attentions; must divide D.
        dim_feedforward: hidden size F (default 4 D).
        dropout, activation, norm_first, layer_norm_eps, bias: as :class:`EncoderLayer`.
    Attributes:
        self_attention, cross_attention (MultiHeadAttention), feed_forward (FeedForward),
        norm1, norm2, norm3 (nn.LayerNorm), dropout1..3, norm_first, embed_dim, num_heads.
    Shape:
        tgt (B, L, D), memory (B, S, D) -> (B, L, D); self weights (B, H, L, L), cross weights
        (B, H, L, S).
    Raises:
        TypeError / ValueError: for bad sizes or options.
    Taught in: notebooks/08_tiny_transformer.ipynb.
    Source: Vaswani et al. 2017, sec. 3.1 (decoder) and 3.2.3; pre-LN: Xiong et al. 2020.
    """

    def __init__(self, embed_dim: int, num_heads: int, dim_feedforward: int | None = None, dropout: float = 0.0,
                 activation="relu", norm_first: bool = True, layer_norm_eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        fn = "DecoderLayer"
        embed_dim = v.positive_int(embed_dim, "embed_dim", fn)
        dim_feedforward = 4 * embed_dim if dim_feedforward is None else v.positive_int(dim_feedforward, "dim_feedforward", fn)
        dropout = _dropout(dropout, fn)
        self.norm_first = _bool(norm_first, "norm_first", fn)
        eps = _eps(layer_norm_eps, fn)
        self.embed_dim = embed_dim
        self.self_attention = MultiHeadAttention(embed_dim, num_heads, dropout=dropout, bias=bias)
        self.cross_attention = MultiHeadAttention(embed_dim, num_heads, dropout=dropout, bias=bias)
        self.num_heads = self.self_attention.num_heads
        self.feed_forward = FeedForward(embed_dim, dim_feedforward, activation, dropout, bias)
        self.norm1 = nn.LayerNorm(embed_dim, eps=eps, bias=bias)
        self.norm2 = nn.LayerNorm(embed_dim, eps=eps, bias=bias)
        self.norm3 = nn.LayerNorm(embed_dim, eps=eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def extra_repr(self) -> str:
        return f"norm_first={self.norm_first}"

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, tgt_key_padding_mask: torch.Tensor | None = None,
                memory_key_padding_mask: torch.Tensor | None = None, tgt_is_causal: bool = True,
                need_weights: bool = False):
        """Run the layer on a batch of target sequences that read their source's memory.

        Args:
            tgt: float tensor (B, L, D), the decoder's input (or the previous layer's output).
            memory: float tensor (B, S, D), the encoder's output.
            tgt_mask: optional extra mask for the self-attention, (L, L), (B, L, L) or
                (B, H, L, L): bool (True = may attend) or float (added). Combined with the causal
                mask when ``tgt_is_causal``.
            memory_mask: optional mask for the cross-attention, (L, S), (B, L, S) or (B, H, L, S).
            tgt_key_padding_mask: optional bool (B, L), True for real target tokens.
            memory_key_padding_mask: optional bool (B, S), True for real source tokens.
            tgt_is_causal: apply the causal mask to the self-attention (default True; PyTorch's
                layer defaults to False and needs ``tgt_mask`` for causality).
            need_weights: if True, also return both attentions' weights.
        Returns:
            out (B, L, D); with ``need_weights``, ``(out, self_weights, cross_weights)``,
            (B, H, L, L) and (B, H, L, S).
        Raises:
            TypeError / ValueError: if tgt or memory is not a float (B, ., D) tensor, their batch
                sizes differ, or a mask does not fit.
        """
        fn = "DecoderLayer.forward"
        _check_sequence(tgt, "tgt", self.embed_dim, "L", fn)
        _check_sequence(memory, "memory", self.embed_dim, "S", fn)
        if tgt.shape[0] != memory.shape[0]:
            raise ValueError(f"{fn}: tgt {v.shape_str(tgt)} and memory {v.shape_str(memory)} must share the batch size B")
        x = tgt

        def self_block(h):
            out, w = self.self_attention(h, attn_mask=tgt_mask, key_padding_mask=tgt_key_padding_mask,
                                         is_causal=tgt_is_causal, need_weights=True)  # (B, L, D), (B, H, L, L)
            return self.dropout1(out), w

        def cross_block(h):
            # queries from the decoder (B, L, D), keys and values from the memory (B, S, D)
            out, w = self.cross_attention(h, memory, memory, attn_mask=memory_mask,
                                          key_padding_mask=memory_key_padding_mask,
                                          need_weights=True)  # (B, L, D), (B, H, L, S)
            return self.dropout2(out), w

        if self.norm_first:
            attended, self_weights = self_block(self.norm1(x))
            x = x + attended
            read, cross_weights = cross_block(self.norm2(x))
            x = x + read
            x = x + self.dropout3(self.feed_forward(self.norm3(x)))
        else:
            attended, self_weights = self_block(x)
            x = self.norm1(x + attended)
            read, cross_weights = cross_block(x)
            x = self.norm2(x + read)
            x = self.norm3(x + self.dropout3(self.feed_forward(x)))
        return (x, self_weights, cross_weights) if need_weights else x

    @classmethod
    def from_torch(cls, layer: nn.TransformerDecoderLayer) -> "DecoderLayer":
        """A DecoderLayer with the sizes, options and weights of a ``torch.nn.TransformerDecoderLayer``.

        ``self_attn`` -> ``self_attention``, ``multihead_attn`` -> ``cross_attention``,
        ``linear1``/``linear2`` -> ``feed_forward``, ``norm1..3`` -> ``norm1..3``.

        Note the different default: PyTorch's layer is causal only when given ``tgt_mask`` (or
        ``tgt_is_causal=True`` with a mask); this layer is causal unless ``tgt_is_causal=False``.

        Args:
            layer: built with ``batch_first=True``.
        Returns:
            DecoderLayer on ``layer``'s device and dtype, in the same train/eval mode.
        Raises:
            TypeError: if layer is not a torch.nn.TransformerDecoderLayer.
            ValueError: if layer has batch_first=False.
        """
        fn = "DecoderLayer.from_torch"
        _check_torch_layer(layer, nn.TransformerDecoderLayer, fn)
        ref = layer.linear1.weight
        module = cls(layer.self_attn.embed_dim, layer.self_attn.num_heads, layer.linear1.out_features,
                     dropout=float(layer.dropout.p), activation=_torch_activation(layer), norm_first=layer.norm_first,
                     layer_norm_eps=layer.norm1.eps, bias=layer.linear1.bias is not None)
        module = module.to(device=ref.device, dtype=ref.dtype)
        module.self_attention = MultiHeadAttention.from_torch(layer.self_attn)
        module.cross_attention = MultiHeadAttention.from_torch(layer.multihead_attn)
        module.feed_forward.linear1.load_state_dict(layer.linear1.state_dict())
        module.feed_forward.linear2.load_state_dict(layer.linear2.state_dict())
        for name in ("norm1", "norm2", "norm3"):
            getattr(module, name).load_state_dict(getattr(layer, name).state_dict())
        module.train(layer.training)
        return module


# --------------------------------------------------------------------------------------------
# Stacks.
# --------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """A stack of ``num_layers`` :class:`EncoderLayer` (independently initialised), plus a final LayerNorm if pre-LN.

    Configured three ways in chapter 08: bidirectional with a padding mask (encoder-only, BERT),
    with ``is_causal=True`` (decoder-only, GPT: the same blocks with a causal mask), and as the
    first half of an encoder-decoder (T5, the original Transformer).

    Args:
        num_layers: number of layers N.
        embed_dim, num_heads, dim_feedforward, dropout, activation, norm_first, layer_norm_eps,
            bias: as :class:`EncoderLayer`, for every layer.
    Attributes:
        layers (nn.ModuleList of EncoderLayer); final_norm (nn.LayerNorm, or None when post-LN:
        a post-LN layer already ends with a LayerNorm).
    Shape:
        src (B, S, D) -> (B, S, D); weights: a list of N tensors (B, H, S, S).
    Raises:
        TypeError / ValueError: for bad sizes or options.
    Taught in: notebooks/08_tiny_transformer.ipynb.  Source: Vaswani et al. 2017, sec. 3.1.
    """

    def __init__(self, num_layers: int, embed_dim: int, num_heads: int, dim_feedforward: int | None = None,
                 dropout: float = 0.0, activation="relu", norm_first: bool = True, layer_norm_eps: float = 1e-5,
                 bias: bool = True) -> None:
        super().__init__()
        num_layers = v.positive_int(num_layers, "num_layers", "Encoder")
        self.layers = nn.ModuleList(
            EncoderLayer(embed_dim, num_heads, dim_feedforward, dropout, activation, norm_first, layer_norm_eps, bias)
            for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps, bias=bias) if norm_first else None

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor | None = None,
                src_key_padding_mask: torch.Tensor | None = None, is_causal: bool = False, need_weights: bool = False):
        """Run every layer in turn (same masks for each), then the final LayerNorm.

        Args:
            src, src_mask, src_key_padding_mask, is_causal: as :meth:`EncoderLayer.forward`.
            need_weights: if True, also return each layer's self-attention weights.
        Returns:
            out (B, S, D); with ``need_weights``, ``(out, [weights of layer 0, 1, ...])``.
        """
        x, all_weights = src, []
        for layer in self.layers:
            x, weights = layer(x, src_mask, src_key_padding_mask, is_causal, need_weights=True)
            all_weights.append(weights)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return (x, all_weights) if need_weights else x


class Decoder(nn.Module):
    """A stack of ``num_layers`` :class:`DecoderLayer`, plus a final LayerNorm if pre-LN.

    Every layer reads the same ``memory`` (the encoder's final output).

    Args:
        num_layers: number of layers N.
        embed_dim, num_heads, dim_feedforward, dropout, activation, norm_first, layer_norm_eps,
            bias: as :class:`DecoderLayer`, for every layer.
    Attributes:
        layers (nn.ModuleList of DecoderLayer); final_norm (nn.LayerNorm or None).
    Shape:
        tgt (B, L, D), memory (B, S, D) -> (B, L, D); per layer: self weights (B, H, L, L),
        cross weights (B, H, L, S).
    Raises:
        TypeError / ValueError: for bad sizes or options.
    Taught in: notebooks/08_tiny_transformer.ipynb.  Source: Vaswani et al. 2017, sec. 3.1.
    """

    def __init__(self, num_layers: int, embed_dim: int, num_heads: int, dim_feedforward: int | None = None,
                 dropout: float = 0.0, activation="relu", norm_first: bool = True, layer_norm_eps: float = 1e-5,
                 bias: bool = True) -> None:
        super().__init__()
        num_layers = v.positive_int(num_layers, "num_layers", "Decoder")
        self.layers = nn.ModuleList(
            DecoderLayer(embed_dim, num_heads, dim_feedforward, dropout, activation, norm_first, layer_norm_eps, bias)
            for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps, bias=bias) if norm_first else None

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, tgt_key_padding_mask: torch.Tensor | None = None,
                memory_key_padding_mask: torch.Tensor | None = None, tgt_is_causal: bool = True,
                need_weights: bool = False):
        """Run every layer in turn, then the final LayerNorm.

        Args:
            as :meth:`DecoderLayer.forward`.
        Returns:
            out (B, L, D); with ``need_weights``, ``(out, [self weights per layer], [cross
            weights per layer])``.
        """
        x, self_weights, cross_weights = tgt, [], []
        for layer in self.layers:
            x, w_self, w_cross = layer(x, memory, tgt_mask, memory_mask, tgt_key_padding_mask,
                                       memory_key_padding_mask, tgt_is_causal, need_weights=True)
            self_weights.append(w_self)
            cross_weights.append(w_cross)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return (x, self_weights, cross_weights) if need_weights else x


# --------------------------------------------------------------------------------------------
# The encoder-decoder model.
# --------------------------------------------------------------------------------------------


@dataclass
class AttentionMaps:
    """Every attention weight of one :class:`Seq2SeqTransformer` forward pass, one tensor per layer.

    Attributes:
        encoder: per encoder layer, self-attention weights (B, H, S, S).
        decoder_self: per decoder layer, causal self-attention weights (B, H, L, L).
        decoder_cross: per decoder layer, cross-attention weights (B, H, L, S): row i says where
            in the source target position i looked.
    """

    encoder: list[torch.Tensor] = field(default_factory=list)
    decoder_self: list[torch.Tensor] = field(default_factory=list)
    decoder_cross: list[torch.Tensor] = field(default_factory=list)


_POSITIONAL = ("sinusoidal", "learned", None)


class Seq2SeqTransformer(nn.Module):
    """An encoder-decoder transformer for token sequences: embeddings, positions, Encoder, Decoder, readout.

    ``src`` ids -> ``src_embedding`` + positions -> :class:`Encoder` -> memory (B, S, D);
    ``tgt_in`` ids (the target shifted right behind a start token, see :func:`shift_right`)
    -> ``tgt_embedding`` + positions -> :class:`Decoder` (causal self-attention, cross-attention
    to the memory) -> ``readout`` -> logits (B, L, V_tgt): at position i, the scores of the
    target token i (it has seen target tokens 0..i-1 and the whole source).

    Positions: ``"sinusoidal"`` adds the fixed table of :func:`course_lib.positional.sinusoidal_encoding`
    (a buffer); ``"learned"`` adds a :class:`course_lib.positional.LearnedPositionalEmbedding`
    per side; ``None`` adds nothing (the encoder then sees its source as a set; chapter 08
    shows what that costs). The embeddings are not multiplied by sqrt(D) as in the paper: with
    nn.Embedding's N(0, 1) initialisation they already have unit-size entries, like the table.

    Args:
        src_vocab_size, tgt_vocab_size: vocabulary sizes (ids 0 .. V-1).
        embed_dim: model size D.  num_heads: H.  num_encoder_layers, num_decoder_layers: N_enc, N_dec.
        dim_feedforward: F (default 4 D).  dropout: for the layers and after the embeddings.
        activation, norm_first, layer_norm_eps, bias: as :class:`EncoderLayer`.
        max_len: the longest sequence (source or target) the positions cover.
        positional: "sinusoidal" (default), "learned" or None.
    Attributes:
        src_embedding, tgt_embedding (nn.Embedding), encoder (Encoder), decoder (Decoder),
        readout (nn.Linear(D, V_tgt)), positional, max_len, embed_dim.
    Shape:
        src (B, S) long, tgt_in (B, L) long -> logits (B, L, V_tgt).
    Raises:
        TypeError / ValueError: for bad sizes or options (the message names the argument); in
            ``encode``/``decode``/``forward``, for ids that are not 2-D integers, longer than ``max_len``
            or (**on the CPU** only: reading them elsewhere would stall a GPU) outside ``[0, V)``.
    Taught in: notebooks/08_tiny_transformer.ipynb.  Source: Vaswani et al. 2017, sec. 3 and fig. 1.
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, embed_dim: int = 64, num_heads: int = 4,
                 num_encoder_layers: int = 2, num_decoder_layers: int = 2, dim_feedforward: int | None = None,
                 dropout: float = 0.0, activation="relu", norm_first: bool = True, layer_norm_eps: float = 1e-5,
                 bias: bool = True, max_len: int = 64, positional: str | None = "sinusoidal") -> None:
        super().__init__()
        fn = "Seq2SeqTransformer"
        src_vocab_size = v.positive_int(src_vocab_size, "src_vocab_size", fn)
        tgt_vocab_size = v.positive_int(tgt_vocab_size, "tgt_vocab_size", fn)
        self.embed_dim = v.positive_int(embed_dim, "embed_dim", fn)
        self.max_len = v.positive_int(max_len, "max_len", fn)
        if positional not in _POSITIONAL:
            raise ValueError(f"{fn}: positional must be 'sinusoidal', 'learned' or None, got {positional!r}")
        self.positional = positional
        self.src_embedding = nn.Embedding(src_vocab_size, embed_dim)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, embed_dim)
        if positional == "sinusoidal":
            self.register_buffer("position_table", sinusoidal_encoding(self.max_len, embed_dim), persistent=False)
        elif positional == "learned":
            self.src_positions = LearnedPositionalEmbedding(self.max_len, embed_dim)
            self.tgt_positions = LearnedPositionalEmbedding(self.max_len, embed_dim)
        self.embedding_dropout = nn.Dropout(_dropout(dropout, fn))
        options = dict(dim_feedforward=dim_feedforward, dropout=dropout, activation=activation,
                       norm_first=norm_first, layer_norm_eps=layer_norm_eps, bias=bias)
        self.encoder = Encoder(num_encoder_layers, embed_dim, num_heads, **options)
        self.decoder = Decoder(num_decoder_layers, embed_dim, num_heads, **options)
        self.readout = nn.Linear(embed_dim, tgt_vocab_size, bias=bias)

    def extra_repr(self) -> str:
        return f"positional={self.positional!r}, max_len={self.max_len}"

    def _embed(self, ids: torch.Tensor, side: str, fn: str) -> torch.Tensor:
        embedding = self.src_embedding if side == "src" else self.tgt_embedding
        T = ids.shape[1]
        if T > self.max_len:
            raise ValueError(f"{fn}: {side} has {T} tokens but the model's positions cover max_len={self.max_len}")
        if _values_readable(ids) and ((ids < 0).any() or (ids >= embedding.num_embeddings).any()):
            raise ValueError(f"{fn}: {side} ids must lie in [0, {embedding.num_embeddings}), got values "
                             f"from {int(ids.min())} to {int(ids.max())}")
        x = embedding(ids)  # (B, T) -> (B, T, D)
        if self.positional == "sinusoidal":
            x = x + self.position_table[:T].to(x.dtype)  # (B, T, D) + (T, D) -> (B, T, D)
        elif self.positional == "learned":
            x = (self.src_positions if side == "src" else self.tgt_positions)(x)  # (B, T, D)
        return self.embedding_dropout(x)

    def encode(self, src: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None, need_weights: bool = False):
        """The encoder's output for a batch of source ids: the memory the decoder reads.

        Args:
            src: long tensor (B, S) of source ids.
            src_key_padding_mask: optional bool (B, S), True for real tokens.
            need_weights: if True, also return the encoder's weights (a list per layer).
        Returns:
            memory (B, S, D); with ``need_weights``, ``(memory, [ (B, H, S, S) per layer ])``.
        Raises:
            TypeError / ValueError: if src is not a 2-D integer tensor, is longer than max_len,
                or (on the CPU only, see the class) holds an id outside the vocabulary.
        """
        fn = "Seq2SeqTransformer.encode"
        _check_ids(src, "src", fn)
        return self.encoder(self._embed(src, "src", fn), src_key_padding_mask=src_key_padding_mask,
                            need_weights=need_weights)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, memory_key_padding_mask: torch.Tensor | None = None,
               tgt_key_padding_mask: torch.Tensor | None = None, tgt_is_causal: bool = True,
               need_weights: bool = False):
        """Logits for the next target token at every position of ``tgt_in``, reading ``memory``.

        Args:
            tgt_in: long tensor (B, L): the start token and the target tokens so far.
            memory: float tensor (B, S, D) from :meth:`encode`.
            memory_key_padding_mask: optional bool (B, S), True for real source tokens.
            tgt_key_padding_mask: optional bool (B, L), True for real target tokens.
            tgt_is_causal: the causal mask on the decoder's self-attention (default True; turning
                it off lets position i see later target tokens, which training never allowed).
            need_weights: if True, also return the decoder's self and cross weights.
        Returns:
            logits (B, L, V_tgt); with ``need_weights``, ``(logits, [self per layer], [cross per layer])``.
        """
        fn = "Seq2SeqTransformer.decode"
        _check_ids(tgt_in, "tgt_in", fn)
        out = self.decoder(self._embed(tgt_in, "tgt", fn), memory, tgt_key_padding_mask=tgt_key_padding_mask,
                           memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=tgt_is_causal,
                           need_weights=need_weights)
        if need_weights:
            x, w_self, w_cross = out
            return self.readout(x), w_self, w_cross  # (B, L, D) @ (D, V) -> (B, L, V)
        return self.readout(out)  # (B, L, D) @ (D, V) -> (B, L, V)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None,
                tgt_key_padding_mask: torch.Tensor | None = None, need_weights: bool = False):
        """Teacher-forced pass: logits for every target position at once.

        Args:
            src: long (B, S) source ids.  tgt_in: long (B, L), the target shifted right
                (:func:`shift_right`).
            src_key_padding_mask: optional bool (B, S), True for real source tokens (used by the
                encoder's self-attention and by every cross-attention).
            tgt_key_padding_mask: optional bool (B, L), True for real target tokens.
            need_weights: if True, also return an :class:`AttentionMaps`.
        Returns:
            logits (B, L, V_tgt); with ``need_weights``, ``(logits, AttentionMaps)``.
        Shape:
            src (B, S), tgt_in (B, L) -> (B, L, V_tgt).
        """
        if need_weights:
            memory, w_enc = self.encode(src, src_key_padding_mask, need_weights=True)
            logits, w_self, w_cross = self.decode(tgt_in, memory, src_key_padding_mask, tgt_key_padding_mask,
                                                  need_weights=True)
            return logits, AttentionMaps(w_enc, w_self, w_cross)
        memory = self.encode(src, src_key_padding_mask)
        return self.decode(tgt_in, memory, src_key_padding_mask, tgt_key_padding_mask)


# --------------------------------------------------------------------------------------------
# Training and inference.
# --------------------------------------------------------------------------------------------


def shift_right(tgt: torch.Tensor, bos_id: int) -> torch.Tensor:
    """The decoder's input for teacher forcing: the start token, then the target without its last token.

    ``tgt = [y0, y1, ..., y_{L-1}]`` -> ``[bos, y0, ..., y_{L-2}]``: position i of the decoder
    sees ``bos, y0 .. y_{i-1}`` (causal mask) and is trained to predict ``y_i``.

    Args:
        tgt: integer tensor (B, L) of target ids.
        bos_id: the start-of-sequence id.
    Returns:
        long tensor (B, L) on tgt's device.
    Shape:
        (B, L) -> (B, L)
    Raises:
        TypeError / ValueError: if tgt is not a 2-D integer tensor or bos_id is not an int >= 0.
    Taught in: notebooks/08_tiny_transformer.ipynb.  Source: Vaswani et al. 2017, sec. 3.1
        ("the output embeddings are offset by one position").
    """
    fn = "shift_right"
    _check_ids(tgt, "tgt", fn)
    if isinstance(bos_id, bool) or not isinstance(bos_id, int) or bos_id < 0:
        raise TypeError(f"{fn}: bos_id must be an int >= 0, got {bos_id!r}")
    start = torch.full_like(tgt[:, :1], bos_id)  # (B, 1)
    return torch.cat([start, tgt[:, :-1]], dim=1)  # (B, 1) + (B, L-1) -> (B, L)


def teacher_forcing_loss(model: Seq2SeqTransformer, src: torch.Tensor, tgt: torch.Tensor, bos_id: int,
                         src_key_padding_mask: torch.Tensor | None = None, pad_id: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of predicting every target token from the source and the target tokens before it.

    One forward pass trains all L positions at once: the decoder reads ``shift_right(tgt)`` and
    position i's logits are scored against ``tgt[:, i]``.

    Args:
        model: a :class:`Seq2SeqTransformer` (anything with the same ``forward``).
        src: long (B, S) source ids.  tgt: long (B, L) target ids (no start token).
        bos_id: the start-of-sequence id.
        src_key_padding_mask: optional bool (B, S), True for real source tokens.
        pad_id: if given, target positions holding it are left out of the mean.
    Returns:
        0-d float tensor (differentiable).
    Shape:
        src (B, S), tgt (B, L) -> ()
    Taught in: notebooks/08_tiny_transformer.ipynb.
    """
    logits = model(src, shift_right(tgt, bos_id), src_key_padding_mask=src_key_padding_mask)  # (B, L, V)
    ignore = -100 if pad_id is None else pad_id
    return F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=ignore)  # (B*L, V), (B*L,) -> ()


@torch.no_grad()
def teacher_forced_exact_match(model: nn.Module, src: torch.Tensor, tgt: torch.Tensor, bos_id: int,
                               src_key_padding_mask: torch.Tensor | None = None) -> float:
    """Fraction of sequences whose every target token is the argmax, given the right tokens before it.

    A cheap validation score during training: one teacher-forced forward pass, no decoding. The
    model is put in eval mode for the pass and back in its previous mode afterwards.

    Args:
        model: a :class:`Seq2SeqTransformer` (anything with the same ``forward``).
        src: long (B, S) source ids.  tgt: long (B, L) target ids (no start token).
        bos_id: the start-of-sequence id.
        src_key_padding_mask: optional bool (B, S), True for real source tokens.
    Returns:
        a float in [0, 1] (read on the host: this is an evaluation, not a forward pass).
    Shape:
        src (B, S), tgt (B, L) -> a Python float
    Taught in: notebooks/08_tiny_transformer.ipynb.
    """
    was_training = model.training
    model.eval()
    logits = model(src, shift_right(tgt, bos_id), src_key_padding_mask=src_key_padding_mask)  # (B, L, V)
    model.train(was_training)
    return (logits.argmax(-1) == tgt).all(dim=1).float().mean().item()  # every token of a sequence right


def train_seq2seq(model: nn.Module, src: torch.Tensor, tgt: torch.Tensor, bos_id: int, steps: int, *,
                  src_key_padding_mask: torch.Tensor | None = None, batch_size: int = 64, lr: float = 3e-3,
                  seed: int = 0, evaluate: Callable[[nn.Module], float] | None = None, eval_every: int = 25,
                  desc: str = "training", progress: bool = True) -> dict[str, list]:
    """Train a sequence-to-sequence model with teacher forcing: Adam, a linear decay to 0, random batches.

    Each step draws ``batch_size`` random rows (with a generator seeded by ``seed``, so the order
    of batches is reproducible), computes :func:`teacher_forcing_loss`, and takes one Adam step.
    ``evaluate(model)`` (e.g. :func:`teacher_forced_exact_match` on a validation set) runs before
    training and every ``eval_every`` steps, in eval mode and without gradients. The model ends in
    eval mode.

    Args:
        model: a :class:`Seq2SeqTransformer` (anything with the same ``forward``).
        src: long (N, S) training sources.  tgt: long (N, L) training targets.
        bos_id: the start-of-sequence id.
        steps: number of optimisation steps (a positive int).
        src_key_padding_mask: optional bool (N, S), True for real source tokens.
        batch_size: rows per step.  lr: Adam's learning rate at step 0.  seed: the batch order.
        evaluate: optional callable model -> float.  eval_every: steps between evaluations.
        desc: the progress bar's label.  progress: show a tqdm progress bar.
    Returns:
        history: ``{"step", "loss", "val_step", "val_exact"}``, lists of Python numbers (the last
        two only when ``evaluate`` is given). The losses stay on the device during training and
        are read on the host once, at the end (a per-step ``loss.item()`` would make every step
        wait for the GPU); ``evaluate`` returns a Python float, so each evaluation is a host read.
    Raises:
        ValueError: if steps, batch_size or eval_every is not a positive int, or src and tgt
            disagree on N.
    Taught in: notebooks/08_tiny_transformer.ipynb.
    """
    from tqdm import tqdm

    fn = "train_seq2seq"
    steps = v.positive_int(steps, "steps", fn)
    batch_size = v.positive_int(batch_size, "batch_size", fn)
    eval_every = v.positive_int(eval_every, "eval_every", fn)
    if src.shape[0] != tgt.shape[0]:
        raise ValueError(f"{fn}: src (N, S) and tgt (N, L) must have the same N, got {v.shape_str(src)} and "
                         f"{v.shape_str(tgt)}")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)  # linear decay to 0
    g = torch.Generator().manual_seed(seed)  # the order of the batches
    history: dict[str, list] = {"step": [], "loss": []}
    losses: list[torch.Tensor] = []  # 0-d tensors on the model's device, read on the host once at the end

    def score() -> float:
        model.eval()  # dropout off while evaluating
        with torch.no_grad():
            return evaluate(model)

    if evaluate is not None:
        history["val_step"], history["val_exact"] = [0], [score()]
    model.train()
    for step in tqdm(range(1, steps + 1), desc=desc, mininterval=1.0, disable=not progress):
        rows = torch.randint(src.shape[0], (batch_size,), generator=g).to(src.device)  # (batch,)
        mask = None if src_key_padding_mask is None else src_key_padding_mask[rows]
        loss = teacher_forcing_loss(model, src[rows], tgt[rows], bos_id, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        history["step"].append(step)
        losses.append(loss.detach())
        if evaluate is not None and step % eval_every == 0:
            history["val_step"].append(step)
            history["val_exact"].append(score())
            model.train()
    model.eval()
    if losses:
        history["loss"] = torch.stack(losses).tolist()  # (steps,): one host read for the whole run
    return history


# greedy_decode reads "has every row ended?" on the host only every this many steps: each read
# waits for the GPU to finish the queued steps, so reading it every step would serialise them.
_EOS_CHECK_EVERY = 8


@torch.no_grad()
def greedy_decode(model: Seq2SeqTransformer, src: torch.Tensor, max_len: int, bos_id: int,
                  src_key_padding_mask: torch.Tensor | None = None, eos_id: int | None = None,
                  pad_id: int = 0) -> torch.Tensor:
    """Generate target ids one at a time, each time taking the most likely next token.

    The source is encoded once. Then, ``max_len`` times: run the decoder on the tokens so far
    (starting with ``[bos]``, causal mask on), take the logits of the **last** position, append
    their argmax. Every step recomputes the whole prefix (chapter 09's KV cache avoids that).
    Once a sequence has produced ``eos_id`` (if given), the rest of its row is ``pad_id``.

    Stopping early is the one host read here ("has every row ended?" makes the host wait for the
    GPU): it is read every 8 steps, so up to 7 extra steps may append ``pad_id`` to ended rows
    (same result). On ``meta`` (no values) it is never read and all ``max_len`` steps run.

    Call ``model.eval()`` first when the model has dropout.

    Args:
        model: a :class:`Seq2SeqTransformer` (anything with its ``encode``/``decode``).
        src: long (B, S) source ids.
        max_len: number of tokens to generate.
        bos_id: the start-of-sequence id.
        src_key_padding_mask: optional bool (B, S), True for real source tokens.
        eos_id: optional end-of-sequence id.
        pad_id: what fills a row after its end-of-sequence token.
    Returns:
        long tensor (B, max_len) of generated ids (without the start token), on src's device.
    Shape:
        src (B, S) -> (B, max_len)
    Raises:
        TypeError / ValueError: if max_len is not a positive int or src is not (B, S) ids.
    Taught in: notebooks/08_tiny_transformer.ipynb.
    """
    fn = "greedy_decode"
    max_len = v.positive_int(max_len, "max_len", fn)
    _check_ids(src, "src", fn)
    memory = model.encode(src, src_key_padding_mask)  # (B, S, D), once
    B = src.shape[0]
    out = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)  # (B, 1): [bos]
    finished = torch.zeros(B, dtype=torch.bool, device=src.device)
    can_stop = eos_id is not None and src.device.type != "meta"
    for step in range(1, max_len + 1):
        logits = model.decode(out, memory, memory_key_padding_mask=src_key_padding_mask)  # (B, t, V)
        next_id = logits[:, -1].argmax(dim=-1)  # (B,): the last position predicts the next token
        if eos_id is not None:
            next_id = torch.where(finished, torch.full_like(next_id, pad_id), next_id)
            finished = finished | (next_id == eos_id)
        out = torch.cat([out, next_id[:, None]], dim=1)  # (B, t) + (B, 1) -> (B, t+1)
        if can_stop and step % _EOS_CHECK_EVERY == 0 and bool(finished.all()):  # host read, every 8 steps
            break
    generated = out[:, 1:]  # drop the start token
    if generated.shape[1] < max_len:  # stopped early: every row has ended
        fill = torch.full((B, max_len - generated.shape[1]), pad_id, dtype=torch.long, device=src.device)
        generated = torch.cat([generated, fill], dim=1)
    return generated


# --------------------------------------------------------------------------------------------
# Reading the cross-attention against a known alignment.
# --------------------------------------------------------------------------------------------


def _check_alignment(weights, alignment, fn: str) -> None:
    v.tensor(weights, "weights", fn, floating=True)
    v.tensor(alignment, "alignment", fn)
    if alignment.is_floating_point() or alignment.dtype == torch.bool or alignment.is_complex():
        raise TypeError(f"{fn}: alignment must be an integer tensor (B, L), got {alignment.dtype}")
    B_L = (weights.shape[0], weights.shape[2]) if weights.dim() == 4 else None
    if B_L is None or alignment.dim() != 2 or tuple(alignment.shape) != B_L:
        raise ValueError(
            f"{fn}: weights must be (B, H, L, S) and alignment (B, L) with the same B and L, got weights "
            f"{v.shape_str(weights)} and alignment {v.shape_str(alignment)}"
        )
    if _values_readable(alignment) and not (alignment >= 0).any():  # a CPU read only: no device sync
        raise ValueError(f"{fn}: alignment has no aligned position (every entry is -1)")


def alignment_matrix(alignment: torch.Tensor, S: int | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ideal attention weights of an alignment: row t is one-hot at source position ``alignment[t]``.

    S is a shape, so pass it: only ``S=None`` reads it from the values (``alignment.max() + 1``,
    a host read: a GPU sync, impossible on ``meta``). Every caller inside course_lib passes S.

    Args:
        alignment: long tensor (..., L) of source positions; -1 marks a padded target position
            (its row is all zeros).
        S: number of source positions (default None: the largest index + 1, read on the host).
        dtype: floating dtype of the result.
    Returns:
        tensor (..., L, S) on ``alignment``'s device.
    Shape:
        (..., L) -> (..., L, S)
    Raises:
        TypeError: if alignment is not an integer tensor.
        ValueError: if S is not a positive int, or, for an alignment on the CPU (whose values
            are read without a device sync), if an index is < -1 or >= S. On other devices the
            values are not checked: an index >= S, or < -1, gives an all-zero row.
    Taught in: notebooks/06_cross_attention.ipynb.
    """
    fn = "alignment_matrix"
    v.tensor(alignment, "alignment", fn, min_dim=1)
    if alignment.is_floating_point() or alignment.dtype == torch.bool or alignment.is_complex():
        raise TypeError(f"{fn}: alignment must be an integer tensor, got {alignment.dtype}")
    if S is None:
        S = max(int(alignment.max()) + 1, 1)
    S = v.positive_int(S, "S", fn)
    if _values_readable(alignment) and ((alignment < -1).any() or (alignment >= S).any()):
        raise ValueError(f"{fn}: alignment values must lie in [-1, S) = [-1, {S}), got {alignment.tolist()}")
    positions = torch.arange(S, device=alignment.device)  # (S,)
    return (alignment[..., None] == positions).to(dtype)  # (..., L, 1) == (S,) -> (..., L, S)


def alignment_weight(weights: torch.Tensor, alignment: torch.Tensor) -> torch.Tensor:
    """Per head, the mean attention weight that lies on the source token each target position translates.

    For every aligned target position (``alignment[b, i] >= 0``), read the weight head h puts on
    source token ``alignment[b, i]``; average over those positions. 1 means the head looks
    exactly where the alignment says; uniform attention over S tokens gives about 1/S.

    Args:
        weights: cross-attention weights (B, H, L, S), rows summing to 1.
        alignment: integer tensor (B, L), the source position of each target token, -1 where a
            target token comes from no source token (a separator, a padding).
    Returns:
        tensor (H,) in weights' dtype, each value in [0, 1] (NaN when no position is aligned, on
        devices where that is not checked, see Raises). No value is read on the host: the mean
        over aligned positions is a masked sum divided by their count, whatever the device.
    Shape:
        weights (B, H, L, S), alignment (B, L) -> (H,)
    Raises:
        TypeError / ValueError: for wrong types or shapes; for an alignment on the CPU, also when
            no position is aligned or an index is outside [-1, S) (values on other devices are
            not read: that would stall a GPU, and meta tensors have none).
    Taught in: notebooks/08_tiny_transformer.ipynb (chapter 06 measured the same for one head).
    """
    fn = "alignment_weight"
    _check_alignment(weights, alignment, fn)
    S = weights.shape[-1]
    ideal = alignment_matrix(alignment.to(weights.device), S=S, dtype=weights.dtype)  # (B, L, S) one-hot rows
    on_right = (weights * ideal[:, None]).sum(dim=-1)  # (B, H, L, S) * (B, 1, L, S) -> (B, H, L)
    aligned = (alignment >= 0).to(device=weights.device, dtype=weights.dtype)  # (B, L), 1 = aligned
    # mean over the aligned positions as a masked sum over their count: no data-dependent shape
    return (on_right * aligned[:, None]).sum(dim=(0, 2)) / aligned.sum()  # (B, H, L) * (B, 1, L) -> (H,)


def find_alignment_head(cross_weights, alignment: torch.Tensor) -> tuple[int, int, float]:
    """The (layer, head) whose cross-attention puts the most weight on the known alignment.

    Args:
        cross_weights: tensor (N, B, H, L, S) (N decoder layers), or a list of N tensors
            (B, H, L, S) as in :attr:`AttentionMaps.decoder_cross`.
        alignment: integer tensor (B, L), -1 for unaligned target positions.
    Returns:
        ``(layer, head, score)``: ints and the head's :func:`alignment_weight` (a float). Ties go to
        the first layer, then the first head. Returning Python numbers means reading them on the
        host, after all the scores are computed on the device; so it cannot run on ``meta``.
    Shape:
        (N, B, H, L, S), (B, L) -> (int, int, float)
    Raises:
        TypeError / ValueError: for wrong types or shapes.
    Taught in: notebooks/08_tiny_transformer.ipynb.
    """
    fn = "find_alignment_head"
    if isinstance(cross_weights, (list, tuple)):
        if not cross_weights:
            raise ValueError(f"{fn}: cross_weights is an empty list")
        cross_weights = torch.stack(list(cross_weights))  # N x (B, H, L, S) -> (N, B, H, L, S)
    v.tensor(cross_weights, "cross_weights", fn, floating=True)
    if cross_weights.dim() != 5:
        raise ValueError(f"{fn}: cross_weights must be (N, B, H, L, S), got shape {v.shape_str(cross_weights)}")
    scores = torch.stack([alignment_weight(w, alignment) for w in cross_weights])  # (N, H)
    best = int(scores.flatten().argmax())  # host read: the result is Python numbers
    H = scores.shape[1]
    return best // H, best % H, float(scores.flatten()[best])
