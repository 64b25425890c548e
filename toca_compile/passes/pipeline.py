"""The pass pipeline, in one place and in order.

Analysis passes share one signature, ``(ctx) -> None``, and fill in the context:

1. ``detect``  — find the residual regions of every block (detect_regions.py)
2. ``plan``    — per region: cached values, rows to recompute (plan_caches.py, token_axes.py)
3. ``state``   — the cache/counter tensors the variants take as inputs (state_inputs.py)

Variant passes then turn the Dynamo graph into one executable graph per schedule decision:

4. ``rewrite`` — per region: compute and refill (rewrite_full.py), reuse the cache, or
   recompute selected rows (rewrite_partial.py); then dead-code elimination that keeps
   every write (dead_code.py)
5. ``validate`` — fake-tensor run that checks every recomputed shape (validate.py)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.fx as fx

from ..config import ToCaConfig
from ..regions import DetectionResult, RegionPlan
from .detect_regions import detect_regions
from .plan_caches import plan_caches
from .rewrite_partial import FULL, build_variant_graph
from .state_inputs import StateSpec, state_specs
from .validate import validate_variant


@dataclass
class PassContext:
    gm: fx.GraphModule
    example_inputs: list
    config: ToCaConfig
    detection: DetectionResult = field(default_factory=DetectionResult)
    plans: list[RegionPlan] = field(default_factory=list)
    specs: list[StateSpec] = field(default_factory=list)


def detect(ctx: PassContext) -> None:
    ctx.detection = detect_regions(ctx.gm, ctx.example_inputs)


def plan(ctx: PassContext) -> None:
    ctx.plans = plan_caches(ctx.gm, ctx.detection)


def state(ctx: PassContext) -> None:
    ctx.specs = state_specs(ctx.plans)


ANALYSIS_PASSES: list[Callable[[PassContext], None]] = [detect, plan, state]


def analyze(ctx: PassContext) -> PassContext:
    for analysis in ANALYSIS_PASSES:
        analysis(ctx)
    return ctx


def build_variant(ctx: PassContext, decisions: dict[int, int], state_examples: list) -> fx.GraphModule:
    """The graph for one schedule decision: per region ``FULL``, ``0`` (reuse) or ``k`` rows."""
    gm = build_variant_graph(ctx.gm, ctx.plans, ctx.specs, decisions, ctx.config.staleness_weight)
    validate_variant(gm, list(ctx.example_inputs) + list(state_examples))
    return gm


__all__ = ["FULL", "PassContext", "analyze", "build_variant"]
