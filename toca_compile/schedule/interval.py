"""Full every ``interval`` steps, one ratio: what ``ToCaConfig(interval=..., ratio=...)`` runs."""
from __future__ import annotations

from dataclasses import dataclass

from .base import FixedRatio


@dataclass(frozen=True)
class IntervalSchedule(FixedRatio):
    """Full every ``interval`` steps (step 0 included); a fixed ratio for token-wise regions."""

    interval: int
    base_ratio: float

    def is_full(self, step: int) -> bool:
        return step % self.interval == 0


__all__ = ["IntervalSchedule"]
