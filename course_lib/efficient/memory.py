"""Measuring memory: the bytes of every tensor PyTorch creates inside a ``with`` block, on any device.

Taught in: notebooks/09_efficient_attention.ipynb.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["MemoryTracker"]


class MemoryTracker(TorchDispatchMode):
    """Count the bytes of the tensors PyTorch creates inside a ``with`` block: current and peak.

    Every PyTorch operation run inside the block is seen (a ``TorchDispatchMode``); each new
    storage an operation returns is counted until the last tensor using it is freed. Views and
    in-place results share their input's storage and add nothing. Tensors that existed before
    the block are not counted, so ``peak`` is the *extra* memory of the code in the block.

    The count is deterministic (the same on every run and every device: it adds tensor sizes,
    it does not read the allocator), which makes it usable in tests. It does not see memory a
    kernel allocates internally without returning it as a tensor (for example the per-thread
    scratch blocks of a fused attention kernel); ``torch.cuda.max_memory_allocated`` or the
    process's peak RSS include those. ``meta`` tensors have no storage and are not counted
    (``peak`` stays 0 there), but their operations are listed in ``ops``.

    Attributes:
        current: bytes of tracked tensors alive now.
        peak: the largest value ``current`` reached.
        ops: names of the operations run, in order (e.g. "bmm", "exp_").
    Example::

        with MemoryTracker() as tracker:
            out = scaled_dot_product_attention(q, k, v)
        tracker.peak  # bytes; 3 * L * S * 4 for one float32 head in course_lib's version

    Taught in: notebooks/09_efficient_attention.ipynb.
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self.ops: list[str] = []
        self._live: dict[tuple, list[int]] = {}  # storage key -> [nbytes, tensors alive]

    def _release(self, key) -> None:
        entry = self._live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self._live[key]

    @staticmethod
    def _key(t: torch.Tensor) -> tuple:
        return (t.device, t.untyped_storage().data_ptr())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops.append(func.overloadpacket.__name__)
        inputs = {self._key(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            key = self._key(t)
            if key not in self._live:
                if key in inputs:
                    continue  # a view of (or in-place result on) a tensor from before the block
                self._live[key] = [t.untyped_storage().nbytes(), 0]
                self.current += self._live[key][0]
                self.peak = max(self.peak, self.current)
            self._live[key][1] += 1
            weakref.finalize(t, self._release, key)
        return out
