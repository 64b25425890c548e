"""Validation pass: run a rewritten graph on fake tensors and check every recomputed shape.

A wrong token-axis guess would show up here as a shape error or a mismatch, before any real
data runs; the caller then falls back instead of producing a wrong answer.

Some graphs hold operations that fake tensors cannot run although real execution and Inductor
can (functorch's vmap internals that ``flex_attention`` traces to build its block mask). A node
copied unchanged from the Dynamo graph may then take the example value Dynamo recorded for it;
every node the rewrite inserted or resized must still run.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.fx as fx
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._pytree import tree_map

from ..graph_inputs import InputMeta, fake_inputs, fake_mode
from .rewrite_partial import EXPECTED_SHAPE, RewriteError


class _Propagate(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, mode: FakeTensorMode) -> None:
        super().__init__(gm)
        self.mode = mode

    def run_node(self, n: fx.Node) -> Any:
        with self.mode:
            try:
                value = super().run_node(n)
            except Exception:
                recorded = n.meta.get("example_value")
                if recorded is None or EXPECTED_SHAPE in n.meta:
                    raise
                value = tree_map(self._like, recorded)  # unchanged by the rewrite: Dynamo's record
        n.meta["val"] = value
        return value

    def _like(self, value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device=value.device)


def validate_variant(gm: fx.GraphModule, inputs: Sequence[InputMeta]) -> None:
    mode = fake_mode()
    fakes = fake_inputs(inputs, mode)
    try:
        _Propagate(gm, mode).run(*fakes)
    except Exception as error:  # noqa: BLE001  any failure means the rewrite is unsafe
        raise RewriteError(f"rewritten graph does not type-check: {type(error).__name__}: {error}") from error
    for node in gm.graph.nodes:
        expected = node.meta.get(EXPECTED_SHAPE)
        value = node.meta.get("val")
        if expected is not None and isinstance(value, torch.Tensor) and tuple(value.shape) != expected:
            raise RewriteError(f"{node.name} has shape {tuple(value.shape)}, expected {expected}")
