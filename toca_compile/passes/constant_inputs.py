"""Values that stay the same for a whole generation: the text keys/values of cross-attention.

Cross-attention projects the text (``encoder_hidden_states``) to keys and values every step,
although the text does not change within a generation. This pass finds, per cross-attention
region, the values its branch reads that are computed only from *conditioning* inputs (graph
inputs that are neither the latent nor the timestep) and parameters: for PixArt, the caption
projection and ``to_k`` / ``to_v`` of every block. Each such value (walked back through views to
the tensor that is actually computed, so a cache holds it with the strides it had) becomes a
:class:`ConstantValue`; the ``state`` pass gives each a cache tensor.

A variant then either computes them as before (``COMPUTE``), computes them and writes the caches
(``FILL``), or reads the caches and drops what computed them (``READ``; ``rewrite_variant``). The
runtime reads a cache only when every input the value depends on (parameters included) is the
very tensor it was filled from, unchanged (same object, storage, offset, shape, strides, dtype,
device and version counter), in the same generation and branch: checked on the host, no sync.
So classifying an input wrongly costs speed, never correctness.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from ..graph_inputs import InputMeta
from ..ops import op_name, tensor_meta, writes_in_place
from ..regions import DetectionResult
from .dead_code import has_effect
from .graph_walk import GraphIndex

#: what a variant does with the constant values
COMPUTE = "compute"  # as in the model: computed when something reads them, caches untouched
FILL = "fill"        # computed, and copied into their caches
READ = "read"        # read from their caches; what computed them is dead code

#: ops that only re-view (or copy) their first input: walked back to the value they view
_VIEWS = frozenset({"view", "reshape", "permute", "transpose", "getitem", "chunk", "split", "unbind",
                    "unsqueeze", "squeeze", "flatten", "unflatten", "expand", "identity", "t",
                    "narrow", "select", "view_as", "reshape_as", "expand_as"})

#: ops worth caching: a constant value whose computation has none of them is recomputed
_HEAVY = frozenset({"linear", "matmul", "addmm", "baddbmm", "einsum", "conv1d", "conv2d",
                    "scaled_dot_product_attention"})

_RANDOM = ("rand", "dropout", "bernoulli", "normal", "multinomial")


@dataclass(frozen=True, eq=False)
class ConstantValue:
    """A value computed only from ``inputs`` (graph input positions) and literals."""

    node: fx.Node
    inputs: tuple[int, ...]          # positions of the graph inputs it is computed from
    regions: tuple[int, ...]         # cross-attention regions whose branch reads it
    shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device


def find_constants(gm: fx.GraphModule, inputs: tuple[InputMeta, ...],
                   detection: DetectionResult) -> tuple[ConstantValue, ...]:
    """The values cross-attention regions read that depend on conditioning inputs only."""
    cross = [r for r in detection.regions if r.kind == "cross_attn"]
    if not cross:
        return ()
    nodes = list(gm.graph.nodes)
    index = GraphIndex(gm.graph)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    position = {p: i for i, p in enumerate(placeholders)}
    varying = _varying_inputs(placeholders, inputs, detection, index)

    constant: set[fx.Node] = set()
    for node in nodes:
        if node.op == "placeholder":
            if node not in varying:
                constant.add(node)
        elif node.op == "get_attr":
            constant.add(node)
        elif node.op in ("call_function", "call_method", "call_module"):
            if _pure(node) and all(a in constant for a in node.all_input_nodes):
                constant.add(node)
    _drop_mutated(nodes, constant)

    found: dict[fx.Node, list[int]] = {}
    for region in cross:
        for user in region.branch | set(region.anchors):
            for value in user.all_input_nodes:
                if value not in constant:
                    continue
                base = _base(value, constant)
                readers = found.setdefault(base, [])
                if region.index not in readers:
                    readers.append(region.index)
    values = []
    for base in sorted(found, key=index.position.__getitem__):
        meta = tensor_meta(base)
        if meta is None or not meta.is_contiguous() or any(not isinstance(s, int) for s in meta.shape):
            continue
        cone = index.ancestors(base)
        if not any(op_name(n) in _HEAVY for n in cone):
            continue  # cheap to recompute (an attention mask): not worth a cache
        used = tuple(sorted(position[n] for n in cone if n.op == "placeholder"))
        values.append(ConstantValue(base, used, tuple(found[base]), tuple(meta.shape), meta.dtype, meta.device))
    return tuple(values)


def _varying_inputs(placeholders: list[fx.Node], inputs: tuple[InputMeta, ...],
                    detection: DetectionResult, index: GraphIndex) -> set[fx.Node]:
    """The timestep, the inputs the first residual stream is computed from (the latent), and
    every input that is not a tensor (a symbolic size)."""
    varying = {p for p, m in zip(placeholders, inputs) if not m.is_tensor}
    varying |= {p for p in placeholders[len(inputs):]}
    if detection.timestep is not None:
        varying.add(detection.timestep)
    if detection.regions:
        first = min(detection.regions, key=lambda r: r.index)
        varying |= {p for p in index.ancestors(first.fork)
                    if p.op == "placeholder" and not _is_param(p, placeholders, inputs)}
    return varying


def _is_param(node: fx.Node, placeholders: list[fx.Node], inputs: tuple[InputMeta, ...]) -> bool:
    i = placeholders.index(node)
    return i < len(inputs) and inputs[i].is_param


def _pure(node: fx.Node) -> bool:
    if has_effect(node):  # in-place writes included
        return False
    name = op_name(node)
    return not any(word in name for word in _RANDOM)


def _drop_mutated(nodes: list[fx.Node], constant: set[fx.Node]) -> None:
    """A constant value something writes in place is not constant, nor anything connected to it
    through constant values (its views, what it views): dropped whole, conservatively."""
    seeds = [a for n in nodes if writes_in_place(n) for a in n.all_input_nodes if a in constant]
    while seeds:
        node = seeds.pop()
        if node not in constant:
            continue
        constant.discard(node)
        seeds.extend(a for a in node.all_input_nodes if a in constant)
        seeds.extend(u for u in node.users if u in constant)


def _base(value: fx.Node, constant: set[fx.Node]) -> fx.Node:
    """``value`` walked back through views of constant values."""
    while op_name(value) in _VIEWS and value.args and isinstance(value.args[0], fx.Node) \
            and value.args[0] in constant:
        value = value.args[0]
    return value


def describe_constants(values: tuple[ConstantValue, ...]) -> str:
    if not values:
        return "no constant values"
    return "\n".join(f"const{i}: {v.node.name} {v.shape} {v.dtype} from inputs {list(v.inputs)}, "
                     f"read by regions {list(v.regions)}" for i, v in enumerate(values))
