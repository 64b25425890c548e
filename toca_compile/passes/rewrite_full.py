"""Full computation of a region: the original nodes plus writes that refill its caches."""
from __future__ import annotations

import operator

import torch.fx as fx

from ..config import ToCaConfig
from ..token_scores import attention_received, cross_entropy, kv_norm

from ..regions import RegionPlan
from ..row_ops import clear_staleness, fill_cache, taylor_update
from .dead_code import EFFECT
from .state_inputs import GLOBAL


def fill_region(graph: fx.Graph, plan: RegionPlan, mapping: dict[fx.Node, fx.Node], state: dict,
                config: ToCaConfig, with_score: bool) -> None:
    """Keep the region as it is; copy each cached value into its cache, zero the counters and,
    when its block's attention also ran (``with_score``), store the base token score."""
    index = plan.region.index
    for i, slot in enumerate(plan.slots):
        value = mapping[slot.node]
        with graph.inserting_after(value):
            if i == 0 and (index, "taylor1") in state:  # TaylorSeer: differences, then the value
                write = graph.call_function(taylor_update, (
                    state[(index, "slot0")], state[(index, "taylor1")], state.get((index, "taylor2")), value,
                    state[(GLOBAL, "taylor_inv1")], state[(GLOBAL, "taylor_inv2")]))
            else:
                write = graph.call_function(fill_cache, (state[(index, f"slot{i}")], value))
        write.meta[EFFECT] = True
    if not plan.partial:
        return
    with graph.inserting_after(mapping[plan.region.join]):
        clear = graph.call_function(clear_staleness, (state[(index, "stale")],))
    clear.meta[EFFECT] = True
    source = plan.score
    if source is None or source.kind == "random" or not with_score:
        return
    with graph.inserting_before(mapping[plan.region.cache_point]):
        if source.kind == "kvnorm":
            score = graph.call_function(kv_norm, (mapping[source.value],))
        else:
            score = graph.call_function(attention_received, (mapping[source.query], mapping[source.key],
                                                             source.scale, config.score_queries))
            if source.cross_query is not None:
                entropy = graph.call_function(cross_entropy, (mapping[source.cross_query], mapping[source.cross_key],
                                                              source.cross_scale, config.cfg_shared))
                weighted = graph.call_function(operator.mul, (entropy, config.entropy_weight))
                score = graph.call_function(operator.add, (score, weighted))
        write = graph.call_function(fill_cache, (state[(index, "base")], score))
    write.meta[EFFECT] = True
