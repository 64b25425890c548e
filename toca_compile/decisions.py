"""What one region does in one call: the vocabulary shared by the runtime and the rewrite.

The runtime decides (from the schedule, on the host, without a device sync); the rewrite pass
turns a tuple of decisions into one variant graph; the tuple is also the variant's cache key.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(enum.Enum):
    FULL = "full"          # compute the region and refill its caches
    REUSE = "reuse"        # use the cached branch output as it is
    ROWS = "rows"          # recompute the selected rows (token-wise regions), reuse the rest
    FORECAST = "forecast"  # TaylorSeer: extrapolate the branch output from stored differences
    SKIP = "skip"          # DuCa aggressive step: no block runs, the last stream value is reused


@dataclass(frozen=True)
class Decision:
    """One region's decision; ``rows`` is the number of tokens recomputed (``ROWS`` only)."""

    action: Action
    rows: int = 0

    def __post_init__(self) -> None:
        if (self.action is Action.ROWS) != (self.rows > 0):
            raise ValueError(f"Decision: rows must be > 0 exactly for ROWS, got {self.action.name} with rows={self.rows}")

    @staticmethod
    def refresh(rows: int) -> "Decision":
        """Recompute ``rows`` tokens; 0 rows is a plain reuse of the cache."""
        if rows < 0:
            raise ValueError(f"Decision.refresh: rows must be >= 0, got {rows}")
        return Decision(Action.ROWS, rows) if rows else REUSE

    def tokens_refreshed(self, tokens: int) -> int:
        """Rows of a ``tokens``-long region this decision computes afresh."""
        if self.action is Action.FULL:
            return tokens
        return self.rows

    def __str__(self) -> str:
        return f"rows{self.rows}" if self.action is Action.ROWS else self.action.value


FULL = Decision(Action.FULL)
REUSE = Decision(Action.REUSE)
FORECAST = Decision(Action.FORECAST)
SKIP = Decision(Action.SKIP)

__all__ = ["Action", "Decision", "FORECAST", "FULL", "REUSE", "SKIP"]
