"""Detection pass: find every residual branch of every transformer block.

A region is found from its *join*, an ``add(x, y)`` where ``x`` feeds ``y``: ``x`` is the
residual stream (the fork) and ``y`` the branch. Walking back from ``y`` through
multiplications by values that do not depend on ``x`` (the adaLN gate) and through no-ops gives
the cache point. The branch is every node on a path fork -> cache point; it is a region if it
holds an anchor (an attention or an activation). When a branch contains another region's join
it is an outer residual (e.g. around the whole transformer) and is dropped: innermost wins.
No class names or module paths decide anything; module paths only name the blocks.
"""
from __future__ import annotations

import re
from typing import Sequence

import torch.fx as fx

from ..graph_inputs import InputMeta
from ..ops import ACTIVATIONS, NOOPS, arg, is_dropout_noop, op_name, shape_of
from ..regions import DetectionResult, Region, RegionKind
from .graph_walk import GraphIndex

_SOFTMAX = {"softmax", "log_softmax"}
_SDPA = "scaled_dot_product_attention"


def detect_regions(gm: fx.GraphModule, inputs: Sequence[InputMeta]) -> DetectionResult:
    graph = gm.graph
    index = GraphIndex(graph)
    token_data = _depends_on_token_inputs(gm, inputs)
    candidates = [c for c in (_join_candidate(n, index) for n in graph.nodes if op_name(n) == "add")
                  if c and c[1] in token_data]
    branches = {join: index.between(fork, point) for join, fork, point, _ in candidates}
    regions: list[Region] = []
    for join, fork, cache_point, gate in candidates:
        branch = branches[join]
        if not branch:
            continue
        # Anchors that belong to a residual nested inside this one are that region's; a
        # branch with none of its own (a residual around a whole block) is no region.
        nested = [branches[j] for j in branches if j is not join and j in branch]
        own = branch.difference(*nested) if nested else branch
        kind, anchors = _classify(branch, own, fork)
        if kind is None:
            continue
        shape = shape_of(fork)
        assert shape is not None
        regions.append(Region(
            index=-1, kind=kind, block=-1, block_name=_block_name(anchors), fork=fork, join=join,
            cache_point=cache_point, gate=gate, anchors=anchors, branch=branch,
            tokens=shape[1], batch=shape[0],
        ))
    regions.sort(key=lambda r: index.position[r.cache_point])
    _number_blocks(regions)
    result = DetectionResult(regions=regions, timestep=find_timestep(gm, inputs))
    if not regions:
        result.reason = "no residual attention or MLP branch was found in this graph"
    return result


def _join_candidate(add: fx.Node, index: GraphIndex):
    """(join, fork, cache_point, gate) if ``add`` closes a residual branch of a [B, N, C] stream."""
    operands = [a for a in add.args[:2] if isinstance(a, fx.Node)]
    out_shape = shape_of(add)
    if len(operands) != 2 or out_shape is None or len(out_shape) != 3:
        return None
    for fork, branch_out in (operands, operands[::-1]):
        fork = _strip_casts(fork)
        if shape_of(fork) != out_shape or shape_of(branch_out) != out_shape:
            continue
        fork = _stream_source(fork, branch_out, index)
        if fork is None:
            continue
        cache_point, gate = _strip_gate(branch_out, fork, index)
        if cache_point is fork or shape_of(cache_point) is None:
            return None
        return add, fork, cache_point, gate
    return None


def _depends_on_token_inputs(gm: fx.GraphModule, inputs: Sequence[InputMeta]) -> set[fx.Node]:
    """Nodes computed from a user input with a token axis (``ndim >= 3``: latents, text).

    A residual MLP over values derived from the timestep alone (Chroma's modulation
    approximator) is conditioning, which must run every step, not a token stream.
    """
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    sources = [n for n, meta in zip(placeholders, inputs) if meta.is_tensor and not meta.is_param and meta.dim >= 3]
    seen, stack = set(sources), list(sources)
    while stack:
        for user in stack.pop().users:
            if user not in seen:
                seen.add(user)
                stack.append(user)
    return seen


