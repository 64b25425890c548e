"""Full computation of a region: the original nodes plus writes that refill its caches."""
from __future__ import annotations

import torch.fx as fx

from ..regions import RegionPlan
from ..row_ops import clear_staleness, fill_cache
from .dead_code import EFFECT


def fill_region(graph: fx.Graph, plan: RegionPlan, mapping: dict[fx.Node, fx.Node], state: dict) -> None:
    """Keep the region as it is; copy each cached value into its cache, zero the counters."""
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
