"""Which generation, step and branch a call of a compiled graph belongs to.

One contract, :class:`Placement`, from two sources:

* **explicit** (:class:`ExplicitGeneration`): the pipeline (``toca_compile.apply``) or the
  user's loop (``toca.generation()`` / ``toca.step(i)``) says when a generation starts and
  which step runs. No tensor is read, so no device sync.
* **inferred** (:class:`TimestepClock`): for a bare ``torch.compile(model, backend=...)``, from
  the timestep the model receives. The clock learns the direction of the sequence (falling for
  DDPM/DDIM, rising for samplers that count t from 0 to 1); a generation ends when the sequence
  turns back, jumps (a step more than :data:`JUMP` times the previous one, as when an aborted
  generation is followed by an img2img one starting lower), or on ``reset()``. Calls at the
  same timestep are branches (sequential CFG) up to ``max_branches``.

A call's branch is where it stands within its step: the ``cache_context`` name a diffusers
pipeline gave (``"cond"`` / ``"uncond"``) or the inferred branch, and how many calls of the
same graph with the same weights came before it in the step (sequential CFG, one graph reused
by several blocks after a graph break). State is keyed by it, so two calls never share a cache
unless they are the same call of the same step position.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Hashable

#: a step larger than this many times the previous one starts a new generation
JUMP = 4.0

_ids = itertools.count(1)


def new_generation_id() -> int:
    """Process-wide generation ids, so state stamped by one generation never matches another."""
    return next(_ids)


@dataclass(frozen=True)
class Placement:
    """Where one graph call stands: its generation, its step, and its branch within the step."""

    generation: int
    step: int
    branch: Hashable


@dataclass
class StepMarks:
    """How the calls of one step ran."""

    full: int = 0
    partial: int = 0
    uncached: int = 0

    @property
    def mark(self) -> str:
        """``F`` all full, ``P`` all partial, ``m`` mixed, ``u`` some ran uncached."""
        if self.uncached:
            return "u"
        if self.full and self.partial:
            return "m"
        return "F" if self.full else "P"


@dataclass
class GenerationLog:
    """What happened in one generation, for :meth:`ToCa.summary`."""

    id: int
    source: str                          # "pipeline", "manual" or "inferred"
    planned_steps: int | None = None     # the number of steps the source announced
    steps: dict[int, StepMarks] = field(default_factory=dict)
    uncached: dict[str, int] = field(default_factory=dict)   # reason -> calls
    #: step -> region label -> fraction of its tokens computed afresh (1 full, 0 reused or
    #: forecast, k/N for k rows); the pictures in :mod:`toca_compile.plots` read it
    refreshed: dict[int, dict[str, float]] = field(default_factory=dict)

    def record(self, step: int, outcome: str, reason: str = "") -> bool:
        """Count one call (``"full"``, ``"partial"`` or ``"uncached"``); True when it is the
        first cached call of its step."""
        marks = self.steps.get(step)
        if marks is None:
            marks = self.steps[step] = StepMarks()
        first = outcome != "uncached" and marks.full == marks.partial == 0
        setattr(marks, outcome, getattr(marks, outcome) + 1)
        if reason:
            self.uncached[reason] = self.uncached.get(reason, 0) + 1
        return first

    @property
    def strip(self) -> str:
        """One character per step (see :attr:`StepMarks.mark`; ``.`` for a step with no call)."""
        if not self.steps:
            return ""
        last = max(self.steps)
        return "".join(self.steps[i].mark if i in self.steps else "." for i in range(last + 1))


class _Slots:
    """Counts calls per (context, graph, weights) within one step or model call, and the regions
    run so far in the model call (the offset that numbers them across graphs)."""

    def __init__(self) -> None:
        self.counts: dict[Hashable, int] = {}
        self.regions = 0

    def take(self, key: Hashable) -> int:
        n = self.counts.get(key, 0)
        self.counts[key] = n + 1
        return n

    def take_regions(self, count: int) -> int:
        """The model-call-wide index of the first of ``count`` regions about to run."""
        offset = self.regions
        self.regions += count
        return offset


class ExplicitGeneration:
    """A generation whose steps the pipeline or the user's loop announces."""

    def __init__(self, source: str, steps: int | None = None) -> None:
        self.id = new_generation_id()
        self.source = source
        self.steps = steps
        self.step = 0
        self.context: str | None = None      # the pipeline's cache_context name, if any
        self.log = GenerationLog(self.id, source, steps)
        self._slots = _Slots()

    def start_step(self, step: int) -> None:
        self.step = step
        self._slots = _Slots()

    def start_model_call(self) -> None:
        """The graph that reads the timestep ran: regions are numbered from 0 again."""
        self._slots.regions = 0

    def take_regions(self, count: int) -> int:
        return self._slots.take_regions(count)

    def place(self, key: Hashable) -> tuple[Placement, int]:
        """The placement of a call of ``key`` (graph and weights), and how many came before it."""
        occurrence = self._slots.take((self.context, key))
        return Placement(self.id, self.step, (self.context, occurrence)), occurrence


@dataclass
class ModelCall:
    """One call of the model in inferred mode: opened by the graph that reads the timestep."""

    generation: int
    step: int
    branch: int
    log: GenerationLog | None
    blocked: str = ""                    # why the calls of this model call cannot be placed
    slots: _Slots = field(default_factory=_Slots)

    def place(self, key: Hashable) -> tuple[Placement, int]:
        occurrence = self.slots.take(key)
        return Placement(self.generation, self.step, (self.branch, occurrence)), occurrence

    def take_regions(self, count: int) -> int:
        return self.slots.take_regions(count)


class TimestepClock:
    """Steps of one model in one thread, inferred from the timestep sequence it receives."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch                   # the ToCa's reset() count when last synchronised
        self.generation = 0
        self.log: GenerationLog | None = None
        self.step = 0
        self.branch = 0
        self.last_t: float | None = None
        self.direction = 0                   # +1 rising, -1 falling, 0 not known yet
        self.last_delta: float | None = None

    def tick(self, t: float, epoch: int, max_branches: int) -> tuple[ModelCall, bool]:
        """Advance for one model call at timestep ``t``; (the call, whether a generation began)."""
        started = False
        if self.log is None or epoch != self.epoch or self.last_t is None:
            started = self._start()
        elif t == self.last_t:
            self.branch += 1
        else:
            delta = t - self.last_t
            sign = 1 if delta > 0 else -1
            turned = self.direction != 0 and sign != self.direction
            jumped = self.last_delta is not None and abs(delta) > JUMP * abs(self.last_delta)
            if turned or jumped:
                started = self._start()
            else:
                self.direction = sign
                self.step, self.branch, self.last_delta = self.step + 1, 0, delta
        self.epoch, self.last_t = epoch, t
        call = ModelCall(self.generation, self.step, self.branch, self.log)
        if self.branch >= max_branches:
            call.blocked = (f"more than {max_branches} calls at one timestep (each repeated timestep is read "
                            "as another CFG branch); call toca.reset() between generations, raise "
                            "ToCaConfig.max_branches, or pass steps explicitly")
        return call, started

    def _start(self) -> bool:
        self.generation = new_generation_id()
        self.log = GenerationLog(self.generation, "inferred")
        self.step, self.branch, self.direction, self.last_delta = 0, 0, 0, None
        return True
