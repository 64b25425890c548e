"""The eager oracle of token-wise caching, written from the definitions (the ToCa paper and
DESIGN.md, the settings documented in the README), sharing no code with toca_compile.

Everything the compiled path decides is re-derived here in plain eager code: which steps are
full (the interval rule and the published presets' formulas, with the README's bucketing of the
step factor), how many tokens a region refreshes, the seeded random draw, the staleness counter,
and every token score (s1 attention received from sampled query rows, s2 cross-attention
entropy, s3 staleness, s4 spatial spread, DuCa's value norms). ``ReferenceToCa`` applies them
to a ``TinyDiT`` by calling its blocks branch by branch, so no graph analysis is involved either;
the compiled backend is compared with it: outputs, selected rows and the cache tensors.

Modes (``config.mode``):

* ``"toca"``: partial steps recompute the top-k rows of token-wise regions (MLP, cross-attention,
  parallel) and reuse token-mixing ones (self- and joint attention) whole.
* ``"fora"``: ratio 0, every region reuses its cache on partial steps.
* ``"duca"``: every second partial step after a full one is *aggressive*: no block runs, the
  residual stream saved at the branch's latest other call goes to the final layer under the
  current step's conditioning.
* ``"taylorseer"``: full steps store finite differences of each branch output
  ``d0 = P``, ``d1 = (P - d0_old)/(s - s')``, ``d2 = (d1 - d1_old)/(s - s')`` (from the branch's
  second / third full step on), partial steps forecast ``d0 + d1 k (+ d2 k^2/2)``. With
  ``forecast_refresh = r > 0`` a token-wise region then recomputes its top ``ceil(r N)`` rows
  (selected as in ToCa) exactly and writes them into the forecast; the differences stay those of
  the full steps.
"""
from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from architectures import (
    DiTBlock,
    JointBlock,
    ParallelBlock,
    TinyDiT,
    _kw,
    expected_regions,
    residual,
)
from torch import Tensor

MIXING = ("attn", "joint_attn")
TOKENWISE = ("mlp", "cross_attn", "parallel")


# ---------------------------------------------------------------------------------------------
# How many tokens, which steps


def _as_float32(value: float) -> float:
    """``value`` rounded to the nearest IEEE single (what ``torch.tensor(value)`` stores)."""
    return struct.unpack("<f", struct.pack("<f", value))[0]


def refreshed_tokens(ratio: float, tokens: int, floor: bool = False) -> int:
    """k = ceil(ratio · N) (at least 1 when the ratio is positive, at most N); with ``floor``
    the official code's ``int(ratio · N)``, ratio and product both single precision."""
    if not ratio > 0:
        return 0
    if floor:
        return min(tokens, int(_as_float32(_as_float32(min(ratio, 1.0)) * tokens)))
    return min(tokens, max(1, math.ceil(ratio * tokens - 1e-9)))


def _snap(value: float, lo: float, hi: float, levels: int | None) -> float:
    """The README's bucketing: the nearest of ``levels`` evenly spaced values in [lo, hi]."""
    if levels is None:
        return value
    if hi - lo <= 1e-12:
        return lo
    if levels == 1:
        return (lo + hi) / 2
    width = (hi - lo) / (levels - 1)
    j = min(max(round((value - lo) / width), 0), levels - 1)
    return lo + j * width


