"""The full steps listed one by one: a calibrated schedule (:mod:`toca_compile.calibration`)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..validation import check_int, check_number, fail, is_int
from .base import FixedRatio

_OWNER = "ToCaSchedule"  # the name the messages have always used


@dataclass(frozen=True)
class StepListSchedule(FixedRatio):
    """Full exactly at ``full_steps`` (step 0 always), a fixed ratio for token-wise regions.

    Steps at or past ``num_steps`` are full: the list says nothing about them, and computing
    everything is never wrong (a generation longer than the calibrated one runs uncached
    from there on rather than on a guessed pattern).
    """

    num_steps: int
    full_steps: tuple[int, ...]
    base_ratio: float = 0.0

    def __post_init__(self) -> None:
        check_int(_OWNER, "num_steps", self.num_steps, 1)
        steps = self.full_steps
        if not isinstance(steps, (tuple, list)) or not all(is_int(s) for s in steps):
            fail(_OWNER, "full_steps", "a list of integer step indices", steps)
        ordered = tuple(sorted({int(s) for s in steps}))
        if not ordered or ordered[0] != 0 or ordered[-1] >= self.num_steps:
            fail(_OWNER, "full_steps", f"step indices in [0, {self.num_steps - 1}] that include 0", steps)
        object.__setattr__(self, "full_steps", ordered)
        check_number(_OWNER, "base_ratio", self.base_ratio, 0.0, 1.0, noun="a number")

    @cached_property
    def _full(self) -> frozenset[int]:
        return frozenset(self.full_steps)

    def is_full(self, step: int) -> bool:
        return step >= self.num_steps or step in self._full


__all__ = ["StepListSchedule"]
