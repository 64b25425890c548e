"""What a generation's count reports: totals per step (:class:`FlopsReport`) and, optionally,
per block and region kind (:class:`Breakdown`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping

from .log import OUTSIDE, Site, module_path

if TYPE_CHECKING:
    from ..backend import ToCa

#: breakdown kind of nodes inside a block but outside every detected region (adaLN modulation,
#: per-block embeddings, gates, residual adds)
OTHER = "other"
#: breakdown kind of nodes that toca-compile inserts (token scores, selection, gather/scatter)
OVERHEAD = "toca"
_KIND_ORDER = tuple(f"{kind}{rest}" for rest in ("", " (rest)")
                    for kind in ("attn", "joint_attn", "cross_attn", "mlp", "parallel")) + (OTHER, OVERHEAD, "-")


def region_kinds(toca: "ToCa") -> dict[str, str]:
    """Module path -> region kind, from the regions ``toca`` detected (first region wins)."""
    kinds: dict[str, str] = {}
    analyses = [spec.analysis for graph in toca.graphs for spec in graph.specs.values() if spec.analysis is not None]
    for analysis in analyses:
        for plan in analysis.plans:
            region = plan.region
            for node in region.branch:
                path = module_path(node)
                if path:
                    kinds.setdefault(path, region.kind)
    return kinds


def kind_of(site: Site, kinds: Mapping[str, str]) -> str:
    """Breakdown kind of a site.

    * a region kind (``"attn"``, ``"mlp"``, ...): the node is on a region's branch (its module
      path is one of the branch's), so caching can skip it or run it on fewer rows;
    * ``"<kind> (rest)"``: a module of that region's branch, but not on the branch (adaLN
      modulation inside the norm module, text K/V projections of cross-attention): runs in
      full on every step;
    * :data:`OVERHEAD` for nodes toca-compile inserted (token scores, selection);
    * :data:`OTHER` for the rest of a block, ``"-"`` outside the blocks.
    """
    if site.inserted:
        return OVERHEAD
    if site.module in kinds:
        return kinds[site.module]
    path = site.module.rpartition(".")[0]
    while path and path != site.block:
        if path in kinds:
            return f"{kinds[path]} (rest)"
        path = path.rpartition(".")[0]
    return "-" if site.block == OUTSIDE else OTHER


@dataclass
class Breakdown:
    """FLOPs of a generation per (block, region kind), uncached and cached."""

    rows: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (block, kind) -> [uncached, cached]

    def add(self, block: str, kind: str, column: int, flops: int) -> None:
        self.rows.setdefault((block, kind), [0, 0])[column] += flops

    def by(self, what: str) -> dict[str, list[int]]:
        """Totals per ``"block"`` (graph order) or per ``"kind"`` (region kinds first)."""
        index = {"block": 0, "kind": 1}[what]
        out: dict[str, list[int]] = {}
        for key, (uncached, cached) in self.rows.items():
            entry = out.setdefault(key[index], [0, 0])
            entry[0] += uncached
            entry[1] += cached
        if what == "kind":
            order = {kind: i for i, kind in enumerate(_KIND_ORDER)}
            out = dict(sorted(out.items(), key=lambda item: order.get(item[0], len(order))))
        return out

    def total(self, column: int) -> int:
        return sum(v[column] for v in self.rows.values())

    def table(self, group: str = "block") -> str:
        """A text table per ``"block"``, ``"kind"`` or ``"block-kind"`` (TFLOPs, ratio, share)."""
        from ..stats import format_table

        if group == "block-kind":
            items = [(f"{b}  {k}", v) for (b, k), v in self.rows.items()]
            head = "block  kind"
        else:
            items = list(self.by(group).items())
            head = group
        total_cached = max(self.total(1), 1)
        scale, unit = _unit(max(self.total(0), self.total(1)))
        rows = [(head, f"uncached {unit}", f"cached {unit}", "ratio", "share of cached")]
        for name, (uncached, cached) in items:
            ratio = f"{uncached / cached:.2f}x" if cached and uncached else "-"
            rows.append((name, f"{uncached / scale:.4f}", f"{cached / scale:.4f}", ratio,
                         f"{100 * cached / total_cached:.1f}%"))
        return format_table(rows)


def _unit(flops: int) -> tuple[float, str]:
    for scale, unit in ((1e12, "TFLOPs"), (1e9, "GFLOPs"), (1e6, "MFLOPs")):
        if flops >= scale:
            return scale, unit
    return 1.0, "FLOPs"


@dataclass
class FlopsReport:
    """FLOPs of one generation, uncached and cached (see :func:`generation_flops`)."""

    model: str
    steps: int
    schedule: str
    uncached: int
    cached: int
    uncached_per_step: list[int]
    cached_per_step: list[int]
    full_steps: list[int]          # 0-based steps that ran the full variant
    partial_steps: list[int]
    variants: int                  # variants compiled for the cached generation (full + partial)
    graphs: int                    # Dynamo graphs per model call
    fallbacks: list[str] = field(default_factory=list)   # graphs ToCa could not cache, and why
    breakdown: Breakdown | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Uncached / cached FLOPs (the "x fewer FLOPs" figure)."""
        return self.uncached / self.cached if self.cached else float("inf")

    @property
    def saved(self) -> float:
        """Fraction of the uncached FLOPs that caching removes."""
        return 1 - self.cached / self.uncached if self.uncached else 0.0

    def __str__(self) -> str:
        scale, unit = _unit(self.uncached)
        lines = [
            f"{self.model}, {self.steps} steps, {self.schedule}",
            f"  uncached: {self.uncached / scale:.2f} {unit}",
            f"  cached:   {self.cached / scale:.2f} {unit}  ({self.ratio:.2f}x fewer, {100 * self.saved:.1f}% saved)",
            f"  full steps ({len(self.full_steps)}): {_ranges(self.full_steps)}",
            f"  partial steps ({len(self.partial_steps)}): {_ranges(self.partial_steps)}",
            f"  compiled variants: {self.variants}; Dynamo graphs per call: {self.graphs}",
        ]
        for reason in self.fallbacks:
            lines.append(f"  uncached graph: {reason}")
        return "\n".join(lines)


def _ranges(steps: Iterable[int]) -> str:
    steps = sorted(steps)
    if not steps:
        return "-"
    out, start, prev = [], steps[0], steps[0]
    for s in steps[1:] + [None]:  # type: ignore[list-item]
        if s is not None and s == prev + 1:
            prev = s
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if s is not None:
            start = prev = s
    return ", ".join(out)


__all__ = ["OTHER", "OVERHEAD", "Breakdown", "FlopsReport", "kind_of", "region_kinds"]