@dataclass
class OracleSchedule:
    """Full steps, module refreshes, aggressive steps and ratios of one configuration.

    ``rule`` is ``"every"`` (full when ``step % interval == 0``), ``"threshold"`` (the official
    DiT / PixArt code; with ``lagged``, as that code applies it: block 0 tests the threshold
    set at the previous full step, the step is full when the threshold recomputed there is due
    too), ``"after3"`` (FLUX: 3 full steps, then every ``interval`` counted from step
    2), ``"cycles"`` (OpenSora: 3 full steps, then per-kind cycles; full when all are due),
    ``"warm"`` (``warm`` full steps, then every ``interval`` counted from the last of them) or
    ``"list"`` (full exactly at ``listed``, and at every step from ``steps`` on). With ``alone``
    (lagged threshold), block 0 computes fully on a partial step where its carried threshold is
    due. With ``floor``, ``k = int(r N)`` in single precision, else ``ceil(r N)``.
    The ratio of a token-wise region is ``base · step(i) · layer(l) · module(kind)``, clamped to
    [0, 1]; token-mixing kinds get 0.
    """

    steps: int
    rule: str = "every"
    interval: int = 3
    base: float = 0.15
    count_down: bool = False
    weight: float = 0.0                     # threshold rule: th = N / (1 ± w ∓ 2w s/T)
    sensitive: bool = False                 # DiT: th = 2 for s in [0.2T, 0.4T)
    lagged: bool = False                    # threshold rule: block 0 keeps the last full step's th
    alone: bool = False                     # lagged: block 0 computes when due though the others are not
    floor: bool = False                     # k = int(r N) in single precision (the official code)
    step_from_to: tuple[float, float] = (1.0, 1.0)
    layer_from_to: tuple[float, float] = (1.0, 1.0)
    layer_span: int | None = None        # None: the model's last block
    parallel_offset: int = 0                # FLUX counts single-stream blocks from 0
    module: dict = field(default_factory=lambda: {"mlp": 1.0, "cross_attn": 1.0, "parallel": 1.0})
    cycles: dict = field(default_factory=dict)
    levels: int | None = 4
    duca: bool = False
    warm: int = 1
    listed: frozenset = frozenset()

    def is_full(self, i: int) -> bool:
        if self.rule == "every":
            return i % self.interval == 0
        if self.rule == "warm":
            return i < self.warm or (i - (self.warm - 1)) % self.interval == 0
        if self.rule == "list":
            return i in self.listed or i >= self.steps
        if self.rule == "after3":
            return i < 3 or (i - 2) % self.interval == 0
        if self.rule == "cycles":
            return i < 3 or all(i % c == 0 for c in self.cycles.values())
        if i >= self.steps or not self.lagged:
            s = self.steps - 1 - i if self.count_down else i
            return i == 0 or s % self._threshold(s) == 0
        if not hasattr(self, "_lagged_full"):  # walk the generation once, carrying block 0's threshold
            self._lagged_full, self._block0_due, carried = [], [], None
            for j in range(self.steps):
                s = self.steps - 1 - j if self.count_down else j
                due = j == 0 or s % carried == 0
                self._block0_due.append(due)
                if due:  # block 0 computes, and sets the threshold anew
                    carried = self._threshold(s)
                    self._lagged_full.append(j == 0 or s % carried == 0)
                else:
                    self._lagged_full.append(False)
        return self._lagged_full[i]

    def block_full(self, i: int, block: int) -> bool:
        """Block 0 alone computes at partial step ``i`` (the official DiT / PixArt code)."""
        if not (self.alone and self.lagged and self.rule == "threshold" and block == 0 and i < self.steps):
            return False
        return not self.is_full(i) and self._block0_due[i]

    def _threshold(self, s: int) -> int:
        T, N = self.steps, self.interval
        if self.sensitive and int(0.2 * T) <= s < int(0.4 * T):
            return 2
        w = self.weight
        return max(1, round(N / ((1 + w - 2 * w * s / T) if self.count_down else (1 - w + 2 * w * s / T))))

    def module_full(self, i: int, kind: str) -> bool:
        cycle = self.cycles.get(kind)
        return cycle is not None and not self.is_full(i) and i >= 3 and i % cycle == 0

    def since_full(self, i: int) -> int:
        n = 0
        while i - n > 0 and not self.is_full(i - n):
            n += 1
        return n

    def aggressive(self, i: int) -> bool:
        since = self.since_full(i)
        return self.duca and since > 0 and since % 2 == 0

    def _raw_step(self, i: int) -> float:
        T = self.steps
        progress = 1 - (T - 1 - i) / T if self.count_down else i / T
        start, end = self.step_from_to
        return max(0.0, start + (end - start) * progress)

    def step_factor(self, i: int) -> float:
        if self.levels is None:
            return self._raw_step(i)
        if not hasattr(self, "_range"):  # over the conservative partial steps of one generation
            conservative = [self._raw_step(j) for j in range(self.steps) if not self.is_full(j) and not self.aggressive(j)]
            reference = conservative or [self._raw_step(j) for j in range(self.steps)]
            self._range = (min(reference), max(reference))
        return _snap(self._raw_step(i), *self._range, self.levels)

    def ratio(self, i: int, kind: str, block: int, num_blocks: int) -> float:
        if kind in MIXING:
            return 0.0
        if self.module_full(i, kind):
            return 1.0
        layer = max(block - (self.parallel_offset if kind == "parallel" else 0), 0)
        span = self.layer_span if self.layer_span is not None else max(num_blocks - 1, 1)
        start, end = self.layer_from_to
        value = self.base * self.step_factor(i) * (start + (end - start) * layer / span) * self.module.get(kind, 1.0)
        return 0.0 if math.isnan(value) else min(max(value, 0.0), 1.0)


