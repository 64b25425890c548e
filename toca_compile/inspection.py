"""``toca_compile.inspect(model, ...)``: what the analysis passes find in a model, without caching.

(The module is not named ``inspect``: the package exports the function under that name.)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx as fx

from .config import ToCaConfig
from .graph_inputs import describe_all
from .passes.pipeline import analyze
from .regions import Region, RegionPlan
from .stats import format_table


@dataclass
class GraphReport:
    graph: int
    plans: tuple[RegionPlan, ...]
    timestep: str | None
    reason: str = ""          # why this graph would run uncached
    calls: int = 0            # calls in one model call (a graph after a break can serve every block)

    @property
    def regions(self) -> list[Region]:
        return [p.region for p in self.plans]


@dataclass
class InspectReport:
    graphs: list[GraphReport] = field(default_factory=list)

    @property
    def regions(self) -> list[Region]:
        return [r for g in self.graphs for r in g.regions]

    def kinds(self) -> dict[str, int]:
        """Regions per kind in one model call (a graph called for several blocks counts each)."""
        counts: dict[str, int] = {}
        for graph in self.graphs:
            for region in graph.regions:
                counts[region.kind] = counts.get(region.kind, 0) + max(graph.calls, 1)
        return counts

    @property
    def num_blocks(self) -> int:
        return sum(1 + max((r.block for r in g.regions), default=-1) for g in self.graphs)

    def __str__(self) -> str:
        lines = []
        for g in self.graphs:
            lines.append(f"graph {g.graph}: {len(g.regions)} regions, timestep input: {g.timestep or 'none found'}"
                         + (f", called {g.calls} times per model call" if g.calls > 1 else "")
                         + (f"; uncached: {g.reason}" if g.reason else ""))
            if not g.plans:
                continue
            rows = [("#", "block", "kind", "region", "tokens", "partial step", "fork -> join", "gate")]
            for p in g.plans:
                r = p.region
                mode = (f"recompute {len(p.recompute)} ops on rows" if p.partial
                        else f"reuse cache ({r.note or 'not token-wise'})" + p.reprojection_note)
                rows.append((str(r.index), str(r.block), r.kind, r.label, str(r.tokens), mode,
                             f"{r.fork.name} -> {r.join.name}", r.gate.name if r.gate is not None else "-"))
            lines.append(format_table(rows))
        return "\n".join(lines)


def inspect(model: torch.nn.Module, *args, **kwargs) -> InspectReport:
    """Trace ``model(*args, **kwargs)`` once and report the regions found in every graph."""
    report = InspectReport()
    config = ToCaConfig(compiler="eager")

    def record(gm: fx.GraphModule, example_inputs: list):
        plans: tuple[RegionPlan, ...] = ()
        timestep = None
        try:
            analysis = analyze(gm, describe_all(example_inputs), config, f"inspect{len(report.graphs)}")
            reason, plans = analysis.detection.reason, analysis.plans
            timestep = analysis.detection.timestep.name if analysis.detection.timestep is not None else None
        except Exception as error:  # noqa: BLE001
            reason = f"analysis failed ({type(error).__name__}: {error})"
        graph = GraphReport(len(report.graphs), plans, timestep, reason)
        report.graphs.append(graph)

        def run(*args):
            graph.calls += 1
            return gm.forward(*args)

        return run

    compiled = torch.compile(model, backend=record, dynamic=False)
    with torch.no_grad():
        compiled(*args, **kwargs)
    return report
