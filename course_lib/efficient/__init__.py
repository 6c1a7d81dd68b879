"""Efficient attention: online softmax, tiled (FlashAttention) attention, the KV cache, local and linear attention.

Plain attention builds the whole (L, S) matrix of weights: its time and memory grow with L * S,
so doubling the sequence length quadruples both (chapter 09 measures it). This module holds the
exact and approximate ways around that cost, each checked against plain attention in
tests/test_efficient.py:

- :func:`online_softmax`: softmax whose normaliser (a running max and a running sum) takes one
  pass over the data; the weights need a second pass, unless they are fused with V as in
  attention (Milakov & Gimelshein 2018). The building block of tiled attention.
- :func:`flash_attention` and :func:`tiled_attention`: the FlashAttention forward pass (Dao et
  al. 2022): queries, keys and values are processed tile by tile with an online softmax, so the
  (L, S) weight matrix is never stored. *Exact*: the same numbers as
  ``F.scaled_dot_product_attention``.
- :class:`KVCache` and :func:`decode_step`: generation one token at a time, reusing the keys and
  values of the earlier tokens instead of recomputing them. Exact.
- :func:`sliding_window_mask` (local attention, as in Longformer and Mistral) and
  :func:`linear_attention` (Katharopoulos et al. 2020): cheaper, but *different* attention;
  chapter 09 measures how far they are from exact attention.
- :class:`MemoryTracker`: counts the bytes of every tensor PyTorch creates inside a ``with``
  block, on any device and deterministically, to measure peak memory.

Shapes use PyTorch's legend: B batch, H heads, L query length, S key/value length, E query/key
size (d_k), Ev value size; ``...`` any leading batch dims.

The package, one module per idea: :mod:`.online_softmax`, :mod:`.tiled` (the readable
FlashAttention, Dao et al. 2022, Algorithm 1) over :mod:`.tiled_fast` (the same numbers, fast),
:mod:`.kv_cache`, :mod:`.approximations` (sliding window, linear) and :mod:`.memory`
(MemoryTracker); :mod:`.cost` holds the timing and scaling-exponent helpers the lessons use.
"""

from .approximations import elu_feature_map, fixed_mask, global_local_mask, linear_attention, sliding_window_mask, strided_mask
from .kv_cache import KVCache, decode_step
from .cost import loglog_slope, median_time
from .memory import MemoryTracker
from .online_softmax import online_softmax
from .tiled import flash_attention, tiled_attention

__all__ = [
    "online_softmax",
    "flash_attention",
    "tiled_attention",
    "KVCache",
    "decode_step",
    "sliding_window_mask",
    "elu_feature_map",
    "linear_attention",
    "strided_mask",
    "fixed_mask",
    "global_local_mask",
    "MemoryTracker",
    "median_time",
    "loglog_slope",
]
