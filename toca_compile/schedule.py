"""Which steps are full, and how many tokens each region refreshes on partial steps.

The schedule is a plain object queried by the runtime on the host once per call; it never
reaches the compiled graphs except through the static ``k`` of the variant it selects.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


def tokens_for(ratio: float, tokens: int) -> int:
    """Tokens refreshed out of ``tokens`` at ``ratio``: ceil(ratio * N), at least 1 if ratio > 0."""
    if ratio <= 0:
        return 0
    return min(tokens, max(1, math.ceil(ratio * tokens - 1e-9)))


class Schedule(Protocol):
    def is_full(self, step: int) -> bool: ...

    def ratio(self, step: int, region_kind: str, depth: int, num_blocks: int) -> float: ...


@dataclass(frozen=True)
class IntervalSchedule:
    """Full every ``interval`` steps (step 0 included); a fixed ratio for token-wise regions."""

    interval: int
    base_ratio: float

    def is_full(self, step: int) -> bool:
        return step % self.interval == 0

    def ratio(self, step: int, region_kind: str, depth: int, num_blocks: int) -> float:
        return 0.0 if region_kind in ("attn", "joint_attn") else self.base_ratio
