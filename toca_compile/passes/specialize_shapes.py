"""Specialisation pass: a graph Dynamo traced with symbolic sizes, made static for one shape.

With ``dynamic=None`` (torch.compile's default) Dynamo retraces a model with symbolic sizes the
first time a batch size or resolution changes, and that one graph then serves every shape,
the first one included. Token caching needs static sizes (k of N rows, caches of a fixed
shape), so the backend keeps the symbolic graph and derives a static copy per concrete input
shape: the graph is run on fake tensors of that shape, every size expression is folded into
the constant it evaluates to, and every tensor's recorded example value is replaced by its
concrete one. The size placeholders stay (Dynamo still passes them) but are no longer read.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.fx as fx
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

from ..graph_inputs import InputMeta, fake_inputs, fake_mode
from .state_inputs import copy_graph_module

_SYMBOLIC = (torch.SymInt, torch.SymFloat, torch.SymBool)


def _example(node: fx.Node) -> Any:
    return node.meta.get("example_value", node.meta.get("val"))


def _has_symbols(value: Any) -> bool:
    if isinstance(value, _SYMBOLIC):
        return True
    if isinstance(value, torch.Tensor):
        return any(not isinstance(s, int) for s in value.shape)
    if isinstance(value, (tuple, list)):
        return any(_has_symbols(v) for v in value)
    return False


def _is_size_expression(value: Any) -> bool:
    """A value computed from the input sizes only (backed symbols): never one read from data."""
    if not _has_symbols(value) or _holds_tensor(value):
        return False
    try:
        return not free_unbacked_symbols(value)
    except Exception:  # noqa: BLE001
        return False


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_holds_tensor(v) for v in value)
    return False


def is_symbolic(gm: fx.GraphModule) -> bool:
    """True when an input of the graph has a symbolic size (Dynamo's dynamic shapes; Dynamo
    passes every free size symbol as an input of its own)."""
    return any(_is_size_symbolic(_example(n)) for n in gm.graph.nodes if n.op == "placeholder")


def _is_size_symbolic(value: Any) -> bool:
    if isinstance(value, torch.SymInt):
        return True
    return isinstance(value, torch.Tensor) and any(not isinstance(s, int) for s in value.shape)


def data_dependent_node(gm: fx.GraphModule) -> fx.Node | None:
    """The first node whose *size* depends on tensor data (``nonzero``, an ``.item()`` used as
    a size): such sizes cannot be specialised from the input shapes alone. A float read from a
    tensor (a Python-number timestep Dynamo passes as a 0-d tensor) is data, not a size."""
    for node in gm.graph.nodes:
        value = _example(node)
        sizes = tuple(value.shape) if isinstance(value, torch.Tensor) else value if isinstance(value, torch.SymInt) else None
        try:
            if sizes is not None and free_unbacked_symbols(sizes):
                return node
        except Exception:  # noqa: BLE001  values free_unbacked_symbols does not understand
            continue
    return None


def _constant(value: Any) -> Any:
    if isinstance(value, torch.Size):
        return tuple(int(s) for s in value)
    if isinstance(value, (tuple, list)):
        return type(value)(_constant(v) for v in value)
    return value


class _Propagate(fx.Interpreter):
    """Runs the graph on fake tensors and records each node's concrete value."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.values[n] = result
        return result


def specialize_shapes(gm: fx.GraphModule, inputs: Sequence[InputMeta]) -> fx.GraphModule:
    """A static copy of ``gm`` for inputs shaped like ``inputs`` (concrete metadata)."""
    new, _ = copy_graph_module(gm)
    originals = {node: _example(node) for node in new.graph.nodes}
    mode = fake_mode()
    fakes = fake_inputs(inputs, mode)
    propagate = _Propagate(new)
    with mode:
        propagate.run(*fakes)
    folded: list[fx.Node] = []
    for node in new.graph.nodes:
        if node.op == "output":
            continue
        value = propagate.values.get(node)
        if _holds_tensor(value):  # tensors and tuples of them (chunk, split): concrete examples
            node.meta["example_value"] = value
            node.meta.pop("val", None)
        elif _is_size_expression(originals[node]) and not _has_symbols(value):  # folded into its value
            constant = _constant(value)
            for user in list(node.users):
                user.args = fx.node.map_arg(user.args, lambda a, n=node, c=constant: c if a is n else a)
                user.kwargs = fx.node.map_arg(user.kwargs, lambda a, n=node, c=constant: c if a is n else a)
            node.meta["example_value"] = constant
            if node.op != "placeholder":
                folded.append(node)
    for node in reversed(folded):
        if not node.users:
            new.graph.erase_node(node)
    new.graph.lint()
    new.recompile()
    return new
