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
                           # (with rows > 0: then recompute the selected rows exactly)
    SKIP = "skip"          # DuCa aggressive step: no block runs, the last stream value is reused


@dataclass(frozen=True)
class Decision:
    """One region's decision; ``rows`` is the number of tokens recomputed: > 0 for ``ROWS``,
    optional for ``FORECAST`` (forecast every token, then compute ``rows`` of them exactly)."""

    action: Action
    rows: int = 0

    def __post_init__(self) -> None:
        if self.rows < 0 or (self.action is Action.ROWS and self.rows == 0) \
                or (self.rows > 0 and self.action not in (Action.ROWS, Action.FORECAST)):
            raise ValueError("Decision: rows must be > 0 for ROWS, >= 0 for FORECAST and 0 otherwise, "
                             f"got {self.action.name} with rows={self.rows}")

    @staticmethod
    def refresh(rows: int) -> "Decision":
        """Recompute ``rows`` tokens; 0 rows is a plain reuse of the cache."""
        if rows < 0:
            raise ValueError(f"Decision.refresh: rows must be >= 0, got {rows}")
        return Decision(Action.ROWS, rows) if rows else REUSE

    @staticmethod
    def forecast(rows: int = 0) -> "Decision":
        """Forecast the branch output; with ``rows > 0`` recompute that many tokens exactly."""
        if rows < 0:
            raise ValueError(f"Decision.forecast: rows must be >= 0, got {rows}")
        return Decision(Action.FORECAST, rows)

    @property
    def selects(self) -> bool:
        """Whether the region picks tokens this call (selection state, scores, staleness)."""
        return self.rows > 0

    def tokens_refreshed(self, tokens: int) -> int:
        """Rows of a ``tokens``-long region this decision computes afresh."""
        if self.action is Action.FULL:
            return tokens
        return self.rows

    def __str__(self) -> str:
        if self.action is Action.ROWS:
            return f"rows{self.rows}"
        return f"forecast+rows{self.rows}" if self.rows else self.action.value


FULL = Decision(Action.FULL)
REUSE = Decision(Action.REUSE)
FORECAST = Decision(Action.FORECAST)
SKIP = Decision(Action.SKIP)

__all__ = ["Action", "Decision", "FORECAST", "FULL", "REUSE", "SKIP"]
