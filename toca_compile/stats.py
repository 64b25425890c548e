"""What the caches did: step counts and refreshed tokens per region, printable as a table."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RegionStats:
    graph: int
    block: int
    kind: str
    label: str
    tokens: int
    mode: str                 # "rows" (recomputes selected rows) or "reuse" (whole cache)
    partial_calls: int = 0
    tokens_refreshed: int = 0  # summed over partial calls and batch rows

    @property
    def refreshed_fraction(self) -> float:
        return self.tokens_refreshed / max(1, self.partial_calls * self.tokens)


@dataclass
class Stats:
    steps: int = 0
    full_steps: int = 0
    partial_steps: int = 0
    calls: int = 0
    generations: int = 0
    variants_compiled: int = 0
    cache_bytes: int = 0       # all state tensors of all graphs and CFG branches
    regions: list[RegionStats] = field(default_factory=list)

    def __str__(self) -> str:
        head = (f"steps {self.steps} (full {self.full_steps}, partial {self.partial_steps}), "
                f"calls {self.calls}, generations {self.generations}, variants {self.variants_compiled}, "
                f"cache memory {self.cache_bytes / 2**20:.2f} MiB")
        rows = [("graph", "block", "kind", "region", "tokens", "mode", "partial calls", "refreshed/call")]
        for r in self.regions:
            per_call = r.tokens_refreshed / max(1, r.partial_calls)
            rows.append((str(r.graph), str(r.block), r.kind, r.label, str(r.tokens), r.mode,
                         str(r.partial_calls), f"{per_call:.1f}"))
        return head + "\n" + format_table(rows)


def format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
