"""FLOP accounting with ``torch.utils.flop_counter`` (matmul, attention and conv FLOPs).

Cached variants are counted by running them with the eager executor, so the counter sees
exactly the operations the rewritten graphs perform. On the meta device no weights or memory
are needed, which makes full-size configurations countable on a small machine.

Three levels:

* :func:`count_flops`, :func:`run_counted`, :func:`counting`: FLOPs of calls and of the graphs
  a :class:`~toca_compile.backend.ToCa` runs.
* :class:`FlopLog`: what :func:`counting` yields; a list of per-call FLOPs (``sum(log)`` is the
  total) that can also attribute FLOPs to graph nodes (``per_node=True``) and, on the meta
  device, count each distinct graph call once (``memoize=True``).
* :func:`generation_flops`: a whole generation, uncached and cached, for any model and ToCa
  configuration or schedule, with a per-block / per-region-kind breakdown.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence, Union

import torch
import torch.fx as fx
from torch.utils.flop_counter import FlopCounterMode

if TYPE_CHECKING:
    from .backend import ToCa
    from .config import ToCaConfig
    from .schedule import Schedule

#: breakdown kind of nodes inside a block but outside every detected region (adaLN modulation,
#: per-block embeddings, gates, residual adds)
OTHER = "other"
#: breakdown kind of nodes that toca-compile inserts (token scores, selection, gather/scatter)
OVERHEAD = "toca"
#: breakdown block of nodes outside every transformer block (embeddings, final layer)
OUTSIDE = "(outside blocks)"
_KIND_ORDER = tuple(f"{kind}{rest}" for rest in ("", " (rest)")
                    for kind in ("attn", "joint_attn", "cross_attn", "mlp", "parallel")) + (OTHER, OVERHEAD, "-")


# -- single calls ------------------------------------------------------------------------
def _count_cpu_attention() -> None:
    """Let the FLOP counter see fused attention on CPU tensors.

    On the CPU, SDPA runs ``aten._scaled_dot_product_flash_attention_for_cpu``, which torch's
    FLOP registry does not list (only the CUDA kernels), so attention would count as 0.
    """
    from torch.utils import flop_counter

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None or op in flop_counter.flop_registry or op.default in flop_counter.flop_registry:
        return

    @flop_counter.register_flop_formula(op)
    def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


_count_cpu_attention()


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """FLOPs of one call of ``fn``."""
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return counter.get_total_flops()


def run_counted(sink: list[int] | None, fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn``; when a sink is open, add the call's FLOPs to it.

    A :class:`FlopLog` sink also records per-call details (and per-node FLOPs or memoized
    counts when it was opened with ``per_node`` / ``memoize``).
    """
    if sink is None:
        return fn(*args)
    if isinstance(sink, FlopLog):
        return sink.run(fn, args)
    out, flops = _count_call(fn, args)
    sink.append(flops)
    return out


def _count_call(fn: Callable[..., Any], args: Sequence[Any]) -> tuple[Any, int]:
    """Run ``fn`` under the FLOP counter; graphs with flex attention go node by node (the
    counter cannot run that operator, see :class:`_NodeCounter`)."""
    gm = graph_module_of(fn)
    if gm is not None and _has_flex_attention(gm):
        out, spent = _run_node_by_node(gm, args)
        return out, sum(spent.values())
    with FlopCounterMode(display=False) as counter:
        out = fn(*args)
    return out, counter.get_total_flops()


@contextlib.contextmanager
def counting(toca: "ToCa", *, per_node: bool = False, memoize: bool = False) -> Iterator["FlopLog"]:
    """FLOPs of every graph ``toca`` runs inside the block (compile first, then count).

    Dynamo cannot trace under a dispatch mode, so the counter is opened inside the backend's
    callables instead of around the compiled model; ops between graphs (graph breaks) are
    not counted. Use the eager executor (``ToCaConfig(compiler="eager")``): Inductor's fused
    kernels are invisible to the counter.

    The yielded :class:`FlopLog` is a list with one entry per graph call. ``per_node=True``
    also attributes each FX graph's FLOPs to its nodes (:attr:`GraphCall.nodes`);
    ``memoize=True`` counts each distinct (graph, input shapes) once when every input is on
    the meta device and reuses the count and outputs afterwards (exact on meta: FLOPs depend
    only on shapes, and meta tensors hold no data).
    """
    sink = FlopLog(per_node=per_node, memoize=memoize)
    toca.flop_sink = sink
    try:
        yield sink
    finally:
        toca.flop_sink = None


