"""The torch.compile backend and the user's handle on it: :class:`ToCa`.

One ``ToCa`` holds the graphs Dynamo handed it (weakly: ``torch._dynamo.reset()`` frees them and
their caches), the state of every thread that calls them, and the statistics. Steps come from
the pipeline (``toca_compile.apply``), from the user's loop (:meth:`ToCa.generation`,
:meth:`ToCa.step`), or, failing both, from the timestep input (see :mod:`toca_compile.clock`).
"""
from __future__ import annotations

import collections
import contextlib
import logging
import threading
import warnings
import weakref
from typing import Any, Callable, Hashable, Iterator

import torch
import torch.fx as fx

from .clock import ExplicitGeneration, GenerationLog, ModelCall, TimestepClock
from .config import ToCaConfig
from .graph_inputs import describe_all
from .observers import CallObserver, ObserverHandle
from .runtime import GraphEntry, Lane, Specialization, ToCaWarning, read_timestep
from .schedule import Schedule, as_schedule
from .stats import RegionStats, Stats, Summary

#: ``logging.getLogger("toca_compile")``: INFO one line per analysed graph and per compiled
#: variant, DEBUG the decisions of each step; warnings go through ``ToCaWarning`` as well
log = logging.getLogger("toca_compile")

#: generations kept for :meth:`ToCa.summary`
LOG_LIMIT = 16


