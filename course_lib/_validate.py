"""Argument checks shared by every module: clear errors that name the argument and the shapes.

Internal: learners never need these, but every public function calls them first so that a
mistake fails with a sentence, not with a broadcasting error from deep inside PyTorch.
"""

from __future__ import annotations

import math
import numbers
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


def broadcast_shapes(*shapes: Sequence[int]) -> torch.Size:
    """The shape that ``shapes`` broadcast to, as ``torch.broadcast_shapes`` gives it, about 25 times faster.

    torch.broadcast_shapes goes through PyTorch's Python reference implementation (about 70 us a
    call on this course's CPU, three times a small matmul), and every attention call checks two
    or three shapes. Reads shapes only, never tensor values. Raises RuntimeError, as torch does,
    when two sizes differ and neither is 1. tests/test_validate.py compares it with torch's.
    """
    ndim = 0
    for shape in shapes:  # (a loop, not max(..., default=0): torch.compile traces this)
        ndim = max(ndim, len(shape))
    out = [1] * ndim
    for shape in shapes:
        for i, size in enumerate(shape, ndim - len(shape)):
            if size != 1:
                if out[i] != 1 and out[i] != size:
                    raise RuntimeError(f"shapes {[tuple(s) for s in shapes]} do not broadcast: "
                                       f"sizes {out[i]} and {size} at dim {i - ndim}")
                out[i] = size
    return torch.Size(out)


def broadcast_batch(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str], fn: str) -> None:
    """Check that the leading (batch) dims of two (..., T, E) tensors broadcast."""
    try:
        broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"{fn}: the batch dims of {names[0]} {shape_str(a)} and {names[1]} {shape_str(b)} "
            f"do not broadcast (all but the last two dims must match or be 1)"
        ) from None


def flag(value, name: str, fn: str) -> bool:
    """Return ``value`` if it is a Python bool (``is_causal='yes'`` or a tensor is a mistake, not a truth value)."""
    if not isinstance(value, bool):
        raise TypeError(f"{fn}: {name} must be a bool (True or False), got {type(value).__name__} {value!r}")
    return value


def real(value, name: str, fn: str) -> float:
    """Return ``value`` as a finite Python float if it is a real number (int or float, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a float, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{fn}: {name} must be a finite float, got {value!r}")
    return value


def probability(value, name: str, fn: str) -> float:
    """Return ``value`` as a float if it is a real number in [0, 1) (a dropout probability)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a float in [0, 1), got {type(value).__name__} {value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{fn}: {name} must be a float in [0, 1), got {value!r}")
    return float(value)


def device(value, name: str, fn: str) -> torch.device | None:
    """Return ``value`` as a torch.device (None stays None): a str such as "cpu" or "cuda:0", or a torch.device."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, torch.device, int)):
        raise TypeError(f"{fn}: {name} must be None, a str or a torch.device, got {type(value).__name__}")
    try:
        return torch.device(value)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{fn}: {name}={value!r} is not a device ({exc})") from None


def same_device(fn: str, **tensors) -> None:
    """Check that every given tensor (None entries are skipped) lives on one device; name them all if not.

    Compares ``tensor.device`` only (metadata, no host read), so it is free on every device and
    runs before any work.
    """
    given = [(name, t) for name, t in tensors.items() if t is not None]
    first = given[0][1].device
    if any(t.device != first for _, t in given[1:]):
        where = ", ".join(f"{name} on {t.device}" for name, t in given)
        names = ", ".join(name for name, _ in given)
        raise ValueError(
            f"{fn}: {names} must be on the same device, got {where}; move them with .to(device) first"
        )
