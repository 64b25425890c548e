"""Full variant: the original graph plus writes that refill every cache and clear the counters."""
from __future__ import annotations

import torch.fx as fx

from ..regions import RegionPlan
from ..row_ops import clear_staleness, fill_cache
from .dead_code import EFFECT, remove_dead_code
from .state_inputs import StateSpec, add_state_placeholders, copy_graph_module


def build_full_variant(gm: fx.GraphModule, plans: list[RegionPlan], specs: list[StateSpec]) -> fx.GraphModule:
    new, mapping = copy_graph_module(gm)
    state = add_state_placeholders(new, specs)
    graph = new.graph
    for plan in plans:
        index = plan.region.index
        for i, slot in enumerate(plan.slots):
            value = mapping[slot.node]
            with graph.inserting_after(value):
                write = graph.call_function(fill_cache, (state[(index, f"slot{i}")], value))
            write.meta[EFFECT] = True
        if plan.partial:
            with graph.inserting_after(mapping[plan.region.join]):
                clear = graph.call_function(clear_staleness, (state[(index, "stale")],))
            clear.meta[EFFECT] = True
    remove_dead_code(new)
    return new
