"""Full-step rules of :class:`~toca_compile.schedule.ToCaSchedule`: which steps compute everything.

A rule is a small strategy object; it holds no settings of its own but reads them from the
schedule it is asked about (``interval``, ``first_full``, ``count_down``, ...), so that one
schedule's fields describe the whole generation. ``ToCaSchedule(full_rule=...)`` takes a rule's
name (``"interval"``, ``"threshold"``, ``"cycles"``: :data:`FULL_RULES`) or a rule object, e.g. a
user-defined :class:`FullStepRule` subclass (make it a frozen dataclass, or otherwise hashable
and comparable, so that the schedule stays so).

Step ``i`` is 0-based from the first call of a generation and counts up, ``F`` is the
schedule's ``first_full``, ``N`` its ``interval``, ``T`` its ``num_steps``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from ..validation import fail

if TYPE_CHECKING:
    from .toca import ToCaSchedule

#: the names ``ToCaSchedule(full_rule=...)`` accepts
FullRule = Literal["interval", "threshold", "cycles"]


class FullStepRule:
    """Which steps of one generation of a :class:`~toca_compile.schedule.ToCaSchedule` are full.

    Subclasses implement :meth:`full_steps` (the steps of the table, ``0 .. num_steps - 1``),
    and may override :meth:`full_after` (steps past the table) and :meth:`check` (settings the
    rule cannot work with). ``name`` is the string ``ToCaSchedule(full_rule=...)`` accepts for
    the built-in rules.
    """

    name: ClassVar[str] = ""

    def check(self, schedule: ToCaSchedule) -> None:
        """Raise ``ValueError`` if ``schedule``'s settings do not suit this rule (the default: all do)."""

    def full_steps(self, schedule: ToCaSchedule) -> list[bool]:
        """One flag per step ``0 .. num_steps - 1``: is the step full."""
        raise NotImplementedError(f"{type(self).__name__} does not say which steps are full")

    def full_after(self, schedule: ToCaSchedule, step: int, last_full: int) -> bool:
        """Whether ``step >= num_steps`` is full (``last_full``: the last full step of the
        table). The default: full steps recur every ``interval`` steps after it."""
        return (step - last_full) % schedule.interval == 0


@dataclass(frozen=True)
class IntervalRule(FullStepRule):
    """The first ``F`` steps are full, then every ``N``-th step counted from step ``F - 1``.

    ``F = 1`` is the fixed interval of the ToCa paper (Zou et al., "Accelerating Diffusion
    Transformers with Token-wise Feature Caching", ICLR 2025) and of FORA (Selvaraju et al.,
    2024): full iff ``i % N == 0``. ``F = 3`` is the official ToCa FLUX.1 code: the first 3
    steps full, then every ``N`` counted from step 2.
    """

    name: ClassVar[str] = "interval"

    def full_steps(self, schedule: ToCaSchedule) -> list[bool]:
        F, N = schedule.first_full, schedule.interval
        return [i < F or (i - (F - 1)) % N == 0 for i in range(schedule.num_steps)]


