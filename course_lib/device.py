"""Where tensors live, and how every notebook makes itself reproducible.

Taught in: every notebook's first code cell (see notebooks/01_dot_products.ipynb).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["get_device", "set_seed"]

_KNOWN = ("cpu", "cuda", "mps")


def _available(kind: str) -> bool:
    if kind == "cpu":
        return True
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available())
    return False


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """Pick the device the course runs on.

    The choice, in order: ``prefer`` if given; else the environment variable
    ``COURSE_DEVICE`` (e.g. ``COURSE_DEVICE=cpu`` to force the CPU on a GPU machine);
    else CUDA if available, then Apple's MPS, then the CPU.

    Args:
        prefer: a device string such as ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"``,
            or a ``torch.device``. ``None`` means "choose for me".
    Returns:
        torch.device
    Raises:
        TypeError: if ``prefer`` is neither None, a str nor a torch.device.
        ValueError: if the requested device kind is unknown or not available here
            (the message names the argument or the variable it came from).
    Taught in: notebooks/01_dot_products.ipynb (first code cell of every notebook).
    """
    source = "prefer"
    if prefer is None:
        env = os.environ.get("COURSE_DEVICE", "").strip()
        if env:
            prefer, source = env, "COURSE_DEVICE"
    if prefer is None:
        for kind in ("cuda", "mps"):
            if _available(kind):
                return torch.device(kind)
        return torch.device("cpu")
    if not isinstance(prefer, (str, torch.device)):
        raise TypeError(f"get_device: prefer must be None, a str or a torch.device, got {type(prefer).__name__}")
    try:
        device = torch.device(prefer)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"get_device: {source}={prefer!r} is not a device name ({exc})") from None
    if device.type not in _KNOWN:
        raise ValueError(f"get_device: {source}={prefer!r}: device kind must be one of {_KNOWN}")
    if not _available(device.type):
        raise ValueError(f"get_device: {source}={prefer!r} was asked for, but it is not available on this machine")
    return device


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and every CUDA device).

    PyTorch takes seeds in [0, 2**64) (a 64-bit generator state) and NumPy's legacy
    ``np.random.seed`` in [0, 2**32); NumPy gets ``seed % 2**32``, so two seeds that differ
    by a multiple of 2**32 give the same NumPy numbers (and different PyTorch numbers).

    Args:
        seed: an int in [0, 2**64) (a NumPy integer is accepted; a bool is not).
    Raises:
        TypeError: if ``seed`` is not an int.
        ValueError: if ``seed`` is negative or not below 2**64.
    Taught in: the first code cell of every notebook.
    """
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"set_seed: seed must be an int in [0, 2**64), got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"set_seed: seed must be an int in [0, 2**64) (PyTorch's generator is 64-bit), got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds the CPU and all CUDA generators