# -- the sink ----------------------------------------------------------------------------
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
    """Per-call FLOPs (``sum(log)`` is the total) plus a :class:`GraphCall` per call."""

    def __init__(self, per_node: bool = False, memoize: bool = False, memo: dict | None = None) -> None:
        super().__init__()
        self.per_node = per_node
        self.memoize = memoize
        self.calls: list[GraphCall] = []
        # (graph, input signature, per_node) -> (record, outputs, callable); may be shared by logs
        self._memo: dict[tuple, tuple[GraphCall, Any, Callable]] = {} if memo is None else memo

    def run(self, fn: Callable[..., Any], args: Sequence[Any]) -> Any:
        gm = graph_module_of(fn)
        key = _memo_key(gm if gm is not None else fn, args, self.per_node) if self.memoize else None
        if key is not None and key in self._memo:
            record, out, _ = self._memo[key]
            self._add(GraphCall(record.graph, record.flops, record.nodes, memoized=True))
            return out
        if self.per_node and gm is not None:
            out, nodes = _run_per_node(gm, args)
            record = GraphCall(gm, sum(nodes.values()), nodes)
        else:
            out, total = _count_call(fn, args)
            nodes = {Site(OUTSIDE, "(not an FX graph)"): total} if self.per_node else None
            record = GraphCall(gm, total, nodes)
        if key is not None:
            self._memo[key] = (record, out, fn)  # fn kept alive: its id is part of the key
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


def graph_module_of(fn: Callable[..., Any]) -> fx.GraphModule | None:
    """The GraphModule behind ``fn`` (a bound ``GraphModule.forward`` or the module itself)."""
    if isinstance(fn, fx.GraphModule):
        return fn
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, fx.GraphModule) and getattr(fn, "__name__", "") in ("forward", "_lazy_forward"):
        return owner
    return None


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


def _run_node_by_node(gm: fx.GraphModule, args: Sequence[Any]) -> tuple[Any, dict[fx.Node, int]]:
    interpreter = _NodeCounter(gm)
    out = interpreter.run(*args)
    return out, interpreter.spent


def _run_per_node(gm: fx.GraphModule, args: Sequence[Any]) -> tuple[Any, dict[Site, int]]:
    out, spent = _run_node_by_node(gm, args)
    sites = node_sites(gm)
    nodes: dict[Site, int] = {}
    for node, flops in spent.items():
        site = sites.get(node, Site(OUTSIDE, ""))
        nodes[site] = nodes.get(site, 0) + flops
    return out, nodes


# -- attribution of nodes to blocks ------------------------------------------------------
def module_path(node: fx.Node) -> str:
    """The normalized path of the innermost module a node was traced in (``""``: none)."""
    from .passes.detect_regions import module_path as innermost

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


def region_kinds(toca: "ToCa") -> dict[str, str]:
    """Module path -> region kind, from the regions ``toca`` detected (first region wins)."""
    kinds: dict[str, str] = {}
    analyses = [spec.analysis for graph in toca.graphs for spec in graph.specs.values() if spec.analysis is not None]
    for analysis in analyses:
        for plan in analysis.plans:
            region = plan.region
            for node in region.branch:
                path = module_path(node)
                if path:
                    kinds.setdefault(path, region.kind)
    return kinds


def kind_of(site: Site, kinds: Mapping[str, str]) -> str:
    """Breakdown kind of a site.

    * a region kind (``"attn"``, ``"mlp"``, ...): the node is on a region's branch (its module
      path is one of the branch's), so caching can skip it or run it on fewer rows;
    * ``"<kind> (rest)"``: a module of that region's branch, but not on the branch (adaLN
      modulation inside the norm module, text K/V projections of cross-attention): runs in
      full on every step;
    * :data:`OVERHEAD` for nodes toca-compile inserted (token scores, selection);
    * :data:`OTHER` for the rest of a block, ``"-"`` outside the blocks.
    """
    if site.inserted:
        return OVERHEAD
    if site.module in kinds:
        return kinds[site.module]
    path = site.module.rpartition(".")[0]
    while path and path != site.block:
        if path in kinds:
            return f"{kinds[path]} (rest)"
        path = path.rpartition(".")[0]
    return "-" if site.block == OUTSIDE else OTHER


