"""FLOPs of one call, with ``torch.utils.flop_counter`` (matmul, attention and conv FLOPs).

Torch's FLOP registry lacks the CPU attention kernel; :func:`cpu_attention_formula` adds it
only while something is counted, so importing this package changes nothing in torch.
"""
from __future__ import annotations

import contextlib
import math
import threading
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.fx as fx
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from ..observers import graph_callable

_lock = threading.Lock()
_depth = 0                 # open cpu_attention_formula blocks, all threads together
_added: tuple[Any, Any] | None = None   # (op, formula) this module put in torch's registry


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


@contextlib.contextmanager
def cpu_attention_formula() -> Iterator[None]:
    """Let FLOP counters created inside the block see fused attention on CPU tensors.

    On the CPU, SDPA runs ``aten._scaled_dot_product_flash_attention_for_cpu``, which torch's
    FLOP registry does not list (only the CUDA kernels), so attention would count as 0. The
    formula is in ``torch.utils.flop_counter.flop_registry`` from the first entry to the last
    exit (re-entrant, across threads) and nowhere else; a ``FlopCounterMode`` copies the
    registry when it is created, so create it inside the block.
    """
    global _depth, _added
    with _lock:
        if _depth == 0:
            op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
            registry = flop_counter.flop_registry
            if op is not None and op not in registry and op.default not in registry:
                _added = (op, flop_counter.register_flop_formula(op)(_cpu_sdpa_flop))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _added is not None:
                op, formula = _added
                _added = None
                if flop_counter.flop_registry.get(op) is formula:
                    del flop_counter.flop_registry[op]


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """FLOPs of one call of ``fn``."""
    with cpu_attention_formula(), FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return counter.get_total_flops()


def count_call(fn: Callable[..., Any], args: Sequence[Any]) -> tuple[Any, int]:
    """``fn(*args)`` and its FLOPs; graphs with flex attention go node by node (the counter
    cannot run that operator, see :class:`_NodeCounter`)."""
    gm = graph_module_of(fn)
    if gm is not None and _has_flex_attention(gm):
        out, spent = run_node_by_node(gm, args)
        return out, sum(spent.values())
    with cpu_attention_formula(), FlopCounterMode(display=False) as counter:
        out = fn(*args)
    return out, counter.get_total_flops()


def graph_module_of(fn: Callable[..., Any]) -> fx.GraphModule | None:
    """The GraphModule behind ``fn`` (a bound ``GraphModule.forward`` or the module itself,
    possibly seen through other call observers)."""
    fn = graph_callable(fn)
    if isinstance(fn, fx.GraphModule):
        return fn
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, fx.GraphModule) and getattr(fn, "__name__", "") in ("forward", "_lazy_forward"):
        return owner
    return None


_FLEX = getattr(getattr(torch.ops, "higher_order", None), "flex_attention", None)


def _has_flex_attention(gm: fx.GraphModule) -> bool:
    return _FLEX is not None and any(n.op == "call_function" and n.target is _FLEX for n in gm.graph.nodes)


def _flex_attention_flops(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> int:
    """Two matmuls (scores and the weighted sum) over every query-key pair, as the counter
    counts SDPA; score and mask modifications are not counted."""
    *batch, queries, head_dim = query.shape
    keys, value_dim = key.shape[-2], value.shape[-1]
    return 2 * math.prod(batch) * queries * keys * (head_dim + value_dim)


class _NodeCounter(fx.Interpreter):
    """Runs a graph node by node, each under its own FlopCounterMode, and records each node's
    FLOPs. Flex attention runs outside the counter and is counted from its shapes: in torch
    2.13 its eager kernel fails under a FlopCounterMode."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.spent: dict[fx.Node, int] = {}

    def run_node(self, n: fx.Node) -> Any:
        if n.op == "call_function" and _FLEX is not None and n.target is _FLEX:
            out = super().run_node(n)
            query, key, value = (self.env[a] if isinstance(a, fx.Node) else a for a in n.args[:3])
            self.spent[n] = _flex_attention_flops(query, key, value)
            return out
        if n.op in ("placeholder", "output", "get_attr"):
            return super().run_node(n)
        with FlopCounterMode(display=False) as counter:
            out = super().run_node(n)
        spent = counter.get_total_flops()
        if spent:
            self.spent[n] = spent
        return out


def run_node_by_node(gm: fx.GraphModule, args: Sequence[Any]) -> tuple[Any, dict[fx.Node, int]]:
    """``gm(*args)`` and the FLOPs of each node that spent any."""
    interpreter = _NodeCounter(gm)
    with cpu_attention_formula():
        out = interpreter.run(*args)
    return out, interpreter.spent


__all__ = ["count_call", "count_flops", "cpu_attention_formula", "graph_module_of", "run_node_by_node"]
