"""Measuring cost: a median wall-clock time, and the exponent p of a power law y ~ x^p.

Chapter 09 fits how attention's time and memory grow with the sequence length (p = 2 for
quadratic cost); chapter 03 uses the same fit for how the variance of scores grows with d_k.

Taught in: notebooks/03_scaling.ipynb, notebooks/09_efficient_attention.ipynb.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable, Sequence

import torch

__all__ = ["median_time", "loglog_slope"]


def median_time(fn: Callable[[], object], reps: int = 3, device: torch.device | str | None = None) -> float:
    """Median wall-clock seconds of ``fn()`` over ``reps`` calls, after one warm-up call.

    On a CUDA device the GPU is synchronised before and after each call, so the time covers the
    kernels ``fn`` launched and not only their launch. Timings depend on the machine and what else
    it is doing: print them, never assert on them.

    Args:
        fn: a callable without arguments.
        reps: number of timed calls (a positive int).
        device: the device whose work to wait for (``None``: the CPU, nothing to wait for).
    Returns:
        seconds (float).
    Raises:
        TypeError: if fn is not callable or reps is not an int.
        ValueError: if reps < 1.
    Taught in: notebooks/09_efficient_attention.ipynb.
    """
    if not callable(fn):
        raise TypeError(f"median_time: fn must be callable, got {type(fn).__name__}")
    if isinstance(reps, bool) or not isinstance(reps, int):
        raise TypeError(f"median_time: reps must be an int, got {type(reps).__name__}")
    if reps < 1:
        raise ValueError(f"median_time: reps must be >= 1, got {reps}")
    cuda = device is not None and torch.device(device).type == "cuda"
    fn()
    times = []
    for _ in range(reps):
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope p of log(y) = p log(x) + c: the exponent of a power law y ~ x^p.

    Args:
        xs: positive numbers (at least two distinct).
        ys: positive numbers, as many as xs.
    Returns:
        p (float): 2.0 for y = x^2, 1.0 for y = 3x, 0.0 for a constant.
    Raises:
        ValueError: if the lengths differ, fewer than two distinct xs are given, or a value is
            not positive.
    Taught in: notebooks/09_efficient_attention.ipynb (time and memory vs sequence length); also
    used in notebooks/03_scaling.ipynb (the variance of scores vs d_k).
    """
    xs, ys = [float(x) for x in xs], [float(y) for y in ys]
    if len(xs) != len(ys):
        raise ValueError(f"loglog_slope: xs and ys must have the same length, got {len(xs)} and {len(ys)}")
    if len(set(xs)) < 2:
        raise ValueError(f"loglog_slope: needs at least two distinct xs, got {xs}")
    if min(xs) <= 0 or min(ys) <= 0:
        raise ValueError("loglog_slope: every x and y must be positive (their logarithms are fitted)")
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
