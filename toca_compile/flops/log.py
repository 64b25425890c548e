"""FLOPs of the graph calls a :class:`~toca_compile.backend.ToCa` runs: :func:`counting` registers
a :class:`FlopLog` as a call observer, which counts each call, optionally per FX node (attributed
to blocks and modules) and, on the meta device, once per distinct call."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch
import torch.fx as fx

from .counter import count_call, cpu_attention_formula, graph_module_of, run_node_by_node

if TYPE_CHECKING:
    from ..backend import ToCa

#: breakdown block of nodes outside every transformer block (embeddings, final layer)
OUTSIDE = "(outside blocks)"


@contextlib.contextmanager
def counting(toca: "ToCa", *, per_node: bool = False, memoize: bool = False) -> Iterator["FlopLog"]:
    """FLOPs of every graph ``toca`` runs inside the block (compile first, then count).

    Dynamo cannot trace under a dispatch mode, so the counter is opened around each graph
    call (a call observer, :meth:`ToCa.observe <toca_compile.backend.ToCa.observe>`) instead of
    around the compiled model; ops between graphs (graph breaks) are not counted. Use the eager
    executor (``ToCaConfig(compiler="eager")``): Inductor's fused kernels are invisible to the
    counter.

    The yielded :class:`FlopLog` is a list with one entry per graph call. ``per_node=True``
    also attributes each FX graph's FLOPs to its nodes (:attr:`GraphCall.nodes`);
    ``memoize=True`` counts each distinct (graph, input shapes) once when every input is on
    the meta device and reuses the count and outputs afterwards (exact on meta: FLOPs depend
    only on shapes, and meta tensors hold no data).
    """
    sink = FlopLog(per_node=per_node, memoize=memoize)
    with cpu_attention_formula(), toca.observe(sink.run):
        yield sink


def run_counted(sink: list[int] | None, fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn``; when a sink is open, add the call's FLOPs to it.

    A :class:`FlopLog` sink also records per-call details (and per-node FLOPs or memoized
    counts when it was opened with ``per_node`` / ``memoize``).
    """
    if sink is None:
        return fn(*args)
    if isinstance(sink, FlopLog):
        return sink.run(fn, args)
    out, flops = count_call(fn, args)
    sink.append(flops)
    return out


@dataclass(frozen=True)
class Site:
    """Where FLOPs were spent: the block (module path such as ``transformer_blocks.3``, or
    :data:`OUTSIDE`), the deepest module path of the node (``""`` if it has none) and whether
    toca-compile inserted the node (scores, selection)."""

    block: str
    module: str
    inserted: bool = False


@dataclass
class GraphCall:
    """One counted call of a graph callable."""

    graph: fx.GraphModule | None     # the FX graph that ran, when the callable is one
    flops: int
    nodes: dict[Site, int] | None = None   # per-site FLOPs (per_node mode)
    memoized: bool = False                  # count reused from an identical earlier call


class FlopLog(list):
    """Per-call FLOPs (``sum(log)`` is the total) plus a :class:`GraphCall` per call; its
    :meth:`run` is a call observer."""

    def __init__(self, per_node: bool = False, memoize: bool = False, memo: dict | None = None) -> None:
        super().__init__()
        self.per_node = per_node
        self.memoize = memoize
        self.calls: list[GraphCall] = []
        # (graph, input signature, per_node) -> (record, outputs, callable); may be shared by logs
        self._memo: dict[tuple, tuple[GraphCall, Any, Callable]] = {} if memo is None else memo

    def run(self, fn: Callable[..., Any], args: Sequence[Any]) -> Any:
        """``fn(*args)``, counted (per node, the FX graph behind ``fn`` runs node by node)."""
        gm = graph_module_of(fn)
        target = gm if gm is not None else fn
        key = _memo_key(target, args, self.per_node) if self.memoize else None
        if key is not None and key in self._memo:
            record, out, _ = self._memo[key]
            self._add(GraphCall(record.graph, record.flops, record.nodes, memoized=True))
            return out
        if self.per_node and gm is not None:
            out, nodes = _run_per_node(gm, args)
            record = GraphCall(gm, sum(nodes.values()), nodes)
        else:
            out, total = count_call(fn, args)
            nodes = {Site(OUTSIDE, "(not an FX graph)"): total} if self.per_node else None
            record = GraphCall(gm, total, nodes)
        if key is not None:
            self._memo[key] = (record, out, target)  # kept alive: its id is part of the key
        self._add(record)
        return out

    def _add(self, record: GraphCall) -> None:
        self.append(record.flops)
        self.calls.append(record)

    def sites(self, start: int = 0, stop: int | None = None) -> dict[Site, int]:
        """FLOPs per site summed over calls ``start:stop`` (per_node mode)."""
        out: dict[Site, int] = {}
        for call in self.calls[start:stop]:
            for site, flops in (call.nodes or {Site(OUTSIDE, "(not counted per node)"): call.flops}).items():
                out[site] = out.get(site, 0) + flops
        return out


def _memo_key(owner: Any, args: Sequence[Any], per_node: bool) -> tuple | None:
    parts: list[Any] = [id(owner), per_node]
    for value in args:
        if isinstance(value, torch.Tensor):
            if value.device.type != "meta":
                return None  # real data: every call runs
            parts.append((tuple(value.shape), value.dtype, tuple(value.stride())))
        elif isinstance(value, (int, float, bool, str, type(None))):
            parts.append(value)
        else:
            return None
    return tuple(parts)


def _run_per_node(gm: fx.GraphModule, args: Sequence[Any]) -> tuple[Any, dict[Site, int]]:
    out, spent = run_node_by_node(gm, args)
    sites = node_sites(gm)
    nodes: dict[Site, int] = {}
    for node, flops in spent.items():
        site = sites.get(node, Site(OUTSIDE, ""))
        nodes[site] = nodes.get(site, 0) + flops
    return out, nodes


# -- attribution of nodes to blocks ------------------------------------------------------
def module_path(node: fx.Node) -> str:
    """The normalized path of the innermost module a node was traced in (``""``: none)."""
    from ..passes.detect_regions import module_path as innermost

    return innermost(node)


def block_of(path: str) -> str:
    """``transformer_blocks.3.attn1.to_q`` -> ``transformer_blocks.3``; no index -> :data:`OUTSIDE`."""
    parts = path.split(".") if path else []
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return OUTSIDE


def _inserted(node: fx.Node) -> bool:
    target = node.target
    module = getattr(target, "__module__", "") or ""
    return node.op == "call_function" and module.startswith("toca_compile")


def node_sites(gm: fx.GraphModule) -> dict[fx.Node, Site]:
    """The :class:`Site` of every node: from its module metadata; a node toca-compile inserted
    (scores, selection, gathers: no metadata) takes the block and module of its first input
    that has them; anything else without metadata is outside the blocks."""
    sites: dict[fx.Node, Site] = {}
    for node in gm.graph.nodes:
        path = module_path(node)
        inserted = _inserted(node)
        if not path and inserted:
            path = next((sites[a].module for a in node.all_input_nodes if a in sites and sites[a].module), "")
        sites[node] = Site(block_of(path), path, inserted)
    return sites


__all__ = ["OUTSIDE", "FlopLog", "GraphCall", "Site", "block_of", "counting", "module_path", "node_sites",
           "run_counted"]
