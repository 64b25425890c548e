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
from dataclasses import replace
from typing import Sequence

import torch.fx as fx

from ..graph_inputs import InputMeta
from ..ops import ACTIVATIONS, NOOPS, arg, is_dropout_noop, op_name, shape_of
from ..regions import DetectionResult, Region, RegionKind
from .graph_walk import GraphIndex

_SOFTMAX = {"softmax", "log_softmax"}
_SDPA = "scaled_dot_product_attention"
_MHA = "multi_head_attention_forward"     # nn.MultiheadAttention: one node, inputs [L, B, E]
_FLEX = "flex_attention"                   # torch.nn.attention.flex_attention (a higher-order op)
_FUSED = (_SDPA, _MHA, _FLEX)
_ROW_NORMS = {"layer_norm", "rms_norm", "normalize"}


def detect_regions(gm: fx.GraphModule, inputs: Sequence[InputMeta]) -> DetectionResult:
    graph = gm.graph
    index = GraphIndex(graph)
    timestep = find_timestep(gm, inputs)
    token_data = _depends_on_token_inputs(gm, inputs, exclude=timestep)
    conditioned = _depends_on_inputs(gm, inputs, min_dim=0)
    candidates = [c for c in (_join_candidate(n, index, conditioned) for n in graph.nodes if op_name(n) == "add") if c]
    branches = {join: index.between(fork, point) for join, fork, point, _ in candidates}
    # A token stream comes from an input with a token axis, or reads one in its branch (learned
    # queries attending to the text, as in a perceiver); a residual over values computed from
    # the timestep alone (Chroma's modulation approximator) is conditioning: it runs every step.
    candidates = [c for c in candidates if c[1] in token_data or not token_data.isdisjoint(branches[c[0]])]
    found = []
    for join, fork, cache_point, gate in candidates:
        branch = branches[join]
        if not branch:
            continue
        # Anchors that belong to a residual nested inside this one are that region's; a
        # branch with none of its own (a residual around a whole block) is no region.
        nested = [branches[j] for j in branches if j is not join and j in branch]
        own = branch.difference(*nested) if nested else branch
        kind, anchors = _classify(branch, own, fork, index)
        if kind is not None:
            found.append((join, fork, cache_point, gate, branch, kind, anchors))
    layouts = _stream_layouts([(shape_of(fork), kind, anchors) for _, fork, _, _, _, kind, anchors in found])
    # streams with no attention of their own follow the graph's other streams when they agree
    graph_layout = next(iter(set(layouts.values()))) if len(set(layouts.values())) == 1 else None
    regions: list[Region] = []
    for join, fork, cache_point, gate, branch, kind, anchors in found:
        shape = shape_of(fork)
        assert shape is not None
        layout = (layouts.get(shape) or _layout_from_modulation(shape, branch, gate, fork, conditioned)
                  or graph_layout or _single_sample_layout(shape))
        batch_axis, token_axis = layout or (0, 1)
        regions.append(Region(
            index=-1, kind=kind, block=-1, block_name=_block_name(anchors), fork=fork, join=join,
            cache_point=cache_point, gate=gate, anchors=anchors, branch=branch,
            tokens=shape[token_axis], batch=shape[batch_axis], batch_axis=batch_axis, token_axis=token_axis,
            layout_known=layout is not None,
        ))
    regions.sort(key=lambda r: index.position[r.cache_point])
    numbered = _number_blocks(regions)
    reason = "" if numbered else "no residual attention or MLP branch was found in this graph"
    return DetectionResult(regions=numbered, timestep=timestep, reason=reason)


