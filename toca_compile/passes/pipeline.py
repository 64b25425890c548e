"""The pass pipeline, in one place and in order.

Analysis passes share one signature, ``(ctx) -> None``, and fill in the context:

1. ``detect``  — find the residual regions of every block (detect_regions.py)
2. ``plan``    — per region: cached values, rows to recompute (plan_caches.py, token_axes.py)
3. ``scores``  — per token-wise region, the attention its token score comes from (score_sources.py)
4. ``state``   — the cache/counter tensors the variants take as inputs (state_inputs.py)

Variant passes then turn the Dynamo graph into one executable graph per schedule decision:

5. ``rewrite`` — per region: compute and refill (rewrite_full.py), reuse the cache, or
   recompute selected rows (rewrite_partial.py); then dead-code elimination that keeps
   every write (dead_code.py)
6. ``validate`` — fake-tensor run that checks every recomputed shape (validate.py)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.fx as fx

from ..config import ToCaConfig
from ..graph_inputs import InputMeta
from ..regions import DetectionResult, RegionPlan
from .detect_regions import detect_regions
from .plan_caches import plan_caches
from .rewrite_partial import FORECAST, FULL, SKIP, build_variant_graph
from .score_sources import find_score_sources
from .state_inputs import StateSpec, state_specs
from .validate import validate_variant


@dataclass
class PassContext:
    gm: fx.GraphModule
    inputs: list[InputMeta]          # metadata of the graph's inputs (never the user's tensors)
    config: ToCaConfig
    detection: DetectionResult = field(default_factory=DetectionResult)
    plans: list[RegionPlan] = field(default_factory=list)
    specs: list[StateSpec] = field(default_factory=list)
    stream: fx.Node | None = None     # residual stream after the last region (DuCa reuses it)


def detect(ctx: PassContext) -> None:
    ctx.detection = detect_regions(ctx.gm, ctx.inputs)


def plan(ctx: PassContext) -> None:
    ctx.plans = plan_caches(ctx.gm, ctx.detection)


def scores(ctx: PassContext) -> None:
    find_score_sources(ctx.gm, ctx.detection, ctx.plans, ctx.config)


def state(ctx: PassContext) -> None:
    joins = [r.join for r in ctx.detection.regions]
    order = {node: i for i, node in enumerate(ctx.gm.graph.nodes)}
    ctx.stream = max(joins, key=order.__getitem__) if joins else None
    ctx.specs = state_specs(ctx.plans, ctx.config, ctx.stream)


ANALYSIS_PASSES: list[Callable[[PassContext], None]] = [detect, plan, scores, state]


def analyze(ctx: PassContext) -> PassContext:
    for analysis in ANALYSIS_PASSES:
        analysis(ctx)
    return ctx


def build_variant(ctx: PassContext, decisions: dict[int, int]) -> fx.GraphModule:
    """The graph for one schedule decision: per region ``FULL``, ``0`` (reuse) or ``k`` rows."""
    gm = build_variant_graph(ctx.gm, ctx.plans, ctx.specs, decisions, ctx.config, ctx.stream)
    validate_variant(gm, list(ctx.inputs) + [spec.meta for spec in ctx.specs])
    return gm


__all__ = ["FORECAST", "FULL", "SKIP", "PassContext", "analyze", "build_variant"]
