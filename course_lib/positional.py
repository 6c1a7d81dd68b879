"""Positional information for attention: sinusoidal, learned, rotary (RoPE) and ALiBi.

Attention by itself ignores order: permute the tokens and the outputs are permuted the same
way (chapter 07 shows it on "the dog bit the man"). A model sees order only through what is
added to it. Four answers, in the order the field found them:

- :func:`sinusoidal_encoding` (Vaswani et al. 2017): a fixed (P, D) table *added* to the
  token embeddings; absolute, but PE(pos + k) is a rotation of PE(pos).
- :class:`LearnedPositionalEmbedding` (BERT, GPT-2): a trained (P, D) table, added the same
  way; nothing beyond ``max_positions``.
- :func:`apply_rope` (Su et al. 2021, RoFormer): rotate the queries and keys themselves, so
  that ``q . k`` depends on the positions only through their offset.
- :func:`alibi_bias` (Press et al. 2022): add ``-slope * distance`` to the scores; no vectors
  at all, one slope per head.

Shapes: ``B`` batch, ``H`` heads, ``T`` sequence length, ``L`` queries, ``S`` keys, ``E``
query/key size, ``D`` model size, ``P`` number of positions.

Taught in: notebooks/07_positional_encoding.ipynb.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import _validate as v

__all__ = [
    "sinusoidal_encoding",
    "LearnedPositionalEmbedding",
    "apply_rope",
    "alibi_slopes",
    "alibi_bias",
    "t5_relative_position_bucket",
    "T5RelativePositionBias",
]


def _float_dtype(dtype, name: str, fn: str) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or dtype not in v.FLOAT_DTYPES:
        raise TypeError(f"{fn}: {name} must be a floating torch dtype (float16, bfloat16, float32, float64), got {dtype!r}")
    return dtype


def _positive_float(value, name: str, fn: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{fn}: {name} must be a positive finite number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{fn}: {name} must be a positive finite number, got {value!r}")
    return float(value)


def _angle_dtype(device: torch.device) -> torch.dtype:
    """float64 for the angles wherever the device has it (Apple's MPS has no float64)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def sinusoidal_encoding(
    num_positions: int,
    embed_dim: int,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The fixed sinusoidal position table of the original Transformer.

    ``PE[pos, 2i] = sin(pos / base^(2i/D))`` and ``PE[pos, 2i+1] = cos(pos / base^(2i/D))``:
    column pair ``i`` is a sine/cosine at angular frequency ``w_i = base^(-2i/D)``, from one
    radian per position (``i = 0``) down to about ``1/base`` radian per position. Because
    ``sin`` and ``cos`` of ``w (pos + k)`` are a rotation of those of ``w pos`` by the angle
    ``w k``, ``PE[pos + k] = M_k PE[pos]`` for a fixed block-diagonal rotation ``M_k`` that
    does not depend on ``pos``, and ``PE[p] . PE[p + k] = sum_i cos(w_i k)`` depends on ``k`` only.

    Odd ``embed_dim``: the formula is applied to every column that exists, so the last column
    (index ``D - 1 = 2i``) is a sine with frequency ``base^(-(D-1)/D)`` and has no cosine
    partner. (Add it to embeddings of size D; the rotation property holds for the complete pairs.)

    The angles are computed in float64 (float32 on MPS) and the result cast to ``dtype``, so
    that large positions keep their precision.

    Args:
        num_positions: P, the number of positions (rows), ``pos = 0 .. P-1``.
        embed_dim: D, the embedding size (columns); even or odd (see above).
        base: the wavelength scale (10000 in the paper); the longest wavelength is ``2 pi base``.
        dtype: floating dtype of the result.
        device: torch device of the result (default: the CPU).
    Returns:
        tensor (P, D), values in [-1, 1]; each row is the encoding of one position.
    Shape:
        (P, D)
    Raises:
        TypeError: if num_positions or embed_dim is not an int, base is not a number, dtype is
            not a floating dtype, or device is not None, a str or a torch.device.
        ValueError: if num_positions or embed_dim is not positive, base is not a positive finite
            number, or device is not a device name.
    Taught in: notebooks/07_positional_encoding.ipynb.
    Source: Vaswani et al. 2017, "Attention Is All You Need", sec. 3.5.
    """
    fn = "sinusoidal_encoding"
    P = v.positive_int(num_positions, "num_positions", fn)
    D = v.positive_int(embed_dim, "embed_dim", fn)
    base = _positive_float(base, "base", fn)
    dtype = _float_dtype(dtype, "dtype", fn)
    device = v.device(device, "device", fn) or torch.device("cpu")
    work = _angle_dtype(device)
    pos = torch.arange(P, dtype=work, device=device)  # (P,)
    two_i = torch.arange(0, D, 2, dtype=work, device=device)  # (ceil(D/2),): 0, 2, 4, ...
    frequency = base ** (-two_i / D)  # (ceil(D/2),) w_i = base^(-2i/D)
    angle = pos[:, None] * frequency[None, :]  # (P, 1) * (1, ceil(D/2)) -> (P, ceil(D/2))
    pe = torch.empty(P, D, dtype=work, device=device)  # (P, D)
    pe[:, 0::2] = torch.sin(angle)  # even columns: sin, all ceil(D/2) of them
    pe[:, 1::2] = torch.cos(angle[:, : D // 2])  # odd columns: cos (no partner for an odd D's last column)
    return pe.to(dtype)


class LearnedPositionalEmbedding(nn.Module):
    """A trained position table (BERT, GPT-2): ``forward(x) = x + pos_embedding[:T]``.

    One free vector per position, learned like a word embedding. It can fit whatever the data
    needs, but it costs ``max_positions * embed_dim`` parameters and knows nothing about a
    position it never saw: there is no row for ``T > max_positions`` (a ValueError here), and
    rows that no training sequence reached keep their random initial values.

    The module *adds* the embeddings to its input (as GPT-2 does, ``wte(idx) + wpe(pos)``); the
    table itself is the parameter :attr:`pos_embedding`. Initialised from N(0, 0.02^2) as in
    GPT-2; move the module with ``.to(device)``. The added rows are cast to ``x``'s dtype.

    Args:
        max_positions: P, the number of positions the table has.
        embed_dim: D, the embedding size.
    Shape:
        x (..., T, D) with T <= P -> (..., T, D); ``pos_embedding`` (P, D).
    Raises:
        TypeError: if max_positions or embed_dim is not an int, or x is not a floating tensor.
        ValueError: if they are not positive; in forward, if x's last dim is not embed_dim, if
            T > max_positions (the message names both), or if x is on another device than the table.
    Taught in: notebooks/07_positional_encoding.ipynb.
    Source: Devlin et al. 2019 (BERT), sec. 3; Radford et al. 2019 (GPT-2); Gehring et al. 2017, sec. 3.1.
    """

    def __init__(self, max_positions: int, embed_dim: int):
        super().__init__()
        fn = "LearnedPositionalEmbedding"
        self.max_positions = v.positive_int(max_positions, "max_positions", fn)
        self.embed_dim = v.positive_int(embed_dim, "embed_dim", fn)
        self.pos_embedding = nn.Parameter(torch.empty(self.max_positions, self.embed_dim))  # (P, D)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw the table from N(0, 0.02^2) (GPT-2's initialisation)."""
        nn.init.normal_(self.pos_embedding, mean=0.0, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x + pos_embedding[:T]`` for x (..., T, D): row t is added to token t."""
        fn = "LearnedPositionalEmbedding.forward"
        v.tensor(x, "x", fn, min_dim=2, floating=True)
        T, D = x.shape[-2], x.shape[-1]
        if D != self.embed_dim:
            raise ValueError(f"{fn}: x must be (..., T, embed_dim={self.embed_dim}), got shape {v.shape_str(x)}")
        if T > self.max_positions:
            raise ValueError(
                f"{fn}: x has T={T} positions but the table has max_positions={self.max_positions}; a learned "
                f"embedding has no row for a position beyond max_positions (it cannot extrapolate)"
            )
        if x.device != self.pos_embedding.device:
            raise ValueError(
                f"{fn}: x is on {x.device} but pos_embedding is on {self.pos_embedding.device}; move the module "
                f"with .to(x.device)"
            )
        return x + self.pos_embedding[:T].to(x.dtype)  # (..., T, D) + (T, D) -> (..., T, D)

    def extra_repr(self) -> str:
        return f"max_positions={self.max_positions}, embed_dim={self.embed_dim}"


def _positions(positions, x: torch.Tensor, fn: str) -> torch.Tensor:
    """Validate ``positions`` for x (..., T, E) and return it as a tensor on x's device."""
    T = x.shape[-2]
    if positions is None:
        return torch.arange(T, device=x.device)  # (T,)
    if not isinstance(positions, torch.Tensor):
        try:
            positions = torch.tensor(positions)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{fn}: positions must be None, a tensor or a list of numbers, got {type(positions).__name__}") from None
    if positions.dtype == torch.bool or positions.is_complex():
        raise TypeError(f"{fn}: positions must hold integers (or real numbers), got dtype {positions.dtype}")
    if positions.dim() == 0 or positions.shape[-1] != T:
        raise ValueError(
            f"{fn}: positions must be (T,) = ({T},) (or broadcast to x's leading dims with a last dim of T), "
            f"got shape {v.shape_str(positions)} for x of shape {v.shape_str(x)}"
        )
    try:
        v.broadcast_shapes(positions.shape, x.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"{fn}: positions of shape {v.shape_str(positions)} does not broadcast to x's leading dims "
            f"{v.shape_str(x.shape[:-1])} (..., T)"
        ) from None
    return positions.to(x.device)


def apply_rope(x: torch.Tensor, positions=None, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding (RoPE): rotate each pair of features by an angle proportional to the position.

    Features are taken in consecutive pairs ``(x[2i], x[2i+1])`` and pair ``i`` of the vector at
    position ``m`` is rotated by the angle ``m * theta_i``, ``theta_i = base^(-2i/E)``::

        out[2i]   = x[2i] cos(m theta_i) - x[2i+1] sin(m theta_i)
        out[2i+1] = x[2i] sin(m theta_i) + x[2i+1] cos(m theta_i)

    Equivalently, viewing each pair as a complex number ``z_i = x[2i] + j x[2i+1]``,
    ``out_i = z_i e^{j m theta_i}``. Apply it to the queries and the keys (not the values):
    rotations preserve lengths, and ``R(m) q . R(n) k = q . R(n - m) k`` depends on the
    positions only through the offset ``n - m``. Position 0 is the identity.

    This is the interleaved-pairs convention of RoFormer and of Meta's original LLaMA code. The
    GPT-NeoX / Hugging Face ``rotate_half`` convention pairs feature ``i`` with ``i + E/2``
    instead; it is the same idea on permuted features, but gives different numbers for the same
    weights.

    Angles are computed in float64 (float32 on MPS), the rotation in float32 for float16/bfloat16
    inputs (float64 for float64), and the result cast back to ``x``'s dtype.

    Args:
        x: float tensor (..., T, E), E even: queries or keys, e.g. (B, T, E) or (B, H, T, E).
        positions: the position of each of the T tokens: None (``0 .. T-1``), or an integer (or
            real) tensor or list of shape (T,), or broadcastable to x's leading dims with last dim T
            (e.g. (B, 1, T) for per-sequence offsets with x (B, H, T, E)).
        base: the frequency base (10000 in RoFormer and LLaMA).
    Returns:
        tensor of x's shape, dtype and device.
    Shape:
        x (..., T, E), positions (T,) -> (..., T, E)
    Raises:
        TypeError: if x is not a floating tensor, positions is not numeric, or base is not a number.
        ValueError: if E is odd, positions has the wrong shape, or base is not a positive finite number.
    Taught in: notebooks/07_positional_encoding.ipynb.
    Source: Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding",
        sec. 3.4.2, eq. 34; theta_i = 10000^(-2(i-1)/d) with 1-based i, sec. 3.2.2.
    """
    fn = "apply_rope"
    v.tensor(x, "x", fn, min_dim=2, floating=True)
    E = x.shape[-1]
    if E % 2:
        raise ValueError(f"{fn}: x's last dim E must be even (RoPE rotates pairs of features), got shape {v.shape_str(x)}")
    base = _positive_float(base, "base", fn)
    pos = _positions(positions, x, fn)
    work = _angle_dtype(x.device)
    theta = base ** (-torch.arange(0, E, 2, dtype=work, device=x.device) / E)  # (E/2,) theta_i = base^(-2i/E)
    angle = pos.to(work)[..., None] * theta  # (..., T, 1) * (E/2,) -> (..., T, E/2)
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    cos, sin = torch.cos(angle).to(compute), torch.sin(angle).to(compute)  # (..., T, E/2)
    pairs = x.to(compute).unflatten(-1, (E // 2, 2))  # (..., T, E) -> (..., T, E/2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]  # (..., T, E/2) each: x[2i], x[2i+1]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)  # (..., T, E/2, 2)
    return rotated.flatten(-2).to(x.dtype)  # (..., T, E/2, 2) -> (..., T, E)


def alibi_slopes(num_heads: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """The ALiBi slope of each head: the geometric sequence ``m_h = 2^(-8 (h+1) / H)``, h = 0 .. H-1.

    For H = 8 that is 1/2, 1/4, ..., 1/256 (the paper's values); the first slope and the ratio
    between neighbours are both ``2^(-8/H)``. For H not a power of 2, the reference
    implementation's rule: take the slopes of the closest power of 2 below H, ``n = 2^floor(log2 H)``,
    then add every other slope of ``2n`` heads (the 1st, 3rd, 5th, ...) until there are H. These
    fall between the first ones, so the slopes still cover (0, 1) evenly on a log scale.

    Args:
        num_heads: H.
        dtype: floating dtype of the result.  device: torch device (default: the CPU).
    Returns:
        tensor (H,) of slopes in (0, 1); decreasing for H a power of 2.
    Shape:
        (H,)
    Raises:
        TypeError: if num_heads is not an int, dtype is not a floating dtype, or device is not
            None, a str or a torch.device.
        ValueError: if num_heads is not positive, or device is not a device name.
    Taught in: notebooks/07_positional_encoding.ipynb.
    Source: Press et al. 2022, "Train Short, Test Long" (ALiBi), sec. 3 and the reference code
        github.com/ofirpress/attention_with_linear_biases (get_slopes).
    """
    fn = "alibi_slopes"
    H = v.positive_int(num_heads, "num_heads", fn)
    dtype = _float_dtype(dtype, "dtype", fn)
    device = v.device(device, "device", fn)

    def power_of_2(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]

    closest = 2 ** int(math.floor(math.log2(H)))
    slopes = power_of_2(closest) + power_of_2(2 * closest)[0::2][: H - closest]
    return torch.tensor(slopes, dtype=torch.float64).to(device=device, dtype=dtype)  # (H,), exact in float64 first


def alibi_bias(
    num_heads: int,
    L: int,
    S: int | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """ALiBi's additive attention bias: ``bias[h, i, j] = -m_h * (i - j)`` for keys j <= i, and 0 for j > i.

    Each head penalises a key linearly in its distance from the query, with its own slope
    ``m_h`` (:func:`alibi_slopes`): steep heads look locally, shallow heads far. The bias depends
    on ``i - j`` only (relative), has no parameters, and exists for any length, which is why
    ALiBi extrapolates to sequences longer than those seen in training.

    ALiBi is made for causal (decoder) attention: for j > i (future keys) the bias is **0**, and
    the future must be blocked by a causal mask. Combine the two into one float mask, e.g.
    ``alibi_bias(H, L) + to_additive(causal_mask(L))``, and pass it as ``attn_mask`` to
    ``course_lib.scaled_dot_product_attention``; the (H, L, S) mask broadcasts over the batch of
    (B, H, L, E) queries. Rows are top-left aligned (query i sits at position i), as
    ``causal_mask``.

    The reference implementation adds ``+m_h * j`` instead; the two differ by ``m_h * i``, a
    constant along each row, which the softmax ignores: the attention weights are the same.

    Args:
        num_heads: H.
        L: number of queries.
        S: number of keys (default L).
        dtype: floating dtype of the result (use the dtype of the queries).
        device: torch device of the result (default: the CPU).
    Returns:
        float tensor (H, L, S), <= 0 on and below the diagonal, 0 above it.
    Shape:
        (H, L, S)
    Raises:
        TypeError: if an int argument is not an int, dtype is not a floating dtype, or device is
            not None, a str or a torch.device.
        ValueError: if num_heads, L or S is not positive, or device is not a device name.
    Taught in: notebooks/07_positional_encoding.ipynb.
    Source: Press et al. 2022, "Train Short, Test Long: Attention with Linear Biases", sec. 3, fig. 3.
    """
    fn = "alibi_bias"
    H = v.positive_int(num_heads, "num_heads", fn)
    L = v.positive_int(L, "L", fn)
    S = L if S is None else v.positive_int(S, "S", fn)
    dtype = _float_dtype(dtype, "dtype", fn)
    device = v.device(device, "device", fn)
    work = _angle_dtype(torch.device("cpu") if device is None else device)
    slopes = alibi_slopes(H, dtype=work, device=device)  # (H,)
    i = torch.arange(L, dtype=work, device=device)  # (L,) query positions
    j = torch.arange(S, dtype=work, device=device)  # (S,) key positions
    distance = (i[:, None] - j[None, :]).clamp(min=0)  # (L, 1) - (1, S) -> (L, S), 0 for future keys
    bias = -slopes[:, None, None] * distance  # (H, 1, 1) * (L, S) -> (H, L, S)
    return (bias + 0.0).to(dtype)  # + 0.0 turns -0.0 into 0.0


def t5_relative_position_bucket(
    relative_position: torch.Tensor, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128
) -> torch.Tensor:
    """T5's bucket of each relative position ``key position - query position``: exact near, logarithmic far.

    T5 learns one bias per head for each *bucket* of offsets rather than for each offset: a
    small table that still covers long distances.

    - Bidirectional (the encoder): half of the buckets are for keys before the query (offset
      <= 0) and half, from ``num_buckets // 2`` on, for keys after it (offset > 0). Causal (the
      decoder): all buckets go to keys at or before the query; a later key (offset > 0, masked
      anyway) falls in bucket 0 with the offset 0.
    - Within a half of ``n`` buckets, with distance ``d = |offset|``: the first ``n // 2``
      buckets hold one distance each (``d = 0, 1, ..., n//2 - 1``); the rest cover distances
      ``n//2 .. max_distance`` on a log scale, bucket ``n//2 + floor(log(d / (n//2)) /
      log(max_distance / (n//2)) * (n - n//2))``; every distance from ``max_distance`` on
      shares the last bucket ``n - 1``.

    The logarithm is taken in float32, as in the reference implementation, so that every
    bucket equals T5's own (tests/test_t5_bias.py compares with Hugging Face ``transformers``).

    Args:
        relative_position: integer tensor of any shape: key position minus query position.
        bidirectional: True for the encoder (keys on both sides), False for causal attention.
        num_buckets: number of buckets (32 in T5); in the bidirectional case each side gets
            ``num_buckets // 2``.
        max_distance: distances from this one on share the last bucket (128 in T5).
    Returns:
        int64 tensor of the same shape and device, values in ``[0, num_buckets)``.
    Shape:
        (*) -> (*)
    Raises:
        TypeError: if relative_position is not an integer tensor, bidirectional is not a bool, or
            num_buckets or max_distance is not an int.
        ValueError: if num_buckets or max_distance is not positive, or too small for the scheme
            (a half of buckets needs at least 2 buckets, and max_distance must exceed its exact range).
    Taught in: notebooks/07_positional_encoding.ipynb (relative position biases, beside ALiBi).
    Source: Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
        Text-to-Text Transformer" (T5), sec. 2.1 (32 buckets, logarithmic up to 128).
    """
    fn = "t5_relative_position_bucket"
    v.tensor(relative_position, "relative_position", fn)
    if relative_position.is_floating_point() or relative_position.is_complex() or relative_position.dtype == torch.bool:
        raise TypeError(f"{fn}: relative_position must be an integer tensor (key - query positions), "
                        f"got {relative_position.dtype}")
    bidirectional = v.flag(bidirectional, "bidirectional", fn)
    num_buckets = v.positive_int(num_buckets, "num_buckets", fn)
    max_distance = v.positive_int(max_distance, "max_distance", fn)
    half = num_buckets // 2 if bidirectional else num_buckets  # buckets for one side
    exact = half // 2  # distances 0 .. exact-1 get a bucket each
    if exact < 1 or max_distance <= exact:
        raise ValueError(
            f"{fn}: num_buckets={num_buckets} (bidirectional={bidirectional}) leaves {half} buckets per side; "
            f"it needs at least 2, and max_distance={max_distance} must exceed the exact range {exact}"
        )
    offset = relative_position.long()
    if bidirectional:
        side = (offset > 0).long() * half  # later keys use the upper half of the buckets
        distance = offset.abs()
    else:
        side = torch.zeros_like(offset)
        distance = (-offset).clamp(min=0)  # a later key counts as distance 0 (it is masked anyway)
    # Far distances: log-spaced buckets exact .. half-1. clamp(min=1) only avoids log(0) where the
    # exact branch is used anyway.
    ratio = distance.clamp(min=1).float() / exact
    far = exact + (torch.log(ratio) / math.log(max_distance / exact) * (half - exact)).long()
    far = far.clamp(max=half - 1)
    return side + torch.where(distance < exact, distance, far)


class T5RelativePositionBias(nn.Module):
    """T5's learned relative position bias: one scalar per (bucket, head), added to the scores.

    ``bias[h, i, j] = embedding[bucket(j - i), h]``, with :func:`t5_relative_position_bucket`.
    T5 adds it to the query-key scores of every layer (it is computed once, in the first
    layer, and shared by all) and uses no position vectors at all; it does not scale the scores
    by 1/sqrt(d_k) either. Like ALiBi, it depends only on the offset ``j - i``, so a model can
    be run on longer sequences than it saw, every distance beyond ``max_distance`` sharing one bias.

    Args:
        num_heads: H.
        num_buckets: number of buckets (32 in T5).
        max_distance: distances from this one on share the last bucket (128 in T5).
        bidirectional: True for the encoder, False for the decoder's causal self-attention.
    Attributes:
        relative_attention_bias: nn.Embedding(num_buckets, num_heads), initialised N(0, 1)
            (nn.Embedding's default); entry [b, h] is head h's bias for bucket b.
    Shape:
        forward(L, S) -> (H, L, S), in the embedding's dtype and on its device.
    Raises:
        TypeError / ValueError: for bad sizes, as :func:`t5_relative_position_bucket`.
    Taught in: notebooks/07_positional_encoding.ipynb.
    Source: Raffel et al. 2020 (T5), sec. 2.1; the reference code's ``T5Attention.compute_bias``.
    """

    def __init__(self, num_heads: int, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True):
        super().__init__()
        fn = "T5RelativePositionBias"
        self.num_heads = v.positive_int(num_heads, "num_heads", fn)
        self.num_buckets = v.positive_int(num_buckets, "num_buckets", fn)
        self.max_distance = v.positive_int(max_distance, "max_distance", fn)
        self.bidirectional = v.flag(bidirectional, "bidirectional", fn)
        t5_relative_position_bucket(torch.zeros(1, dtype=torch.long), self.bidirectional, self.num_buckets,
                                    self.max_distance)  # fails early on sizes the scheme cannot use
        self.relative_attention_bias = nn.Embedding(self.num_buckets, self.num_heads)

    def extra_repr(self) -> str:
        return (f"num_heads={self.num_heads}, num_buckets={self.num_buckets}, max_distance={self.max_distance}, "
                f"bidirectional={self.bidirectional}")

    def forward(self, L: int, S: int | None = None, query_offset: int = 0) -> torch.Tensor:
        """The (H, L, S) bias for L queries at positions ``query_offset .. query_offset + L - 1`` and S keys at 0 .. S-1.

        Args:
            L: number of queries.  S: number of keys (default L).
            query_offset: position of the first query (the number of cached tokens when
                decoding one token at a time with a KV cache; 0 otherwise).
        Returns:
            float tensor (H, L, S); add it to scores (B, H, L, S).
        Raises:
            TypeError: if L, S or query_offset is not an int.  ValueError: if L or S is not
                positive or query_offset is negative.
        """
        fn = "T5RelativePositionBias.forward"
        L = v.positive_int(L, "L", fn)
        S = L if S is None else v.positive_int(S, "S", fn)
        if isinstance(query_offset, bool) or not isinstance(query_offset, int):
            raise TypeError(f"{fn}: query_offset must be an int >= 0, got {type(query_offset).__name__}")
        if query_offset < 0:
            raise ValueError(f"{fn}: query_offset must be an int >= 0, got {query_offset}")
        device = self.relative_attention_bias.weight.device
        query_pos = torch.arange(L, device=device)[:, None] + query_offset  # (L, 1)
        key_pos = torch.arange(S, device=device)[None, :]  # (1, S)
        buckets = t5_relative_position_bucket(key_pos - query_pos, self.bidirectional, self.num_buckets,
                                              self.max_distance)  # (L, S)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)  # (L, S, H) -> (H, L, S)