# -- whole generations -------------------------------------------------------------------
ConfigLike = Union["ToCaConfig", "Schedule", str, None]
InputsLike = Union[tuple, Mapping[str, Any], Callable[[int], tuple]]


@dataclass
class Breakdown:
    """FLOPs of a generation per (block, region kind), uncached and cached."""

    rows: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (block, kind) -> [uncached, cached]

    def add(self, block: str, kind: str, column: int, flops: int) -> None:
        self.rows.setdefault((block, kind), [0, 0])[column] += flops

    def by(self, what: str) -> dict[str, list[int]]:
        """Totals per ``"block"`` (graph order) or per ``"kind"`` (region kinds first)."""
        index = {"block": 0, "kind": 1}[what]
        out: dict[str, list[int]] = {}
        for key, (uncached, cached) in self.rows.items():
            entry = out.setdefault(key[index], [0, 0])
            entry[0] += uncached
            entry[1] += cached
        if what == "kind":
            order = {kind: i for i, kind in enumerate(_KIND_ORDER)}
            out = dict(sorted(out.items(), key=lambda item: order.get(item[0], len(order))))
        return out

    def total(self, column: int) -> int:
        return sum(v[column] for v in self.rows.values())

    def table(self, group: str = "block") -> str:
        """A text table per ``"block"``, ``"kind"`` or ``"block-kind"`` (TFLOPs, ratio, share)."""
        from .stats import format_table

        if group == "block-kind":
            items = [(f"{b}  {k}", v) for (b, k), v in self.rows.items()]
            head = "block  kind"
        else:
            items = list(self.by(group).items())
            head = group
        total_cached = max(self.total(1), 1)
        scale, unit = _unit(max(self.total(0), self.total(1)))
        rows = [(head, f"uncached {unit}", f"cached {unit}", "ratio", "share of cached")]
        for name, (uncached, cached) in items:
            ratio = f"{uncached / cached:.2f}x" if cached and uncached else "-"
            rows.append((name, f"{uncached / scale:.4f}", f"{cached / scale:.4f}", ratio,
                         f"{100 * cached / total_cached:.1f}%"))
        return format_table(rows)


def _unit(flops: int) -> tuple[float, str]:
    for scale, unit in ((1e12, "TFLOPs"), (1e9, "GFLOPs"), (1e6, "MFLOPs")):
        if flops >= scale:
            return scale, unit
    return 1.0, "FLOPs"