@dataclass(frozen=True)
class ThresholdRule(FullStepRule):
    """The official ToCa DiT-XL/2 (DDIM, DDPM) and PixArt-alpha code: a step-dependent interval.

    With ``s`` the official step index (``T-1-i`` if ``count_down``, else ``i``) and
    ``w = threshold_weight``, the threshold is ``th = round(N / (1 + w - 2w s/T))`` when counting
    down (DiT) and ``round(N / (1 - w + 2w s/T))`` when counting up (PixArt), at least 1; it is
    forced to 2 while ``s`` lies in ``[int(lo T), int(hi T))`` for ``sensitive_window = (lo, hi)``.
    Step ``i`` is full if ``i < F`` or ``s % th == 0``.

    ``lagged_threshold``: the threshold in force is the one computed at the previous full step,
    which is what the official code effectively does for every block but the first: it
    recomputes the threshold only when block 0 runs a full step, and block 0 decides with the
    threshold of the previous full step; so the later blocks are full iff ``s % th_prev == 0``
    and ``s % th(s) == 0``. On a step where only block 0 is due, block 0 computes fully on its
    own when the schedule's ``first_block_alone`` is set (:meth:`first_block_steps`); otherwise
    the whole step is partial.
    """

    name: ClassVar[str] = "threshold"

    def full_steps(self, schedule: ToCaSchedule) -> list[bool]:
        return self._walk(schedule)[0]

    def first_block_steps(self, schedule: ToCaSchedule) -> list[bool]:
        """One flag per step: block 0 computes fully. With ``lagged_threshold`` that is every
        step on which the previous full step's threshold is due, a superset of the full steps
        (the official code then recomputes the threshold, and the other blocks follow it);
        otherwise exactly the full steps."""
        return self._walk(schedule)[1]

    def _walk(self, schedule: ToCaSchedule) -> tuple[list[bool], list[bool]]:
        full: list[bool] = []
        first_block: list[bool] = []
        previous = schedule.interval
        for i in range(schedule.num_steps):
            s = schedule.official_step(i)
            if i < schedule.first_full:
                full.append(True)
                first_block.append(True)
                previous = self.threshold(schedule, s)
            elif not schedule.lagged_threshold:
                full.append(s % self.threshold(schedule, s) == 0)
                first_block.append(full[-1])
            elif s % previous == 0:
                previous = self.threshold(schedule, s)
                full.append(s % previous == 0)
                first_block.append(True)
            else:
                full.append(False)
                first_block.append(False)
        return full, first_block

    @staticmethod
    def threshold(schedule: ToCaSchedule, s: int) -> int:
        """The interval in force at official step ``s``."""
        T, w = schedule.num_steps, schedule.threshold_weight
        if schedule.sensitive_window is not None:
            lo, hi = schedule.sensitive_window
            if int(T * lo) <= s < int(T * hi):
                return 2
        denominator = 1 + w - 2 * w * s / T if schedule.count_down else 1 - w + 2 * w * s / T
        return max(1, round(schedule.interval / denominator))


@dataclass(frozen=True)
class CyclesRule(FullStepRule):
    """The official ToCa OpenSora 1.2 code: per-module refresh cycles.

    The first ``F`` steps are full; afterwards a step is full when every kind of
    ``module_cycles`` is due (kind ``K`` is due at step ``i`` when
    ``(i - cycle_origin) % module_cycles[K] == 0``; the official code: origin 0, self-attention
    and MLP every 3 steps, cross-attention every 6). Past the table the cycles go on.
    """

    name: ClassVar[str] = "cycles"

    def check(self, schedule: ToCaSchedule) -> None:
        if not schedule.module_cycles:
            fail("ToCaSchedule", "module_cycles", "non-empty when full_rule is 'cycles'", schedule.module_cycles)

    def full_steps(self, schedule: ToCaSchedule) -> list[bool]:
        F = schedule.first_full
        return [i < F or self._all_due(schedule, i) for i in range(schedule.num_steps)]

    def full_after(self, schedule: ToCaSchedule, step: int, last_full: int) -> bool:
        return self._all_due(schedule, step)

    @staticmethod
    def _all_due(schedule: ToCaSchedule, step: int) -> bool:
        return all(schedule.module_due(step, kind) for kind in schedule.module_cycles)


#: the built-in rules by name
FULL_RULES: dict[str, FullStepRule] = {rule.name: rule for rule in (IntervalRule(), ThresholdRule(), CyclesRule())}


def resolve_rule(value: object) -> FullStepRule | None:
    """The rule ``value`` names or is; None if it is neither a built-in name nor a rule."""
    if isinstance(value, str):
        return FULL_RULES.get(value)
    if isinstance(value, FullStepRule):
        return value
    return None


__all__ = ["FULL_RULES", "CyclesRule", "FullRule", "FullStepRule", "IntervalRule", "ThresholdRule", "resolve_rule"]
