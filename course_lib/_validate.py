"""Argument checks shared by every module: clear errors that name the argument and the shapes.

Internal: learners never need these, but every public function calls them first so that a
mistake fails with a sentence, not with a broadcasting error from deep inside PyTorch.
"""

from __future__ import annotations

from typing import Sequence

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def shape_str(x: torch.Tensor | Sequence[int]) -> str:
    """``(2, 3, 4)`` for a tensor or a shape; used in every error message."""
    shape = tuple(x.shape) if isinstance(x, torch.Tensor) else tuple(x)
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def tensor(x, name: str, fn: str, *, min_dim: int = 0, floating: bool = False) -> torch.Tensor:
    """Return ``x`` if it is a tensor with at least ``min_dim`` dims (and a float dtype if asked)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < min_dim:
        raise ValueError(f"{fn}: {name} must have at least {min_dim} dims, got shape {shape_str(x)}")
    if floating and x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{fn}: {name} must be a floating tensor (float16, bfloat16, float32 or float64), got {x.dtype}"
        )
    return x


def positive_int(value, name: str, fn: str) -> int:
    """Return ``value`` as an int if it is a positive integer (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point():
            value = int(value)
        else:
            raise TypeError(f"{fn}: {name} must be a positive int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{fn}: {name} must be a positive int, got {value}")
    return value


def broadcast_batch(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str], fn: str) -> None:
    """Check that the leading (batch) dims of two (..., T, E) tensors broadcast."""
    try:
        torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"{fn}: the batch dims of {names[0]} {shape_str(a)} and {names[1]} {shape_str(b)} "
            f"do not broadcast (all but the last two dims must match or be 1)"
        ) from None
