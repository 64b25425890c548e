"""The torch.compile backend: analyse each Dynamo graph, hand back a cache-aware callable."""
from __future__ import annotations

import warnings
from typing import Callable

import torch
import torch.fx as fx

from .compilers import compile_graph
from .config import ToCaConfig
from .flops import run_counted
from .passes.pipeline import PassContext, analyze
from .runtime import CachedGraph, StepClock, ToCaWarning
from .schedule import Schedule
from .stats import RegionStats, Stats


class ToCa:
    """Token-wise caching for every graph compiled with ``torch.compile(m, backend=toca.backend)``.

    One ``ToCa`` holds the graphs of one model (graph breaks give several; graphs without a
    timestep input follow the step clock of the one that reads it), the per-branch caches of each graph, and the statistics.
    """

    def __init__(self, config: ToCaConfig | None = None, schedule: Schedule | None = None) -> None:
        self.config = config or ToCaConfig()
        self.schedule: Schedule = schedule or self.config.schedule()
        self.current_clock: StepClock | None = None  # the clock of the graph that read a timestep last
        self.graphs: list[CachedGraph] = []
        self.stats_ = Stats()
        self._region_stats: dict[int, list[RegionStats]] = {}
        self._warned: set[str] = set()
        self.fallbacks: list[str] = []
        self.flop_sink: list[int] | None = None  # open while toca_compile.flops.counting() runs

    # -- the backend -----------------------------------------------------------------
    def backend(self, gm: fx.GraphModule, example_inputs: list) -> Callable:
        graph_id = len(self.graphs) + len(self.fallbacks)
        reason = _unsupported(gm, example_inputs)
        ctx = PassContext(gm, list(example_inputs), self.config)
        if not reason:
            try:
                analyze(ctx)
                reason = ctx.detection.reason
            except Exception as error:  # noqa: BLE001
                reason = f"analysis failed ({type(error).__name__}: {error})"
        if reason:
            self.fallbacks.append(reason)
            self.warn(f"graph {graph_id}: nothing cached, running it with plain "
                      f"{'Inductor' if self.config.compiler == 'inductor' else 'eager'}: {reason}")
            plain = compile_graph(gm, list(example_inputs), self.config.compiler)
            return lambda *args: run_counted(self.flop_sink, plain, *args)
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        timestep = ctx.detection.timestep
        cached = CachedGraph(self, ctx, graph_id, placeholders.index(timestep) if timestep is not None else None)
        self.graphs.append(cached)
        self._region_stats[id(cached)] = [
            RegionStats(graph_id, p.region.block, p.region.kind, p.region.label, p.region.tokens,
                        "rows" if p.partial else "reuse") for p in ctx.plans]
        return cached

    __call__ = backend

    # -- user controls ---------------------------------------------------------------
    def reset(self) -> None:
        """Start a new generation on the next call (also detected when the timestep goes up)."""
        for cached in self.graphs:
            cached.clock.reset()

    def stats(self) -> Stats:
        stats = Stats(**{k: v for k, v in vars(self.stats_).items() if k != "regions"})
        stats.regions = [r for g in self.graphs for r in self._region_stats[id(g)]]
        stats.cache_bytes = sum(t.numel() * t.element_size() for g in self.graphs
                                for state in g.states.values() for t in state.tensors)
        return stats

    def region_states(self, graph: int = 0, branch: int = 0) -> dict[str, dict[str, torch.Tensor]]:
        """The live state tensors of one graph and CFG branch, by region label (for debugging)."""
        cached = self.graphs[graph]
        state = cached.states[branch]
        out: dict[str, dict[str, torch.Tensor]] = {}
        for plan in cached.ctx.plans:
            keys = {k[1]: t for k, t in state.by_key.items() if k[0] == plan.region.index}
            out[f"{plan.region.index}:{plan.region.label}"] = keys
        return out

    # -- used by the runtime ---------------------------------------------------------
    def on_tick(self, clock: StepClock, new_step: bool) -> None:
        if new_step:
            self.stats_.steps += 1
            if clock.step == 0:
                self.stats_.generations += 1

    def region_stats(self, cached: CachedGraph) -> list[RegionStats]:
        return self._region_stats[id(cached)]

    def warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(f"toca-compile: {message}", ToCaWarning, stacklevel=3)


def _unsupported(gm: fx.GraphModule, example_inputs: list) -> str:
    for value in example_inputs:
        if isinstance(value, torch.SymInt) or (
                isinstance(value, torch.Tensor) and any(not isinstance(s, int) for s in value.shape)):
            return "the graph has dynamic shapes; compile with torch.compile(..., dynamic=False)"
    for node in gm.graph.nodes:
        value = node.meta.get("example_value")
        if isinstance(value, torch.Tensor) and any(not isinstance(s, int) for s in value.shape):
            return f"data-dependent shapes inside the graph (at {node.name}); such graphs are left uncached"
    if torch.is_grad_enabled() and any(isinstance(v, torch.Tensor) and v.requires_grad for v in example_inputs):
        return "gradients are enabled; caching is for inference (run under torch.no_grad())"
    return ""


_default: ToCa | None = None


def default_toca() -> ToCa:
    """The ``ToCa`` behind :func:`toca_backend` (default settings)."""
    global _default
    if _default is None:
        _default = ToCa()
    return _default


def toca_backend(gm: fx.GraphModule, example_inputs: list) -> Callable:
    """``torch.compile(model, backend=toca_backend)`` with default settings."""
    return default_toca().backend(gm, example_inputs)
