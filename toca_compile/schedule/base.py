"""What every schedule answers: the base class the runtime calls, once per call on the host."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..regions import MIXING_KINDS

#: the methods a schedule that does not subclass :class:`Schedule` must have
SCHEDULE_METHODS: tuple[str, ...] = ("is_full", "module_full", "ratio", "aggressive")


class _NoStepCount:
    """``Schedule.num_steps`` for schedules that do not set it: None on an instance.

    Read on the class it raises AttributeError, so that a dataclass subclass declaring
    ``num_steps: int`` without a default gets a required field rather than the default None.
    """

    def __get__(self, instance: object, owner: type | None = None) -> None:
        if instance is None:  # read on the class: dataclass subclasses must see no default
            raise AttributeError("num_steps")
        # read on an instance that did not set it: None, a schedule for any length


class Schedule(ABC):
    """Which steps are full, and how much each region refreshes on the others.

    The runtime (:mod:`toca_compile.runtime`), :func:`toca_compile.apply`, the FLOPs counter
    and :func:`~toca_compile.schedule.distinct_partial_plans` ask nothing else. ``step`` is
    0-based from the first call of a generation; ``kind`` is a region kind
    (:data:`~toca_compile.schedule.KINDS`), ``depth`` the region's block and ``num_blocks``
    the model's block count. A subclass implements :meth:`is_full`; every other answer has a
    default:

    ``num_steps``: the generation length the schedule was made for (None, the default: any
        length). Used when a step count is not given, and to warn when a pipeline runs a
        preset for a different number of steps.
    ``module_full``: on a non-full step, regions of this kind still compute fully and refill
        (per-module refresh cycles, as in the official OpenSora code). Default: never.
    ``block_full``: on a non-full step, the regions of this block still compute fully and
        refill (block 0 alone on some steps of the official DiT / PixArt code). Default: never.
    ``ratio``: fraction of tokens a token-wise region (``"mlp"``, ``"cross_attn"``,
        ``"parallel"``) recomputes on a partial step; token-mixing regions (``"attn"``,
        ``"joint_attn"``) reuse their cache whatever it says. Default: 0, every branch output
        is reused (FORA).
    ``aggressive``: DuCa (``ToCaConfig(mode="duca")``): on this partial step no block runs.
        Default: never.

    Schedules are read between calls and may be swapped between generations
    (``toca.schedule = ...``); a schedule should be immutable, since the runtime remembers
    its decisions per step.
    """

    num_steps: int | None = _NoStepCount()  # type: ignore[assignment]

    @abstractmethod
    def is_full(self, step: int) -> bool:
        """Every region computes all tokens and refills its cache at ``step``."""

    def module_full(self, step: int, kind: str) -> bool:
        """On a partial ``step``, regions of ``kind`` compute fully and refill anyway."""
        return False

    def block_full(self, step: int, depth: int) -> bool:
        """On a partial ``step``, every region of block ``depth`` computes fully and refills anyway."""
        return False

    def ratio(self, step: int, kind: str, depth: int, num_blocks: int) -> float:
        """Fraction of tokens a region of ``kind`` in block ``depth`` recomputes at partial ``step``."""
        return 0.0

    def tokens(self, step: int, kind: str, depth: int, num_blocks: int, tokens: int) -> int:
        """Tokens of a ``tokens``-long region of ``kind`` in block ``depth`` recomputed at partial
        ``step``: the region's :meth:`ratio` rounded up."""
        from .helpers import tokens_for  # noqa: PLC0415  (helpers imports this module)

        return tokens_for(self.ratio(step, kind, depth, num_blocks), tokens)

    def aggressive(self, step: int) -> bool:
        """DuCa: partial ``step`` runs no block at all."""
        return False


class FixedRatio(Schedule):
    """Partial steps of a schedule with one ratio: every token-wise region refreshes
    ``base_ratio`` of its tokens, token-mixing ones reuse; no per-module cycles, no DuCa."""

    base_ratio: float

    def ratio(self, step: int, kind: str, depth: int, num_blocks: int) -> float:
        return 0.0 if kind in MIXING_KINDS else self.base_ratio


@dataclass(frozen=True)
class ForeignSchedule(Schedule):
    """A schedule object that does not subclass :class:`Schedule` but has its four methods
    (what the ``Schedule`` protocol of earlier versions asked for), seen through the base class:
    calls go to ``schedule``; ``num_steps`` is its ``num_steps`` if it has one, else None;
    ``block_full`` and ``tokens`` go to it when it has them, else take the defaults.
    Other attributes are read from ``schedule``."""

    schedule: object

    @property
    def num_steps(self) -> int | None:  # type: ignore[override]
        return getattr(self.schedule, "num_steps", None)

    def is_full(self, step: int) -> bool:
        return self.schedule.is_full(step)  # type: ignore[attr-defined]

    def module_full(self, step: int, kind: str) -> bool:
        return self.schedule.module_full(step, kind)  # type: ignore[attr-defined]

    def block_full(self, step: int, depth: int) -> bool:
        answer = getattr(self.schedule, "block_full", None)  # optional: not one of the four methods
        return bool(answer(step, depth)) if callable(answer) else False

    def ratio(self, step: int, kind: str, depth: int, num_blocks: int) -> float:
        return self.schedule.ratio(step, kind, depth, num_blocks)  # type: ignore[attr-defined]

    def tokens(self, step: int, kind: str, depth: int, num_blocks: int, tokens: int) -> int:
        answer = getattr(self.schedule, "tokens", None)  # optional: not one of the four methods
        if callable(answer):
            return int(answer(step, kind, depth, num_blocks, tokens))
        return super().tokens(step, kind, depth, num_blocks, tokens)

    def aggressive(self, step: int) -> bool:
        return self.schedule.aggressive(step)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        if name == "schedule" or name.startswith("__"):  # not set yet (unpickling), or a dunder probe
            raise AttributeError(name)
        return getattr(self.schedule, name)


def as_schedule(schedule: object) -> Schedule:
    """``schedule`` itself if it is a :class:`Schedule`; an object with the four methods
    :data:`SCHEDULE_METHODS` wrapped in a :class:`ForeignSchedule`; otherwise a TypeError."""
    if isinstance(schedule, Schedule):
        return schedule
    missing = [m for m in SCHEDULE_METHODS if not callable(getattr(schedule, m, None))]
    if missing:
        raise TypeError(f"schedule {type(schedule).__name__} lacks the Schedule method(s) {missing}")
    return ForeignSchedule(schedule)


__all__ = ["SCHEDULE_METHODS", "FixedRatio", "ForeignSchedule", "Schedule", "as_schedule"]
