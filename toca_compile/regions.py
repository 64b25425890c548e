"""Typed records the analysis passes produce (detection -> plans -> scores); shared by every later pass.

They are frozen: a pass that refines a record returns a new one (``dataclasses.replace``),
so what an earlier pass produced never changes under a later one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch.fx as fx

RegionKind = Literal["attn", "joint_attn", "cross_attn", "mlp", "parallel"]

#: kinds whose branch output depends on other tokens' rows: reused whole on partial steps.
MIXING_KINDS: frozenset[str] = frozenset({"attn", "joint_attn"})


@dataclass(frozen=True, eq=False)
class Region:
    """One residual branch ``join = fork + gate * branch`` of a transformer block.

    The cache holds ``cache_point`` (the branch output before the adaLN gate), so the gate
    and the residual add are recomputed every step with the current modulation.
    """

    index: int                      # position in graph order of the cache points
    kind: RegionKind
    block: int                      # block ordinal (0-based) in graph order
    block_name: str                 # module path of the block when metadata has it
    fork: fx.Node                   # residual stream entering the branch, [B, N, C] or [N, B, C]
    join: fx.Node                   # the add that closes the residual
    cache_point: fx.Node            # branch output before the gate
    gate: fx.Node | None            # adaLN gate multiplied onto cache_point, if any
    anchors: list[fx.Node]          # attention / activation nodes that identify the branch
    branch: set[fx.Node]            # nodes on paths fork -> cache_point (cache_point included)
    tokens: int                     # N, the length of the token axis of the fork
    batch: int
    batch_axis: int = 0             # the fork is [B, N, C] (0, 1) or sequence-first [N, B, C] (1, 0)
    token_axis: int = 1
    partial_ok: bool = True         # False: the branch cannot run on a row subset -> reuse only
    note: str = ""
    layout_known: bool = True       # False: nothing in the graph shows which axis holds the tokens

    @property
    def label(self) -> str:
        name = self.block_name or f"block{self.block}"
        return f"{name}.{self.kind}" if self.kind else name


@dataclass(frozen=True)
class DetectionResult:
    regions: tuple[Region, ...] = ()
    timestep: fx.Node | None = None   # placeholder that feeds the sinusoidal embedding
    reason: str = ""                  # why nothing can be cached, when regions is empty

    @property
    def num_blocks(self) -> int:
        return 1 + max((r.block for r in self.regions), default=-1)


@dataclass(frozen=True, eq=False)
class CacheSlot:
    """A value kept across steps: a region's cache point, or a token-mixing value inside it."""

    node: fx.Node
    batch_axis: int
    token_axis: int
    shape: tuple[int, ...]
    dtype: object
    offset: int = 0                 # the region's tokens start here on the token axis (a joint
                                    # text+image attention output holds the other stream's rows too)


@dataclass(frozen=True, eq=False)
class RegionPlan:
    """What a region caches and which nodes a partial step re-evaluates on gathered rows."""

    region: Region
    slots: tuple[CacheSlot, ...]      # slots[0] is the cache point
    recompute: tuple[fx.Node, ...]         # token-wise nodes between fork and cache point, in order
    axes: dict                        # fx.Node -> Axes | None, from the token-axis analysis
    score: "ScoreSource | None" = None  # where the base token score comes from (token-wise only)
    reproject: tuple[fx.Node, ...] = ()    # reused whole: nodes re-run on every token from slots[1]
                                          # (the output projection, attention_projection="recompute")

    @property
    def reprojection_note(self) -> str:
        """", projection recomputed on every token (n ops)" when reuse steps re-run it, else ""."""
        return f", projection recomputed on every token ({len(self.reproject)} ops)" if self.reproject else ""

    @property
    def partial(self) -> bool:
        """True when a partial step recomputes selected rows (False: reuse the whole cache)."""
        return self.region.partial_ok


@dataclass(frozen=True)
class ScoreSource:
    """Graph values a token-wise region's base score is computed from on full steps."""

    kind: str                                   # "attention", "kvnorm" or "random"
    owners: tuple[int, ...] = ()                # regions that must compute fully for it
    query: fx.Node | None = None                # self-attention q, k, v [B, H, N, D]
    key: fx.Node | None = None
    value: fx.Node | None = None
    scale: float | None = None
    attention: fx.Node | None = None            # the SDPA call q, k, v come from
    cross_query: fx.Node | None = None          # cross-attention q, k (s2), if the block has one
    cross_key: fx.Node | None = None
    cross_scale: float | None = None
    offset: int = 0                             # joint attention: where this stream's tokens start
    span: int | None = None                     # among its keys, and how many (None: all keys)
    grid: tuple[int, ...] = ()                  # token grid from the patch embedding, () if none
