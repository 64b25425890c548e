"""What the caches did: step counts, uncached calls and why, refreshed tokens per region, and a
per-generation summary; all printable as tables."""
from __future__ import annotations

from dataclasses import dataclass, field

from .clock import GenerationLog


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
    """Counters since the ``ToCa`` was made. A *step* is counted at its first placed graph call
    (full or partial by that call); *calls* are graph calls that ran a cache variant;
    *uncached calls* ran without caching, counted by reason."""

    steps: int = 0
    full_steps: int = 0
    partial_steps: int = 0
    calls: int = 0
    uncached_calls: int = 0
    uncached: dict[str, int] = field(default_factory=dict)
    generations: int = 0
    variants_compiled: int = 0
    shapes: int = 0            # live static specialisations (shapes) of all graphs
    shapes_evicted: int = 0    # freed beyond ToCaConfig.max_shapes
    cache_bytes: int = 0       # all state tensors of all graphs, branches and threads
    constants_read: int = 0    # calls that read the text K/V (constant values) from their caches
    constants_filled: int = 0  # calls that computed them and refilled the caches
    regions: list[RegionStats] = field(default_factory=list)

    def __str__(self) -> str:
        head = (f"steps {self.steps} (full {self.full_steps}, partial {self.partial_steps}), "
                f"cached calls {self.calls}, uncached calls {self.uncached_calls}, generations "
                f"{self.generations}, variants {self.variants_compiled}, shapes {self.shapes} "
                f"({self.shapes_evicted} freed), cache memory {self.cache_bytes / 2**20:.2f} MiB")
        if self.constants_read or self.constants_filled:
            head += f", constant text K/V read {self.constants_read} / filled {self.constants_filled} calls"
        lines = [head]
        for reason, count in sorted(self.uncached.items(), key=lambda item: -item[1]):
            lines.append(f"  uncached x{count}: {reason}")
        rows = [("graph", "block", "kind", "region", "tokens", "mode", "partial calls", "refreshed/call")]
        for r in self.regions:
            per_call = r.tokens_refreshed / max(1, r.partial_calls)
            rows.append((str(r.graph), str(r.block), r.kind, r.label, str(r.tokens), r.mode,
                         str(r.partial_calls), f"{per_call:.1f}"))
        lines.append(format_table(rows))
        return "\n".join(lines)


@dataclass
class Summary:
    """The latest generations of one model (or of each transformer of a pipeline): which steps
    ran full (``F``), partial (``P``), mixed (``m``) or with uncached calls (``u``), and why."""

    generations: list[GenerationLog] = field(default_factory=list)
    stats: Stats | None = None
    name: str = ""

    def __str__(self) -> str:
        title = f"toca-compile summary{f' of {self.name}' if self.name else ''}"
        lines = [title]
        if not self.generations:
            lines.append("  no generation yet")
        for log in self.generations:
            marks = log.steps.values()
            full = sum(1 for m in marks if m.mark == "F")
            uncached = sum(m.uncached for m in marks)
            planned = f" of {log.planned_steps}" if log.planned_steps is not None else ""
            lines.append(f"  generation {log.id} ({log.source}): {len(log.steps)}{planned} steps, {full} full, "
                         f"{len(log.steps) - full} partial or mixed, {uncached} uncached calls")
            if log.steps:
                lines.append(f"    {log.strip}")
            for reason, count in log.uncached.items():
                lines.append(f"    uncached x{count}: {reason}")
        return "\n".join(lines)


def format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
