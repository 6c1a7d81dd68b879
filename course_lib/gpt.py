"""A small GPT from the course's parts: a decoder-only transformer that writes text.

Nothing here is new attention. The queries, keys and values are split into heads with
:func:`course_lib.multihead.split_heads` (chapter 05), attended with course_lib's own
:func:`course_lib.attention.scaled_dot_product_attention` under the causal mask (chapters
03-04), positions come from a :class:`course_lib.positional.LearnedPositionalEmbedding` table
(chapter 07), and generation reuses the keys and values of earlier tokens through
:class:`course_lib.efficient.KVCache` and :func:`course_lib.efficient.decode_step` (chapter 09).
What this module adds is the GPT-2 wiring (Radford et al. 2019) around them:

- :class:`GPTConfig`, :class:`GPT`: token and position embeddings, a stack of pre-norm
  decoder :class:`Block` s, a final LayerNorm and a language-model head that shares its weight
  matrix with the token embedding (weight tying, Press & Wolf 2017).
- :func:`grouped_query_attention`: several query heads share one key/value head (GQA,
  Ainslie et al. 2023; one shared head = multi-query attention, Shazeer 2019). Checked against
  ``F.scaled_dot_product_attention(..., enable_gqa=True)`` in tests/test_gpt.py.
- :func:`lm_loss`: next-token cross-entropy, the logits of position t scored on token t + 1.
- :func:`sampling_probs`, :func:`sample_next`, :func:`generate`: temperature, top-k and top-p
  (nucleus) sampling, with or without the KV cache (the same tokens either way).
- :func:`estimate_loss`, :func:`fit`: validation loss in nats per token, and the training loop
  (AdamW, linear warm-up then cosine decay, gradient clipping, a tqdm bar).
- :func:`gpt2_config`, :func:`to_gpt2_state_dict`, :func:`load_into_gpt2`: the same weights in
  Hugging Face's ``GPT2LMHeadModel``, which then computes the same logits (to 1e-5 in float32).

Shapes: B batch, T (or L) tokens, S key/value length, H query heads, Hkv key/value heads, G = H /
Hkv query heads per key/value head, E = head_dim, D = embed_dim, F = dim_feedforward, V vocabulary
size, C = context_length.

Taught in: notebooks/11_small_gpt.ipynb.
Source: Radford et al. 2018/2019 (GPT, GPT-2: decoder-only, pre-norm, learned positions);
Vaswani et al. 2017, sec. 3; Holtzman et al. 2020 (nucleus sampling); Fan et al. 2018 (top-k).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate as v
from .attention import scaled_dot_product_attention
from .attention import softmax as _softmax
from .efficient import KVCache, decode_step
from .multihead import merge_heads, split_heads
from .positional import LearnedPositionalEmbedding
from .transformer import FeedForward

__all__ = [
    "GPTConfig",
    "grouped_query_attention",
    "CausalSelfAttention",
    "Block",
    "GPT",
    "get_batch",
    "lm_loss",
    "sampling_probs",
    "sample_next",
    "generate",
    "estimate_loss",
    "TrainHistory",
    "lr_at",
    "fit",
    "gpt2_config",
    "to_gpt2_state_dict",
    "load_into_gpt2",
]

#: GPT-2's nonlinearity, "gelu_new": the tanh approximation of GELU (Hendrycks & Gimpel 2016).
gelu_tanh = functools.partial(F.gelu, approximate="tanh")


# --------------------------------------------------------------------------------------------
# Configuration.
# --------------------------------------------------------------------------------------------


@dataclass
class GPTConfig:
    """The sizes of a :class:`GPT` (names as in ``torch.nn.MultiheadAttention``: embed_dim, num_heads).

    Args:
        vocab_size: V, the number of token ids.
        context_length: C, the most tokens the model reads at once (rows of the position table).
        embed_dim: D, the size of every token's vector.
        num_heads: H, query heads per layer; must divide embed_dim.
        num_layers: number of decoder blocks.
        num_kv_heads: Hkv, key/value heads per layer; must divide num_heads. None = num_heads
            (ordinary multi-head attention); 1 = multi-query attention; in between = grouped-query.
        dim_feedforward: F, the hidden size of the MLP; None = 4 * embed_dim (GPT-2).
        dropout: dropout probability on the embeddings, the attention weights and both residual
            branches (training mode only).
        layer_norm_eps: epsilon of every LayerNorm (GPT-2: 1e-5).
        bias: if True, every Linear and LayerNorm has a bias (GPT-2: True).
    Raises:
        TypeError / ValueError: naming the field, for a size that is not a positive int, heads that
            do not divide, a dropout outside [0, 1) or a non-positive epsilon.
    Taught in: notebooks/11_small_gpt.ipynb.
    """

    vocab_size: int
    context_length: int = 128
    embed_dim: int = 128
    num_heads: int = 4
    num_layers: int = 4
    num_kv_heads: int | None = None
    dim_feedforward: int | None = None
    dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    bias: bool = True

    def __post_init__(self) -> None:
        fn = "GPTConfig"
        for name in ("vocab_size", "context_length", "embed_dim", "num_heads", "num_layers"):
            setattr(self, name, v.positive_int(getattr(self, name), name, fn))
        if self.num_kv_heads is None:
            self.num_kv_heads = self.num_heads
        self.num_kv_heads = v.positive_int(self.num_kv_heads, "num_kv_heads", fn)
        if self.dim_feedforward is None:
            self.dim_feedforward = 4 * self.embed_dim
        self.dim_feedforward = v.positive_int(self.dim_feedforward, "dim_feedforward", fn)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"{fn}: embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"{fn}: num_heads={self.num_heads} is not divisible by num_kv_heads={self.num_kv_heads}; "
                             f"each key/value head serves the same number of query heads")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise TypeError(f"{fn}: dropout must be a float in [0, 1), got {type(self.dropout).__name__}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{fn}: dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.layer_norm_eps, bool) or not isinstance(self.layer_norm_eps, (int, float)) \
                or not self.layer_norm_eps > 0:
            raise ValueError(f"{fn}: layer_norm_eps must be a positive float, got {self.layer_norm_eps!r}")
        if not isinstance(self.bias, bool):
            raise TypeError(f"{fn}: bias must be a bool, got {type(self.bias).__name__}")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads


# --------------------------------------------------------------------------------------------
# Grouped-query attention.
# --------------------------------------------------------------------------------------------


def grouped_query_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                            scale: float | None = None, return_weights: bool = False, dropout_p: float = 0.0):
    """Attention where each key/value head serves a group of ``G = H / Hkv`` query heads.

    Query head ``h`` reads key/value head ``h // G`` (the grouping of PyTorch's
    ``enable_gqa=True``). Nothing is copied: the H query heads are viewed as (Hkv, G) and the
    key/value heads get a size-1 group dim, so course_lib's attention broadcasts one key/value
    head over its G query heads. With Hkv = H it is ordinary multi-head attention; with Hkv = 1,
    multi-query attention. The KV cache shrinks by the factor G.

    Args:
        query: float tensor (..., H, L, E).
        key: float tensor (..., Hkv, S, E); value: float tensor (..., Hkv, S, Ev); Hkv divides H.
        attn_mask: optional bool (True = may attend) or float (added) mask, (L, S) or
            (..., H or 1, L, S).
        is_causal: if True, query i sees keys 0..i (top-left aligned). Not with attn_mask.
        scale: multiplier of the scores; None = 1 / sqrt(E).
        return_weights: if True, also return the weights (..., H, L, S) (after dropout, as used).
        dropout_p: the probability of zeroing each attention weight (kept ones scaled by 1/(1-p));
            0.0 = off, for evaluation.
    Returns:
        output (..., H, L, Ev) [, weights (..., H, L, S)], in query's dtype and device.
    Shape:
        query (..., H, L, E), key (..., Hkv, S, E), value (..., Hkv, S, Ev) -> (..., H, L, Ev).
    Raises:
        TypeError: if an input is not a floating tensor.
        ValueError: if an input has fewer than 3 dims, key and value disagree on Hkv, Hkv does not
            divide H, or attn_mask has a head dim other than 1 or H.
    Taught in: notebooks/11_small_gpt.ipynb.  Source: Ainslie et al. 2023, "GQA", sec. 2;
    Shazeer 2019, "Fast Transformer Decoding: One Write-Head is All You Need" (multi-query).
    """
    fn = "grouped_query_attention"
    for name, t in (("query", query), ("key", key), ("value", value)):
        v.tensor(t, name, fn, min_dim=3, floating=True)
    H, Hkv = query.shape[-3], key.shape[-3]
    if value.shape[-3] != Hkv:
        raise ValueError(f"{fn}: key (..., Hkv, S, E) and value (..., Hkv, S, Ev) must have the same number of heads, "
                         f"got key {v.shape_str(key)} and value {v.shape_str(value)}")
    if H % Hkv:
        raise ValueError(f"{fn}: the {Hkv} key/value heads of key {v.shape_str(key)} must divide the {H} query heads "
                         f"of query {v.shape_str(query)}")
    G = H // Hkv
    q = query.unflatten(-3, (Hkv, G))  # (..., H, L, E) -> (..., Hkv, G, L, E): head h = (h // G, h % G)
    k = key.unsqueeze(-3)  # (..., Hkv, S, E) -> (..., Hkv, 1, S, E): shared by the G query heads
    val = value.unsqueeze(-3)  # (..., Hkv, S, Ev) -> (..., Hkv, 1, S, Ev)
    mask = attn_mask
    if mask is not None and mask.dim() >= 3:
        if mask.shape[-3] == H:
            mask = mask.unflatten(-3, (Hkv, G))  # (..., H, L, S) -> (..., Hkv, G, L, S)
        elif mask.shape[-3] == 1:
            mask = mask.unsqueeze(-3)  # (..., 1, L, S) -> (..., 1, 1, L, S)
        else:
            raise ValueError(f"{fn}: attn_mask {v.shape_str(attn_mask)} must have 1 or H={H} heads in dim -3")
    result = scaled_dot_product_attention(q, k, val, attn_mask=mask, is_causal=is_causal, scale=scale,
                                          dropout_p=dropout_p, return_weights=return_weights)  # (..., Hkv, G, L, Ev)
    if return_weights:
        out, weights = result
        return out.flatten(-4, -3), weights.flatten(-4, -3)  # (..., Hkv, G, L, *) -> (..., H, L, *)
    return result.flatten(-4, -3)  # (..., Hkv, G, L, Ev) -> (..., H, L, Ev)


# --------------------------------------------------------------------------------------------
# The decoder block.
# --------------------------------------------------------------------------------------------


class CausalSelfAttention(nn.Module):
    """Masked multi-head self-attention with ``num_kv_heads`` key/value heads (GQA/MQA when fewer).

    ``W_query`` projects D -> H * E; ``W_key`` and ``W_value`` project D -> Hkv * E (smaller when
    Hkv < H); the heads attend under the causal mask; ``W_out`` mixes the merged heads.

    Args:
        embed_dim: D.  num_heads: H (divides D).  num_kv_heads: Hkv (divides H; None = H).
        bias: biases on the four projections.  dropout: on the attention weights (training only).
    Shape:
        x (B, L, D) -> (B, L, D); weights (B, H, L, S) with S = cached + new positions.
    Taught in: notebooks/11_small_gpt.ipynb.  Source: Vaswani et al. 2017, sec. 3.2.3; Ainslie et al. 2023.
    """

    def __init__(self, embed_dim: int, num_heads: int, num_kv_heads: int | None = None, bias: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        config = GPTConfig(vocab_size=1, embed_dim=embed_dim, num_heads=num_heads, num_kv_heads=num_kv_heads,
                           dropout=dropout, bias=bias)  # validates the sizes
        self.embed_dim, self.num_heads, self.num_kv_heads = config.embed_dim, config.num_heads, config.num_kv_heads
        self.head_dim = config.head_dim
        self.dropout = config.dropout
        kv_dim = self.num_kv_heads * self.head_dim
        self.W_query = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.W_key = nn.Linear(embed_dim, kv_dim, bias=bias)
        self.W_value = nn.Linear(embed_dim, kv_dim, bias=bias)
        self.W_out = nn.Linear(embed_dim, embed_dim, bias=bias)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads}"

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, need_weights: bool = False,
                head_mask: torch.Tensor | None = None):
        """Causal self-attention over ``x`` (and, with a cache, over the cached positions before it).

        Args:
            x: float tensor (B, L, D).
            cache: optional :class:`KVCache` of this layer; the new keys and values are appended
                (along the sequence dim) and the L new queries attend to every cached position
                and to the new positions up to their own.
            need_weights: if True, also return the weights (B, H, L, S), after dropout in training (the
                weights the output used, as ``nn.MultiheadAttention`` returns them); not with a cache.
            head_mask: optional (H,) tensor multiplied into each head's output (0 = ablate the head).
        Returns:
            out (B, L, D) [, weights (B, H, L, S)].
        """
        q = split_heads(self.W_query(x), self.num_heads)  # (B, L, D) -> (B, H, L, E)
        k = split_heads(self.W_key(x), self.num_kv_heads)  # (B, L, Hkv * E) -> (B, Hkv, L, E)
        val = split_heads(self.W_value(x), self.num_kv_heads)  # (B, L, Hkv * E) -> (B, Hkv, L, E)
        weights = None
        if cache is None:
            dropout_p = self.dropout if self.training else 0.0  # on the weights, as nn.MultiheadAttention
            result = grouped_query_attention(q, k, val, is_causal=True, dropout_p=dropout_p,
                                             return_weights=need_weights)
            heads, weights = result if need_weights else (result, None)  # (B, H, L, E), (B, H, L, S)
        else:
            if need_weights:
                raise ValueError("CausalSelfAttention.forward: need_weights=True is not supported with a cache")
            G = self.num_heads // self.num_kv_heads
            # The cache stores (B, Hkv, 1, P, E): one copy per key/value head, broadcast over its G query heads.
            heads = decode_step(q.unflatten(1, (self.num_kv_heads, G)), k.unsqueeze(2), val.unsqueeze(2),
                                cache)  # (B, Hkv, G, L, E)
            heads = heads.flatten(1, 2)  # (B, Hkv, G, L, E) -> (B, H, L, E)
        if head_mask is not None:
            heads = heads * head_mask.to(heads.dtype)[:, None, None]  # (B, H, L, E) * (H, 1, 1)
        out = self.W_out(merge_heads(heads))  # (B, H, L, E) -> (B, L, D) @ W_out -> (B, L, D)
        return (out, weights) if need_weights else out


class Block(nn.Module):
    """One pre-norm decoder block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))`` (GPT-2).

    Args:
        config: a :class:`GPTConfig`.
    Attributes:
        ln_1, attn (:class:`CausalSelfAttention`), ln_2, mlp (:class:`course_lib.transformer.FeedForward`
        with tanh-GELU), dropout (on both residual branches).
    Shape:
        x (B, L, D) -> (B, L, D).
    Taught in: notebooks/11_small_gpt.ipynb.  Source: Radford et al. 2019, sec. 2.3 (pre-norm).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        D = config.embed_dim
        self.ln_1 = nn.LayerNorm(D, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = CausalSelfAttention(D, config.num_heads, config.num_kv_heads, bias=config.bias,
                                        dropout=config.dropout)
        self.ln_2 = nn.LayerNorm(D, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = FeedForward(D, config.dim_feedforward, activation=gelu_tanh, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, need_weights: bool = False,
                head_mask: torch.Tensor | None = None):
        attended = self.attn(self.ln_1(x), cache=cache, need_weights=need_weights, head_mask=head_mask)
        weights = None
        if need_weights:
            attended, weights = attended
        x = x + self.dropout(attended)  # the residual stream is never normalised, only its copies
        x = x + self.dropout(self.mlp(self.ln_2(x)))
        return (x, weights) if need_weights else x


# --------------------------------------------------------------------------------------------
# The model.
# --------------------------------------------------------------------------------------------


class GPT(nn.Module):
    """A decoder-only transformer language model: token ids in, next-token logits out.

    ``logits = lm_head(final_norm(blocks(token_embedding(ids) + positions)))``, where the
    language-model head is the token embedding matrix itself (weight tying): the score of
    token ``c`` is the dot product of the last hidden vector with ``c``'s own embedding.
    Every position predicts the token after it; the causal mask makes sure it cannot look.

    Initialised as GPT-2: weights from N(0, 0.02^2), biases 0, and the two projections that
    write into the residual stream (``attn.W_out``, ``mlp.linear2``) from N(0, (0.02 /
    sqrt(2 num_layers))^2), so the stream's variance does not grow with depth.

    Args:
        config: a :class:`GPTConfig`.
    Attributes:
        config; token_embedding: nn.Embedding(V, D); position_embedding:
        :class:`LearnedPositionalEmbedding` (C, D); blocks: nn.ModuleList of :class:`Block`;
        final_norm: nn.LayerNorm(D); lm_head: nn.Linear(D, V, bias=False) sharing
        ``token_embedding.weight``.
    Shape:
        ids (B, L) int64, L <= C -> logits (B, L, V).
    Raises:
        TypeError: if config is not a GPTConfig.
    Taught in: notebooks/11_small_gpt.ipynb.  Source: Radford et al. 2019; Press & Wolf 2017 (tying).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT: config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.embed_dim)
        self.position_embedding = LearnedPositionalEmbedding(config.context_length, config.embed_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps, bias=config.bias)
        self.lm_head = nn.Linear(config.embed_dim, config.vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight  # weight tying: one (V, D) matrix
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialisation (see the class docstring)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
        self.position_embedding.reset_parameters()
        for block in self.blocks:
            nn.init.normal_(block.attn.W_out.weight, mean=0.0, std=0.02 / math.sqrt(2 * self.config.num_layers))
            nn.init.normal_(block.mlp.linear2.weight, mean=0.0, std=0.02 / math.sqrt(2 * self.config.num_layers))

    def extra_repr(self) -> str:
        return f"parameters={self.num_parameters():,}"

    def num_parameters(self) -> int:
        """The number of trainable numbers (the tied matrix counted once)."""
        return sum(p.numel() for p in self.parameters())

    def new_caches(self) -> list[KVCache]:
        """One empty :class:`KVCache` per block (at most ``context_length`` positions each)."""
        return [KVCache(max_length=self.config.context_length) for _ in self.blocks]

    def forward(self, ids: torch.Tensor, caches: list[KVCache] | None = None, need_weights: bool = False,
                head_mask: torch.Tensor | None = None):
        """Next-token logits for every position of ``ids``.

        Args:
            ids: int64 tensor (B, L) of token ids in [0, V).
            caches: optional list of one :class:`KVCache` per block (from :meth:`new_caches`);
                ``ids`` are then the tokens *after* the P cached ones, at positions P .. P + L - 1,
                and the caches are extended in place.
            need_weights: if True, also return each block's attention weights (not with caches).
            head_mask: optional (num_layers, H) tensor; head h of block l has its output
                multiplied by ``head_mask[l, h]`` (0 ablates it).
        Returns:
            logits (B, L, V) [, list of num_layers weights (B, H, L, L)].
        Shape:
            ids (B, L) -> logits (B, L, V).
        Raises:
            TypeError: if ids is not an int64 tensor, or caches is not a list of KVCache.
            ValueError: if ids is not 2-D, P + L exceeds context_length, caches has the wrong
                length, or head_mask has the wrong shape.
        """
        fn = "GPT.forward"
        cfg = self.config
        v.tensor(ids, "ids", fn)
        if ids.dtype != torch.long:
            raise TypeError(f"{fn}: ids must be int64 token ids, got {ids.dtype}")
        if ids.dim() != 2:
            raise ValueError(f"{fn}: ids must be (B, L), got shape {v.shape_str(ids)}")
        P = 0
        if caches is not None:
            if not isinstance(caches, (list, tuple)) or not all(isinstance(c, KVCache) for c in caches):
                raise TypeError(f"{fn}: caches must be a list of KVCache (model.new_caches()), got "
                                f"{type(caches).__name__}")
            if len(caches) != cfg.num_layers:
                raise ValueError(f"{fn}: caches has {len(caches)} entries, the model has {cfg.num_layers} blocks")
            P = len(caches[0])
        L = ids.shape[1]
        if P + L > cfg.context_length:
            raise ValueError(f"{fn}: {P} cached + {L} new positions exceed context_length={cfg.context_length}; "
                             f"crop ids to the last {cfg.context_length - P} tokens")
        if head_mask is not None:
            v.tensor(head_mask, "head_mask", fn)
            if tuple(head_mask.shape) != (cfg.num_layers, cfg.num_heads):
                raise ValueError(f"{fn}: head_mask must be (num_layers, num_heads) = ({cfg.num_layers}, "
                                 f"{cfg.num_heads}), got {v.shape_str(head_mask)}")
        positions = self.position_embedding.pos_embedding[P:P + L]  # (L, D): rows P .. P + L - 1
        x = self.dropout(self.token_embedding(ids) + positions)  # (B, L, D) + (L, D) -> (B, L, D)
        all_weights = []
        for i, block in enumerate(self.blocks):
            out = block(x, cache=None if caches is None else caches[i], need_weights=need_weights,
                        head_mask=None if head_mask is None else head_mask[i])
            if need_weights:
                out, weights = out
                all_weights.append(weights)
            x = out
        logits = self.lm_head(self.final_norm(x))  # (B, L, D) @ (D, V) -> (B, L, V)
        return (logits, all_weights) if need_weights else logits


# --------------------------------------------------------------------------------------------
# The loss.
# --------------------------------------------------------------------------------------------


def lm_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Causal language-modelling loss: the logits at position t are scored on token t + 1.

    ``logits = model(ids)``; position t has read ``ids[:, :t + 1]`` and predicts ``ids[:, t + 1]``,
    so the predictions ``logits[:, :-1]`` are compared with the *shifted* targets ``ids[:, 1:]``
    (the last position has no next token in the window). Mean cross-entropy in nats per token.

    Args:
        logits: float tensor (B, T, V), the model's output for ``ids``.
        ids: int64 tensor (B, T), T >= 2.
    Returns:
        scalar tensor, in logits' dtype: ``-mean log softmax(logits[:, t])[ids[:, t + 1]]``.
    Shape:
        logits (B, T, V), ids (B, T) -> ().
    Raises:
        TypeError: if logits is not floating or ids not int64.
        ValueError: if the shapes do not match or T < 2.
    Taught in: notebooks/11_small_gpt.ipynb.  Source: Radford et al. 2018, eq. 1.
    """
    fn = "lm_loss"
    v.tensor(logits, "logits", fn, floating=True)
    v.tensor(ids, "ids", fn)
    if ids.dtype != torch.long:
        raise TypeError(f"{fn}: ids must be int64 token ids, got {ids.dtype}")
    if logits.dim() != 3 or ids.dim() != 2 or logits.shape[:2] != ids.shape:
        raise ValueError(f"{fn}: logits must be (B, T, V) and ids (B, T), got logits {v.shape_str(logits)} and ids "
                         f"{v.shape_str(ids)}")
    if ids.shape[1] < 2:
        raise ValueError(f"{fn}: ids needs T >= 2 tokens (one input and its next token), got {v.shape_str(ids)}")
    V = logits.shape[-1]
    predictions = logits[:, :-1].reshape(-1, V)  # (B, T - 1, V) -> (B (T - 1), V): positions 0 .. T - 2
    targets = ids[:, 1:].reshape(-1)  # (B, T - 1) -> (B (T - 1),): the token after each of them
    return F.cross_entropy(predictions, targets)


# --------------------------------------------------------------------------------------------
# Sampling.
# --------------------------------------------------------------------------------------------


def _check_sampling(temperature, top_k, top_p, V: int, fn: str) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"{fn}: temperature must be a float >= 0, got {type(temperature).__name__}")
    if not temperature >= 0:
        raise ValueError(f"{fn}: temperature must be >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None:
        top_k = v.positive_int(top_k, "top_k", fn)
    if top_p is not None:
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)):
            raise TypeError(f"{fn}: top_p must be a float in (0, 1], got {type(top_p).__name__}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"{fn}: top_p must be in (0, 1], got {top_p!r}")


def sampling_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None) -> torch.Tensor:
    """The distribution a sampler draws the next token from: temperature, then top-k, then top-p.

    1. Temperature: ``logits / temperature`` (< 1 sharpens, > 1 flattens; 0 means greedy: all
       the mass on the argmax).
    2. Top-k (Fan et al. 2018): every logit outside the ``top_k`` largest becomes -inf. The filter
       acts on the *logits*; the softmax comes after it, so the kept tokens keep their ratios.
    3. Top-p, nucleus (Holtzman et al. 2020): sort the remaining tokens by probability and keep
       the smallest set of most likely ones whose total probability is >= ``top_p`` (always at
       least one token); the rest become -inf.
    4. Softmax over what is left: the kept probabilities renormalised to sum to 1.

    Args:
        logits: float tensor (..., V).
        temperature: float >= 0.  top_k: int >= 1 or None (no limit).  top_p: float in (0, 1] or None.
    Returns:
        probs (..., V), same dtype and device; each row sums to 1, filtered tokens are exactly 0.
    Shape:
        (..., V) -> (..., V).
    Raises:
        TypeError / ValueError: naming the argument, for a non-float logits tensor, a negative
            temperature, top_k < 1 or top_p outside (0, 1].
    Taught in: notebooks/11_small_gpt.ipynb.  Source: Holtzman et al. 2020, "The Curious Case of
    Neural Text Degeneration", sec. 3.1 (eq. 2-3); Fan et al. 2018, sec. 5.4 (top-k).
    """
    fn = "sampling_probs"
    v.tensor(logits, "logits", fn, min_dim=1, floating=True)
    V = logits.shape[-1]
    _check_sampling(temperature, top_k, top_p, V, fn)
    if temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), V).to(logits.dtype)  # (..., V): greedy
    scaled = logits / temperature  # (..., V)
    if top_k is not None and top_k < V:
        keep = torch.zeros_like(scaled, dtype=torch.bool).scatter_(-1, scaled.topk(top_k, dim=-1).indices, True)
        scaled = scaled.masked_fill(~keep, float("-inf"))  # filter the logits, before any softmax
    if top_p is not None and top_p < 1.0:
        probs = _softmax(scaled, dim=-1)  # (..., V): the distribution after top-k
        sorted_probs, order = probs.sort(dim=-1, descending=True)  # (..., V)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # (..., V): mass of the more likely tokens
        keep_sorted = mass_before < top_p  # a token is kept while the set before it has mass < p
        keep_sorted[..., 0] = True  # the most likely token is always kept
        keep = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)  # back to vocabulary order
        scaled = scaled.masked_fill(~keep, float("-inf"))
    return _softmax(scaled, dim=-1)  # (..., V): renormalised over the kept tokens


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row from :func:`sampling_probs` (temperature 0: the argmax, no draw).

    Args:
        logits: float tensor (B, V).  temperature, top_k, top_p: as in :func:`sampling_probs`.
        generator: optional torch.Generator (on logits' device) for reproducible draws.
    Returns:
        int64 tensor (B,).
    Taught in: notebooks/11_small_gpt.ipynb.
    """
    fn = "sample_next"
    v.tensor(logits, "logits", fn, floating=True)
    if logits.dim() != 2:
        raise ValueError(f"{fn}: logits must be (B, V), got shape {v.shape_str(logits)}")
    if temperature == 0:
        _check_sampling(temperature, top_k, top_p, logits.shape[-1], fn)
        return logits.argmax(dim=-1)  # (B,)
    probs = sampling_probs(logits, temperature, top_k, top_p)  # (B, V)
    return torch.multinomial(probs.float(), 1, generator=generator).squeeze(-1)  # (B, 1) -> (B,)


@torch.no_grad()
def generate(model: GPT, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, use_cache: bool = True,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Extend ``ids`` by ``max_new_tokens`` sampled tokens, one at a time.

    Without the cache every step runs the model on the whole window (the last ``context_length``
    tokens) and keeps only the last position's logits: step t recomputes the keys and values of
    all earlier tokens. With the cache (chapter 09) the prompt is run once, and each step then
    runs the model on the *one* new token, reusing every block's cached keys and values. The
    tokens are the same. Once the window is full (a learned position table has no row past
    ``context_length``), the window slides: the cache is emptied and refilled from the last
    ``context_length`` tokens, exactly what the uncached model computes then.

    The model is put in eval mode (no dropout) for the call and its mode restored afterwards.

    Args:
        model: a :class:`GPT`.
        ids: int64 tensor (B, T0), the prompt (T0 >= 1).
        max_new_tokens: N >= 0.
        temperature, top_k, top_p: as in :func:`sampling_probs` (temperature 0 = greedy).
        use_cache: use the KV cache (default) or recompute everything at every step.
        generator: optional torch.Generator for the draws.
    Returns:
        int64 tensor (B, T0 + N): the prompt followed by the new tokens.
    Raises:
        TypeError: if model is not a GPT or ids is not int64.
        ValueError: if ids is not 2-D with T0 >= 1, or max_new_tokens < 0.
    Taught in: notebooks/11_small_gpt.ipynb.  Source: Pope et al. 2022, sec. 2 (KV cache).
    """
    fn = "generate"
    if not isinstance(model, GPT):
        raise TypeError(f"{fn}: model must be a course_lib.gpt.GPT, got {type(model).__name__}")
    v.tensor(ids, "ids", fn)
    if ids.dtype != torch.long or ids.dim() != 2 or ids.shape[1] < 1:
        raise ValueError(f"{fn}: ids must be an int64 tensor (B, T0) with T0 >= 1, got {ids.dtype} "
                         f"{v.shape_str(ids)}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"{fn}: max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    _check_sampling(temperature, top_k, top_p, model.config.vocab_size, fn)
    C = model.config.context_length
    was_training = model.training
    model.eval()
    try:
        out = ids
        caches = None
        for step in range(max_new_tokens):
            if not use_cache:
                logits = model(out[:, -C:])[:, -1]  # (B, V): the whole window, every step
            elif caches is None or len(caches[0]) >= C:
                caches = model.new_caches()  # first step, or the window slid: refill from the last C tokens
                logits = model(out[:, -C:], caches=caches)[:, -1]
            else:
                logits = model(out[:, -1:], caches=caches)[:, -1]  # (B, 1) -> (B, V): the new token only
            next_id = sample_next(logits, temperature, top_k, top_p, generator)  # (B,)
            out = torch.cat([out, next_id[:, None]], dim=1)  # (B, T + 1)
    finally:
        model.train(was_training)
    return out


# --------------------------------------------------------------------------------------------
# Evaluation and training.
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def estimate_loss(model: GPT, ids: torch.Tensor, max_windows: int | None = None, batch_size: int = 64) -> float:
    """Mean next-token loss (nats per token) over non-overlapping windows of ``ids``; deterministic.

    The windows start at 0, C, 2C, ... (C = context_length); each scores C predictions. With
    ``max_windows``, an evenly spaced subset of them (the same one every call).

    Args:
        model: a :class:`GPT`.  ids: int64 tensor (N,), N > C.
        max_windows: optional limit on the number of windows.  batch_size: windows per forward pass.
    Returns:
        float, nats per token.
    Raises:
        ValueError: if ids is not a 1-D int64 tensor with more than context_length tokens.
    Taught in: notebooks/11_small_gpt.ipynb.
    """
    fn = "estimate_loss"
    C = model.config.context_length
    v.tensor(ids, "ids", fn)
    if ids.dim() != 1 or ids.dtype != torch.long or ids.numel() <= C:
        raise ValueError(f"{fn}: ids must be a 1-D int64 tensor with more than context_length={C} tokens, got "
                         f"{ids.dtype} {v.shape_str(ids)}")
    n = (ids.numel() - 1) // C
    starts = torch.arange(n) * C  # (n,)
    if max_windows is not None and max_windows < n:
        starts = starts[torch.linspace(0, n - 1, max_windows).round().long()]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0
    offsets = torch.arange(C + 1)  # (C + 1,)
    try:
        for i in range(0, starts.numel(), batch_size):
            windows = ids[(starts[i:i + batch_size, None] + offsets).to(ids.device)].to(device)  # (b, C + 1)
            logits = model(windows[:, :-1])  # (b, C, V)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), windows[:, 1:].reshape(-1),
                                   reduction="sum")
            total += loss.double()
            count += windows[:, 1:].numel()
    finally:
        model.train(was_training)
    return float(total / count)


class _Blank:
    """An empty display: what the progress bar's output becomes once training ends."""

    def _repr_mimebundle_(self, **kwargs):
        return {"text/plain": ""}


def _progress_bar(steps: int, enabled: bool):
    """A tqdm.auto bar over ``range(steps)`` and, in a notebook, the display handle to blank it at the end."""
    from tqdm.auto import tqdm

    options = dict(desc="training", unit="step", leave=False, mininterval=0.5)
    if not enabled:
        return tqdm(range(steps), disable=True), None
    try:
        from tqdm.notebook import tqdm as notebook_tqdm
    except ImportError:  # pragma: no cover - tqdm.notebook needs IPython
        notebook_tqdm = None
    if notebook_tqdm is not None and issubclass(tqdm, notebook_tqdm):
        from IPython.display import display

        bar = tqdm(range(steps), display=False, **options)
        return bar, display(bar.container, display_id=True)
    return tqdm(range(steps), **options), None


@dataclass
class TrainHistory:
    """What :func:`fit` measured: per-step training loss and learning rate, periodic validation loss."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the training steps (evaluations excluded)

    @property
    def best_val_loss(self) -> float:
        return min(self.val_loss) if self.val_loss else float("nan")


def lr_at(step: int, lr: float, warmup_steps: int, total_steps: int, min_lr: float) -> float:
    """Linear warm-up from 0 to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at ``total_steps``.

    Adam's early steps divide by a second-moment estimate built from very few gradients; a
    short warm-up keeps those first updates small (Vaswani et al. 2017, sec. 5.3; Liu et al. 2020).
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def get_batch(ids: torch.Tensor, batch_size: int, context_length: int, generator: torch.Generator | None = None,
              device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of ``context_length + 1`` tokens from one split: inputs and next-token targets.

    Window ``b`` starts at a random ``s``; its input is ``ids[s : s + T]`` and its target
    ``ids[s + 1 : s + T + 1]``: the token after each input position. Every window lies inside
    ``ids``, so a batch drawn from the training part never contains a validation token.

    Args:
        ids: int64 tensor (N,), one split.  batch_size: B.  context_length: T (T < N).
        generator: optional torch.Generator for the start positions (reproducible batches).
        device: where to put the batch (default: ids's device).
    Returns:
        (inputs (B, T), targets (B, T)), int64.
    Raises:
        TypeError / ValueError: for a bad tensor, a non-positive size, or T >= N.
    Taught in: notebooks/11_small_gpt.ipynb.
    """
    fn = "get_batch"
    v.tensor(ids, "ids", fn)
    if ids.dim() != 1 or ids.dtype != torch.long or ids.numel() < 2:
        raise TypeError(f"{fn}: ids must be a 1-D int64 tensor of at least 2 token ids, got {ids.dtype} of shape "
                        f"{v.shape_str(ids)}")
    batch_size = v.positive_int(batch_size, "batch_size", fn)
    context_length = v.positive_int(context_length, "context_length", fn)
    if context_length >= ids.numel():
        raise ValueError(f"{fn}: context_length={context_length} must be smaller than the {ids.numel()} tokens of ids")
    starts = torch.randint(ids.numel() - context_length, (batch_size,), generator=generator)  # (B,)
    offsets = torch.arange(context_length + 1)  # (T + 1,)
    windows = ids[(starts[:, None] + offsets[None, :]).to(ids.device)]  # (B, 1) + (1, T + 1) -> (B, T + 1)
    windows = windows.to(device) if device is not None else windows
    return windows[:, :-1], windows[:, 1:]  # (B, T), (B, T): targets shifted by one


def fit(model: GPT, train: torch.Tensor, val: torch.Tensor, steps: int, batch_size: int = 32, lr: float = 3e-3,
        warmup_steps: int = 50, min_lr: float | None = None, weight_decay: float = 0.1, grad_clip: float = 1.0,
        eval_every: int = 50, eval_windows: int = 32, seed: int = 0, progress: bool = True,
        callback: Callable[[TrainHistory], None] | None = None, time_limit: float | None = None,
        autocast_dtype: torch.dtype | None = None, compile: bool | str | Callable = False,
        optimizer: str = "adamw") -> TrainHistory:
    """Train ``model`` on next-token prediction: random windows of ``train``, AdamW (or Muon), warm-up, cosine decay.

    Each step draws ``batch_size`` windows of ``context_length`` tokens from ``train`` (with
    :func:`get_batch`: targets shifted by one), computes the mean
    cross-entropy of every position's prediction, and takes one AdamW step (weight decay on
    the matrices only, not on biases, LayerNorms or position rows), with the gradient norm
    clipped to ``grad_clip`` and the learning rate from :func:`lr_at`. Every ``eval_every``
    steps (and at the end) it measures the validation loss on ``eval_windows`` fixed windows of
    ``val`` and calls ``callback(history)``, e.g. to redraw a live loss curve.

    Args:
        model: a :class:`GPT` (trained in place, on its own device).
        train, val: int64 tensors (N,) of token ids (separate splits).
        steps: number of optimisation steps.  batch_size: windows per step.
        lr: peak learning rate.  warmup_steps: steps of linear warm-up.  min_lr: final learning
            rate (default lr / 10).  weight_decay: AdamW's decoupled weight decay.
        grad_clip: maximum gradient norm (0 = no clipping).
        eval_every: steps between validation measurements.  eval_windows: windows per measurement.
        seed: seed of the batch sampler (the model's own initialisation is the caller's).
        progress: show a tqdm bar (``tqdm.auto``; it is removed when training ends).
        callback: called with the history after each validation measurement.
        time_limit: optional wall-clock budget in seconds for the training steps; training stops
            after the step that exceeds it, and the cosine decay follows the share of the budget
            used (used by the benchmark; the lesson uses a fixed number of steps).
        autocast_dtype: optional lower precision for the training forward pass, e.g.
            ``torch.bfloat16`` (``torch.autocast``: the matrix products run in it, the weights,
            the optimiser state and the loss stay float32). None (default): float32 throughout.
        compile: if True (or a ``torch.compile`` backend: its name or the callable), the training
            forward pass runs through ``torch.compile(model)``; the first step includes the compilation.
            Validation uses the model itself. Default False (the lesson: compiling would take
            longer than its few hundred steps).
        optimizer: ``"adamw"`` (default) or ``"muon"``: ``torch.optim.Muon`` (momentum, then the
            update orthogonalised by Newton-Schulz iterations) for the 2-D weight matrices inside
            the blocks, with Moonshot's RMS matching so that it takes the same ``lr`` and
            ``weight_decay``; AdamW for the embeddings, biases and norms.
    Returns:
        :class:`TrainHistory`.
    Raises:
        TypeError / ValueError: for a model that is not a GPT, bad sizes, an autocast_dtype that is
            not a floating dtype, a compile that is not a bool or backend, or an unknown optimizer.
    Taught in: notebooks/11_small_gpt.ipynb.  Source: Loshchilov & Hutter 2019 (AdamW); Radford
    et al. 2019 and Karpathy's nanoGPT (the recipe); Jordan et al. 2024, "Muon: An optimizer for
    hidden layers in neural networks", and Liu et al. 2025, "Muon is Scalable for LLM Training"
    (the RMS matching).
    """
    fn = "fit"
    if not isinstance(model, GPT):
        raise TypeError(f"{fn}: model must be a course_lib.gpt.GPT, got {type(model).__name__}")
    steps = v.positive_int(steps, "steps", fn)
    batch_size = v.positive_int(batch_size, "batch_size", fn)
    eval_every = v.positive_int(eval_every, "eval_every", fn)
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"{fn}: warmup_steps must be an int >= 0, got {warmup_steps!r}")
    min_lr = lr / 10 if min_lr is None else min_lr
    if autocast_dtype is not None and not (isinstance(autocast_dtype, torch.dtype)
                                           and autocast_dtype.is_floating_point):
        raise TypeError(f"{fn}: autocast_dtype must be a floating torch.dtype or None, got {autocast_dtype!r}")
    if not (isinstance(compile, (bool, str)) or callable(compile)):
        raise TypeError(f"{fn}: compile must be a bool or a torch.compile backend (name or callable), got {compile!r}")
    if optimizer not in ("adamw", "muon"):
        raise ValueError(f"{fn}: optimizer must be 'adamw' or 'muon', got {optimizer!r}")
    C = model.config.context_length
    device = next(model.parameters()).device
    forward = model
    if compile:
        # Inductor's own random numbers (dropout) are slower on CPU than PyTorch's: 302 against 226 ms a step
        # (D = 128, 4 layers, dropout 0.2, 2 threads); fallback_random makes it call PyTorch's.
        forward = torch.compile(model, options={"fallback_random": True}) if compile is True \
            else torch.compile(model, backend=compile)
    def for_muon(name: str, p: torch.Tensor) -> bool:  # the 2-D weight matrices inside the blocks
        return optimizer == "muon" and p.dim() == 2 and name.startswith("blocks.")

    named = list(model.named_parameters())
    hidden = [p for name, p in named if for_muon(name, p)]
    rest = [(name, p) for name, p in named if not for_muon(name, p)]  # for AdamW: embeddings, biases, norms
    decay = [p for name, p in rest if p.dim() >= 2 and "position_embedding" not in name]
    no_decay = [p for name, p in rest if p.dim() < 2 or "position_embedding" in name]
    optimizers = [torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                     {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))]
    if hidden:  # Muon's update has AdamW's RMS with Moonshot's adjustment, so it takes the same rate and decay
        optimizers.append(torch.optim.Muon(hidden, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw"))
    generator = torch.Generator().manual_seed(seed)
    history = TrainHistory()

    def evaluate(step: int) -> None:
        history.val_steps.append(step)
        history.val_loss.append(estimate_loss(model, val, max_windows=eval_windows))
        if callback is not None:
            callback(history)

    model.train()
    bar, handle = _progress_bar(steps, progress)
    try:
        for step in bar:
            if step % eval_every == 0:
                evaluate(step)
            started = time.perf_counter()
            if time_limit is None:
                rate = lr_at(step, lr, warmup_steps, steps, min_lr)
            else:  # a time budget: the decay follows the share of the budget used (or of the steps, if larger)
                done = max(step / steps, history.seconds / time_limit)
                rate = lr_at(warmup_steps + round(done * 10_000), lr, warmup_steps, warmup_steps + 10_000, min_lr) \
                    if step >= warmup_steps else lr_at(step, lr, warmup_steps, steps, min_lr)
            for group in (group for opt in optimizers for group in opt.param_groups):
                group["lr"] = rate
            inputs, targets = get_batch(train, batch_size, C, generator=generator, device=device)  # (B, C) each
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logits = forward(inputs)  # (B, C, V)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            for opt in optimizers:
                opt.step()
            history.seconds += time.perf_counter() - started
            history.steps.append(step + 1)
            history.train_loss.append(float(loss.detach()))
            history.lr.append(rate)
            bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}", refresh=False)
            if time_limit is not None and history.seconds >= time_limit:
                break
    finally:
        bar.close()
        if handle is not None:
            handle.update(_Blank())  # the bar leaves no trace in the saved notebook
    evaluate(history.steps[-1] if history.steps else 0)
    model.eval()
    return history


# --------------------------------------------------------------------------------------------
# The same weights in Hugging Face's GPT-2.
# --------------------------------------------------------------------------------------------


def _check_gpt2_compatible(model, fn: str) -> GPTConfig:
    if not isinstance(model, GPT):
        raise TypeError(f"{fn}: model must be a course_lib.gpt.GPT, got {type(model).__name__}")
    cfg = model.config
    if cfg.num_kv_heads != cfg.num_heads:
        raise ValueError(f"{fn}: GPT-2 has no grouped-query attention; the model has num_kv_heads={cfg.num_kv_heads} "
                         f"!= num_heads={cfg.num_heads}")
    if not cfg.bias:
        raise ValueError(f"{fn}: GPT-2's layers all have biases; the model was built with bias=False")
    return cfg


def gpt2_config(config: GPTConfig):
    """A ``transformers.GPT2Config`` with the sizes of ``config`` (no download; dropout off).

    GPT-2's names: n_embd = embed_dim, n_head = num_heads, n_layer = num_layers, n_positions =
    context_length, n_inner = dim_feedforward; activation "gelu_new" (tanh GELU). Requires the
    optional dependency ``transformers``.
    """
    try:
        from transformers import GPT2Config
    except ImportError as exc:  # pragma: no cover - transformers is installed with the course
        raise ImportError("gpt2_config needs the 'transformers' package: pip install transformers") from exc
    return GPT2Config(vocab_size=config.vocab_size, n_positions=config.context_length, n_embd=config.embed_dim,
                      n_layer=config.num_layers, n_head=config.num_heads, n_inner=config.dim_feedforward,
                      activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      layer_norm_epsilon=config.layer_norm_eps, tie_word_embeddings=True,
                      bos_token_id=None, eos_token_id=None, pad_token_id=None)


def to_gpt2_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The model's weights under ``GPT2LMHeadModel``'s names and layouts.

    GPT-2 stores its projections as ``Conv1D`` (weight (in, out): the transpose of ``nn.Linear``'s
    (out, in)) and fuses the query, key and value projections into one ``c_attn`` of D -> 3D
    (query columns first, then key, then value). The MLP is ``c_fc`` / ``c_proj``; the tied
    ``lm_head.weight`` is the token embedding ``wte.weight``.

    Args:
        model: a :class:`GPT` with num_kv_heads = num_heads and bias=True.
    Returns:
        dict name -> tensor (detached copies).
    Raises:
        TypeError: if model is not a GPT.  ValueError: if it uses GQA/MQA or no biases.
    Taught in: notebooks/11_small_gpt.ipynb.
    """
    _check_gpt2_compatible(model, "to_gpt2_state_dict")
    sd: dict[str, torch.Tensor] = {
        "transformer.wte.weight": model.token_embedding.weight,
        "transformer.wpe.weight": model.position_embedding.pos_embedding,
        "transformer.ln_f.weight": model.final_norm.weight,
        "transformer.ln_f.bias": model.final_norm.bias,
        "lm_head.weight": model.lm_head.weight,
    }
    for i, block in enumerate(model.blocks):
        p, attn = f"transformer.h.{i}.", block.attn
        sd[p + "ln_1.weight"], sd[p + "ln_1.bias"] = block.ln_1.weight, block.ln_1.bias
        sd[p + "ln_2.weight"], sd[p + "ln_2.bias"] = block.ln_2.weight, block.ln_2.bias
        sd[p + "attn.c_attn.weight"] = torch.cat([attn.W_query.weight, attn.W_key.weight, attn.W_value.weight],
                                                 dim=0).t()  # 3 x (D, D) -> (3D, D) -> (D, 3D)
        sd[p + "attn.c_attn.bias"] = torch.cat([attn.W_query.bias, attn.W_key.bias, attn.W_value.bias])  # (3D,)
        sd[p + "attn.c_proj.weight"] = attn.W_out.weight.t()  # (D, D), transposed for Conv1D
        sd[p + "attn.c_proj.bias"] = attn.W_out.bias
        sd[p + "mlp.c_fc.weight"] = block.mlp.linear1.weight.t()  # (F, D) -> (D, F)
        sd[p + "mlp.c_fc.bias"] = block.mlp.linear1.bias
        sd[p + "mlp.c_proj.weight"] = block.mlp.linear2.weight.t()  # (D, F) -> (F, D)
        sd[p + "mlp.c_proj.bias"] = block.mlp.linear2.bias
    return {name: t.detach().clone().contiguous() for name, t in sd.items()}


def load_into_gpt2(model: GPT):
    """A ``transformers.GPT2LMHeadModel`` (random init, no download) holding ``model``'s weights.

    It computes the same logits as ``model`` (tests/test_gpt.py: to 1e-5 in float32) and its
    greedy ``generate`` writes the same tokens. Eval mode, on the model's device and dtype.

    Args:
        model: a :class:`GPT` with num_kv_heads = num_heads and bias=True.
    Returns:
        transformers.GPT2LMHeadModel.
    Raises:
        ImportError: without ``transformers``.  TypeError / ValueError: as :func:`to_gpt2_state_dict`.
    Taught in: notebooks/11_small_gpt.ipynb.
    """
    cfg = _check_gpt2_compatible(model, "load_into_gpt2")
    try:
        from transformers import GPT2LMHeadModel
    except ImportError as exc:  # pragma: no cover
        raise ImportError("load_into_gpt2 needs the 'transformers' package: pip install transformers") from exc
    ref = model.token_embedding.weight
    gpt2 = GPT2LMHeadModel(gpt2_config(cfg)).to(device=ref.device, dtype=ref.dtype)
    missing, unexpected = gpt2.load_state_dict(to_gpt2_state_dict(model), strict=False)
    missing = [m for m in missing if not m.endswith((".attn.bias", ".attn.masked_bias"))]  # buffers, not weights
    if missing or unexpected:
        raise RuntimeError(f"load_into_gpt2: GPT2LMHeadModel's names changed: missing {missing}, unexpected {unexpected}")
    return gpt2.eval()