@dataclass
class FlopsReport:
    """FLOPs of one generation, uncached and cached (see :func:`generation_flops`)."""

    model: str
    steps: int
    schedule: str
    uncached: int
    cached: int
    uncached_per_step: list[int]
    cached_per_step: list[int]
    full_steps: list[int]          # 0-based steps that ran the full variant
    partial_steps: list[int]
    variants: int                  # variants compiled for the cached generation (full + partial)
    graphs: int                    # Dynamo graphs per model call
    fallbacks: list[str] = field(default_factory=list)   # graphs ToCa could not cache, and why
    breakdown: Breakdown | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Uncached / cached FLOPs (the "x fewer FLOPs" figure)."""
        return self.uncached / self.cached if self.cached else float("inf")

    @property
    def saved(self) -> float:
        """Fraction of the uncached FLOPs that caching removes."""
        return 1 - self.cached / self.uncached if self.uncached else 0.0

    def __str__(self) -> str:
        scale, unit = _unit(self.uncached)
        lines = [
            f"{self.model}, {self.steps} steps, {self.schedule}",
            f"  uncached: {self.uncached / scale:.2f} {unit}",
            f"  cached:   {self.cached / scale:.2f} {unit}  ({self.ratio:.2f}x fewer, {100 * self.saved:.1f}% saved)",
            f"  full steps ({len(self.full_steps)}): {_ranges(self.full_steps)}",
            f"  partial steps ({len(self.partial_steps)}): {_ranges(self.partial_steps)}",
            f"  compiled variants: {self.variants}; Dynamo graphs per call: {self.graphs}",
        ]
        for reason in self.fallbacks:
            lines.append(f"  uncached graph: {reason}")
        return "\n".join(lines)


def _ranges(steps: Iterable[int]) -> str:
    steps = sorted(steps)
    if not steps:
        return "-"
    out, start, prev = [], steps[0], steps[0]
    for s in steps[1:] + [None]:  # type: ignore[list-item]
        if s is not None and s == prev + 1:
            prev = s
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if s is not None:
            start = prev = s
    return ", ".join(out)


class _Executors:
    """One Dynamo trace, several executors.

    Dynamo hands every graph to :meth:`backend` once; each call of a graph then goes to the
    executor selected now: the plain graph (uncached) or the callable a ``ToCa`` built for it
    (its ``backend`` is called on the graph's first call under that ToCa, so in call order, as
    Dynamo would have called it). So the slow trace of a large model is paid once for the
    uncached and every cached count.
    """

    def __init__(self) -> None:
        self.graphs: list[tuple[fx.GraphModule, list]] = []
        self.toca: "ToCa | None" = None
        self.callables: dict[int, Callable] = {}
        self.plain_sink: list[int] | None = None

    def backend(self, gm: fx.GraphModule, example_inputs: list) -> Callable:
        index = len(self.graphs)
        self.graphs.append((gm, list(example_inputs)))

        def call(*args: Any) -> Any:
            return self._callable(index)(*args)

        return call

    def select(self, toca: "ToCa | None") -> None:
        self.toca, self.callables = toca, {}

    def _callable(self, index: int) -> Callable:
        fn = self.callables.get(index)
        if fn is None:
            gm, example_inputs = self.graphs[index]
            fn = self._plain(gm) if self.toca is None else self.toca.backend(gm, example_inputs)
            self.callables[index] = fn
        return fn

    def _plain(self, gm: fx.GraphModule) -> Callable:
        forward = gm.forward
        return lambda *args: run_counted(self.plain_sink, forward, *args)


def _to_toca(config_or_schedule: ConfigLike, schedule: "Schedule | None" = None) -> "ToCa":
    from .backend import ToCa
    from .config import ToCaConfig

    if config_or_schedule is None:
        config = ToCaConfig(compiler="eager")
    elif isinstance(config_or_schedule, str):
        config = ToCaConfig(preset=config_or_schedule, compiler="eager")
    elif isinstance(config_or_schedule, ToCaConfig):
        config = config_or_schedule.replace(compiler="eager")
    elif all(hasattr(config_or_schedule, m) for m in ("is_full", "ratio", "module_full", "aggressive")):
        if schedule is not None:
            raise TypeError("give the schedule either as config_or_schedule or as schedule=, not both")
        return ToCa(ToCaConfig(compiler="eager"), schedule=config_or_schedule)  # type: ignore[arg-type]
    else:
        raise TypeError("config_or_schedule must be a ToCaConfig, a preset name, a Schedule or None, "
                        f"got {type(config_or_schedule).__name__}")
    return ToCa(config, schedule=schedule)


def _describe(config_or_schedule: ConfigLike, toca: "ToCa") -> str:
    from .config import ToCaConfig

    if isinstance(config_or_schedule, str):
        return f"preset {config_or_schedule}"
    if config_or_schedule is not None and not isinstance(config_or_schedule, ToCaConfig):
        return f"schedule {type(config_or_schedule).__name__}"
    config = toca.config
    mode = f", mode {config.mode}" if config.mode != "toca" else ""
    if config.preset is not None:
        return f"preset {config.preset}{mode}"
    return f"interval {config.interval}, ratio {config.ratio}{mode}"


def _steps_of(steps: int | None, toca: "ToCa") -> int:
    if steps is None:
        steps = getattr(toca.schedule, "num_steps", None)
        if steps is None:
            raise ValueError("steps is required for a schedule without num_steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return steps


def _inputs_at(inputs: InputsLike, step: int) -> tuple[tuple, dict]:
    value = inputs(step) if callable(inputs) else inputs
    if isinstance(value, Mapping):
        return (), dict(value)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], Mapping):
        return tuple(value[0]), dict(value[1])
    if isinstance(value, tuple):
        return value, {}
    raise TypeError("inputs must be (args, kwargs), a kwargs mapping, an args tuple, "
                    "or a callable step -> one of these")


def _to_device(tree: Any, device: torch.device) -> Any:
    """Tensors of the inputs moved to the model's device (free for the meta device)."""
    from torch.utils._pytree import tree_map

    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.device.type != device.type:
            return value.to(device)
        return value

    return tree_map(move, tree)


