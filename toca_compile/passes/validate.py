"""Validation pass: run a rewritten graph on fake tensors and check every recomputed shape.

A wrong token-axis guess would show up here as a shape error or a mismatch, before any real
data runs; the caller then falls back instead of producing a wrong answer.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.fx as fx
from torch.fx.passes.fake_tensor_prop import FakeTensorProp

from ..graph_inputs import InputMeta, fake_inputs, fake_mode
from .rewrite_partial import EXPECTED_SHAPE, RewriteError


def validate_variant(gm: fx.GraphModule, inputs: Sequence[InputMeta]) -> None:
    mode = fake_mode()
    fakes = fake_inputs(inputs, mode)
    try:
        FakeTensorProp(gm, mode).propagate_dont_convert_inputs(*fakes)
    except Exception as error:  # noqa: BLE001  any failure means the rewrite is unsafe
        raise RewriteError(f"rewritten graph does not type-check: {type(error).__name__}: {error}") from error
    for node in gm.graph.nodes:
        expected = node.meta.get(EXPECTED_SHAPE)
        value = node.meta.get("val")
        if expected is not None and isinstance(value, torch.Tensor) and tuple(value.shape) != expected:
            raise RewriteError(f"{node.name} has shape {tuple(value.shape)}, expected {expected}")
