"""The KV cache: generation one token at a time, reusing the keys and values of earlier tokens.

Taught in: notebooks/09_efficient_attention.ipynb.
Source: Pope et al. 2022, "Efficiently Scaling Transformer Inference", sec. 2 (the KV cache).
"""

from __future__ import annotations

import torch

from .. import _validate as v
from ..attention import scaled_dot_product_attention

__all__ = ["KVCache", "decode_step"]


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