def _dit(steps: int, interval: int, step: tuple[float, float], layer: tuple[float, float]) -> OracleSchedule:
    return OracleSchedule(steps, "threshold", interval, 0.07, count_down=True, weight=0.4, sensitive=True, lagged=True,
                          alone=True, floor=True, step_from_to=step, layer_from_to=layer,
                          module={"mlp": 2.5, "cross_attn": 2.5, "parallel": 2.5})


def _flux(interval: int) -> OracleSchedule:
    return OracleSchedule(50, "after3", interval, 0.1, layer_from_to=(1.5, 0.5), layer_span=27, parallel_offset=19,
                          module={"mlp": 0.4, "cross_attn": 0.4, "parallel": 1.6}, levels=4, floor=True)


PUBLISHED = {
    "dit-ddim-50": lambda: _dit(50, 3, (-1.0, 3.0), (0.8, 1.2)),
    "dit-ddpm-250": lambda: _dit(250, 4, (0.6, 1.4), (1.8, 0.2)),
    "dit-fora-50": lambda: OracleSchedule(50, "threshold", 3, 0.0, count_down=True, lagged=True, floor=True),
    "pixart-dpm-20": lambda: OracleSchedule(20, "threshold", 3, 0.3, weight=0.2, lagged=True, alone=True, floor=True,
                                            step_from_to=(1.9, 0.1),
                                            layer_from_to=(1.6, 0.4),
                                            module={"cross_attn": 0.6, "mlp": 1.6, "parallel": 1.6}),
    "opensora-rflow-30": lambda: OracleSchedule(30, "cycles", 3, 0.1, floor=True, cycles={"attn": 3, "joint_attn": 3,
                                                "cross_attn": 6, "mlp": 3, "parallel": 3},
                                                module={"cross_attn": 0.0, "mlp": 1.495, "parallel": 1.495}),
    "flux-50-n4": lambda: _flux(4),
    "flux-50-n5": lambda: _flux(5),
    "flux-50-n6": lambda: _flux(6),
    "fora": lambda: OracleSchedule(50, "every", 3, 0.0),
    "default": lambda: OracleSchedule(50, "every", 3, 0.15),
}


# s4 as each of the authors' code bases calls local_selection_with_bonus (cell, bonus): DiT 2x2 and
# 0.6, PixArt-alpha 4x4 and 0.4; commented out in the FLUX and OpenSora code (no bonus)
OFFICIAL_SPATIAL = {"dit-ddim-50": (2, 0.6), "dit-ddpm-250": (2, 0.6), "dit-fora-50": (2, 0.6),
                    "pixart-dpm-20": (4, 0.4), "opensora-rflow-30": (2, 0.0), "flux-50-n4": (2, 0.0),
                    "flux-50-n5": (2, 0.0), "flux-50-n6": (2, 0.0)}


def spatial_setting(config) -> tuple[int, float]:
    """(cell, bonus) of s4: the config's fields where set, else its preset's code's, else 2 and 0.6."""
    cell, bonus = OFFICIAL_SPATIAL.get(config.preset, (2, 0.6))
    return (cell if config.spatial_cell is None else config.spatial_cell,
            bonus if config.spatial_bonus is None else config.spatial_bonus)


def oracle_schedule(config) -> OracleSchedule:
    """The schedule a ``ToCaConfig`` describes (its fields read as documented)."""
    if config.preset is not None:
        schedule = PUBLISHED[config.preset]()
    elif config.schedule_file is not None:  # the file's JSON read directly
        import json

        with open(config.schedule_file) as fh:
            saved = json.load(fh)
        schedule = OracleSchedule(saved["num_steps"], "list", base=saved["ratio"], levels=None,
                                  listed=frozenset(saved["full_steps"]))
    elif config.warmup > 1:
        schedule = OracleSchedule(10**9, "warm", config.interval, config.ratio, levels=None, warm=config.warmup)
    else:
        schedule = OracleSchedule(10**9, "every", config.interval, config.ratio, levels=None)
    if config.mode == "fora":
        schedule.base = 0.0
    schedule.duca = config.mode == "duca"
    return schedule


# ---------------------------------------------------------------------------------------------
# Token scores


