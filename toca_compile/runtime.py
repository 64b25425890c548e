"""Per-call decisions on the host: which shape, which step and branch, which compiled variant.

Dynamo gets one :class:`GraphEntry` per graph it hands the backend. A call of it

1. picks the static :class:`Specialization` for the call's shapes (a graph Dynamo traced with
   symbolic sizes gets one per concrete shape; beyond ``max_shapes`` the least recently used
   shapes of that code are freed);
2. places the call (:mod:`toca_compile.clock`): generation, step and branch, from the pipeline
   or the user's loop, else from the timestep. A call it cannot place computes everything;
3. takes the state of (thread, weights, branch): caches belong to the call's position, never
   to the graph object alone, so one graph reused by several blocks or by two models keeps a
   cache per use, and threads never share one;
4. runs the full variant or a partial one (compiled on first use, then reused for every later
   generation of that shape), which updates the state in place.

The compiled graphs never branch and Dynamo never recompiles for a decision.
"""
from __future__ import annotations

import dataclasses
import logging
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Hashable

import torch
import torch.fx as fx

from .clock import ExplicitGeneration, GenerationLog, ModelCall, Placement, TimestepClock
from .compilers import compile_graph
from .graph_inputs import InputMeta, describe_all
from .decisions import FULL, REUSE, SKIP, Action, Decision
from .observers import call_observed
from .passes.constant_inputs import COMPUTE, FILL, READ
from .passes.specialize_shapes import data_dependent_node, is_symbolic, specialize_shapes
from .passes.state_inputs import GLOBAL
from .schedule import tokens_for
from .kernels.scores import random_scores
from .stats import RegionStats

log = logging.getLogger("toca_compile")

if TYPE_CHECKING:
    from .backend import ToCa
    from .passes.pipeline import Analysis


class ToCaWarning(UserWarning):
    """toca-compile runs something without caching, or cannot cache as asked; the message says
    why and what to do."""


NO_STEP = ("no step information: no graph of this model read a timestep before this call in this "
           "thread; compute everything (use toca_compile.apply(pipe), or toca.generation() and "
           "toca.step(i) in your loop)")


@dataclass(eq=False)
class BranchState:
    """The caches, counters and score inputs of one call position (see the module docstring)."""

    tensors: list[torch.Tensor]
    by_key: dict[tuple[int, str], torch.Tensor]
    generation: int = -1      # generation whose full step last filled the caches
    last_full: int = -1       # step of the latest full step in this generation (TaylorSeer)
    full_count: int = 0       # full steps so far in this generation
    constants: tuple | None = None  # identity of the inputs the constant caches were filled from

    def renew(self, generation: int) -> None:
        """Start ``generation`` from zeroed tensors (no NaN or Inf of an earlier one survives)."""
        for tensor in self.tensors:
            tensor.zero_()
        self.generation, self.last_full, self.full_count = generation, -1, 0
        self.constants = None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors)


class Lane:
    """What one thread has going on with one ``ToCa``: its explicit generation or its timestep
    clocks, the model call in progress, and its states (freed with the thread, the shape or the
    weights they belong to)."""

    def __init__(self) -> None:
        self.explicit: ExplicitGeneration | None = None
        self.clocks: dict[Hashable, TimestepClock] = {}
        self.call: ModelCall | None = None
        self.states: weakref.WeakKeyDictionary[Specialization, dict[Hashable, BranchState]] = \
            weakref.WeakKeyDictionary()


_SCRATCH = ("scratch",)


def tensor_identity(value: Any) -> tuple | None:
    """What makes ``value`` provably the same tensor, unchanged, as at an earlier call: a weak
    reference to the object (a freed tensor whose address is reused does not match) and its
    storage address, offset, shape, strides, dtype, device and version counter (in-place writes
    bump it). Host attributes only: no device sync. ``None``: no identity can be proven (not a
    tensor, or an inference-mode tensor, which keeps no version counter)."""
    state = _tensor_state(value)
    return None if state is None else (weakref.ref(value), *state)


def _tensor_state(value: Any) -> tuple | None:
    if not isinstance(value, torch.Tensor):
        return None
    try:
        return (value.untyped_storage().data_ptr(), value.storage_offset(), value.shape, value.stride(),
                value.dtype, value.device, value._version)
    except (RuntimeError, TypeError, NotImplementedError):
        return None


