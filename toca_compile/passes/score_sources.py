"""Score-source pass: for each token-wise region, the attention values its score comes from.

ToCa scores a block's tokens with that block's self-attention (s1) and cross-attention (s2)
from the last full step; DuCa's kv-norm needs the self-attention values. They are looked up
among the regions of the same block; the token grid for the spatial bonus comes from the
patch embedding (a convolution whose output positions multiply to the token count).
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch.fx as fx

from ..config import ToCaConfig
from ..ops import arg, op_name, shape_of
from ..regions import DetectionResult, Region, RegionPlan, ScoreSource
from .graph_walk import GraphIndex

_SDPA = "scaled_dot_product_attention"


def find_score_sources(gm: fx.GraphModule, detection: DetectionResult, plans: tuple[RegionPlan, ...],
                       config: ToCaConfig) -> tuple[RegionPlan, ...]:
    """The plans, each token-wise one with the :class:`ScoreSource` its selection uses."""
    grids = _token_grids(gm)
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    index = GraphIndex(gm.graph)
    # Scores cost an attention-map estimate on every full step: skip them when no partial
    # step can select tokens (interval 1, ratio 0, FORA, TaylorSeer without forecast_refresh).
    selects = config.selects_rows and (config.mode == "taylorseer" or config.preset is not None
                                       or (config.interval > 1 and config.ratio > 0))
    by_block: dict[int, list[RegionPlan]] = {}
    for plan in plans:
        by_block.setdefault(plan.region.block, []).append(plan)
    return tuple(replace(plan, score=_source(plan, by_block, order, index, grids, config, selects)) if plan.partial else plan
                 for plan in plans)


def _source(plan: RegionPlan, by_block: dict[int, list[RegionPlan]], order: dict[fx.Node, int], index: GraphIndex,
            grids: dict[int, tuple[int, ...]], config: ToCaConfig, selects: bool) -> ScoreSource:
    region = plan.region
    random = ScoreSource(kind="random", grid=grids.get(region.tokens, ()))
    if config.score == "random" or not selects:
        return random
    # a score is computed where the region's cache is filled: its inputs must exist by then
    before = order[region.cache_point]
    attn = _self_attention(by_block[region.block], region.tokens, order, before)
    if attn is None:
        joint = _joint_attention(by_block[region.block], region, order, index, before)
        if joint is None:
            return random
        owner, node, offset = joint
        return replace(random, kind=config.score, owners=(owner,), query=arg(node, 0, "query"), key=arg(node, 1, "key"),
                       value=arg(node, 2, "value"), scale=arg(node, 6, "scale"), attention=node,
                       offset=offset, span=region.tokens)
    owner, node = attn
    source = replace(random, kind=config.score, owners=(owner,), query=arg(node, 0, "query"), key=arg(node, 1, "key"),
                     value=arg(node, 2, "value"), scale=arg(node, 6, "scale"), attention=node)
    cross = _cross_attention(by_block[region.block], region.tokens, order, before)
    if cross is not None and config.score == "attention" and config.entropy_weight > 0:
        owner2, node2 = cross
        source = replace(source, owners=(owner, owner2), cross_query=arg(node2, 0, "query"),
                         cross_key=arg(node2, 1, "key"), cross_scale=arg(node2, 6, "scale"))
    return source


def _heads_layout(*nodes) -> bool:
    shapes = [shape_of(n) for n in nodes]
    return all(s is not None and len(s) == 4 for s in shapes) and len({s[1] for s in shapes}) == 1  # type: ignore[index]


def _precedes(order: dict[fx.Node, int], before: int, *nodes: object) -> bool:
    return all(isinstance(n, fx.Node) and order[n] < before for n in nodes)


def _self_attention(plans: list[RegionPlan], tokens: int, order: dict[fx.Node, int],
                    before: int) -> tuple[int, fx.Node] | None:
    """An SDPA over exactly this stream's tokens (joint text+image attention has more keys)."""
    for plan in plans:
        if plan.region.kind not in ("attn", "parallel"):
            continue
        for anchor in plan.region.anchors:
            if op_name(anchor) != _SDPA or arg(anchor, 3, "attn_mask") is not None:
                continue
            q, k, v = arg(anchor, 0, "query"), arg(anchor, 1, "key"), arg(anchor, 2, "value")
            if (_heads_layout(q, k, v) and shape_of(q)[-2] == tokens and shape_of(k)[-2] == tokens  # type: ignore[index]
                    and _precedes(order, before, q, k, v)):
                return plan.region.index, anchor
    return None