def _stream_source(stream: fx.Node, branch_out: fx.Node, index: GraphIndex, depth: int = 3) -> fx.Node | None:
    """The residual-stream value the branch reads: ``stream`` itself, or, when the branch was
    computed from the stream before an earlier residual add (SD3.5's second attention reads the
    block input but is added after the joint attention), that earlier stream value."""
    if index.position[stream] < index.position[branch_out] and index.reaches(stream, branch_out):
        return stream
    if depth == 0 or op_name(stream) != "add":
        return None
    for operand in stream.args[:2]:
        if isinstance(operand, fx.Node) and shape_of(operand) == shape_of(stream):
            found = _stream_source(_strip_casts(operand), branch_out, index, depth - 1)
            if found is not None:
                return found
    return None


def _strip_casts(node: fx.Node) -> fx.Node:
    """``x.float() + branch``: the residual stream is ``x``, which the branch also reads."""
    while op_name(node) in ("to", "identity") and isinstance(node.args[0] if node.args else None, fx.Node):
        source = node.args[0]
        if shape_of(source) != shape_of(node):
            break
        node = source
    return node


def _strip_gate(node: fx.Node, fork: fx.Node, index: GraphIndex) -> tuple[fx.Node, fx.Node | None]:
    """Walk back from the branch output through gate multiplications and no-ops."""
    gate = None
    while True:
        name = op_name(node)
        if name in NOOPS and (name != "dropout" or is_dropout_noop(node)):
            source = node.args[0] if node.args else arg(node, 0, "input")
            if isinstance(source, fx.Node) and index.reaches(fork, source):
                node = source
                continue
        if name in ("mul", "div") and len(node.args) >= 2:
            a, b = node.args[0], node.args[1]
            dep = [isinstance(v, fx.Node) and index.reaches(fork, v) for v in (a, b)]
            if dep[0] != dep[1]:
                inner, other = (a, b) if dep[0] else (b, a)
                if name == "div" and inner is not a:
                    return node, gate
                if name == "mul" and gate is None and isinstance(other, fx.Node):
                    gate = other
                node = inner  # type: ignore[assignment]
                continue
        return node, gate


def _attention_parts(node: fx.Node) -> tuple[fx.Node | None, fx.Node | None]:
    """(query, key) of an attention anchor, key given as the tensor it was computed from."""
    if op_name(node) == _SDPA:
        return arg(node, 0, "query"), arg(node, 1, "key")
    source = arg(node, 0, "input")
    for _ in range(6):  # scale, mask add, casts between the score matmul and the softmax
        if not isinstance(source, fx.Node):
            return None, None
        name = op_name(source)
        if name in ("matmul", "baddbmm", "einsum"):
            operands = [a for a in source.args if isinstance(a, fx.Node)]
            if name == "baddbmm":
                operands = operands[1:]
            return (operands[0], operands[1]) if len(operands) >= 2 else (None, None)
        if name in ("mul", "div", "add", "sub", "to", "identity", "masked_fill"):
            source = next((a for a in source.args if isinstance(a, fx.Node) and shape_of(a) == shape_of(source)), None)
            continue
        return None, None
    return None, None