def _progress(progress: bool | Callable | None, steps: int, desc: str):
    if progress is None or progress is False:
        return None
    if callable(progress):
        return progress(total=steps, desc=desc)
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc=desc, leave=False)


class GenerationCounter:
    """Counts generations of one model: traced by Dynamo once, then counted uncached and under
    any number of ToCa configurations or schedules (see :func:`generation_flops` for the
    arguments). ``torch._dynamo.reset()`` is called when it is created.

        counter = GenerationCounter(build_model, inputs)
        for preset in ("flux-50-n4", "flux-50-n5"):
            print(counter.report(preset))
    """

    def __init__(self, model_factory: Callable[[], torch.nn.Module] | torch.nn.Module, inputs: InputsLike, *,
                 device: str | torch.device = "meta", memoize: bool = True, fullgraph: bool = False,
                 progress: bool | Callable | None = None) -> None:
        self.inputs, self.device, self.memoize, self.progress = inputs, device, memoize, progress
        with torch.device(device):
            model = model_factory() if not isinstance(model_factory, torch.nn.Module) else model_factory
        self.model = model.eval()
        self.executors = _Executors()
        self._plain_memo: dict = {}
        self.trace_seconds: float | None = None
        torch._dynamo.reset()
        self.compiled = torch.compile(self.model, backend=self.executors.backend, dynamic=False, fullgraph=fullgraph)

    def _call(self, step: int) -> None:
        with torch.device(self.device):
            args, kwargs = _inputs_at(self.inputs, step)
        args, kwargs = _to_device((args, kwargs), torch.device(self.device))
        self.compiled(*args, **kwargs)

    def trace(self) -> None:
        """Let Dynamo trace the model (the first call; done once)."""
        if self.trace_seconds is None:
            start = time.perf_counter()
            self.executors.select(None)
            with torch.no_grad():
                self._call(0)
            self.trace_seconds = time.perf_counter() - start

    def uncached(self, steps: int, breakdown: bool = False) -> tuple[FlopLog, list[int]]:
        """The log and per-step FLOPs of ``steps`` calls of the traced graphs as they are."""
        self.trace()
        self.executors.select(None)
        plain = FlopLog(per_node=breakdown, memoize=self.memoize, memo=self._plain_memo)
        self.executors.plain_sink = plain
        try:
            with torch.no_grad():
                per_step, _ = _run_steps(self._call, steps, plain, self.progress, "uncached", None)
        finally:
            self.executors.plain_sink = None
        return plain, per_step

    def report(self, config_or_schedule: ConfigLike = None, steps: int | None = None, *,
               schedule: "Schedule | None" = None, breakdown: bool = False) -> FlopsReport:
        """Uncached vs cached FLOPs of one generation under ``config_or_schedule``."""
        toca = _to_toca(config_or_schedule, schedule)
        steps = _steps_of(steps, toca)
        seconds: dict[str, float] = {}
        self.trace()
        seconds["trace"] = self.trace_seconds or 0.0
        start = time.perf_counter()
        plain, uncached_steps = self.uncached(steps, breakdown)
        seconds["uncached"] = time.perf_counter() - start

        start = time.perf_counter()
        self.executors.select(toca)  # the same graphs, handed to this ToCa in graph order
        before = toca.stats()
        try:
            with torch.no_grad(), counting(toca, per_node=breakdown, memoize=self.memoize) as log, \
                    toca.generation(steps=steps):
                cached_steps, marks = _run_steps(self._call, steps, log, self.progress, "cached", toca)
        finally:
            self.executors.select(None)
        after = toca.stats()
        seconds["cached"] = time.perf_counter() - start

        report = FlopsReport(
            model=type(self.model).__name__, steps=steps, schedule=_describe(config_or_schedule, toca),
            uncached=sum(plain), cached=sum(log), uncached_per_step=uncached_steps, cached_per_step=cached_steps,
            full_steps=[i for i, m in enumerate(marks) if m == "full"],
            partial_steps=[i for i, m in enumerate(marks) if m == "partial"],
            variants=after.variants_compiled - before.variants_compiled, graphs=len(self.executors.graphs),
            fallbacks=list(getattr(toca, "fallbacks", [])), seconds=seconds)
        if breakdown:
            kinds = region_kinds(toca)
            table = Breakdown()
            for column, sink in ((0, plain), (1, log)):
                for site, flops in sink.sites().items():
                    table.add(site.block, kind_of(site, kinds), column, flops)
            # blocks in graph order (first call of the uncached graphs), the rest after them
            table.rows = dict(sorted(table.rows.items(), key=lambda item: item[0][0] == OUTSIDE))
            report.breakdown = table
        return report


