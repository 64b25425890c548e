"""Planning pass: decide, per region, what is cached and what a partial step recomputes.

Walking back from the cache point, token-wise nodes are re-evaluated on the gathered rows and
the first token-mixing value met on each path is read from its own cache instead. Regions
whose cache point is itself token-mixing (self-attention) reuse the whole cache. A region
whose walk meets an opaque node also falls back to whole reuse, with a note saying why.

A branch that concatenates its stream with another one along the token axis and slices it
back (CogVideoX's MLP over text and video) is token-wise in between: a partial step recomputes
only this stream's selected rows (token_axes.py, ``Span``). So does a joint stream that the
branch slices into pieces and concatenates again unchanged (HunyuanVideo's single-stream
blocks): the concatenation is the value sliced. Every node on the way must hold all of the
stream's tokens; pieces of them computed apart are reused whole.
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.fx as fx

from ..ops import op_name, shape_of, tensor_meta, writes_in_place
from ..regions import MIXING_KINDS, CacheSlot, DetectionResult, Region, RegionPlan
from .token_axes import Axes, analyze_branch, joins_pieces, row_source


def plan_caches(gm: fx.GraphModule, detection: DetectionResult) -> tuple[RegionPlan, ...]:
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    points = {r.cache_point: r for r in detection.regions}
    return tuple(_plan_region(region, order, points) for region in detection.regions)


def _slot(node: fx.Node, axes: Axes | None, region: Region) -> CacheSlot:
    meta = tensor_meta(node)
    assert meta is not None, f"cache point {node} is not a tensor"
    shape = shape_of(node) or ()
    return CacheSlot(node=node, batch_axis=axes.batch if axes else region.batch_axis,
                     token_axis=axes.token if axes else region.token_axis, shape=shape, dtype=meta.dtype,
                     offset=axes.span.at if axes and axes.span else 0)


def _plan_region(region: Region, order: dict[fx.Node, int], points: dict[fx.Node, Region]) -> RegionPlan:
    fork_shape = shape_of(region.fork)
    nested = {p: Axes(region.batch_axis, region.token_axis, mixing=True) for p in region.branch
              if p in points and p is not region.cache_point and shape_of(p) == fork_shape}
    axes = analyze_branch(region.fork, region.branch, order, nested, Axes(region.batch_axis, region.token_axis))
    point = region.cache_point

    def whole(note: str) -> RegionPlan:  # reused whole on partial steps, with the reason
        reused = replace(region, partial_ok=False, note=note)
        return RegionPlan(reused, (_slot(point, axes.get(point), reused),), (), axes)

    if region.kind in MIXING_KINDS:
        return whole(region.note or "self-attention output is reused whole on partial steps")
    write = _in_place_write(region)
    if write is not None:
        # a row copy would miss a write whose result nothing reads (h.mul_(2) before fc2(h))
        return whole(f"in-place '{op_name(write) or write.target}' at {write.name} writes a value of the branch; "
                     "reused whole")
    if not region.layout_known:
        return whole("no attention or modulation in this graph shows which axis of the stream holds the tokens; "
                     "reused whole")
    point_axes = axes.get(point)
    if point_axes is None or point_axes.mixing:
        return whole(f"cache point {point.name} has no token axis; reused whole")
    if point_axes.span is not None:  # not sliced back to exactly the stream's tokens
        return whole(f"cache point {point.name} holds rows of another stream too; reused whole")
    recompute: set[fx.Node] = set()
    mixing: list[fx.Node] = []
    stack = [point]
    while stack:
        node = stack.pop()
        if node is region.fork or node in recompute or node in mixing:
            continue
        node_axes = axes.get(node)
        if node_axes is None:
            return whole(f"'{op_name(node) or node.op}' at {node.name} hides the token axis; reused whole")
        if node_axes.span is not None and not node_axes.span.whole:
            # rows of a selection over the whole stream: not there, or cached at other positions
            return whole(f"'{op_name(node) or node.op}' at {node.name} holds only part of the stream's tokens "
                         "among other rows; reused whole")
        if node_axes.mixing:
            if not isinstance(tensor_meta(node), torch.Tensor):
                return whole(f"token-mixing value {node.name} is not a tensor; reused whole")
            mixing.append(node)
            continue
        source = row_source(node, axes)
        if source is None and joins_pieces(node, axes):
            return whole(f"'cat' at {node.name} joins pieces of the stream computed apart; reused whole")
        recompute.add(node)
        inputs = [source] if source is not None else node.all_input_nodes
        stack.extend(n for n in inputs if n in region.branch or n is region.fork)
    slots = [_slot(point, point_axes, region)] + [_slot(m, axes[m], region) for m in sorted(mixing, key=order.__getitem__)]
    return RegionPlan(replace(region, partial_ok=True), tuple(slots), tuple(sorted(recompute, key=order.__getitem__)), axes)


def _in_place_write(region: Region) -> fx.Node | None:
    """An in-place write, outside the branch, to a value the branch reads (the fork included):
    ``h.mul_(2)`` whose result nothing uses, so a row copy of the branch would not contain it.
    Writes inside the branch (``F.silu(h, inplace=True)`` feeding the next op) are copied
    with it; the join may be ``x += ...``."""
    for node in (region.fork, *region.branch):
        for user in node.users:
            if user not in region.branch and user is not region.join and writes_in_place(user):
                return user
    return None