def _stream_layouts(found: list[tuple[tuple[int, ...] | None, str, list[fx.Node]]]) -> dict[tuple[int, ...], tuple[int, int]]:
    """(batch axis, token axis) per residual-stream shape: [B, N, C], or sequence-first [N, B, C]
    as research code around ``nn.MultiheadAttention`` writes it.

    The token axis is the one as long as the queries of the stream's self- or cross-attention
    (SDPA ``[.., N, D]``, ``nn.MultiheadAttention`` ``[N, B, E]``, a score matrix
    ``[.., N, N]``); an attention whose queries are longer (joint attention) or shorter (split
    over parts of the stream) fixes it through its batch axis. A stream without attention of
    its own (a block split by a graph break) takes its layout from its modulation
    (:func:`_layout_from_modulation`), or else from the graph's other streams when they agree,
    or from a batch of one sample; failing all it is taken as ``[B, N, C]`` but not trusted
    (``Region.layout_known``): such a region is reused whole, never refreshed by rows of what
    may be the batch axis."""
    layouts: dict[tuple[int, ...], tuple[int, int]] = {}
    by_batch: dict[tuple[int, ...], tuple[int, int]] = {}
    for shape, kind, anchors in found:
        if shape is None or shape[0] == shape[1] or kind == "mlp":
            continue
        for anchor in anchors:
            queries = _query_count(anchor)
            if kind != "joint_attn" and queries == shape[0]:
                layouts.setdefault(shape, (1, 0))
            elif kind != "joint_attn" and queries == shape[1]:
                layouts.setdefault(shape, (0, 1))
            else:
                # a joint attention (this stream and another one concatenated) or one split
                # into several attentions over parts of the stream: the queries differ in
                # length from the stream, but their batch axis is the stream's
                batch = _query_batch(anchor)
                if batch is not None and (shape[0] == batch) != (shape[1] == batch):
                    by_batch.setdefault(shape, (0, 1) if shape[0] == batch else (1, 0))
    return {**by_batch, **layouts}


def _query_batch(anchor: fx.Node) -> int | None:
    """The batch size of an attention's queries, where its layout says which axis that is."""
    name = op_name(anchor)
    shape = shape_of(arg(anchor, 0, "query")) if name in _FUSED else shape_of(anchor) if name in _SOFTMAX else None
    if not shape:
        return None
    if name == _MHA:
        return shape[1] if len(shape) == 3 else None
    return shape[0] if len(shape) == 4 else None


def _layout_from_modulation(shape: tuple[int, ...], branch: set[fx.Node], gate: fx.Node | None,
                            fork: fx.Node, conditioned: set[fx.Node]) -> tuple[int, int] | None:
    """(batch axis, token axis) read off the modulation of a stream with no attention of its
    own in this graph (a block split by a graph break): an adaLN shift, scale or gate comes
    from the inputs, has the batch axis of the stream and length 1 on its token axis
    ([B, 1, C] or [1, B, C]; with batch 1 the stream's longer axis is the one the value is
    broadcast along). Only an answer every such value agrees with counts."""
    outside = [gate] if gate is not None else []
    outside += [m for n in branch if op_name(n) in ("mul", "add", "addcmul")
                for m in n.all_input_nodes if m not in branch and m is not fork]
    votes = set()
    for node in outside:
        mod = shape_of(node)
        if node not in conditioned or mod is None or len(mod) != 3 or mod[-1] != shape[-1]:
            continue
        for token_axis in (0, 1):
            batch_axis = 1 - token_axis
            if mod[token_axis] == 1 and shape[token_axis] > 1 and mod[batch_axis] == shape[batch_axis]:
                votes.add((batch_axis, token_axis))
    return votes.pop() if len(votes) == 1 else None