def _classify(branch: set[fx.Node], own: set[fx.Node], fork: fx.Node) -> tuple[RegionKind | None, list[fx.Node]]:
    tokens = shape_of(fork)[1]  # type: ignore[index]
    self_attn, cross_attn, joint, activations = [], [], False, []
    for node in sorted(own, key=lambda n: n.name):
        name = op_name(node)
        if name == _SDPA or name in _SOFTMAX:
            query, key = _attention_parts(node)
            if query is None or key is None or query not in branch:
                continue
            if key in branch:
                self_attn.append(node)
                key_shape = shape_of(key)
                key_len = key_shape[-2] if name == _SDPA and key_shape else (key_shape[-1] if key_shape else tokens)
                joint = joint or key_len != tokens
            else:
                cross_attn.append(node)
        elif name in ACTIVATIONS:
            activations.append(node)
    activations = [a for a in activations if not _feeds_softmax_only(a)]
    if not self_attn and activations and _mixes_tokens(own):
        return "attn", activations  # linear attention (kernel feature maps, no softmax)
    if self_attn and activations:
        return "parallel", self_attn + activations
    if self_attn:
        return ("joint_attn" if joint else "attn"), self_attn
    if cross_attn:
        return "cross_attn", cross_attn
    if activations:
        return "mlp", activations
    return None, []


def _mixes_tokens(own: set[fx.Node]) -> bool:
    """A matmul of two token-dependent operands, as in linear attention's K^T V."""
    for node in own:
        if op_name(node) == "matmul":
            operands = [a for a in node.args[:2] if isinstance(a, fx.Node)]
            if len(operands) == 2 and all(o in own for o in operands):
                return True
    return False


def _feeds_softmax_only(node: fx.Node) -> bool:
    return bool(node.users) and all(op_name(u) in _SOFTMAX for u in node.users)


_INDEX = re.compile(r"\[['\"]?([^'\"\]]+)['\"]?\]")


def normalize_module_path(path: str) -> str:
    """``L['self'].__dict__['_modules']['blocks'].0.attn`` -> ``blocks.0.attn``."""
    path = path.replace("__dict__['_modules']", "").replace("_modules", "")
    path = _INDEX.sub(lambda m: "." + m.group(1), path)
    parts = [p for p in path.split(".") if p and p not in ("L", "self", "__dict__", "_modules")]
    return ".".join(parts)


def _block_name(anchors: list[fx.Node]) -> str:
    for anchor in anchors:
        stack = anchor.meta.get("nn_module_stack") or {}
        for entry in stack.values():
            path = normalize_module_path(entry[0] if isinstance(entry, tuple) else str(entry))
            parts = path.split(".")
            for i, part in enumerate(parts):
                if part.isdigit():
                    return ".".join(parts[: i + 1])
    return ""


def _number_blocks(regions: list[Region]) -> None:
    """Number regions and blocks in graph order; unnamed blocks start at each attention."""
    block, names, last_name = -1, {}, None
    for i, region in enumerate(regions):
        region.index = i
        if region.block_name:
            if region.block_name not in names:
                names[region.block_name] = len(names) if not names else max(names.values()) + 1
                block = names[region.block_name]
            region.block = names[region.block_name]
            last_name = region.block_name
            continue
        starts = region.kind in ("attn", "parallel") or (region.kind == "joint_attn" and last_name != "joint")
        if block < 0 or starts:
            block = (max(names.values()) + 1) if names else block + 1
            names[f"#{block}"] = block
        region.block = block
        last_name = "joint" if region.kind == "joint_attn" else None


def find_timestep(gm: fx.GraphModule, inputs: Sequence[InputMeta]) -> fx.Node | None:
    """The placeholder that feeds a sinusoidal embedding (sin/cos within a few hops)."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    candidates = []
    for node, meta in zip(placeholders, inputs):
        if not meta.is_tensor or meta.is_param or meta.dim > 1 or meta.numel == 0:
            continue
        if _reaches_sinusoid(node):
            candidates.append(node)
    named = [c for c in candidates if "timestep" in c.name.lower()]
    return (named or candidates or [None])[0]


def _reaches_sinusoid(start: fx.Node, limit: int = 40) -> bool:
    seen, frontier = {start}, [start]
    for _ in range(limit):
        nxt = []
        for node in frontier:
            for user in node.users:
                if op_name(user) in ("sin", "cos"):
                    return True
                if user not in seen:
                    seen.add(user)
                    nxt.append(user)
        frontier = nxt
        if not frontier:
            break
    return False