def _joint_attention(plans: list[RegionPlan], region: Region, order: dict[fx.Node, int], index: GraphIndex,
                     before: int) -> tuple[int, fx.Node, int] | None:
    """A joint attention of the block over this stream's tokens and another stream's, with the
    offset of this stream's tokens among its keys: (owner region, SDPA, offset).

    The sequence is built by a ``cat`` of the two streams along the token axis (SD3 and FLUX
    concatenate q/k/v or the qkv projections; the order differs). The stream's part is the
    ``cat`` input computed from the stream of the joint-attention residual whose join feeds
    this region; anything else (masks, several candidate ``cat`` nodes, equal lengths that the graph
    cannot tell apart) is no source, and the region keeps the random score. A wrong guess here
    could only change which tokens are refreshed, never what a refreshed token computes."""
    for plan in plans:
        joint = plan.region
        # the joint-attention residual of this very stream: its join feeds this region's fork
        # (the other stream's join does not, although its fork does, through the attention)
        if joint.kind != "joint_attn" or joint.tokens != region.tokens or not index.reaches(joint.join, region.fork):
            continue
        for anchor in joint.anchors:
            if op_name(anchor) != _SDPA or arg(anchor, 3, "attn_mask") is not None:
                continue
            q, k, v = arg(anchor, 0, "query"), arg(anchor, 1, "key"), arg(anchor, 2, "value")
            if not (_heads_layout(q, k, v) and _precedes(order, before, q, k, v)):
                continue
            length = shape_of(k)[-2]  # type: ignore[index]
            if shape_of(q)[-2] != length or length <= region.tokens:  # type: ignore[index]
                continue
            offset = _stream_offset(index, joint.fork, k, length, region.tokens)
            if offset is not None:
                return joint.index, anchor, offset
    return None


def _stream_offset(index: GraphIndex, stream: fx.Node, key: fx.Node, length: int, tokens: int) -> int | None:
    """Where the ``tokens`` tokens computed from ``stream`` sit in the ``length``-long joint
    sequence ``key`` is built from: the one ``cat`` of two inputs along an axis of sizes
    summing to ``length``, exactly one of which is computed from ``stream``."""
    found = []
    for node in index.ancestors_after(key, stream):
        if op_name(node) != "cat":
            continue
        parts = arg(node, 0, "tensors")
        shape = shape_of(node)
        if not isinstance(parts, (list, tuple)) or len(parts) != 2 or shape is None:
            continue
        dim = arg(node, 1, "dim", 0) % len(shape)
        sizes = [shape_of(p)[dim] if isinstance(p, fx.Node) and shape_of(p) is not None else None for p in parts]  # type: ignore[index]
        if None in sizes or sum(sizes) != length or shape[dim] != length:  # type: ignore[arg-type]
            continue
        mine = [i for i, p in enumerate(parts) if index.reaches(stream, p)]
        if len(mine) == 1 and sizes[mine[0]] == tokens:
            found.append(sum(sizes[:mine[0]]))  # type: ignore[arg-type]
    return found[0] if len(set(found)) == 1 else None


def _cross_attention(plans: list[RegionPlan], tokens: int, order: dict[fx.Node, int],
                     before: int) -> tuple[int, fx.Node] | None:
    for plan in plans:
        if plan.region.kind != "cross_attn":
            continue
        for anchor in plan.region.anchors:
            if op_name(anchor) == _SDPA and arg(anchor, 3, "attn_mask") is None:
                q, k = arg(anchor, 0, "query"), arg(anchor, 1, "key")
                if _heads_layout(q, k) and shape_of(q)[-2] == tokens and _precedes(order, before, q, k):  # type: ignore[index]
                    return plan.region.index, anchor
    return None


def _token_grids(gm: fx.GraphModule) -> dict[int, tuple[int, ...]]:
    """Token count -> spatial grid of a patch-embedding convolution producing that many positions."""
    grids: dict[int, tuple[int, ...]] = {}
    for node in gm.graph.nodes:
        if op_name(node) in ("conv2d", "conv3d"):
            shape = shape_of(node)
            if shape is not None and len(shape) >= 4:
                spatial = tuple(shape[2:])
                grids.setdefault(math.prod(spatial), spatial)
    return grids
