"""One top-k for the token selections of every partial region of the same shape.

Each partial region picks its rows with ``select_tokens`` from its own base score and staleness,
both graph inputs, so every selection of a partial step can be made before its first block. A
top-k is an extern call Inductor cannot fuse, with a fixed cost per call (dispatch, output
allocation, the wrapper's launch) besides its work per row, which on a small model makes one
per region a visible part of a partial step. Selections with the same settings on state of the
same shape are therefore stacked into one ``select_tokens_together`` at the top of the graph,
and each region reads its own slice. The rows chosen are the same: top-k ranks each row on its
own.
"""
from __future__ import annotations

import operator

import torch.fx as fx

from ..kernels.scores import select_tokens, select_tokens_together


def _shape_key(node: fx.Node) -> tuple | None:
    value = node.meta.get("example_value") if node.op == "placeholder" else None
    return (tuple(value.shape), value.dtype, value.device) if value is not None else None


def select_together(graph: fx.Graph) -> None:
    """Stack same-shape selections into one top-k, placed after the graph's inputs."""
    groups: dict[tuple, list[fx.Node]] = {}
    for node in graph.nodes:
        if node.op != "call_function" or node.target is not select_tokens or node.kwargs:
            continue
        base, stale = node.args[0], node.args[1]
        shapes = (_shape_key(base), _shape_key(stale)) if isinstance(base, fx.Node) and isinstance(stale, fx.Node) else (None,)
        if None in shapes:
            continue  # a selection from computed scores stays where it is
        groups.setdefault((shapes, tuple(node.args[2:])), []).append(node)
    merging = [nodes for nodes in groups.values() if len(nodes) > 1]
    if not merging:
        return
    anchor = [n for n in graph.nodes if n.op == "placeholder"][-1]  # the state inputs are placeholders
    for nodes in merging:
        with graph.inserting_after(anchor):
            together = graph.call_function(select_tokens_together, (tuple(n.args[0] for n in nodes),
                                                                    tuple(n.args[1] for n in nodes),
                                                                    *nodes[0].args[2:]))
        anchor = together
        for i, node in enumerate(nodes):
            with graph.inserting_after(anchor):
                part = graph.call_function(operator.getitem, (together, i))
            anchor = part
            node.replace_all_uses_with(part)
            graph.erase_node(node)