def seeded_draw(seed: int, step: int, region: int, batch: int, tokens: int) -> Tensor:
    """The random score: uniform [0, 1) from a CPU generator seeded by
    ``(seed · 1000003 + step · 7919 + region · 104729) mod (2^63 - 1)``, region numbered in call
    order across the model call."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + step * 7_919 + region * 104_729) % (2**63 - 1))
    return torch.rand(batch, tokens, generator=g)


def l2(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def received_attention(q: Tensor, k: Tensor, queries: int, first: int = 0, count: int | None = None) -> Tensor:
    """s1: column sums of the head-mean attention map over ``queries`` evenly strided query rows
    (``floor(i·N/m)``; all rows when m >= N), l2-normalised over the tokens. Joint attention:
    only the ``count`` tokens from ``first`` are this stream's; its rows are the queries, its
    columns are summed, the softmax is over every key."""
    n = q.shape[-2] if count is None else count
    rows = list(range(n)) if queries >= n else [int(i * n / queries) for i in range(queries)]
    rows = [first + r for r in rows]
    probs = torch.softmax((q[..., rows, :].double() @ k.double().transpose(-1, -2)) / math.sqrt(q.shape[-1]), -1)
    return l2(probs.mean(dim=1).sum(dim=-2)[:, first:first + n]).float()


def cross_attention_entropy(q: Tensor, k: Tensor, halves: bool) -> Tensor:
    """s2: l2normalise(1 + H) of each token's head-mean cross-attention distribution over the text,
    the CFG halves averaged when they share their choice."""
    probs = torch.softmax((q.double() @ k.double().transpose(-1, -2)) / math.sqrt(q.shape[-1]), -1).mean(dim=1)
    entropy = -(probs * torch.log(probs + 1e-7)).sum(dim=-1)
    if halves and entropy.shape[0] % 2 == 0:
        h = entropy.shape[0] // 2
        entropy = torch.cat([(entropy[:h] + entropy[h:]) / 2] * 2)
    return l2(1 + entropy).float()


def value_norm_score(v: Tensor) -> Tensor:
    """DuCa: l2normalise(Σ_heads (1 - ‖v_h‖))."""
    return l2((1 - v.double().norm(dim=-1)).sum(dim=1)).float()


def spatial_spread(score: Tensor, cell: int, bonus: float, grid: tuple[int, ...] = ()) -> Tensor:
    """s4: in each cell×cell square of the token grid (h, w) (row-major tokens; both sides
    multiples of ``cell``), else in each run of cell² consecutive tokens (tokens on a line), the
    best token (every one tied for best) gains ``bonus · max(score)``."""
    if bonus == 0 or cell <= 1:
        return score
    size = cell * cell
    out = score.clone()
    top = score.max(dim=-1).values
    if len(grid) == 2 and grid[0] % cell == 0 and grid[1] % cell == 0 and grid[0] * grid[1] == score.shape[-1]:
        h, w = grid
        for r in range(0, h, cell):
            for col in range(0, w, cell):
                rows = [(r + i) * w + col + j for i in range(cell) for j in range(cell)]
                chunk = score[:, rows]
                best = chunk == chunk.max(dim=-1, keepdim=True).values
                out[:, rows] = chunk + best.float() * (bonus * top[:, None])
        return out
    for start in range(0, score.shape[-1], size):
        chunk = score[:, start:start + size]
        best = chunk == chunk.max(dim=-1, keepdim=True).values
        out[:, start:start + size] = chunk + best.float() * (bonus * top[:, None])
    return out


# ---------------------------------------------------------------------------------------------
# The reference


@dataclass
class RegionState:
    """What one region keeps between calls of one CFG branch."""

    kind: str
    cache: Tensor                       # [B, N, C]: branch output P before the gate
    stale: Tensor                       # [B, N]: partial steps since each row was recomputed
    base: Tensor | None = None       # [B, N]: score of the last full step (None: random draws)
    attn: Tensor | None = None       # parallel: merged-heads attention of the last full step
    selected: Tensor | None = None   # [B, k] rows recomputed at the latest step (None: none)
    derivs: list[Tensor] | None = None  # TaylorSeer: [d0, d1(, d2)] of P, d0 == cache


@dataclass
class _Pass:
    """Bookkeeping of one call."""

    full: bool
    state: dict[int, RegionState]
    step: int
    since_full: int = 0
    inv1: float = 0.0
    inv2: float = 0.0
    next_region: int = 0
    block: int = 0
    visited: list[tuple[int, str]] = field(default_factory=list)
    scores: dict[str, Tensor] = field(default_factory=dict)   # this block's scores, when computed


def taylor_update(old: list[Tensor] | None, p: Tensor, order: int, inv1: float, inv2: float) -> list[Tensor]:
    """Differences after a full step that computed ``p``; a first full step has none."""
    d1 = (p - old[0]) * inv1 if old is not None and inv1 else torch.zeros_like(p)
    derivs = [p, d1]
    if order >= 2:
        derivs.append((d1 - old[1]) * inv2 if old is not None and inv2 else torch.zeros_like(p))
    return derivs


def taylor_forecast(derivs: list[Tensor], k: int) -> Tensor:
    out = derivs[0] + derivs[1] * k
    if len(derivs) > 2:
        out = out + derivs[2] * (k * k / 2)
    return out


class ReferenceToCa:
    """The oracle over a ``TinyDiT``; the compiled backend must match it.

    Placement: ``oracle(x, t, text)`` follows a falling timestep (the first call, or a larger t
    than before, starts a generation; the same t is the next CFG branch; a smaller t the next
    step); ``oracle(x, t, text, step=i, branch=b, new_generation=...)`` is told.

    A branch that no full step of this generation has filled computes fully.
    ``state[branch][region]`` is a ``RegionState``; ``last_full`` / ``last_aggressive`` say what
    the latest call was; ``streams[branch]`` is the residual stream before the final layer at
    the branch's latest non-aggressive call.

    Score sources (``config.score``, used only when partial steps select tokens): a token-wise
    region of a block scores with that block's (first) self-attention when it is an SDPA over
    exactly the region's tokens with no mask (DiT and parallel blocks; joint text+image
    attention, hand-written softmax attention and masked attention give random draws), plus
    ``entropy_weight`` × s2 from the block's cross-attention for ``"attention"``. The scores
    read q and k as the attention op receives them (after qk-norm, rotary embedding and the
    grouped-query expansion). A block called twice scores each call with that call's attention.
    The spatial bonus uses the patch grid of the wrapper's convolution for regions with exactly
    that many tokens (no registers) when the model has no graph breaks (a graph without the
    convolution has no grid: tokens on a line). The base score is refreshed when the region and its score sources
    compute fully. Staleness adds ``staleness_weight · count / N``.
    """

    def __init__(self, model: TinyDiT, config, schedule: OracleSchedule | None = None) -> None:
        self.model = model
        self.config = config
        self.mode = config.mode
        self.schedule = schedule if schedule is not None else oracle_schedule(config)
        self.regions = expected_regions(model.spec)
        spec = model.spec
        self.num_blocks = len(spec.block_calls)  # block calls: a shared block counts twice
        selects = (config.mode in ("toca", "duca") and (config.preset is not None or (config.interval > 1 and config.ratio > 0))) \
            or (config.mode == "taylorseer" and config.forecast_refresh > 0)
        self.scored = config.score != "random" and selects and spec.attention == "sdpa" and spec.key_mask == "none"
        # nn.MultiheadAttention is one opaque node: a branch around it cannot run on a row subset
        self.whole = {"cross_attn", "parallel"} if spec.attention == "mha" else set()
        self.seq_first = spec.seq_first
        self.grid = spec.grid if spec.wrapper and spec.graph_break == "none" else ()
        self.reset()

    def reset(self) -> None:
        self.step = 0
        self.branch = 0
        self.last_t: float | None = None
        self._new_generation()
        self.last_full: bool | None = None
        self.last_aggressive: bool | None = None

    def _new_generation(self) -> None:
        self.state: list[dict[int, RegionState]] = []
        self.streams: list[Tensor | None] = []
        self.full_steps: list[list[int]] = []

    def _advance(self, t: Tensor) -> None:
        now = float(t.max())
        if self.last_t is None or now > self.last_t:
            self.step, self.branch = 0, 0
            self._new_generation()
        elif now == self.last_t:
            self.branch += 1
        else:
            self.step, self.branch = self.step + 1, 0
        self.last_t = now

    @torch.no_grad()
    def __call__(self, x: Tensor, t: Tensor, text: Tensor | None = None, *, step: int | None = None,
                 branch: int = 0, new_generation: bool = False) -> Tensor:
        if step is None:
            self._advance(t)
        else:
            if new_generation:
                self._new_generation()
            self.step, self.branch = step, branch
        while len(self.state) <= self.branch:
            self.state.append({})
            self.streams.append(None)
            self.full_steps.append([])
        full = self.schedule.is_full(self.step) or not self.state[self.branch]
        aggressive = self.mode == "duca" and not full and self.schedule.aggressive(self.step)
        self.last_full, self.last_aggressive = full, aggressive
        model = self.model
        h, c, txt = model.embed(x, t, text)
        self.ctx = model.context(h, txt) if hasattr(model, "context") else {}
        if aggressive:
            return model.final(self.streams[self.branch], c)
        history = self.full_steps[self.branch]
        if full:
            if self.mode != "taylorseer":
                self.state[self.branch] = {}
            history.append(self.step)
        run = _Pass(full=full, state=self.state[self.branch], step=self.step, since_full=self.step - history[-1])
        if full and len(history) >= 2:
            run.inv1 = 1.0 / (history[-1] - history[-2])
            run.inv2 = run.inv1 if len(history) >= 3 else 0.0
        for i, block in enumerate(model.block_calls()):
            run.block, run.scores = i, {}
            if isinstance(block, ParallelBlock):
                h = self._parallel_block(run, block, h, c)
            elif isinstance(block, JointBlock):
                h, txt = self._joint_block(run, block, h, c, txt)
            else:
                h = self._dit_block(run, block, h, c, txt)
        if run.visited != self.regions:
            raise AssertionError(f"oracle visited {run.visited}, expected_regions says {self.regions}")
        self.streams[self.branch] = h
        return model.final(h, c)

    # -- decisions ------------------------------------------------------------------------
    def _computes(self, run: _Pass, kind: str) -> bool:
        """Whether a region of ``kind`` computes fully on this call."""
        block_full = getattr(self.schedule, "block_full", None)  # a user's schedule may not say
        return (run.full or self.schedule.module_full(run.step, kind)
                or (block_full is not None and block_full(run.step, run.block)))

    def _ratio(self, run: _Pass, kind: str) -> float:
        return self.schedule.ratio(run.step, kind, run.block, self.num_blocks)

    # -- blocks ---------------------------------------------------------------------------
    def _dit_block(self, run: _Pass, block: DiTBlock, x: Tensor, c: Tensor, text: Tensor | None) -> Tensor:
        mod, ctx, kw = block.modulation(c), self.ctx, _kw(self.ctx)
        if self.scored and self._computes(run, "attn"):
            q, k, v = block.attn_heads(x, mod, **kw)
            run.scores["self"] = (received_attention(q, k, self.config.score_queries) if self.config.score == "attention"
                                  else value_norm_score(v))
        x = block.join_attn(x, mod, self._mixing(run, "attn", lambda: block.attn_branch(x, mod, **kw)))
        if block.spec.two_attn:
            x = block.join_attn2(x, mod, self._mixing(run, "attn", lambda: block.attn2_branch(x, mod, **kw)))
        entropy = (self.scored and block.spec.cross_attn and self.config.score == "attention"
                   and self.config.entropy_weight > 0)
        owners = ("attn", "cross_attn") if entropy else ("attn",)
        if block.spec.cross_attn:
            if entropy and self._computes(run, "cross_attn"):
                q, k = block.cross_heads(x, text, **kw)
                run.scores["cross"] = cross_attention_entropy(q, k, self.config.cfg_shared)

            def cross(rows: Tensor, idx: Tensor | None) -> Tensor:
                if idx is None or "rope" not in ctx:
                    return block.cross_branch(rows, text, **kw)
                return block.cross_branch(rows, text, ctx={**ctx, "rope": self._rope_rows(ctx["rope"], idx)})

            x = block.join_cross(x, self._tokenwise(run, "cross_attn", x, cross, owners))
        return block.join_mlp(x, mod, self._tokenwise(run, "mlp", x, lambda rows, idx: block.mlp_branch(rows, mod), owners))

    @staticmethod
    def _rope_rows(rope: tuple[Tensor, Tensor], idx: Tensor) -> tuple[Tensor, Tensor]:
        """The rotary tables [1, 1, N, D] at the rows ``idx[b]`` of each batch entry: [B, 1, k, D]."""
        return tuple(torch.stack([table[0, 0, idx[b]] for b in range(idx.shape[0])])[:, None] for table in rope)  # type: ignore[return-value]

    def _joint_block(self, run: _Pass, block: JointBlock, x: Tensor, c: Tensor, text: Tensor):
        mod = block.modulation(c)
        both: list[Tensor | None] = []
        scores: dict[str, Tensor] = {}
        if self.scored and self._computes(run, "joint_attn"):  # text rows come first in the sequence
            q, k, v = block.joint_heads(x, text, mod, **_kw(self.ctx))
            t, n = text.shape[1], x.shape[1]
            if self.config.score == "attention":
                scores = {"image": received_attention(q, k, self.config.score_queries, t, n),
                          "text": received_attention(q, k, self.config.score_queries, 0, t)}
            else:
                scores = {"image": value_norm_score(v[..., t:, :]), "text": value_norm_score(v[..., :t, :])}

        def compute() -> Tensor:
            both.extend(block.joint_attn_branch(x, text, mod, **_kw(self.ctx)))
            return both[0]

        def image_mlp(x: Tensor) -> Tensor:
            if "image" in scores:
                run.scores["self"] = scores["image"]
            return self._tokenwise(run, "mlp", x, lambda r, i: block.mlp_branch(r, mod), ("joint_attn",))

        x = residual(x, block.gate_attn(mod), self._mixing(run, "joint_attn", compute))
        if not block.text_continues:
            return residual(x, block.gate_mlp(mod), image_mlp(x)), None
        text = residual(text, block.gate_attn_text(mod), self._mixing(run, "joint_attn", lambda: both[1]))
        x = residual(x, block.gate_mlp(mod), image_mlp(x))
        if "text" in scores:
            run.scores["self"] = scores["text"]
        p = self._tokenwise(run, "mlp", text, lambda r, i: block.text_mlp_branch(r, mod), ("joint_attn",))
        return x, residual(text, block.gate_mlp_text(mod), p)

    def _parallel_block(self, run: _Pass, block: ParallelBlock, x: Tensor, c: Tensor) -> Tensor:
        mod = block.modulation(c)
        if self.mode == "taylorseer":
            if "parallel" in self.whole or not self.config.forecast_refresh > 0:
                return residual(x, block.gate_parallel(mod),
                                self._taylor(run, "parallel", lambda: block.parallel_branch(x, mod, **_kw(self.ctx))))
            kept: dict[str, Tensor] = {}

            def full_parallel() -> Tensor:
                hin = block.parallel_input(x, mod)
                kept["attn"] = block.parallel_attn(hin, **_kw(self.ctx))
                if self.scored:
                    q, k, v = block.attn_heads(hin, **_kw(self.ctx))
                    kept["base"] = (received_attention(q, k, self.config.score_queries)
                                    if self.config.score == "attention" else value_norm_score(v))
                return block.parallel_out(kept["attn"], block.parallel_mlp(hin))

            def forecast_rows(rows: Tensor, idx: Tensor) -> Tensor:
                state = run.state[run.next_region - 1]
                return block.parallel_out(_gather(state.attn, idx), block.parallel_mlp(block.parallel_input(rows, mod)))

            p = self._taylor(run, "parallel", full_parallel, x=x, rows_fn=forecast_rows)
            if run.full:
                run.state[run.next_region - 1].attn = kept["attn"]
                run.state[run.next_region - 1].base = kept.get("base")
            return residual(x, block.gate_parallel(mod), p)
        index, state = self._enter(run, "parallel")
        if "parallel" in self.whole:
            return residual(x, block.gate_parallel(mod), self._mixing_at(run, index, state, "parallel",
                                                                          lambda: block.parallel_branch(x, mod, **_kw(self.ctx))))
        if self._computes(run, "parallel") or state is None:
            hin = block.parallel_input(x, mod)
            attn = block.parallel_attn(hin, **_kw(self.ctx))
            p = block.parallel_out(attn, block.parallel_mlp(hin))
            base = None
            if self.scored:
                q, k, v = block.attn_heads(hin, **_kw(self.ctx))
                base = (received_attention(q, k, self.config.score_queries) if self.config.score == "attention"
                        else value_norm_score(v))
            run.state[index] = RegionState("parallel", p, self._zeros(p), base=base, attn=attn)
            return residual(x, block.gate_parallel(mod), p)

        def rows_fn(rows: Tensor, idx: Tensor) -> Tensor:
            return block.parallel_out(_gather(state.attn, idx), block.parallel_mlp(block.parallel_input(rows, mod)))

        return residual(x, block.gate_parallel(mod), self._refresh(run, index, state, x, rows_fn))

    # -- regions --------------------------------------------------------------------------
    def _enter(self, run: _Pass, kind: str) -> tuple[int, RegionState | None]:
        index = run.next_region
        run.next_region += 1
        run.visited.append((run.block, kind))
        if run.visited[-1:] != self.regions[index: index + 1]:
            raise AssertionError(f"oracle reached region {run.visited[-1]} at index {index}; expected {self.regions}")
        return index, run.state.get(index)

    def _mixing(self, run: _Pass, kind: str, compute: Callable[[], Tensor]) -> Tensor:
        if self.mode == "taylorseer":
            return self._taylor(run, kind, compute)
        index, state = self._enter(run, kind)
        return self._mixing_at(run, index, state, kind, compute)

    def _mixing_at(self, run: _Pass, index: int, state: RegionState | None, kind: str,
                   compute: Callable[[], Tensor]) -> Tensor:
        """A region reused whole: computed on full steps, its cache returned otherwise."""
        if not self._computes(run, kind) and state is not None:
            state.selected = None
            return state.cache
        p = compute()
        run.state[index] = RegionState(kind, p, self._zeros(p))
        return p

    def _tokenwise(self, run: _Pass, kind: str, x: Tensor, branch: Callable[[Tensor, Tensor], Tensor],
                   owners: tuple[str, ...]) -> Tensor:
        if self.mode == "taylorseer":
            refresh = kind not in self.whole and self.config.forecast_refresh > 0
            p = self._taylor(run, kind, lambda: branch(x, None), x=x, rows_fn=branch if refresh else None)
            if run.full and refresh and self.scored and "self" in run.scores and all(self._computes(run, o) for o in owners):
                base = run.scores["self"]
                if "cross" in run.scores:
                    base = base + self.config.entropy_weight * run.scores["cross"]
                run.state[run.next_region - 1].base = base
            return p
        index, state = self._enter(run, kind)
        if kind in self.whole:
            return self._mixing_at(run, index, state, kind, lambda: branch(x, None))
        if self._computes(run, kind) or state is None:
            p = branch(x, None)
            base = state.base if state is not None else None
            if self.scored and "self" in run.scores and all(self._computes(run, o) for o in owners):
                base = run.scores["self"]
                if "cross" in run.scores:
                    base = base + self.config.entropy_weight * run.scores["cross"]
            run.state[index] = RegionState(kind, p, self._zeros(p), base=base)
            return p
        return self._refresh(run, index, state, x, branch)

    def _taylor(self, run: _Pass, kind: str, compute: Callable[[], Tensor], x: Tensor | None = None,
                rows_fn=None) -> Tensor:
        """TaylorSeer: forecast on partial steps (then, with ``rows_fn``, recompute the selected
        rows exactly into the forecast), differences on full steps."""
        index, state = self._enter(run, kind)
        if not run.full:
            forecast = taylor_forecast(state.derivs, run.since_full)
            if rows_fn is None:
                state.selected = None
                return forecast
            k = refreshed_tokens(self.config.forecast_refresh, state.stale.shape[1])
            return self._write_rows(run, index, state, x, rows_fn, k, forecast)
        p = compute()
        old = state.derivs if state is not None else None
        run.state[index] = RegionState(kind, p, self._zeros(p),
                                       derivs=taylor_update(old, p, self.config.taylor_order, run.inv1, run.inv2))
        return p

    # -- layout ---------------------------------------------------------------------------
    def _zeros(self, p: Tensor) -> Tensor:
        """Staleness counters [B, N] of a branch output [B, N, C] (or [N, B, C])."""
        shape = (p.shape[1], p.shape[0]) if self.seq_first else p.shape[:2]
        return torch.zeros(shape, dtype=torch.float32, device=p.device)

    def _gather(self, x: Tensor, idx: Tensor) -> Tensor:
        """Rows ``idx[b]`` of every batch entry b: [B, k, ...] (or [k, B, ...] sequence-first)."""
        if self.seq_first:
            return torch.stack([x[idx[b], b] for b in range(x.shape[1])], dim=1)
        return _gather(x, idx)

    def _refresh(self, run: _Pass, index: int, state: RegionState, x: Tensor, rows_fn) -> Tensor:
        """Partial step of a token-wise region: score, pick the top k, recompute them, write back."""
        batch, tokens = state.stale.shape
        if x.shape[:2] != ((tokens, batch) if self.seq_first else (batch, tokens)):
            raise ValueError(f"region {index}: input {tuple(x.shape)} does not match its cache {tuple(state.cache.shape)}")
        k = refreshed_tokens(self._ratio(run, state.kind), tokens, floor=getattr(self.schedule, "floor", False))
        if k == 0:
            state.selected = None
            return state.cache
        state.cache = self._write_rows(run, index, state, x, rows_fn, k, state.cache)
        return state.cache

    def _write_rows(self, run: _Pass, index: int, state: RegionState, x: Tensor, rows_fn, k: int,
                    into: Tensor) -> Tensor:
        """A copy of ``into`` with the top-k rows by score recomputed; staleness advanced."""
        batch, tokens = state.stale.shape
        config = self.config
        base = state.base if state.base is not None else seeded_draw(config.seed, run.step, index, batch, tokens)
        score = base.to(x.device) + state.stale * (config.staleness_weight / tokens)
        score = spatial_spread(score, *spatial_setting(config), self.grid)
        idx = score.topk(k, dim=1).indices
        if config.cfg_shared and batch % 2 == 0:
            idx = torch.cat([idx[: batch // 2]] * 2)
        p_rows = rows_fn(self._gather(x, idx), idx)
        cache = into.clone()
        for b in range(batch):
            if self.seq_first:
                cache[idx[b], b] = p_rows[:, b].to(cache.dtype)
            else:
                cache[b, idx[b]] = p_rows[b].to(cache.dtype)
        stale = state.stale + 1
        for b in range(batch):
            stale[b, idx[b]] = 0.0
        state.stale, state.selected = stale, idx
        return cache


def _gather(x: Tensor, idx: Tensor) -> Tensor:
    """Rows ``x[b, idx[b]]`` of every batch row b of a [B, N, ...] tensor: [B, k, ...]."""
    return torch.stack([x[b, idx[b]] for b in range(x.shape[0])])