def generation_flops(model_factory: Callable[[], torch.nn.Module] | torch.nn.Module, inputs: InputsLike,
                     steps: int | None = None, config_or_schedule: ConfigLike = None, *,
                     schedule: "Schedule | None" = None, device: str | torch.device = "meta",
                     breakdown: bool = False, memoize: bool = True, fullgraph: bool = False,
                     progress: bool | Callable | None = None) -> FlopsReport:
    """FLOPs of one whole generation, uncached and with token-wise caching.

    model_factory: a callable returning the model (called under ``torch.device(device)``, so
        on the meta device no weights are allocated), or a model already on ``device``.
    inputs: the model's inputs for one call, batched CFG included: ``(args, kwargs)``, a kwargs
        mapping or an args tuple, or a callable ``step -> inputs``, called under
        ``torch.device(device)``; tensors on another device are moved to ``device``. Each call
        is one step: the counter announces the steps (``ToCa.generation`` / ``ToCa.step``), so
        the timestep is never read.
    steps: calls in the generation (default: the schedule's ``num_steps``).
    config_or_schedule: a :class:`~toca_compile.config.ToCaConfig`, a preset name from
        :data:`toca_compile.presets.PRESETS`, a schedule object, or None (defaults). Graphs always
        run with the eager executor so that every operation is counted.
    schedule: a schedule that replaces the one ``config_or_schedule`` (a config or preset name)
        describes, e.g. a preset re-timed with ``.replace(num_steps=...)``.
    breakdown: also attribute FLOPs to (block, region kind) (:attr:`FlopsReport.breakdown`).
    memoize: on the meta device count each distinct graph call once (exact: FLOPs depend only
        on shapes; much faster).
    fullgraph: passed to ``torch.compile``.
    progress: True for a tqdm bar over the steps, or a tqdm-like factory.

    The model is traced by Dynamo once (``torch._dynamo.reset()`` is called first); uncached
    FLOPs are those of the traced graphs as they are, cached FLOPs those of the variants ToCa
    runs from a fresh generation, including its own token scoring and selection. To count
    several configurations of one model, use :class:`GenerationCounter` (one trace).
    """
    counter = GenerationCounter(model_factory, inputs, device=device, memoize=memoize, fullgraph=fullgraph,
                                progress=progress)
    return counter.report(config_or_schedule, steps, schedule=schedule, breakdown=breakdown)


def _run_steps(call: Callable[[int], None], steps: int, sink: FlopLog, progress, desc: str,
               toca: "ToCa | None") -> tuple[list[int], list[str]]:
    per_step, marks = [], []
    bar = _progress(progress, steps, desc)
    try:
        for step in range(steps):
            mark = len(sink)
            if toca is not None:
                toca.step(step)  # steps are given, never read from the (meta) timestep
                before = toca.stats()
            call(step)
            per_step.append(sum(sink[mark:]))
            if toca is not None:
                after = toca.stats()
                if after.full_steps > before.full_steps:
                    marks.append("full")
                elif after.partial_steps > before.partial_steps:
                    marks.append("partial")
                else:
                    marks.append("?")
            else:
                marks.append("full")
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return per_step, marks


__all__ = ["Breakdown", "FlopLog", "FlopsReport", "GenerationCounter", "GraphCall", "Site", "count_flops", "counting",
           "generation_flops", "kind_of", "node_sites", "region_kinds", "run_counted"]
