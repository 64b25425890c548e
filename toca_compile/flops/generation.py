"""FLOPs of whole generations, uncached and cached, for any model and ToCa configuration or
schedule: Dynamo traces the model once, then every configuration is counted on the same graphs."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Union

import torch
import torch.fx as fx

from .log import OUTSIDE, FlopLog, counting, run_counted
from .report import Breakdown, FlopsReport, kind_of, region_kinds

if TYPE_CHECKING:
    from ..backend import ToCa
    from ..config import ToCaConfig
    from ..schedule import Schedule

ConfigLike = Union["ToCaConfig", "Schedule", str, None]
InputsLike = Union[tuple, Mapping[str, Any], Callable[[int], tuple]]


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
    from ..backend import ToCa
    from ..config import ToCaConfig

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
    from ..config import ToCaConfig

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
        steps = toca.schedule.num_steps
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
        the timestep is never read. Cross-attention's text keys/values are read from their cache
        (``ToCaConfig.constant_kv``) only while the text is the very same tensor object (on
        the meta device its identity is the object and its version counter): return the same
        tensors every step to count a pipeline that passes its prompt embeddings unchanged, new
        ones to count a text that changes.
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


__all__ = ["ConfigLike", "GenerationCounter", "InputsLike", "generation_flops"]
