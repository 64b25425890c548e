"""A model-agnostic partial-step oracle: ToCa's steps computed by interpreting the *original*
Dynamo graphs, with no rewrite and no token-axis analysis.

It is a ``torch.compile`` backend. Every graph Dynamo hands it runs through an FX interpreter;
at each region's cache point (found by toca-compile's detection, the one piece it shares) it

* on a full step keeps the value and records it as the region's cache;
* for a region reused whole (self- and joint attention, and the token-wise kinds the model
  source makes token-mixing) returns the cache;
* for a region refreshed per token takes the value computed for *all* tokens from the current
  inputs, the self-attention outputs inside the branch read from the last full step, and keeps
  the selected rows of it and the cached values elsewhere.

So a wrong token-axis analysis (a row written from the wrong token, a token-mixing operation
treated as token-wise) shows up as a difference from this oracle on any model. Which regions are
refreshed per token comes from the zoo's record of the model source, not from the implementation.
Selection uses the seeded random score plus staleness (``oracle.py``); steps are announced with
:meth:`GraphOracle.begin`, one model call per step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.fx as fx

from oracle import MIXING, oracle_schedule, refreshed_tokens, seeded_draw
from toca_compile.graph_inputs import describe_all
from toca_compile.passes.detect_regions import detect_regions

_ATTENTION = ("scaled_dot_product_attention", "_scaled_dot_product_attention")


@dataclass
class _RegionCache:
    cache: torch.Tensor
    stale: torch.Tensor
    inner: dict[str, torch.Tensor]      # self-attention outputs inside the branch, last full step


def _target_name(node: fx.Node) -> str:
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def _self_attention_outputs(region) -> list[fx.Node]:
    """Attention outputs inside the branch whose keys come from the branch itself (token-mixing);
    cross-attention (keys from the text) stays token-wise and is computed fresh."""
    outputs = []
    for node in region.branch:
        name = _target_name(node)
        if name in _ATTENTION:
            key = node.kwargs.get("key", node.args[1] if len(node.args) > 1 else None)
            if key in region.branch:
                outputs.append(node)
        elif name in ("softmax",) and node.op in ("call_function", "call_method"):
            for user in node.users:  # probs @ v: the first matmul that consumes the probabilities
                if _target_name(user) in ("matmul", "bmm", "__matmul__") and user in region.branch:
                    outputs.append(user)
    return outputs


class _Graph:
    def __init__(self, oracle: "GraphOracle", index: int, gm: fx.GraphModule, example_inputs: list) -> None:
        self.oracle, self.index, self.gm = oracle, index, gm
        inputs = describe_all(example_inputs)
        self.regions = detect_regions(gm, inputs).regions
        self.param_index = next((i for i, m in enumerate(inputs) if m.is_param), None)
        self.points = {r.cache_point: r for r in self.regions}
        self.inner = {}
        for region in self.regions:
            if not self.oracle.reused(region):
                for node in _self_attention_outputs(region):
                    self.inner[node] = region

    def __call__(self, *args: Any) -> Any:
        oracle = self.oracle
        owner = id(args[self.param_index]) if self.param_index is not None else None
        slot = (self.index, owner)
        occurrence = oracle.counts.get(slot, 0)
        oracle.counts[slot] = occurrence + 1
        key = (slot, occurrence)
        caches = oracle.caches.get(key)
        full = oracle.schedule.is_full(oracle.step) or caches is None
        if full:
            caches = oracle.caches[key] = {}
        offset = oracle.offset
        oracle.offset += len(self.regions)
        return _Interpreter(self, caches, full, offset).run(*args)


class _Interpreter(fx.Interpreter):
    def __init__(self, graph: _Graph, caches: dict[int, _RegionCache], full: bool, offset: int) -> None:
        super().__init__(graph.gm, garbage_collect_values=True)
        self.graph_, self.caches, self.full, self.offset = graph, caches, full, offset
        self.recorded: dict[fx.Node, torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        graph = self.graph_
        region = graph.inner.get(n)
        if region is not None and not self.full:
            return self.caches[region.index].inner[n.name]
        value = super().run_node(n)
        if region is not None:
            self.recorded[n] = value
        region = graph.points.get(n)
        if region is None:
            return value
        if self.full:
            inner = {node.name: self.recorded[node] for node, r in graph.inner.items() if r is region}
            stale = torch.zeros(region.batch, region.tokens)
            self.caches[region.index] = _RegionCache(value.clone(), stale, inner)
            return value
        return self._partial(region, value)

    def _partial(self, region, value: torch.Tensor) -> torch.Tensor:
        oracle, state = self.graph_.oracle, self.caches[region.index]
        if oracle.reused(region):
            return state.cache
        batch, tokens = region.batch, region.tokens
        axes = (region.batch_axis, region.token_axis)  # the stream's layout, as detection found it
        assert (value.shape[axes[0]], value.shape[axes[1]]) == (batch, tokens), f"{region.label}: {tuple(value.shape)}"
        ratio = oracle.schedule.ratio(oracle.step, region.kind, region.block, oracle.num_blocks(self.graph_))
        k = refreshed_tokens(ratio, tokens)
        if k == 0:
            return state.cache
        config = oracle.config
        score = seeded_draw(config.seed, oracle.step, self.offset + region.index, batch, tokens)
        score = score + state.stale * (config.staleness_weight / tokens)
        idx = score.topk(k, dim=1).indices
        cache, stale = state.cache.clone(), state.stale + 1
        for b in range(batch):
            rows = (b, idx[b]) if axes == (0, 1) else (idx[b], b)
            cache[rows] = value[rows]
            stale[b, idx[b]] = 0.0
        state.cache, state.stale = cache, stale
        return cache


class GraphOracle:
    """The backend; ``begin(step, new_generation)`` before each model call."""

    def __init__(self, config, reused: Callable[[str, str], bool] = lambda kind, label: kind in MIXING) -> None:
        assert config.score == "random" and config.spatial_bonus == 0 and config.mode == "toca"
        self.config = config
        self.schedule = oracle_schedule(config)
        self.reused_by_source = reused
        self.graphs: list[_Graph] = []
        self.caches: dict[tuple, dict[int, _RegionCache]] = {}
        self.step, self.offset = 0, 0
        self.counts: dict[tuple, int] = {}

    def backend(self, gm: fx.GraphModule, example_inputs: list):
        graph = _Graph(self, len(self.graphs), gm, example_inputs)
        self.graphs.append(graph)
        return graph

    def begin(self, step: int, new_generation: bool = False) -> None:
        if new_generation:
            self.caches.clear()
        self.step, self.offset, self.counts = step, 0, {}

    def reused(self, region) -> bool:
        """Reused whole on partial steps, as the model source says (kind, region label)."""
        return self.reused_by_source(region.kind, region.label)

    def num_blocks(self, graph: _Graph) -> int:
        return 1 + max((r.block for r in graph.regions), default=-1)

    def region_caches(self, graph: int = 0) -> dict[int, torch.Tensor]:
        """The caches of one graph's first call position (region index -> cache)."""
        key = next(k for k in self.caches if k[0][0] == graph and k[1] == 0)
        return {index: state.cache for index, state in self.caches[key].items()}
