"""Per-call decisions on the host: which step, which CFG branch, which compiled variant.

The compiled graphs never branch. Each call of a cached graph asks its step clock which
step and branch it belongs to, picks the full or a partial variant (compiled on first use,
then reused for the rest of this and every later generation of the same shape), and passes
that branch's state tensors, which the variant updates in place.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch

from .compilers import compile_graph
from .flops import run_counted
from .passes.rewrite_partial import FORECAST, FULL, SKIP
from .passes.state_inputs import GLOBAL
from .schedule import tokens_for
from .scores import random_scores

if TYPE_CHECKING:
    from .backend import ToCa
    from .passes.pipeline import PassContext


class ToCaWarning(UserWarning):
    """A graph runs without caching (plain compile); the message says why."""


@dataclass
class StepClock:
    """Steps and CFG branches from the timestep sequence: equal t = next branch, lower t = next
    step, higher t (or ``reset()``) = new generation. Without a timestep every call is a step."""

    generation: int = 0
    step: int = -1
    branch: int = 0
    last_t: float | None = None
    fresh: bool = True

    def tick(self, t: float | None) -> bool:
        """Advance for one call of the leading graph; True when a new step starts."""
        if self.fresh or (t is not None and self.last_t is not None and t > self.last_t):
            self.generation += 1
            self.step, self.branch, self.fresh, self.last_t = 0, 0, False, t
            return True
        if t is not None and t == self.last_t:
            self.branch += 1
            return False
        self.step, self.branch, self.last_t = self.step + 1, 0, t
        return True

    def reset(self) -> None:
        self.fresh = True


@dataclass
class BranchState:
    tensors: list[torch.Tensor]
    by_key: dict[tuple[int, str], torch.Tensor]
    generation: int = -1      # generation whose full step last filled the caches
    last_full: int = -1       # step of the latest full step in this generation (TaylorSeer)
    full_count: int = 0       # full steps so far in this generation


@dataclass
class CachedGraph:
    """The callable handed back to Dynamo for one graph."""

    toca: "ToCa"
    ctx: "PassContext"
    graph_id: int
    timestep_index: int | None
    variants: dict[tuple[int, ...], Callable] = field(default_factory=dict)
    states: dict[int, BranchState] = field(default_factory=dict)
    broken: str = ""
    fallback: Callable | None = None
    clock: StepClock = field(default_factory=StepClock)
    ticks: bool = True

    def __call__(self, *args):
        if self.broken:
            return run_counted(self.toca.flop_sink, self._fallback(), *args)
        try:
            fn, tensors = self._prepare(args)
        except Exception as error:  # noqa: BLE001  never crash the user's model because of us
            self.broken = f"{type(error).__name__}: {error}"
            self.toca.warn(f"graph {self.graph_id}: caching disabled after an internal error ({self.broken}); "
                           "running the plain compiled graph from now on")
            return run_counted(self.toca.flop_sink, self._fallback(), *args)
        return run_counted(self.toca.flop_sink, fn, *args, *tensors)

    # -- decisions -------------------------------------------------------------------
    def _prepare(self, args: tuple):
        toca = self.toca
        clock = self._clock(args)
        step, branch = max(clock.step, 0), clock.branch
        state = self.states.get(branch)
        if state is None:
            state = self.states[branch] = self._allocate()
        full = toca.schedule.is_full(step) or state.generation != clock.generation
        if state.generation != clock.generation:
            state.generation, state.last_full, state.full_count = clock.generation, -1, 0
        decisions = self._decisions(step, full)
        self._set_taylor_scalars(state, step, full)
        key = tuple(decisions[p.region.index] for p in self.ctx.plans)
        if self.ticks and branch == 0:
            toca.stats_.full_steps += full
            toca.stats_.partial_steps += not full
        fn = self.variants.get(key)
        if fn is None:
            fn = self.variants[key] = self._compile(decisions, state)
        if not full:
            self._draw_noise(state, step, decisions)
            self._count(decisions)
        return fn, state.tensors

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

    def _clock(self, args: tuple) -> StepClock:
        """A graph that reads the timestep keeps its own clock (a new shape or dtype is a new
        graph, so it starts a fresh generation); graphs after a graph break without one
        follow the clock that ticked last, or count their own calls if none ever did."""
        toca = self.toca
        if self.timestep_index is None and toca.current_clock is not None:
            self.ticks = False
            return toca.current_clock
        self.ticks = True
        toca.stats_.calls += 1
        toca.on_tick(self.clock, self.clock.tick(self._timestep(args)))
        if self.timestep_index is not None:
            toca.current_clock = self.clock
        return self.clock

    def _timestep(self, args: tuple) -> float | None:
        if self.timestep_index is None:
            return None
        t = args[self.timestep_index]
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            return None  # FLOP counting on the meta device: one call per step
        return float(t.detach().float().max())

    def _decisions(self, step: int, full: bool) -> dict[int, int]:
        """Per region: FULL (compute, refill), 0 (reuse the cache) or k (recompute k rows)."""
        if full:
            return {p.region.index: FULL for p in self.ctx.plans}
        mode = self.toca.config.mode
        aggressive = getattr(self.toca.schedule, "aggressive", None)
        if mode == "duca" and aggressive is not None and aggressive(step):
            return {p.region.index: SKIP for p in self.ctx.plans}
        if mode == "taylorseer":
            return {p.region.index: FORECAST for p in self.ctx.plans}
        schedule, num_blocks = self.toca.schedule, self.ctx.detection.num_blocks
        module_full = getattr(schedule, "module_full", None)
        decisions = {}
        for plan in self.ctx.plans:
            region = plan.region
            if module_full is not None and module_full(step, region.kind):
                decisions[region.index] = FULL
            elif plan.partial:
                ratio = schedule.ratio(step, region.kind, region.block, num_blocks)
                decisions[region.index] = tokens_for(ratio, region.tokens)
            else:
                decisions[region.index] = 0
        return decisions

    def _draw_noise(self, state: BranchState, step: int, decisions: dict[int, int]) -> None:
        seed = self.toca.config.seed
        for plan in self.ctx.plans:
            region = plan.region
            random = plan.score is None or plan.score.kind == "random"
            if decisions[region.index] > 0 and random:
                noise = state.by_key[(region.index, "base")]
                noise.copy_(random_scores(seed, step, region.index, region.batch, region.tokens))

    def _count(self, decisions: dict[int, int]) -> None:
        for plan, entry in zip(self.ctx.plans, self.toca.region_stats(self)):
            k = decisions[plan.region.index]
            entry.partial_calls += 1
            refreshed = plan.region.tokens if k == FULL else max(k, 0)
            entry.tokens_refreshed += refreshed * plan.region.batch

    # -- compilation -----------------------------------------------------------------
    def _allocate(self) -> BranchState:
        by_key = {spec.key: spec.allocate() for spec in self.ctx.specs}
        return BranchState([by_key[spec.key] for spec in self.ctx.specs], by_key)

    def _compile(self, decisions: dict[int, int], state: BranchState) -> Callable:
        from .passes.pipeline import build_variant

        gm = build_variant(self.ctx, decisions, state.tensors)
        self.toca.stats_.variants_compiled += 1
        return compile_graph(gm, list(self.ctx.example_inputs) + state.tensors, self.toca.config.compiler)

    def _fallback(self) -> Callable:
        if self.fallback is None:
            self.fallback = compile_graph(self.ctx.gm, list(self.ctx.example_inputs), self.toca.config.compiler)
        return self.fallback
