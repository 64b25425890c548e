"""The tensors a rewritten graph reads and writes across calls, and their placeholders.

Caches, staleness counters and score noise are graph *inputs* owned by the runtime and mutated
in place by the compiled code, so one compiled variant serves every CFG branch (each branch
passes its own tensors) and no Dynamo guard ever sees them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from ..config import ToCaConfig
from ..graph_inputs import InputMeta
from ..ops import tensor_meta
from ..regions import RegionPlan


@dataclass(frozen=True)
class StateSpec:
    key: tuple[int, str]          # (region index or GLOBAL, "slot0" | "slot1" ... | "stale" | "base" | ...)
    shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device

    def allocate(self) -> torch.Tensor:
        return torch.zeros(self.shape, dtype=self.dtype, device=self.device)

    @property
    def meta(self) -> InputMeta:
        """The state tensor as a graph input (for fake-tensor validation)."""
        stride = tuple(torch.empty(self.shape, device="meta").stride())
        return InputMeta(True, shape=self.shape, stride=stride, dtype=self.dtype, device=self.device)


GLOBAL = -1  # region index of state that belongs to the whole graph


def state_specs(plans: list[RegionPlan], config: ToCaConfig, stream: fx.Node | None,
                constants: tuple = ()) -> list[StateSpec]:
    specs: list[StateSpec] = []
    for plan in plans:
        region = plan.region
        for i, slot in enumerate(plan.slots):
            meta = tensor_meta(slot.node)
            specs.append(StateSpec((region.index, f"slot{i}"), slot.shape, slot.dtype, meta.device))  # type: ignore[arg-type, union-attr]
        if config.mode == "taylorseer":
            head, meta = plan.slots[0], tensor_meta(plan.slots[0].node)
            for order in range(1, config.taylor_order + 1):
                specs.append(StateSpec((region.index, f"taylor{order}"), head.shape, head.dtype, meta.device))  # type: ignore[arg-type, union-attr]
        if plan.partial and config.selects_rows:
            device = tensor_meta(region.fork).device  # type: ignore[union-attr]
            for name in ("stale", "base"):
                specs.append(StateSpec((region.index, name), (region.batch, region.tokens), torch.float32, device))
    if plans and config.mode == "taylorseer":
        device = tensor_meta(plans[0].region.fork).device  # type: ignore[union-attr]
        for name in ("taylor_k", "taylor_inv1", "taylor_inv2"):
            specs.append(StateSpec((GLOBAL, name), (), torch.float32, device))
    if stream is not None and config.mode == "duca":
        meta = tensor_meta(stream)
        specs.append(StateSpec((GLOBAL, "stream"), tuple(meta.shape), meta.dtype, meta.device))  # type: ignore[union-attr, arg-type]
    for i, value in enumerate(constants):  # ConstantValue (constant_inputs.py): one cache each
        specs.append(StateSpec((GLOBAL, f"const{i}"), value.shape, value.dtype, value.device))
    return specs


def copy_graph_module(gm: fx.GraphModule) -> tuple[fx.GraphModule, dict[fx.Node, fx.Node]]:
    """A copy of a Dynamo graph module that Inductor still recognises as coming from Dynamo."""
    graph = fx.Graph()
    mapping: dict[fx.Node, fx.Node] = {}
    output = graph.graph_copy(gm.graph, mapping)
    graph.output(output)
    new = fx.GraphModule(gm, graph)
    new.meta = dict(gm.meta)
    if hasattr(gm, "_param_name_to_source"):
        new._param_name_to_source = gm._param_name_to_source  # private Dynamo API: only here
    for old, copied in mapping.items():
        if old.op == "placeholder" and hasattr(old, "_dynamo_source"):
            copied._dynamo_source = old._dynamo_source  # type: ignore[attr-defined]
    return new, mapping


def add_state_placeholders(gm: fx.GraphModule, specs: list[StateSpec]) -> dict[tuple[int, str], fx.Node]:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    nodes: dict[tuple[int, str], fx.Node] = {}
    anchor = placeholders[-1]
    for spec in specs:
        with gm.graph.inserting_after(anchor):
            owner = "graph" if spec.key[0] == GLOBAL else f"r{spec.key[0]}"
            node = gm.graph.placeholder(f"toca_{owner}_{spec.key[1]}")
        node._dynamo_source = None  # type: ignore[attr-defined]  # not a user input
        node.meta["example_value"] = torch.empty(spec.shape, dtype=spec.dtype, device="meta")
        nodes[spec.key] = anchor = node
    return nodes
