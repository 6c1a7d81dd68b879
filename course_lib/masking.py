"""Masks: which keys each query may attend to.

Convention (as ``F.scaled_dot_product_attention``): a boolean mask means **True = may attend**.
A float ("additive") mask is added to the scores: 0 where allowed, -inf where blocked.
``torch.nn.MultiheadAttention`` uses the *opposite* boolean meaning (True = blocked); chapter 04
teaches the difference. Every helper here returns the boolean form.

Source: Vaswani et al. 2017, sec. 3.2.3 ("masking out (setting to -inf) all values in the input
of the softmax which correspond to illegal connections").
"""

from __future__ import annotations

from typing import Sequence

import torch

from . import _validate as v

__all__ = ["causal_mask", "padding_mask", "combine_masks", "to_additive"]


def causal_mask(L: int, S: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean mask that lets query i attend to keys 0..i (True = may attend).

    Args:
        L: number of queries.
        S: number of keys (default L).
        device: torch device of the result (default: the CPU).
    Returns:
        torch.bool tensor of shape (L, S), lower-triangular (top-left aligned, as
        ``F.scaled_dot_product_attention(is_causal=True)``).
    Shape:
        (L, S)
    Raises:
        TypeError: if L or S is not an int, or device is not None, a str or a torch.device.
        ValueError: if L or S is not positive, or device is not a device name.
    Taught in: notebooks/04_masking.ipynb.  Source: Vaswani et al. 2017, sec. 3.2.3.
    """
    L = v.positive_int(L, "L", "causal_mask")
    S = L if S is None else v.positive_int(S, "S", "causal_mask")
    device = v.device(device, "device", "causal_mask")
    return torch.ones(L, S, dtype=torch.bool, device=device).tril()  # (L, S)


def padding_mask(
    lengths: Sequence[int] | torch.Tensor, S: int | None = None, *, validate: bool | None = None
) -> torch.Tensor:
    """Boolean mask of the real (non-pad) tokens in a right-padded batch.

    A tensor of lengths may live on a GPU; checking its values (no negative length, none longer
    than ``S``) would read them back to the host and make the CPU wait for the GPU, and finding
    the longest one for the default ``S`` too. So the values are checked only when ``validate``
    asks for it, and by default only when they are already on the host (a Python list).

    Args:
        lengths: the true length of each sequence: a list of ints or a 1-D integer tensor (B,).
        S: padded length. Default: the largest length (for a tensor, that reads the largest
            value on the host: give ``S`` in a training loop or on the ``meta`` device).
        validate: check the values (every length >= 0 and <= S). ``None`` (the default) means
            True for a Python sequence and False for a tensor. Unchecked, a negative length
            gives an all-False row (like 0) and a length above S an all-True row.
    Returns:
        torch.bool tensor (B, S): ``mask[b, j]`` is True when token j of sequence b is real
        (``j < lengths[b]``). On the device of ``lengths`` if it is a tensor, else the CPU. To
        use it as an ``attn_mask`` for scores (B, L, S), add a query dim: ``mask[:, None, :]``.
    Shape:
        lengths (B,) -> (B, S)
    Raises:
        TypeError: if lengths is not a sequence of ints or an integer tensor, S is not an int,
            or validate is not None or a bool.
        ValueError: if lengths is empty or not 1-D; with validation, if a length is negative or
            S is smaller than the largest length.
    Taught in: notebooks/04_masking.ipynb.
    """
    fn = "padding_mask"
    if validate is not None:
        validate = v.flag(validate, "validate", fn)
    if isinstance(lengths, torch.Tensor):
        if lengths.is_floating_point() or lengths.dtype == torch.bool or lengths.is_complex():
            raise TypeError(f"{fn}: lengths must hold integers, got dtype {lengths.dtype}")
        lengths_t = lengths
        validate = False if validate is None else validate
    else:
        try:
            items = list(lengths)
        except TypeError:
            raise TypeError(f"{fn}: lengths must be a list of ints or a 1-D tensor, got {type(lengths).__name__}") from None
        if any(isinstance(n, bool) or not isinstance(n, int) for n in items):
            raise TypeError(f"{fn}: lengths must be ints, got {items!r}")
        lengths_t = torch.tensor(items, dtype=torch.long)
        validate = True if validate is None else validate
    if lengths_t.dim() != 1 or lengths_t.numel() == 0:
        raise ValueError(f"{fn}: lengths must be a non-empty 1-D list (B,), got shape {v.shape_str(lengths_t)}")
    if S is not None:
        S = v.positive_int(S, "S", fn)
    if validate or S is None:  # host reads, by request (or to find the default S)
        longest = int(lengths_t.max())
        if validate and bool((lengths_t < 0).any()):
            raise ValueError(f"{fn}: lengths must be >= 0, got {lengths_t.tolist()}")
        if S is None:
            S = max(longest, 1)
        if validate and S < longest:
            raise ValueError(f"{fn}: S={S} is shorter than the longest sequence ({longest})")
    positions = torch.arange(S, device=lengths_t.device)  # (S,)
    return positions[None, :] < lengths_t[:, None]  # (1, S) < (B, 1) -> (B, S)


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor:
    """Combine boolean masks: a key may be attended to only if *every* mask allows it (logical and).

    ``None`` entries are skipped, so optional masks can be passed straight through.

    Args:
        *masks: boolean tensors (True = may attend) whose shapes broadcast together, e.g. a
            causal mask (L, S) and a padding mask reshaped to (B, 1, S).
    Returns:
        torch.bool tensor of the broadcast shape.
    Shape:
        broadcast of the inputs' shapes, e.g. (L, S) and (B, 1, S) -> (B, L, S).
    Raises:
        TypeError: if a mask is not a boolean tensor (convert float masks first), or none is given.
        ValueError: if the shapes do not broadcast, or the masks are on different devices.
    Taught in: notebooks/04_masking.ipynb.
    """
    fn = "combine_masks"
    given = [m for m in masks if m is not None]
    if not given:
        raise TypeError(f"{fn}: give at least one boolean mask")
    for i, m in enumerate(given):
        v.tensor(m, f"masks[{i}]", fn)
        if m.dtype != torch.bool:
            raise TypeError(
                f"{fn}: masks[{i}] must be torch.bool (True = may attend), got {m.dtype}; "
                f"a float mask is additive: compare it with 0 (mask == 0) to get the boolean form"
            )
    try:
        v.broadcast_shapes(*(m.shape for m in given))
    except RuntimeError:
        shapes = ", ".join(v.shape_str(m) for m in given)
        raise ValueError(f"{fn}: the masks' shapes {shapes} do not broadcast together") from None
    v.same_device(fn, **{f"masks[{i}]": m for i, m in enumerate(given)})
    out = given[0]
    for m in given[1:]:
        out = out & m  # broadcast logical and
    return out


def to_additive(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Turn a boolean mask (True = may attend) into an additive float mask: 0 where allowed, -inf where not.

    ``-inf`` exists in every float dtype and gives a weight of exactly 0 after softmax. A finite
    fill such as minus one billion does not fit in float16 (its largest magnitude is 65504):
    ``masked_fill`` refuses it, and a cast turns it into ``-inf`` anyway (chapter 04 shows both).

    Args:
        mask: boolean tensor, any shape.
        dtype: a floating dtype for the result (use the dtype of the scores).
    Returns:
        float tensor of ``mask``'s shape and device, in ``dtype``.
    Shape:
        (*) -> (*)
    Raises:
        TypeError: if mask is not a boolean tensor or dtype is not a floating dtype.
    Taught in: notebooks/04_masking.ipynb.
    """
    fn = "to_additive"
    v.tensor(mask, "mask", fn)
    if mask.dtype != torch.bool:
        raise TypeError(f"{fn}: mask must be torch.bool (True = may attend), got {mask.dtype}")
    if not isinstance(dtype, torch.dtype) or dtype not in v.FLOAT_DTYPES:
        raise TypeError(f"{fn}: dtype must be a floating torch dtype, got {dtype!r}")
    out = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return out.masked_fill(~mask, float("-inf"))
