"""Counting host reads of tensor data (``.item()``, ``float(t)``, ``.tolist()``...).

On a GPU each such read of a device tensor is a synchronisation; on this CPU-only machine they
cost nothing, so tests count them instead: Python-level reads go through these ``torch.Tensor``
methods, which are wrapped while the context is open. Each read is recorded with the tensor's
device, dtype and shape.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

_READERS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__")


@contextlib.contextmanager
def host_reads() -> Iterator[list[tuple[str, torch.device, torch.dtype, tuple[int, ...]]]]:
    reads: list[tuple[str, torch.device, torch.dtype, tuple[int, ...]]] = []
    saved = {name: torch.Tensor.__dict__.get(name) for name in _READERS}
    originals = {name: getattr(torch.Tensor, name) for name in _READERS}

    def wrap(name: str):
        original = originals[name]

        def reader(self, *args, **kwargs):
            reads.append((name, self.device, self.dtype, tuple(self.shape)))
            return original(self, *args, **kwargs)

        return reader

    for name in _READERS:
        setattr(torch.Tensor, name, wrap(name))
    try:
        yield reads
    finally:
        for name in _READERS:
            if saved[name] is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, saved[name])
