"""What the passes and the runtime keep of a graph's inputs: their metadata, never the tensors.

Dynamo hands a backend real example tensors (the user's weights among them). Keeping them would
keep every model alive as long as its compiled graphs, so everything downstream works from
:class:`InputMeta` and builds fake tensors from it when it needs to run a graph abstractly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv


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
    symbolic: bool = False        # a tensor with symbolic sizes, or a SymInt size
    value: Any = None             # the Python value of a non-tensor input, or of a 0-d CPU tensor
                                  # (a Python number Dynamo passes as a tensor: eps, a timestep)

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
        scalar = None
        if value.dim() == 0 and value.device.type == "cpu" and not isinstance(value, (FakeTensor, torch.nn.Parameter)):
            scalar = value.item()  # host memory: no device sync
        return InputMeta(True, isinstance(value, torch.nn.Parameter), shape, stride, value.dtype, value.device,
                         bool(value.requires_grad), symbolic, scalar)
    if isinstance(value, torch.SymInt):  # a size Dynamo made symbolic (a SymFloat is data, not a size)
        return InputMeta(False, symbolic=True)
    return InputMeta(False, value=value if isinstance(value, (int, float, bool)) else None)


def describe_all(values: Sequence[Any]) -> list[InputMeta]:
    return [describe(v) for v in values]


def fake_mode() -> FakeTensorMode:
    """A fake-tensor mode for running graphs abstractly. Its shape environment lets a value read
    from tensor data (``.item()`` of a Python-number timestep) stay symbolic instead of failing."""
    return FakeTensorMode(allow_non_fake_inputs=True, shape_env=ShapeEnv())


def fake_inputs(metas: Sequence[InputMeta], mode: FakeTensorMode) -> list[Any]:
    """Fake tensors (no storage) shaped like ``metas``; Python values as they are."""
    out: list[Any] = []
    # scalars whose value is known: .item() of them gives the number, not an unbacked symbol
    reals = {i: torch.tensor(m.value, dtype=m.dtype) for i, m in enumerate(metas) if m.is_tensor and m.value is not None}
    with mode:
        for i, meta in enumerate(metas):
            if not meta.is_tensor:
                out.append(meta.value)
                continue
            if i in reals:
                out.append(mode.fake_tensor_converter.from_real_tensor(mode, reals[i], make_constant=True))
                continue
            stride = meta.stride if meta.stride else None
            if stride is not None:
                fake = torch.empty_strided(meta.shape, stride, dtype=meta.dtype, device=meta.device)
            else:
                fake = torch.empty(meta.shape, dtype=meta.dtype, device=meta.device)
            out.append(fake)
    return out
