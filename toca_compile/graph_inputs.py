"""What the passes and the runtime keep of a graph's inputs: their metadata, never the tensors.

Dynamo hands a backend real example tensors (the user's weights among them). Keeping them would
keep every model alive as long as its compiled graphs, so everything downstream works from
:class:`InputMeta` and builds fake tensors from it when it needs to run a graph abstractly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch._subclasses.fake_tensor import FakeTensorMode


@dataclass(frozen=True)
class InputMeta:
    """One graph input: a tensor (shape, dtype, device; a parameter or not) or a Python value."""

    is_tensor: bool
    is_param: bool = False
    shape: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    dtype: torch.dtype | None = None
    device: torch.device | None = None
    requires_grad: bool = False
    symbolic: bool = False        # a tensor with symbolic sizes, or a SymInt/SymFloat value
    value: Any = None             # the Python value of a non-tensor input (ints of static graphs)

    @property
    def dim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        n = 1
        for size in self.shape:
            n *= size
        return n


def describe(value: Any) -> InputMeta:
    """The metadata of one example input (real, fake or symbolic)."""
    if isinstance(value, torch.Tensor):
        symbolic = any(not isinstance(s, int) for s in value.shape)
        shape = tuple(s if isinstance(s, int) else -1 for s in value.shape)
        stride = () if symbolic else tuple(value.stride())
        return InputMeta(True, isinstance(value, torch.nn.Parameter), shape, stride, value.dtype, value.device,
                         bool(value.requires_grad), symbolic)
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return InputMeta(False, symbolic=True)
    return InputMeta(False, value=value if isinstance(value, (int, float, bool)) else None)


def describe_all(values: Sequence[Any]) -> list[InputMeta]:
    return [describe(v) for v in values]


def fake_inputs(metas: Sequence[InputMeta], mode: FakeTensorMode) -> list[Any]:
    """Fake tensors (no storage) shaped like ``metas``; Python values as they are."""
    out: list[Any] = []
    with mode:
        for meta in metas:
            if not meta.is_tensor:
                out.append(meta.value)
                continue
            stride = meta.stride if meta.stride else None
            if stride is not None:
                fake = torch.empty_strided(meta.shape, stride, dtype=meta.dtype, device=meta.device)
            else:
                fake = torch.empty(meta.shape, dtype=meta.dtype, device=meta.device)
            out.append(fake)
    return out
