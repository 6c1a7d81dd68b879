"""The online softmax: softmax with one pass for its normaliser (a running max and a running sum).

The building block of tiled attention (:mod:`course_lib.efficient.tiled`).

Taught in: notebooks/09_efficient_attention.ipynb.
Source: Milakov & Gimelshein 2018, "Online normalizer calculation for softmax", algorithm 3.
"""

from __future__ import annotations

import torch

from .. import _validate as v

__all__ = ["online_softmax"]

_HALF = (torch.float16, torch.bfloat16)


def online_softmax(x: torch.Tensor, dim: int = -1, block_size: int = 1) -> torch.Tensor:
    """Softmax computed with one pass for its normaliser: a running max and a running sum.

    The usual stable softmax reads the data three times: once for the max, once for the sum of
    ``exp(x - max)``, once to divide. The online form keeps, while it walks along ``dim``, the
    largest value seen so far ``m`` and the sum ``d`` of ``exp(x_j - m)`` so far. When a new value
    raises the max from ``m`` to ``m'``, the old sum is *rescaled* by ``exp(m - m')`` so that it
    is again relative to the new max:

        m' = max(m, x_j)
        d' = d * exp(m - m') + exp(x_j - m')

    After the last element, ``d`` is the normaliser and ``exp(x - m) / d`` the softmax. The same
    update, applied to blocks of ``block_size`` elements at once, is the heart of
    :func:`tiled_attention`.

    Entries equal to ``-inf`` get weight 0; a slice that is all ``-inf`` gives all zeros (as
    ``course_lib.softmax``). float16/bfloat16 inputs are computed in float32.

    Args:
        x: float tensor of any shape (at least one dim).
        dim: the dimension that sums to 1 (default: the last).
        block_size: how many elements the loop takes per step (1 = the element-by-element
            algorithm of the paper; larger blocks give the same result in fewer steps).
    Returns:
        weights, same shape, dtype and device as ``x``.
    Shape:
        (*) -> (*)
    Raises:
        TypeError: if ``x`` is not a floating tensor, ``dim`` is not an int, or ``block_size`` is
            not an int.
        ValueError: if ``x`` has no dims, ``dim`` is out of range, or ``block_size`` < 1.
    Taught in: notebooks/09_efficient_attention.ipynb.  Source: Milakov & Gimelshein 2018,
    "Online normalizer calculation for softmax", algorithm 3.
    """
    fn = "online_softmax"
    v.tensor(x, "x", fn, min_dim=1, floating=True)
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{fn}: dim must be an int, got {type(dim).__name__}")
    if not -x.dim() <= dim < x.dim():
        raise ValueError(f"{fn}: dim={dim} is out of range for x of shape {v.shape_str(x)}")
    block_size = v.positive_int(block_size, "block_size", fn)
    work = (x.float() if x.dtype in _HALF else x).movedim(dim, -1)  # (..., N): the softmax dim last
    N = work.shape[-1]
    running_max = torch.full(work.shape[:-1], float("-inf"), dtype=work.dtype, device=work.device)  # (...)
    running_sum = torch.zeros(work.shape[:-1], dtype=work.dtype, device=work.device)  # (...)
    for start in range(0, N, block_size):
        block = work[..., start:start + block_size]  # (..., b)
        new_max = torch.maximum(running_max, block.amax(dim=-1))  # (...)
        # A slice that is all -inf so far has max -inf; shift by 0 there (exp(-inf - 0) = 0, not NaN).
        shift = torch.where(torch.isneginf(new_max), torch.zeros_like(new_max), new_max)
        running_sum = running_sum * torch.exp(running_max - shift) + torch.exp(block - shift[..., None]).sum(dim=-1)
        running_max = new_max
    shift = torch.where(torch.isneginf(running_max), torch.zeros_like(running_max), running_max)
    total = torch.where(running_sum == 0, torch.ones_like(running_sum), running_sum)  # all -inf: 0 / 1 = 0
    out = torch.exp(work - shift[..., None]) / total[..., None]  # (..., N)
    return out.movedim(-1, dim).to(x.dtype)
