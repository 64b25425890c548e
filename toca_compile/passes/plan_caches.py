"""Planning pass: decide, per region, what is cached and what a partial step recomputes.

Walking back from the cache point, token-wise nodes are re-evaluated on the gathered rows and
the first token-mixing value met on each path is read from its own cache instead. Regions
whose cache point is itself token-mixing (self-attention) reuse the whole cache; with
``reproject`` they cache the attention output before its output projection instead, and a
partial step runs the projection again on every token (the authors' FLUX and FORA code does
this, and their published FLOPs count it). A region
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


_PROJECTIONS = frozenset({"linear", "matmul", "mm", "addmm", "bmm"})


def plan_caches(gm: fx.GraphModule, detection: DetectionResult, reproject: bool = False) -> tuple[RegionPlan, ...]:
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    points = {r.cache_point: r for r in detection.regions}
    plans = (_plan_region(region, order, points) for region in detection.regions)
    return tuple(_with_projection(p, order) if reproject and p.region.kind in MIXING_KINDS else p for p in plans)


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


def _with_projection(plan: RegionPlan, order: dict[fx.Node, int]) -> RegionPlan:
    """``plan`` (an attention region reused whole) caching, besides its output, the input of the
    output projection (the last matmul after the attention), and re-running the nodes from there
    to the output on reuse steps. Unchanged when the way from the attention to the output reads
    anything else of the branch, has no projection or writes in place."""
    region = plan.region
    anchors = set(region.anchors)
    after: set[fx.Node] = set()  # branch nodes computed from the attention output
    stack = list(anchors)
    while stack:
        for user in stack.pop().users:
            if user in region.branch and user not in after:
                after.add(user)
                stack.append(user)
    if region.cache_point not in after:
        return plan
    projections = sorted((n for n in after if op_name(n) in _PROJECTIONS), key=order.__getitem__)
    if not projections:
        return plan
    inputs = [n for n in projections[-1].all_input_nodes if n in after or n in anchors]
    if len(inputs) != 1 or not isinstance(tensor_meta(inputs[0]), torch.Tensor):
        return plan
    cached = inputs[0]
    chain: set[fx.Node] = set()
    stack = [region.cache_point]
    while stack:
        node = stack.pop()
        if node is cached or node in chain:
            continue
        if node not in after or writes_in_place(node):  # another path into the output, or a write
            return plan
        chain.add(node)
        stack.extend(n for n in node.all_input_nodes if n in region.branch)
    slot = _slot(cached, plan.axes.get(cached), region)
    return replace(plan, slots=(*plan.slots, slot), reproject=tuple(sorted(chain, key=order.__getitem__)))


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