class ToCa:
    """Token-wise caching for every graph compiled with ``torch.compile(m, backend=toca.backend)``.

    Give each model its own ``ToCa`` (``toca_compile.apply(pipe)`` does); several models on one
    ``ToCa`` still keep separate caches, but share statistics. Thread-safe: every thread has its
    own generations and caches.
    """

    def __init__(self, config: ToCaConfig | None = None, schedule: Schedule | None = None) -> None:
        if config is not None and not isinstance(config, ToCaConfig):
            raise TypeError(f"config must be a ToCaConfig or None, got {type(config).__name__}")
        self.config = config or ToCaConfig()
        self._schedule_arg = schedule
        self.lock = threading.RLock()
        #: the registered call observers, outermost first (read-only: use :meth:`observe`)
        self.observers: tuple[CallObserver, ...] = ()
        self._init_runtime()
        self.schedule = schedule or self.config.schedule()

    @property
    def schedule(self) -> Schedule:
        """Which steps are full and how many tokens each region refreshes; may be replaced
        between generations (the variants compiled so far are kept). Always a
        :class:`~toca_compile.schedule.Schedule`: an object that only has its four methods is
        seen through :class:`~toca_compile.schedule.ForeignSchedule`."""
        return self._schedule

    @schedule.setter
    def schedule(self, schedule: Schedule) -> None:
        self._schedule = as_schedule(schedule)
        for entry in self.graphs:
            for spec in entry.specs.values():
                spec.forget_decisions()

    def _init_runtime(self) -> None:
        self._local = threading.local()
        self._lanes: weakref.WeakSet[Lane] = weakref.WeakSet()
        self._entries: list[weakref.ref[GraphEntry]] = []
        self._entry_count = 0
        self._shapes: dict[Hashable, collections.OrderedDict[tuple, list[weakref.ref[Specialization]]]] = {}
        self._last_shape: dict[Hashable, tuple] = {}
        self._owners: dict[int, weakref.ref] = {}
        self._dead: list[int] = []
        self._epoch = 0
        self._stats = Stats()
        self._logs: collections.deque[GenerationLog] = collections.deque(maxlen=LOG_LIMIT)
        self._warned: set[str] = set()

    # -- pickling / copying: settings travel, runtime state does not ------------------------
    def __reduce__(self):
        return (ToCa, (self.config, self._schedule_arg))

    def __repr__(self) -> str:
        return f"ToCa({self.config!r})"

    # -- the backend -----------------------------------------------------------------
    def backend(self, gm: fx.GraphModule, example_inputs: list) -> Callable:
        """The ``torch.compile`` backend: a callable that caches ``gm``'s regions per call."""
        inputs = describe_all(example_inputs)
        family = _family(gm)
        with self.lock:
            entry = GraphEntry(self, gm, inputs, self._entry_count, family)
            self._entry_count += 1
            self._entries = [r for r in self._entries if r() is not None] + [weakref.ref(entry)]
        self._warn_recompile_limit()
        if not entry.symbolic:
            self.specialize(entry, (), inputs)  # analyse now: a graph that cannot be cached warns now
        return entry

    __call__ = backend

    def observe(self, observer: CallObserver) -> ObserverHandle:
        """Wrap every graph call this ``ToCa`` runs, in every thread, with ``observer`` (see
        :class:`~toca_compile.observers.CallObserver`) until the handle is removed::

            with toca.observe(lambda fn, args: fn(*args)):
                fast_model(x, t)

        Observers registered earlier wrap those registered later.
        """
        if not callable(observer):
            raise TypeError(f"observer must be callable as observer(fn, args), got {type(observer).__name__}")

        def remove() -> None:
            with self.lock:
                kept = list(self.observers)
                index = next((i for i, o in enumerate(kept) if o is observer), None)
                if index is not None:
                    del kept[index]
                    self.observers = tuple(kept)

        with self.lock:
            self.observers = (*self.observers, observer)  # a new tuple: calls in flight keep theirs
        return ObserverHandle(remove)

    # -- steps from the user's loop ----------------------------------------------------
    @contextlib.contextmanager
    def generation(self, steps: int | None = None) -> Iterator[ExplicitGeneration]:
        """A generation in this thread whose steps the loop announces with :meth:`step`::

            with toca.generation(steps=50):
                for i, t in enumerate(timesteps):
                    toca.step(i)
                    x = sampler(fast_model(x, t), t, x)

        Inside, the timestep is never read; every call between ``step(i)`` and the next
        ``step`` belongs to step ``i`` (the first call of a graph with the same weights is
        branch 0, the next branch 1: sequential CFG). Before the first ``step`` call, step 0.
        """
        generation = self.begin_generation(steps)
        try:
            yield generation
        finally:
            self.end_generation(generation)

    def begin_generation(self, steps: int | None = None, *, source: str = "manual") -> ExplicitGeneration:
        """Start a generation in this thread (ends the one running); see :meth:`generation`."""
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ValueError(f"steps must be None or an integer >= 1, got {steps!r}")
        lane = self.lane()
        generation = ExplicitGeneration(source, steps)
        lane.explicit, lane.call = generation, None
        with self.lock:
            self._begin_log(generation.log)
        return generation

    def end_generation(self, generation: ExplicitGeneration | None = None) -> None:
        """End this thread's explicit generation (calls infer their steps again afterwards)."""
        lane = self.lane()
        if generation is None or lane.explicit is generation:
            lane.explicit = None

    def step(self, index: int) -> None:
        """Start step ``index`` (0-based) of this thread's generation (see :meth:`generation`)."""
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"step index must be an integer >= 0, got {index!r}")
        generation = self.lane().explicit
        if generation is None:
            raise RuntimeError("toca.step(i) needs a generation: wrap the loop in `with toca.generation():`")
        generation.start_step(index)

    def next_step(self) -> None:
        """Start the step after the current one (what ``toca_compile.apply`` does per scheduler step)."""
        generation = self.lane().explicit
        if generation is not None:
            generation.start_step(generation.step + 1)

    @contextlib.contextmanager
    def branch(self, name: str | None) -> Iterator[None]:
        """Name the calls inside (e.g. ``"cond"`` / ``"uncond"``), so each name keeps its own caches
        whatever order the calls come in (diffusers' ``cache_context`` does this under ``apply``)."""
        generation = self.lane().explicit
        if generation is None:
            yield
            return
        previous, generation.context = generation.context, name
        try:
            yield
        finally:
            generation.context = previous

    # -- user controls ---------------------------------------------------------------
    def reset(self) -> None:
        """Start a new generation at the next call in every thread (inferred steps only)."""
        with self.lock:
            self._epoch += 1

    def release(self) -> None:
        """Free every cache and compiled variant (the graphs re-specialise on their next call)."""
        with self.lock:
            for ref in self._entries:
                entry = ref()
                if entry is not None:
                    entry.specs.clear()
            self._shapes.clear()
            self._last_shape.clear()
            for lane in list(self._lanes):
                lane.states.clear()
                lane.clocks.clear()
                lane.call = None

    @property
    def graphs(self) -> list[GraphEntry]:
        """The live graphs Dynamo handed this ``ToCa``, in the order it handed them."""
        return [e for e in (r() for r in self._entries) if e is not None]

    @property
    def fallbacks(self) -> list[str]:
        """Why each uncached specialisation of the live graphs runs without caching."""
        return [f"graph {e.index}: {s.reason}" for e in self.graphs for s in e.specs.values() if s.reason]

    def stats(self) -> Stats:
        if self._dead:
            self._purge_dead()
        with self.lock:
            stats = Stats(**{k: v for k, v in vars(self._stats).items() if k not in ("regions", "uncached")})
            stats.uncached = dict(self._stats.uncached)
            specs = [s for e in self.graphs for s in e.specs.values()]
            stats.regions = [r for s in specs for r in s.region_stats()]
            stats.shapes = len(specs)
            stats.cache_bytes = sum(s.cache_bytes() for s in specs)
        return stats

    def summary(self) -> Summary:
        """The latest generations (up to 16): per step full / partial / uncached, and why."""
        with self.lock:
            return Summary(list(self._logs), self.stats())

    def region_states(self, graph: int = 0, branch: int = 0) -> dict[str, dict[str, torch.Tensor]]:
        """This thread's live state tensors of one graph (its latest shape) and branch, by region
        label (for debugging). ``branch`` counts the call positions in the order first seen."""
        entry = self.graphs[graph]
        spec = list(entry.specs.values())[-1]
        states = [s for key, s in self.lane().states.get(spec, {}).items() if key != ("scratch",)]
        state = states[branch]
        out: dict[str, dict[str, torch.Tensor]] = {}
        for plan in spec.analysis.plans:  # type: ignore[union-attr]
            keys = {k[1]: t for k, t in state.by_key.items() if k[0] == plan.region.index}
            out[f"{plan.region.index}:{plan.region.label}"] = keys
        return out

    # -- used by the runtime ---------------------------------------------------------
    def lane(self) -> Lane:
        """This thread's lane (created on first use)."""
        if self._dead:
            self._purge_dead()
        lane = getattr(self._local, "lane", None)
        if lane is None:
            lane = self._local.lane = Lane()
            with self.lock:
                self._lanes.add(lane)
        return lane

    def lanes(self) -> list[Lane]:
        return list(self._lanes)

    def owner_key(self, param: Any) -> int:
        """A key for the weights a call runs with (its first parameter), whose states are freed
        when that parameter is garbage-collected."""
        key = id(param)
        ref = self._owners.get(key)
        if ref is not None and ref() is param:
            return key
        with self.lock:
            if ref is not None:  # a dead parameter's id was reused: drop what it owned first
                self._purge_owners({key})
            dead = self._dead
            self._owners[key] = weakref.ref(param, lambda _, key=key, dead=dead: dead.append(key))
        return key

    def tick(self, lane: Lane, model: Hashable, value: Any) -> None:
        """Open a model call in inferred mode from the timestep ``value`` of the model ``model``."""
        t = read_timestep(value)
        if t is None:
            lane.call = ModelCall(0, 0, 0, None, blocked=(
                "the timestep cannot be read on the host (meta device); pass steps explicitly with "
                "toca.generation() and toca.step(i)"))
            return
        clock = lane.clocks.get(model)
        if clock is None:
            clock = lane.clocks[model] = TimestepClock(self._epoch)
        call, started = clock.tick(t, self._epoch, self.config.max_branches)
        if started and call.log is not None:
            with self.lock:
                self._begin_log(call.log)
        lane.call = call

    def specialize(self, entry: GraphEntry, key: tuple, inputs: list) -> Specialization:
        """The specialisation of ``entry`` for one shape, analysed now (under the lock)."""
        with self.lock:
            spec = entry.specs.get(key)
            if spec is not None:
                return spec
            spec = entry.build(key, inputs)
            entry.specs[key] = spec
            if spec.reason:
                self.warn(f"graph {entry.index}: nothing cached, running it with plain "
                          f"{'Inductor' if self.config.compiler == 'inductor' else 'eager'}: {spec.reason}")
            elif log.isEnabledFor(logging.INFO) and spec.analysis is not None:
                kinds = collections.Counter(p.region.kind for p in spec.analysis.plans)
                per_token = sum(1 for p in spec.analysis.plans if p.partial)
                log.info("graph %d%s: %d regions (%s), %d refreshed per token, %d reused whole",
                         entry.index, f" at sizes {key}" if key else "", len(spec.analysis.plans),
                         ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())), per_token,
                         len(spec.analysis.plans) - per_token)
            shapes = self._shapes.setdefault(entry.family, collections.OrderedDict())
            refs = shapes.setdefault(spec.shape_key, [])
            refs.append(weakref.ref(spec))
            shapes.move_to_end(spec.shape_key)
            self._last_shape[entry.family] = spec.shape_key
            while len(shapes) > self.config.max_shapes:
                _, evicted = shapes.popitem(last=False)
                for ref in evicted:
                    old = ref()
                    if old is not None and old.entry.specs.get(old.key) is old:
                        del old.entry.specs[old.key]
                self._stats.shapes_evicted += 1
            return spec

    def touch(self, spec: Specialization) -> None:
        """Mark the shape of ``spec`` as the most recently used of its code (LRU order)."""
        family = spec.entry.family
        if self._last_shape.get(family) == spec.shape_key:
            return
        with self.lock:
            shapes = self._shapes.get(family)
            if shapes is not None and spec.shape_key in shapes:
                shapes.move_to_end(spec.shape_key)
            self._last_shape[family] = spec.shape_key

    def count_placed(self, log: GenerationLog | None, step: int, full: bool) -> None:
        with self.lock:
            self._stats.calls += 1
            if log is not None and log.record(step, "full" if full else "partial"):
                self._stats.steps += 1
                self._stats.full_steps += full
                self._stats.partial_steps += not full

    def count_uncached(self, lane: Lane, reason: str, log: GenerationLog | None = None, step: int = 0, *,
                       in_log: bool = True) -> None:
        """Count a call that ran without caching; ``in_log=False`` for graphs with nothing to cache
        (they do not mark the steps of the generation summary)."""
        with self.lock:
            self._stats.uncached_calls += 1
            self._stats.uncached[reason] = self._stats.uncached.get(reason, 0) + 1
            if log is None and in_log:
                generation = lane.explicit
                if generation is not None:
                    log, step = generation.log, generation.step
                elif lane.call is not None:
                    log, step = lane.call.log, lane.call.step
            if log is not None and in_log:
                log.record(step, "uncached", reason)
            repeated = self._stats.uncached[reason] >= 2
        # the first call of anything computes everything anyway: say so once it costs something
        if repeated and reason.startswith(("more than", "no step information", "the timestep cannot")):
            self.warn(reason)

    def count_variant(self) -> None:
        self._stats.variants_compiled += 1

    def count_constants(self, use: str) -> None:
        """A call that read (``"read"``) or refilled (``"fill"``) its constant caches (text K/V)."""
        with self.lock:
            if use == "read":
                self._stats.constants_read += 1
            else:
                self._stats.constants_filled += 1

    def warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(f"toca-compile: {message}", ToCaWarning, stacklevel=3)

    # -- internals -------------------------------------------------------------------
    def _begin_log(self, log: GenerationLog) -> None:
        self._stats.generations += 1
        self._logs.append(log)

    def _purge_dead(self) -> None:
        with self.lock:
            dead = set(self._dead)
            del self._dead[:]
            dead = {key for key in dead if (ref := self._owners.get(key)) is None or ref() is None}
            self._purge_owners(dead)

    def _purge_owners(self, keys: set[int]) -> None:
        for key in keys:
            self._owners.pop(key, None)
        for lane in list(self._lanes):
            for states in list(lane.states.values()):
                for slot in [s for s in states if s[0] in keys]:
                    del states[slot]
            for model in [m for m in lane.clocks if m in keys]:
                del lane.clocks[model]

    def _warn_recompile_limit(self) -> None:
        compile_id = torch._guards.CompileContext.current_compile_id()
        limit = getattr(torch._dynamo.config, "recompile_limit", None)
        count = getattr(compile_id, "frame_compile_id", None)
        if limit is None or count is None or count + 1 < limit:
            return
        self.warn(f"Dynamo has now compiled the same code {count + 1} times (a new shape or dtype each time with "
                  f"dynamic=False); at its recompile limit ({limit}) it runs further shapes uncompiled and "
                  "uncached. Compile with dynamic=None (the default) or dynamic=True: toca-compile specialises "
                  "each shape itself and keeps the caches of ToCaConfig.max_shapes shapes")


def _family(gm: fx.GraphModule) -> Hashable:
    """The code a graph was traced from (Dynamo's frame id), so that the graphs of one code
    share one budget of live shapes; a graph from elsewhere is its own family."""
    compile_id = torch._guards.CompileContext.current_compile_id()
    frame = getattr(compile_id, "frame_id", None)
    return ("frame", frame) if frame is not None else ("graph", id(gm))


_default: ToCa | None = None


def default_toca() -> ToCa:
    """The ``ToCa`` behind :func:`toca_backend` (default settings)."""
    global _default
    if _default is None:
        _default = ToCa()
    return _default


def toca_backend(gm: fx.GraphModule, example_inputs: list) -> Callable:
    """``torch.compile(model, backend=toca_backend)`` with default settings."""
    return default_toca().backend(gm, example_inputs)


__all__ = ["RegionStats", "ToCa", "default_toca", "toca_backend"]
