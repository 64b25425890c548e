"""The pass pipeline, in one place and in order.

Analysis (once per graph and input shape), ``Analysis -> Analysis``:

1. ``detect``  — the residual regions of every block (detect_regions.py)
2. ``plan``    — per region: cached values, rows a partial step recomputes (plan_caches.py, token_axes.py)
3. ``scores``  — per token-wise region, the attention its token score comes from (score_sources.py)
4. ``constants`` — per cross-attention region, the text keys/values computed only from
   conditioning inputs and parameters: constant within a generation (constant_inputs.py)
5. ``state``   — the cache/counter tensors the variants take as inputs (state_inputs.py)

Variant (once per distinct tuple of region decisions), ``Variant -> Variant``:

6. ``rewrite``   — per region: compute and refill (rewrite_full.py), reuse the cache, forecast,
   or recompute selected rows (rewrite_partial.py); the constant values computed, computed and
   stored, or read from their caches (``Variant.constants``)
7. ``select_together`` — the regions' top-k token selections of one shape made by one top-k
   at the top of the graph (select_together.py)
8. ``dead_code`` — FX dead-code elimination that keeps every cache write (dead_code.py)
9. ``validate``  — a fake-tensor run that checks every recomputed shape (validate.py)

Each list can be printed and extended (``ANALYSIS.passes.insert(...)``); the managers time,
log and (with ``TOCA_COMPILE_DUMP=dir``) dump every pass by name.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch.fx as fx

from ..config import ToCaConfig
from ..decisions import Decision
from ..graph_inputs import InputMeta
from ..regions import DetectionResult, RegionPlan
from .constant_inputs import COMPUTE, ConstantValue, describe_constants, find_constants
from .dead_code import remove_dead_code
from .detect_regions import detect_regions
from .manager import Pass, PassManager
from .plan_caches import plan_caches
from .rewrite_partial import rewrite_variant
from .score_sources import find_score_sources
from .select_together import select_together
from .state_inputs import StateSpec, state_specs
from .validate import validate_variant


@dataclass(frozen=True)
class Analysis:
    """What the analysis passes know about one Dynamo graph at one input shape."""

    gm: fx.GraphModule
    inputs: tuple[InputMeta, ...]        # metadata of the graph's inputs (never the user's tensors)
    config: ToCaConfig
    detection: DetectionResult = field(default_factory=DetectionResult)
    plans: tuple[RegionPlan, ...] = ()
    specs: tuple[StateSpec, ...] = ()
    stream: fx.Node | None = None        # residual stream after the last region (DuCa reuses it)
    constants: tuple[ConstantValue, ...] = ()  # values constant within a generation (text K/V)

    @property
    def constant_inputs(self) -> tuple[int, ...]:
        """Positions of the graph inputs the constant values are computed from (the runtime
        checks that they are the same tensors, unchanged, before it reads the caches)."""
        return tuple(sorted({i for value in self.constants for i in value.inputs}))

    @property
    def constant_readers(self) -> frozenset[int]:
        """Regions whose branch reads a constant value."""
        return frozenset(r for value in self.constants for r in value.regions)


@dataclass(frozen=True)
class Variant:
    """One executable graph for one decision per region; ``gm`` is None until ``rewrite``."""

    analysis: Analysis
    decisions: Mapping[int, Decision]
    gm: fx.GraphModule | None = None
    constants: str = COMPUTE             # the constant values: "compute", "fill" or "read"


# -- analysis passes ---------------------------------------------------------------------
def detect(a: Analysis) -> Analysis:
    return replace(a, detection=detect_regions(a.gm, a.inputs))


def plan(a: Analysis) -> Analysis:
    return replace(a, plans=plan_caches(a.gm, a.detection,
                                        reproject=a.config.attention_projection == "recompute"))


def scores(a: Analysis) -> Analysis:
    return replace(a, plans=find_score_sources(a.gm, a.detection, a.plans, a.config))


def constants(a: Analysis) -> Analysis:
    if not a.config.constant_kv or not a.plans:
        return replace(a, constants=())
    return replace(a, constants=find_constants(a.gm, a.inputs, a.detection))


def state(a: Analysis) -> Analysis:
    order = {node: i for i, node in enumerate(a.gm.graph.nodes)}
    joins = [r.join for r in a.detection.regions]
    stream = max(joins, key=order.__getitem__) if joins else None
    return replace(a, stream=stream, specs=tuple(state_specs(a.plans, a.config, stream, a.constants)))


def _describe_detection(a: Analysis) -> str:
    lines = [f"timestep input: {a.detection.timestep.name if a.detection.timestep is not None else 'none found'}"]
    lines += [f"region {r.index}: block {r.block} {r.kind} {r.label} tokens={r.tokens} batch={r.batch} "
              f"fork={r.fork.name} cache_point={r.cache_point.name} join={r.join.name}" for r in a.detection.regions]
    if a.detection.reason:
        lines.append(f"uncached: {a.detection.reason}")
    return "\n".join(lines) + "\n\n" + a.gm.print_readable(print_output=False)


def _describe_plans(a: Analysis) -> str:
    return "\n".join(
        f"region {p.region.index} {p.region.label}: "
        + (f"rows: recompute {len(p.recompute)} nodes, {len(p.slots)} cached values" if p.partial
           else f"reuse whole ({p.region.note})" + p.reprojection_note)
        + (f"; score {p.score.kind} from regions {list(p.score.owners)}" if p.score is not None else "")
        for p in a.plans)


def _describe_constants(a: Analysis) -> str:
    return describe_constants(a.constants)


def _describe_state(a: Analysis) -> str:
    return "\n".join(f"{spec.key}: {tuple(spec.shape)} {spec.dtype}" for spec in a.specs)


ANALYSIS: PassManager[Analysis] = PassManager("analysis", [
    Pass("detect", detect, _describe_detection),
    Pass("plan", plan, _describe_plans),
    Pass("scores", scores, _describe_plans),
    Pass("constants", constants, _describe_constants),
    Pass("state", state, _describe_state),
])


# -- variant passes ----------------------------------------------------------------------
def rewrite(v: Variant) -> Variant:
    a = v.analysis
    return replace(v, gm=rewrite_variant(a.gm, a.plans, a.specs, v.decisions, a.config, a.stream,
                                         a.constants, v.constants))


def selections(v: Variant) -> Variant:
    assert v.gm is not None, "select_together runs after rewrite"
    select_together(v.gm.graph)
    return v


def dead_code(v: Variant) -> Variant:
    assert v.gm is not None, "dead_code runs after rewrite"
    remove_dead_code(v.gm)  # the variant's own copy of the graph
    return v


def validate(v: Variant) -> Variant:
    assert v.gm is not None, "validate runs after rewrite"
    validate_variant(v.gm, list(v.analysis.inputs) + [spec.meta for spec in v.analysis.specs])
    return v


def _describe_variant(v: Variant) -> str:
    decisions = " ".join(f"{i}:{d}" for i, d in sorted(v.decisions.items()))
    constants = f"\nconstants: {v.constants} ({len(v.analysis.constants)} values)" if v.analysis.constants else ""
    return f"decisions: {decisions}{constants}\n\n" + (v.gm.print_readable(print_output=False) if v.gm is not None else "")


VARIANT: PassManager[Variant] = PassManager("variant", [
    Pass("rewrite", rewrite, _describe_variant),
    Pass("select_together", selections, _describe_variant),
    Pass("dead_code", dead_code, _describe_variant),
    Pass("validate", validate, _describe_variant),
])


# -- entry points ------------------------------------------------------------------------
def analyze(gm: fx.GraphModule, inputs: list[InputMeta], config: ToCaConfig, label: str = "graph") -> Analysis:
    """Every analysis pass over ``gm`` (a Dynamo graph with static shapes)."""
    return ANALYSIS.run(Analysis(gm, tuple(inputs), config), label)


def build_variant(analysis: Analysis, decisions: Mapping[int, Decision], label: str = "graph",
                  constants: str = COMPUTE) -> fx.GraphModule:
    """The validated graph for one decision per region (missing regions compute fully);
    ``constants``: what it does with the constant values (``"compute"``, ``"fill"``, ``"read"``)."""
    variant = VARIANT.run(Variant(analysis, dict(decisions), constants=constants), label)
    assert variant.gm is not None
    return variant.gm


__all__ = ["ANALYSIS", "VARIANT", "Analysis", "Variant", "analyze", "build_variant"]