def same_tensor(identity: tuple, value: Any) -> bool:
    """``value`` is the tensor ``identity`` (from :func:`tensor_identity`) was taken of, unchanged."""
    if identity[0]() is not value:
        return False
    return _tensor_state(value) == identity[1:]


def read_timestep(value: Any) -> float | None:
    """The timestep as a host number (``None`` when it cannot be read, e.g. on the meta device).

    A Python number arrives from Dynamo as a 0-d CPU tensor: reading it costs no device sync.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, torch.Tensor) or value.device.type == "meta" or value.numel() == 0:
        return None
    return float(value.detach().reshape(-1).max())


@dataclass(frozen=True, eq=False)
class StepKind:
    """What every call of one kind of step (step index, full or partial) does on the host,
    worked out on its first call and reused: a call runs right after the previous one's
    kernels, when the interpreter is cold and each Python step costs several times what it
    costs in a warm loop, so the per-call work is a few dictionary lookups."""

    decisions: dict[int, Decision]
    key: tuple[Decision, ...]                 # the variant, without the constant inputs' use
    random: tuple[tuple[int, int, int], ...]  # (region, batch, tokens) drawing random scores
    refreshed: tuple[int, ...]                # per region: tokens computed afresh x batch rows
    fractions: dict[str, float]               # per region label: fraction computed afresh
    compiled: dict[str, Callable] = field(default_factory=dict)  # the variant, by constants' use


@dataclass(eq=False)
class Specialization:
    """One static graph of a :class:`GraphEntry` (one concrete shape) and its variants."""

    entry: "GraphEntry"
    key: tuple
    shape_key: tuple
    analysis: "Analysis | None"                # None: the graph was not analysed (unsupported)
    reason: str                               # why it runs uncached ("" = cached)
    timestep_index: int | None
    param_index: int | None
    regions: list[RegionStats] = field(default_factory=list)
    variants: dict[tuple[Decision, ...], Callable] = field(default_factory=dict)
    broken: str = ""
    plain: Callable | None = None
    pre_leader: bool = False                   # ran before any timestep graph (inferred mode)
    _kinds: dict[tuple[int, bool], StepKind] = field(default_factory=dict)
    _partial_calls: dict[StepKind, int] = field(default_factory=dict)  # per kind, since last folded

    @property
    def toca(self) -> "ToCa":
        return self.entry.toca

    @property
    def gm(self) -> fx.GraphModule:
        return self.analysis.gm if self.analysis is not None else self.entry.gm

    def __call__(self, args: tuple) -> Any:
        toca = self.toca
        lane = toca.lane()
        owner = toca.owner_key(args[self.param_index]) if self.param_index is not None else None
        if self.timestep_index is not None:
            if lane.explicit is None:
                toca.tick(lane, owner if owner is not None else id(self.entry), args[self.timestep_index])
            else:
                lane.explicit.start_model_call()
        if self.reason or self.broken:
            nothing = self.analysis is not None and not self.analysis.plans and not self.broken
            toca.count_uncached(lane, self.reason or "caching disabled after an internal error", in_log=not nothing)
            return self._run_plain(args)
        try:
            fn, tensors, filled = self._prepare(lane, owner, args)
        except Exception as error:  # noqa: BLE001  never crash the user's model because of us
            self.broken = f"{type(error).__name__}: {error}"
            toca.warn(f"graph {self.entry.index}: caching disabled after an internal error ({self.broken}); "
                      "running the plain compiled graph from now on")
            return self._run_plain(args)
        observers = toca.observers
        if observers:
            out = call_observed(observers, fn, (*args, *tensors))
        else:
            out = fn(*args, *tensors)
        if filled is not None:  # the constant caches hold what these inputs give
            filled[0].constants = filled[1]
        return out

    # -- placing and deciding ------------------------------------------------------------
    def _place(self, lane: Lane, owner: Hashable) -> tuple[Placement | None, str, Any, GenerationLog | None, int]:
        """(placement, why not, the scope that numbers regions, the generation's log, step)."""
        limit = self.toca.config.max_branches
        key = (id(self), owner)
        generation = lane.explicit
        if generation is not None:
            placement, occurrence = generation.place(key)
            if occurrence >= limit:
                return None, (f"more than {limit} calls of one graph with the same weights in one step "
                              "(raise ToCaConfig.max_branches, or check that the pipeline steps its "
                              "scheduler / the loop calls toca.step(i))"), None, generation.log, generation.step
            return placement, "", generation, generation.log, generation.step
        call = lane.call
        if call is None and self.timestep_index is None:
            self.pre_leader = True
        if call is None or self.pre_leader:
            return None, NO_STEP, None, None, 0
        if call.blocked:
            return None, call.blocked, None, call.log, call.step
        placement, occurrence = call.place(key)
        if occurrence >= limit:
            return None, (f"more than {limit} calls of one graph with the same weights in one model call "
                          "(raise ToCaConfig.max_branches)"), None, call.log, call.step
        return placement, "", call, call.log, call.step

    def _prepare(self, lane: Lane, owner: Hashable, args: tuple) -> tuple[Callable, list[torch.Tensor], tuple | None]:
        toca = self.toca
        placement, reason, scope, log, step = self._place(lane, owner)
        states = lane.states.get(self)
        if states is None:
            states = lane.states[self] = {}
        if placement is None:
            state = states.get(_SCRATCH)
            if state is None:
                state = states[_SCRATCH] = self._allocate()
            state.renew(-1)
            full = True
            toca.count_uncached(lane, reason, log, step)
        else:
            step = placement.step
            slot = (owner, placement.branch)
            state = states.get(slot)
            if state is None:
                state = states[slot] = self._allocate()
            fresh = state.generation != placement.generation
            if fresh:
                state.renew(placement.generation)
            full = fresh or toca.schedule.is_full(step)
            toca.count_placed(log, step, full)
            offset = scope.take_regions(len(self.analysis.plans))  # type: ignore[union-attr]
        which = (step, full)
        kind = self._kinds.get(which)
        if kind is None:
            kind = self._kind(step, full)
        self._set_taylor_scalars(state, step, full)
        use, identity = COMPUTE, None
        if self.analysis.constants:  # type: ignore[union-attr]
            use, identity = self._constant_use(state, args, kind.decisions, placement is not None)
            if use != COMPUTE:
                toca.count_constants(use)
        fn = kind.compiled.get(use)
        if fn is None:  # first call of this kind and use: the variant (compiled if no kind had it)
            key = kind.key + (use,) if self.analysis.constants else kind.key  # type: ignore[union-attr]
            fn = self.variants.get(key)
            if fn is None:
                fn = self._compile(key, kind.decisions, args, state, use)
            kind.compiled[use] = fn
        if not full:
            if kind.random:
                self._draw_noise(state, step, kind.random, offset)
            self._partial_calls[kind] = self._partial_calls.get(kind, 0) + 1
        if placement is not None and log is not None:
            log.refreshed.setdefault(step, {}).update(kind.fractions)
        return fn, state.tensors, (state, identity) if use == FILL else None

    def _constant_use(self, state: BranchState, args: tuple, decisions: dict[int, Decision],
                      placed: bool) -> tuple[str, tuple | None]:
        """What this call does with the constant values (text K/V): ``READ`` the caches when
        every input they are computed from is the very tensor, unchanged, that filled them in
        this generation and branch; else ``FILL`` them (with the identity to record once the
        call returns); ``COMPUTE`` when no region reads them in this call, when the call is not
        placed, or when an input's identity cannot be proven."""
        analysis = self.analysis
        assert analysis is not None
        if not analysis.constants or not placed:
            return COMPUTE, None
        readers = analysis.constant_readers
        if not any(decisions[i].action is Action.FULL or decisions[i].selects for i in readers):
            return COMPUTE, None  # nothing reads them: the caches stay as they are
        stored = state.constants
        positions = analysis.constant_inputs
        if stored is not None and all(same_tensor(ident, args[i]) for ident, i in zip(stored, positions)):
            return READ, None
        state.constants = None  # refilled by this call
        identity = tuple(tensor_identity(args[i]) for i in positions)
        if any(ident is None for ident in identity):
            return COMPUTE, None
        return FILL, identity

    def forget_decisions(self) -> None:
        """The schedule changed: decide every step again (the counts so far are kept)."""
        self.regions = self.region_stats()
        self._partial_calls = {}
        self._kinds = {}

    def region_stats(self) -> list[RegionStats]:
        """Each region's counters: partial calls and tokens computed afresh (tallied per step
        kind while running, multiplied out here)."""
        out = [dataclasses.replace(r) for r in self.regions]
        for kind, calls in list(self._partial_calls.items()):
            for entry, rows in zip(out, kind.refreshed):
                entry.partial_calls += calls
                entry.tokens_refreshed += rows * calls
        return out

    def _kind(self, step: int, full: bool) -> StepKind:
        analysis = self.analysis
        assert analysis is not None
        decisions = self._decide(step, full)
        plans = analysis.plans
        random = tuple((p.region.index, p.region.batch, p.region.tokens) for p in plans
                       if decisions[p.region.index].selects and (p.score is None or p.score.kind == "random"))
        rows = [decisions[p.region.index].tokens_refreshed(p.region.tokens) for p in plans]
        kind = StepKind(
            decisions=decisions,
            key=tuple(decisions[p.region.index] for p in plans),
            random=random,
            refreshed=tuple(n * p.region.batch for n, p in zip(rows, plans)),
            fractions={p.region.label: n / p.region.tokens for n, p in zip(rows, plans)})
        if log.isEnabledFor(logging.DEBUG):
            log.debug("graph %d: step %d %s: %s", self.entry.index, step, "full" if full else "partial",
                      " ".join(f"{i}:{d}" for i, d in sorted(decisions.items())))
        self._kinds[(step, full)] = kind
        return kind

    def _decide(self, step: int, full: bool) -> dict[int, Decision]:
        """Per region: FULL (compute, refill), REUSE, ROWS(k), FORECAST (TaylorSeer; with k rows
        computed exactly under ``forecast_refresh``) or SKIP
        (DuCa aggressive step)."""
        analysis = self.analysis
        assert analysis is not None
        if full:
            return {p.region.index: FULL for p in analysis.plans}
        toca = self.toca
        mode, schedule = toca.config.mode, toca.schedule
        if mode == "duca" and schedule.aggressive(step):
            return {p.region.index: SKIP for p in analysis.plans}
        if mode == "taylorseer":
            refresh = toca.config.forecast_refresh
            return {p.region.index: Decision.forecast(tokens_for(refresh, p.region.tokens) if p.partial else 0)
                    for p in analysis.plans}
        num_blocks = analysis.detection.num_blocks
        decisions = {}
        for plan in analysis.plans:
            region = plan.region
            if schedule.module_full(step, region.kind) or schedule.block_full(step, region.block):
                decisions[region.index] = FULL
            elif plan.partial and mode != "fora":  # FORA reuses every branch output
                decisions[region.index] = Decision.refresh(
                    schedule.tokens(step, region.kind, region.block, num_blocks, region.tokens))
            else:
                decisions[region.index] = REUSE
        return decisions

    def _set_taylor_scalars(self, state: BranchState, step: int, full: bool) -> None:
        if self.toca.config.mode != "taylorseer":
            return
        scalars = {name: state.by_key[(GLOBAL, name)] for name in ("taylor_k", "taylor_inv1", "taylor_inv2")}
        if full:
            inv1 = 1.0 / (step - state.last_full) if state.last_full >= 0 and step > state.last_full else 0.0
            scalars["taylor_inv1"].fill_(inv1)
            scalars["taylor_inv2"].fill_(inv1 if state.full_count >= 2 else 0.0)
            state.last_full, state.full_count = step, state.full_count + 1
        else:
            scalars["taylor_k"].fill_(float(step - state.last_full))

    def _draw_noise(self, state: BranchState, step: int, regions: tuple[tuple[int, int, int], ...],
                    offset: int) -> None:
        """Random scores, drawn per region numbered across the whole model call (``offset`` +
        its index in this graph), so that blocks sharing one graph draw differently and the
        draw does not depend on where Dynamo broke the graph."""
        seed = self.toca.config.seed
        for index, batch, tokens in regions:
            state.by_key[(index, "base")].copy_(random_scores(seed, step, offset + index, batch, tokens))

    # -- compilation -----------------------------------------------------------------
    def _allocate(self) -> BranchState:
        by_key = {spec.key: spec.allocate() for spec in self.analysis.specs}  # type: ignore[union-attr]
        return BranchState([by_key[spec.key] for spec in self.analysis.specs], by_key)  # type: ignore[union-attr]

    def _compile(self, key: tuple, decisions: dict[int, Decision], args: tuple, state: BranchState,
                 constants: str = COMPUTE) -> Callable:
        from .passes.pipeline import build_variant

        toca = self.toca
        with toca.lock:
            fn = self.variants.get(key)
            if fn is None:
                gm = build_variant(self.analysis, decisions,  # type: ignore[arg-type]
                                   f"graph{self.entry.index}.variant{len(self.variants)}", constants)
                fn = self.variants[key] = compile_graph(gm, list(args) + state.tensors, toca.config.compiler)
                toca.count_variant()
                log.info("graph %d: compiled variant %d (%s)", self.entry.index, len(self.variants),
                         " ".join(str(d) for d in key))
        return fn

    def _run_plain(self, args: tuple) -> Any:
        fn = self.plain
        if fn is None:
            with self.toca.lock:
                if self.plain is None:
                    self.plain = compile_graph(self.gm, list(args), self.toca.config.compiler)
                fn = self.plain
        observers = self.toca.observers
        if observers:
            return call_observed(observers, fn, args)
        return fn(*args)

    def cache_bytes(self) -> int:
        total = 0
        for lane in self.toca.lanes():
            states = lane.states.get(self)
            if states:
                total += sum(state.nbytes for state in states.values())
        return total


class GraphEntry:
    """The callable Dynamo gets for one graph. It keeps the graph and the metadata of its inputs
    (never the tensors), and hands each call to the static specialisation of its shapes."""

    def __init__(self, toca: "ToCa", gm: fx.GraphModule, inputs: list[InputMeta], index: int,
                 family: Hashable) -> None:
        self.toca = toca
        self.gm = gm
        self.inputs = inputs
        self.index = index
        self.family = family
        self.symbolic = any(m.symbolic for m in inputs) or is_symbolic(gm)
        self.size_args = [i for i, m in enumerate(inputs) if m.symbolic]
        self.specs: dict[tuple, Specialization] = {}

    def shape_of_call(self, args: tuple) -> tuple:
        if not self.symbolic:
            return ()
        return tuple(tuple(a.shape) if isinstance(a, torch.Tensor) else a for a in (args[i] for i in self.size_args))

    def __call__(self, *args: Any) -> Any:
        key = self.shape_of_call(args)
        spec = self.specs.get(key)
        if spec is None:
            spec = self.toca.specialize(self, key, describe_all(args) if self.symbolic else self.inputs)
        else:
            self.toca.touch(spec)
        return spec(args)

    @property
    def broken(self) -> str:
        return next((s.broken for s in self.specs.values() if s.broken), "")

    def build(self, key: tuple, inputs: list[InputMeta]) -> Specialization:
        """Analyse the graph for one concrete shape (see :meth:`ToCa.specialize`)."""
        from .passes.pipeline import analyze

        toca = self.toca
        shape_key = tuple((m.shape, m.dtype) for m in inputs if m.is_tensor and not m.is_param)
        param_index = next((i for i, m in enumerate(inputs) if m.is_param), None)
        reason, analysis = self._unsupported(inputs), None
        if not reason:
            try:
                gm = specialize_shapes(self.gm, inputs) if self.symbolic else self.gm
                analysis = analyze(gm, list(inputs), toca.config, f"graph{self.index}")
                reason = analysis.detection.reason
            except Exception as error:  # noqa: BLE001
                reason = f"analysis failed ({type(error).__name__}: {error})"
        timestep = analysis.detection.timestep if analysis is not None else None
        placeholders = [n for n in (analysis.gm if analysis is not None else self.gm).graph.nodes if n.op == "placeholder"]
        spec = Specialization(self, key, shape_key, analysis, reason,
                              placeholders.index(timestep) if timestep is not None else None, param_index)
        if not reason and analysis is not None:
            spec.regions = [RegionStats(self.index, p.region.block, p.region.kind, p.region.label, p.region.tokens,
                                        "rows" if p.partial else "reuse") for p in analysis.plans]
        return spec

    def _unsupported(self, inputs: list[InputMeta]) -> str:
        node = data_dependent_node(self.gm)
        if node is not None:
            return f"data-dependent shapes inside the graph (at {node.name}); such graphs are left uncached"
        if torch.is_grad_enabled() and any(m.requires_grad for m in inputs):
            return "gradients are enabled; caching is for inference (run under torch.no_grad())"
        return ""

