"""Full computation of a region: the original nodes plus writes that refill its caches."""
from __future__ import annotations

import math
import operator

import torch

import torch.fx as fx

from ..config import ToCaConfig
from ..ops import arg, tensor_meta
from ..kernels.scores import attention_received, cross_entropy, kv_norm, received_from_map

from ..regions import RegionPlan
from ..kernels.rows import clear_staleness, fill_cache, taylor_update
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
    if not plan.partial or (index, "stale") not in state:  # no selection state (TaylorSeer): no score either
        return
    with graph.inserting_after(mapping[plan.region.join]):
        clear = graph.call_function(clear_staleness, (state[(index, "stale")],))
    clear.meta[EFFECT] = True
    source = plan.score
    if source is None or source.kind == "random" or not with_score:
        return
    with graph.inserting_before(mapping[plan.region.cache_point]):
        if source.kind == "kvnorm":
            score = graph.call_function(kv_norm, (mapping[source.value], source.offset, source.span))
        else:
            score = _shared_attention_score(graph, source, mapping, config) if source.span is None else None
            if score is None:
                score = graph.call_function(attention_received, (mapping[source.query], mapping[source.key],
                                                                 source.scale, config.score_queries,
                                                                 source.offset, source.span))
            if source.cross_query is not None:
                entropy = graph.call_function(cross_entropy, (mapping[source.cross_query], mapping[source.cross_key],
                                                              source.cross_scale, config.cfg_shared))
                weighted = graph.call_function(operator.mul, (entropy, config.entropy_weight))
                score = graph.call_function(operator.add, (score, weighted))
        write = graph.call_function(fill_cache, (state[(index, "base")], score))
    write.meta[EFFECT] = True


_SHARED_SCORE = "toca_shared_score"


def _shared_attention_score(graph: fx.Graph, source, mapping: dict[fx.Node, fx.Node],
                            config: ToCaConfig) -> fx.Node | None:
    """s1 computed together with the self-attention it comes from, when the score is exact.

    With every query row scored (``score_queries >= N``) the score needs the whole attention
    map; the attention is then computed from that map, ``softmax(q kᵀ·scale) v``, and the score
    reads it (:func:`received_from_map`), instead of a fused attention kernel computing the map a
    second time (on CPU that halves the attention work of a full step at small token counts).
    Only for a plain float32 SDPA (no mask, dropout, causal mask or grouped heads), so the
    attention output stays what SDPA computes up to rounding. ``None``: compute the score on
    its own.
    """
    anchor = source.attention
    if anchor is None or anchor not in mapping:
        return None
    sdpa = mapping[anchor]
    shared = sdpa.meta.get(_SHARED_SCORE)
    if shared is not None:  # another region of the block scores from the same attention
        return shared
    q, k, v = source.query, source.key, source.value
    metas = [tensor_meta(n) for n in (q, k, v)]
    if any(m is None or m.dim() != 4 or m.dtype != torch.float32 for m in metas):
        return None
    if metas[0].shape[-2] > config.score_queries or metas[0].shape[-2] != metas[1].shape[-2]:
        return None  # sampled estimate: the map is never materialised whole
    if metas[0].shape[1] != metas[1].shape[1] or metas[1].shape[1] != metas[2].shape[1]:
        return None
    if (arg(anchor, 3, "attn_mask") is not None or arg(anchor, 4, "dropout_p", 0.0) != 0.0
            or arg(anchor, 5, "is_causal", False) is not False or arg(anchor, 7, "enable_gqa", False) is not False):
        return None
    scale = arg(anchor, 6, "scale")
    if scale is not None and not isinstance(scale, (int, float)):
        return None
    if len(anchor.args) > 8 or set(anchor.kwargs) - {"attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa"}:
        return None
    scale = scale if scale is not None else 1.0 / math.sqrt(metas[0].shape[-1])
    kept = {key: val for key, val in sdpa.meta.items() if key in ("nn_module_stack", "stack_trace", "source_fn_stack")}

    def call(target, *args) -> fx.Node:  # attention work keeps the attention's module (FLOP breakdowns)
        node = graph.call_function(target, args)
        node.meta.update(kept)
        return node

    with graph.inserting_before(sdpa):
        # the scale goes on q (N x D values) rather than on the N x N logits: Inductor's softmax
        # kernel then has no scaled input to guard for non-finite values, one pass fewer
        logits = call(torch.matmul, call(operator.mul, mapping[q], scale), call(torch.transpose, mapping[k], -2, -1))
        # softmax with its normalisation moved after the product with v (N x D divisions, not
        # N x N): the N x N probabilities are then never stored, only read by the score
        weights = call(torch.exp, call(operator.sub, logits, call(torch.amax, logits, -1, True)))
        total = call(torch.sum, weights, -1, True)
        out = call(operator.truediv, call(torch.matmul, weights, mapping[v]), total)
        score = graph.call_function(received_from_map, (call(operator.truediv, weights, total),))
    if "example_value" in sdpa.meta:
        out.meta["example_value"] = sdpa.meta["example_value"]
    sdpa.replace_all_uses_with(out)
    for key, val in mapping.items():  # later lookups of the attention find the replacement
        if val is sdpa:
            mapping[key] = out
    out.meta[_SHARED_SCORE] = score
    return score