def _single_sample_layout(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """One of the two leading axes has length 1: the other holds the tokens (a batch of one
    sample, [1, N, C] or [N, 1, C]; a one-token stream has nothing to select)."""
    if (shape[0] == 1) == (shape[1] == 1):
        return None
    return (0, 1) if shape[0] == 1 else (1, 0)


def _query_count(anchor: fx.Node) -> int | None:
    name = op_name(anchor)
    if name in _FUSED:
        query_shape = shape_of(arg(anchor, 0, "query"))
        if not query_shape or len(query_shape) < 2:
            return None
        return query_shape[0] if name == _MHA else query_shape[-2]
    if name in _SOFTMAX:
        score = shape_of(anchor)
        return score[-2] if score and len(score) >= 2 else None
    return None


def _join_candidate(add: fx.Node, index: GraphIndex, conditioned: set[fx.Node]):
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
        cache_point, gate = _strip_gate(branch_out, fork, index, conditioned)
        if cache_point is fork or shape_of(cache_point) is None:
            return None
        return add, fork, cache_point, gate
    return None


def _depends_on_token_inputs(gm: fx.GraphModule, inputs: Sequence[InputMeta],
                             exclude: fx.Node | None = None) -> set[fx.Node]:
    """Nodes computed from a user input with a token axis (``ndim >= 3``: latents, text), the
    timestep excluded (a timestep per frame can be 3-D too).

    A residual MLP over values derived from the timestep alone (Chroma's modulation
    approximator) is conditioning, which must run every step, not a token stream.
    """
    return _depends_on_inputs(gm, inputs, min_dim=3, exclude=exclude)


def _depends_on_inputs(gm: fx.GraphModule, inputs: Sequence[InputMeta], min_dim: int,
                       exclude: fx.Node | None = None) -> set[fx.Node]:
    """Nodes computed from a non-parameter tensor input of at least ``min_dim`` dimensions."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    sources = [n for n, meta in zip(placeholders, inputs)
               if meta.is_tensor and not meta.is_param and meta.dim >= min_dim and n is not exclude]
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


def _strip_gate(node: fx.Node, fork: fx.Node, index: GraphIndex,
                conditioned: set[fx.Node] = frozenset()) -> tuple[fx.Node, fx.Node | None]:  # type: ignore[assignment]
    """Walk back from the branch output through gate multiplications and no-ops.

    A row-wise norm applied *after* the gate (``x + norm(gate * branch)``, functional or written
    out as ``h * rsqrt(mean(h^2) + eps)``) is walked past too, so that the cache holds the branch
    before the gate and the gate is recomputed every step; a norm without a conditioning gate
    below it ends the walk (the cache holds the norm's output). The gate reported is the first
    conditioning factor met (learned scales are walked past but are no gate)."""
    gate = None
    while True:
        if gate is None:
            source = _row_norm_input(node)
            below = _gate_below(source, fork, index, conditioned) if source is not None else None
            if below is not None:
                node, gate = below
                continue
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
                if name == "mul" and gate is None and isinstance(other, fx.Node) and other in conditioned:
                    gate = other
                node = inner  # type: ignore[assignment]
                continue
        return node, gate


def _skip_noops(node: object) -> object:
    while isinstance(node, fx.Node) and op_name(node) in NOOPS and (op_name(node) != "dropout" or is_dropout_noop(node)):
        node = node.args[0] if node.args else arg(node, 0, "input")
    return node


def _row_norm_input(node: fx.Node) -> fx.Node | None:
    """The input ``h`` of a row-wise norm: ``layer_norm``/``rms_norm``/``normalize``, or one
    written out as ``h * rsqrt(mean(h²) + eps)`` (or ``h / sqrt(...)``)."""
    name = op_name(node)
    if name in _ROW_NORMS:
        source = arg(node, 0, "input")
        return source if isinstance(source, fx.Node) else None
    if name not in ("mul", "div") or len(node.args) < 2:
        return None
    for h, scale in ((node.args[0], node.args[1]), (node.args[1], node.args[0])):
        if name == "div" and h is not node.args[0]:
            continue
        if isinstance(h, fx.Node) and _is_rms_of(scale, h, "sqrt" if name == "div" else "rsqrt"):
            return h
    return None


def _is_rms_of(scale: object, h: fx.Node, root: str) -> bool:
    """``scale`` is ``rsqrt(mean(h²) + eps)`` (``root`` "rsqrt") or ``sqrt(...)`` of h's rows."""
    scale = _skip_noops(scale)
    if not isinstance(scale, fx.Node) or op_name(scale) != root:
        return False
    inner = _skip_noops(scale.args[0] if scale.args else None)
    if isinstance(inner, fx.Node) and op_name(inner) == "add":
        inner = next((_skip_noops(a) for a in inner.args[:2] if isinstance(a, fx.Node)), None)
    if not isinstance(inner, fx.Node) or op_name(inner) != "mean":
        return False
    squared = _skip_noops(inner.args[0] if inner.args else None)
    if not isinstance(squared, fx.Node):
        return False
    base = _skip_noops(h)
    if op_name(squared) == "pow":
        return _skip_noops(squared.args[0]) is base and squared.args[1] == 2
    if op_name(squared) in ("mul", "square"):
        operands = [_skip_noops(a) for a in squared.args[:2] if isinstance(a, fx.Node)]
        return bool(operands) and all(o is base for o in operands)
    return False


def _gate_below(source: fx.Node, fork: fx.Node, index: GraphIndex,
                conditioned: set[fx.Node]) -> tuple[fx.Node, fx.Node] | None:
    """(branch, gate) when a norm's input ``source`` is ``branch * gate`` with a conditioning gate."""
    source = _skip_noops(source)
    if not isinstance(source, fx.Node) or op_name(source) != "mul" or len(source.args) < 2:
        return None
    a, b = source.args[0], source.args[1]
    for branch, gate in ((a, b), (b, a)):
        if (isinstance(branch, fx.Node) and isinstance(gate, fx.Node) and index.reaches(fork, branch)
                and not index.reaches(fork, gate) and gate in conditioned):
            return branch, gate
    return None


def _attention_parts(node: fx.Node) -> tuple[fx.Node | None, fx.Node | None]:
    """(query, key) of an attention anchor, key given as the tensor it was computed from."""
    if op_name(node) in _FUSED:
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


def _classify(branch: set[fx.Node], own: set[fx.Node], fork: fx.Node,
              index: GraphIndex) -> tuple[RegionKind | None, list[fx.Node]]:
    """The region's kind from its anchors. Self-attention is *joint* when none of its attentions
    has keys over exactly the stream's tokens (text and image keys together, or cached context
    frames); one attention over the stream's own tokens makes it plain self-attention, whatever
    helper attentions (a pooled block map) sit beside it. An activation that only gates an
    attention output (``attn * sigmoid(W x)``) makes no MLP: the branch stays attention."""
    stream = shape_of(fork)[:2]  # type: ignore[index]  # (B, N), or (N, B) for a sequence-first stream
    self_attn, cross_attn, activations = [], [], []
    plain = False
    for node in sorted(own, key=lambda n: n.name):
        name = op_name(node)
        if name in _FUSED or name in _SOFTMAX:
            query, key = _attention_parts(node)
            if query is None or key is None or query not in branch:
                continue
            if key in branch:
                self_attn.append(node)
                key_shape = shape_of(key)
                if key_shape:  # SDPA [.., S, D]; nn.MultiheadAttention [S, B, E]; a score matrix [.., S]
                    key_len = key_shape[0] if name == _MHA else key_shape[-1] if name in _SOFTMAX else key_shape[-2]
                    plain = plain or key_len in stream
                else:
                    plain = True
            else:
                cross_attn.append(node)
        elif name in ACTIVATIONS:
            activations.append(node)
    attention = self_attn + cross_attn
    activations = [a for a in activations if not _feeds_softmax_only(a) and not _gates(a, attention, index)]
    if not self_attn and activations and _mixes_tokens(own):
        return "attn", activations  # linear attention (kernel feature maps, no softmax)
    if self_attn and activations:
        return "parallel", self_attn + activations
    if self_attn:
        return ("attn" if plain else "joint_attn"), self_attn
    if cross_attn:
        return "cross_attn", cross_attn
    if activations:
        return "mlp", activations
    return None, []


def _gates(activation: fx.Node, attention: list[fx.Node], index: GraphIndex) -> bool:
    """The activation's only use is a product with a value computed from one of ``attention``."""
    node = activation
    for _ in range(4):
        users = list(node.users)
        if len(users) != 1:
            return False
        user = users[0]
        if op_name(user) == "mul":
            other = next((a for a in user.args[:2] if isinstance(a, fx.Node) and a is not node), None)
            return other is not None and any(index.reaches(anchor, other) for anchor in attention)
        if op_name(user) not in NOOPS:
            return False
        node = user
    return False


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


def _number_blocks(regions: list[Region]) -> tuple[Region, ...]:
    """Number regions and blocks in graph order; unnamed blocks start at each attention.

    A named block counts once per call: one module applied twice (shared weights) gives two
    blocks, each scored with its own attention. A call ends when a region's anchors come from
    a source site (module and line) that already anchored other nodes of a region of the same
    kind in it (regions of two streams that share one attention node, as in joint blocks,
    stay together)."""
    block, last_name = -1, None
    calls: dict[str, tuple[int, dict[tuple, frozenset[fx.Node]]]] = {}
    numbered: list[Region] = []
    for i, region in enumerate(regions):
        name = region.block_name
        if name:
            sites = {(region.kind, _site_of(a)): frozenset(x for x in region.anchors if _site_of(x) == _site_of(a))
                     for a in region.anchors}
            number, seen = calls.get(name, (-1, {}))
            repeated = any(site in seen and seen[site].isdisjoint(nodes) for site, nodes in sites.items())
            if number < 0 or repeated:
                block += 1
                number, seen = block, {}
            for site, nodes in sites.items():
                seen[site] = seen.get(site, frozenset()) | nodes
            calls[name] = (number, seen)
            numbered.append(replace(region, index=i, block=number))
            last_name = name
            continue
        starts = region.kind in ("attn", "parallel") or (region.kind == "joint_attn" and last_name != "joint")
        if block < 0 or starts:
            block += 1
        numbered.append(replace(region, index=i, block=block))
        last_name = "joint" if region.kind == "joint_attn" else None
    return tuple(numbered)


def _site_of(node: fx.Node) -> tuple[str, str]:
    """Where a node was traced: its innermost module path and the source line of the call
    (two calls of one block give equal sites to their corresponding nodes)."""
    trace = (node.meta.get("stack_trace") or "").strip().splitlines()
    lines = [line.strip() for line in trace if line.strip().startswith("File ")]
    return module_path(node), lines[-1] if lines else node.name


def module_path(node: fx.Node) -> str:
    """The normalized path of the innermost module a node was traced in (``""``: none)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    entry = list(stack.values())[-1]
    return normalize_module_path(entry[0] if isinstance(entry, tuple) else str(entry))


def find_timestep(gm: fx.GraphModule, inputs: Sequence[InputMeta]) -> fx.Node | None:
    """The placeholder that feeds a sinusoidal embedding (sin/cos within a few hops), or else one
    that indexes a precomputed embedding table (a buffer, not a learned parameter: a learned
    table is a class-label embedding, not time), or else a 2-D one feeding a sinusoid (a
    timestep per frame). Inputs named ``timestep`` come first."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    small = [node for node, meta in zip(placeholders, inputs)
             if meta.is_tensor and not meta.is_param and meta.dim <= 1 and meta.numel > 0]
    candidates = [node for node in small if _reaches_sinusoid(node)]
    if not candidates:
        params = {node for node, meta in zip(placeholders, inputs) if meta.is_param}
        candidates = [node for node in small if _indexes_a_table(node, params)]
    if not candidates:  # a timestep per frame or per token ([B, F], [B, N], [B, 1, F]: AnyFlow, SanaWM)
        per_frame = [node for node, meta in zip(placeholders, inputs)
                     if meta.is_tensor and not meta.is_param and meta.dim in (2, 3) and meta.numel > 0
                     and _named_like_time(node)]
        candidates = [node for node in per_frame if _reaches_sinusoid(node, limit=8)]
    named = [c for c in candidates if "timestep" in c.name.lower()]
    return (named or candidates or [None])[0]


def _named_like_time(node: fx.Node) -> bool:
    """``timestep``/``t``-like input names (Dynamo names placeholders ``l_<argument>_``): position
    ids and grids feed sinusoids too, so a 2-D timestep is only taken by its name."""
    name = node.name.lower().removeprefix("l_").rstrip("_")
    return "time" in name or name in ("t", "ts", "sigma", "sigmas")


_INDEX_CASTS = {"to", "identity", "long", "int", "round", "floor", "clamp", "clamp_min", "clamp_max"}


def _indexes_a_table(start: fx.Node, params: set[fx.Node]) -> bool:
    """``table[t]``, ``embedding(t, table)`` or ``index_select(table, 0, t)`` with ``t`` (or a
    cast of it) as the index and a table that is not a learned parameter."""
    frontier = [start]
    for _ in range(4):
        nxt = []
        for node in frontier:
            for user in node.users:
                name = op_name(user)
                table = None
                if name == "getitem" and len(user.args) > 1 and user.args[1] is node:
                    table = user.args[0]
                elif name == "embedding":
                    table = arg(user, 1, "weight") if arg(user, 0, "input") is node else None
                elif name == "index_select" and arg(user, 2, "index") is node:
                    table = user.args[0]
                if isinstance(table, fx.Node) and table not in params and table.op in ("placeholder", "get_attr"):
                    return True
                if name in _INDEX_CASTS:
                    nxt.append(user)
        frontier = nxt
    return False


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
