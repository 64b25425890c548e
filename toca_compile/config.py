"""User-facing configuration, validated at construction so mistakes surface early."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Literal, get_args

from .validation import check_bool, check_choice, check_int, check_number, fail

if TYPE_CHECKING:
    from .schedule import Schedule

Compiler = Literal["inductor", "eager"]
Score = Literal["attention", "kvnorm", "random"]
Mode = Literal["toca", "fora", "duca", "taylorseer"]
Projection = Literal["reuse", "recompute"]

_SCORES = ("attention", "kvnorm", "random")
_COMPILERS = ("inductor", "eager")
_MODES: tuple[str, ...] = get_args(Mode)
_TAYLOR_ORDERS = (1, 2)
_PROJECTIONS: tuple[str, ...] = get_args(Projection)
_OWNER = "ToCaConfig"  # the name every validation message starts with
#: s4 (cell, bonus) without a preset, and for presets whose code has no entry of its own
SPATIAL_DEFAULT: tuple[int, float] = (2, 0.6)


@dataclass(frozen=True)
class ToCaConfig:
    """Settings of token-wise caching.

    interval: every ``interval``-th denoising step (counted from the first step of a
        generation) is a *full* step that computes everything and refills the caches.
        ``interval=1`` disables caching.
    ratio: fraction of tokens each token-wise region (MLP, cross-attention, parallel block)
        recomputes on partial steps. Self-attention regions always reuse their cache.
    score: how tokens are chosen on partial steps. ``"attention"`` (ToCa s1: attention each
        token received at the last full step, estimated from ``score_queries`` query rows so
        the fused attention kernel stays; plus s2, the cross-attention entropy weighted by
        ``entropy_weight``, in blocks with cross-attention), ``"kvnorm"`` (DuCa: from value
        norms, no attention map) or ``"random"`` (a seeded uniform draw each step). Regions
        without a usable attention fall back to ``"random"``. Staleness is always added.
    score_queries: query rows sampled to estimate attention received (exact when >= N).
    entropy_weight: weight of the cross-attention entropy score (s2).
    spatial_cell, spatial_bonus: s4; in each cell×cell patch of the token grid the best token
        gets ``bonus·max(score)`` (0 disables). The grid comes from the patch embedding.
        None (the default): what the code of ``preset`` uses (DiT 2 and 0.6, PixArt-α 4 and
        0.4, FLUX.1 and OpenSora none: :data:`toca_compile.presets.SPATIAL`), else 2 and 0.6;
        :attr:`spatial` is the pair in force.
    cfg_shared: the two halves of a batched-CFG batch refresh the same tokens.
    staleness_weight: weight of the staleness term ``count / N`` added to the score.
    seed: seed of the random score, so runs are reproducible.
    compiler: the final compiler of each rewritten graph: ``"inductor"`` (default) or
        ``"eager"`` (runs the rewritten FX graphs as they are; for tests and debugging).
    preset: name of a schedule from :data:`toca_compile.presets.PRESETS` (the official
        settings per model and sampler, e.g. ``"dit-ddim-50"``, ``"flux-50-n5"``). When set,
        it decides the full steps and ratios and ``interval``/``ratio`` are ignored.
    mode: ``"toca"`` (token-wise refresh), ``"fora"`` (reuse every branch output on partial
        steps: ratio 0), ``"duca"`` (partial steps alternate ToCa and aggressive steps that
        run no block), ``"taylorseer"`` (forecast branch outputs from finite differences).
    taylor_order: order of the TaylorSeer forecast, 1 or 2 (memory grows as order + 1).
    forecast_refresh: ``mode="taylorseer"`` only: on forecast steps, the fraction of tokens of
        each token-wise region that is computed exactly instead of forecast (ToCa's selection:
        the attention score of the last full step plus staleness). 0 (default): forecast every
        token. The forecast's own differences still come from full steps only.
    warmup: the first ``warmup`` steps are full, then every ``interval``-th step counted from
        the last of them (1: full at 0, N, 2N, ...). The first steps change the most and are
        forecast worst; a few full ones at the start buy much quality for little compute.
    schedule_file: a schedule written by ``toca calibrate`` / :func:`toca_compile.calibration.
        calibrate` (JSON): its full steps replace ``interval`` / ``warmup``, and ``mode``,
        ``taylor_order`` and ``ratio`` must match the file's (``ToCaConfig.from_schedule_file``
        takes them from it).
    max_shapes: input shapes per compiled code whose caches and variants stay alive; the least
        recently used shape beyond it is freed (and re-specialised if it comes back).
    max_branches: calls per step that get caches of their own (CFG branches; a graph reused
        with the same weights). Calls beyond it compute everything, with a warning.
    constant_kv: cache, per generation, the keys/values cross-attention computes from the text
        (values that depend only on conditioning inputs and weights), and reuse them while the
        conditioning input is provably the same tensor, unchanged (same object, storage and
        version counter); exact, it changes no output. False: recompute them every step.
    attention_projection: what a step that reuses a self- or joint-attention region does with
        the attention's output projection. ``"reuse"`` (default): the whole branch output is
        reused, projection included. ``"recompute"``: the attention output before the
        projection is cached and the projection runs again for every token, as the authors'
        FLUX and FORA code does; the same output (to float rounding) for more FLOPs, so its
        use is counting generations as the published figures count them.
    """

    interval: int = 3
    ratio: float = 0.15
    score: Score = "attention"
    score_queries: int = 64
    entropy_weight: float = 1.0
    spatial_cell: int | None = None
    spatial_bonus: float | None = None
    cfg_shared: bool = False
    staleness_weight: float = 0.25
    seed: int = 0
    compiler: Compiler = "inductor"
    preset: str | None = None
    mode: Mode = "toca"
    taylor_order: int = 1
    forecast_refresh: float = 0.0
    warmup: int = 1
    schedule_file: str | None = None
    max_shapes: int = 8
    max_branches: int = 4
    constant_kv: bool = True
    attention_projection: Projection = "reuse"

    def __post_init__(self) -> None:
        check_int(_OWNER, "interval", self.interval, low=1)
        check_number(_OWNER, "ratio", self.ratio, low=0.0, high=1.0)
        check_number(_OWNER, "staleness_weight", self.staleness_weight, low=0.0, high=None)
        check_int(_OWNER, "seed", self.seed, low=0, high=2**63 - 1)
        check_choice(_OWNER, "score", self.score, _SCORES)
        check_int(_OWNER, "score_queries", self.score_queries, low=1)
        check_number(_OWNER, "entropy_weight", self.entropy_weight, low=0.0, high=None)
        check_int(_OWNER, "spatial_cell", self.spatial_cell, low=1, allow_none=True)
        if self.spatial_bonus is not None:
            check_number(_OWNER, "spatial_bonus", self.spatial_bonus, low=0.0, high=None)
        check_bool(_OWNER, "cfg_shared", self.cfg_shared)
        check_choice(_OWNER, "compiler", self.compiler, _COMPILERS)
        if self.preset is not None:
            from .presets import PRESETS  # noqa: PLC0415  (presets -> schedule -> regions)

            if not isinstance(self.preset, str) or self.preset not in PRESETS:
                fail(_OWNER, "preset", f"None or one of {sorted(PRESETS)}", self.preset)
        check_choice(_OWNER, "mode", self.mode, _MODES)
        if not isinstance(self.taylor_order, int) or isinstance(self.taylor_order, bool) \
                or self.taylor_order not in _TAYLOR_ORDERS:
            fail(_OWNER, "taylor_order", "the integer 1 or 2", self.taylor_order)
        check_number(_OWNER, "forecast_refresh", self.forecast_refresh, low=0.0, high=1.0)
        if self.forecast_refresh > 0 and self.mode != "taylorseer":
            raise ValueError(f"ToCaConfig.forecast_refresh refreshes tokens on forecast steps, which only "
                             f"mode='taylorseer' has; got mode={self.mode!r} with forecast_refresh={self.forecast_refresh}")
        check_int(_OWNER, "warmup", self.warmup, low=1)
        if self.preset is not None and self.warmup != 1:
            raise ValueError("ToCaConfig.warmup applies to interval schedules; a preset sets its own first full steps "
                             f"(got preset={self.preset!r}, warmup={self.warmup})")
        if self.schedule_file is not None:
            self._check_schedule_file()
        check_int(_OWNER, "max_shapes", self.max_shapes, low=1)
        check_int(_OWNER, "max_branches", self.max_branches, low=1)
        check_bool(_OWNER, "constant_kv", self.constant_kv)
        check_choice(_OWNER, "attention_projection", self.attention_projection, _PROJECTIONS)

    @property
    def spatial(self) -> tuple[int, float]:
        """(cell, bonus) of s4 in force: each field as set, else the preset's code's, else (2, 0.6)."""
        from .presets import SPATIAL  # noqa: PLC0415  (presets -> schedule -> regions)

        cell, bonus = SPATIAL.get(self.preset, SPATIAL_DEFAULT) if self.preset is not None else SPATIAL_DEFAULT
        return (cell if self.spatial_cell is None else self.spatial_cell,
                bonus if self.spatial_bonus is None else float(self.spatial_bonus))

    @property
    def selects_rows(self) -> bool:
        """Whether this mode ever recomputes selected rows (and so keeps selection state):
        ToCa and DuCa; TaylorSeer only with ``forecast_refresh``; FORA never."""
        return self.mode in ("toca", "duca") or (self.mode == "taylorseer" and self.forecast_refresh > 0)

    @classmethod
    def from_schedule_file(cls, path: str, **changes: object) -> "ToCaConfig":
        """Settings that run the calibrated schedule in ``path`` with the mode, order and ratio
        it was calibrated for; ``changes`` set any other field."""
        from .schedule.saved import read_schedule_file  # noqa: PLC0415

        saved = read_schedule_file(path)
        return cls(**{"mode": saved.mode, "taylor_order": saved.taylor_order, "ratio": saved.ratio,
                      "schedule_file": str(path), **changes})  # type: ignore[arg-type]

    def _check_schedule_file(self) -> None:
        from .schedule.saved import read_schedule_file  # noqa: PLC0415

        if not isinstance(self.schedule_file, str):
            fail(_OWNER, "schedule_file", "None or a path string", self.schedule_file)
        if self.preset is not None:
            raise ValueError("ToCaConfig.schedule_file and preset both choose the full steps; set one of them")
        saved = read_schedule_file(self.schedule_file)

        def settings(mode: str, order: int, ratio: float) -> tuple:  # what a mode actually uses
            return mode, order if mode == "taylorseer" else None, ratio if mode == "toca" else None

        if settings(self.mode, self.taylor_order, self.ratio) != settings(saved.mode, saved.taylor_order, saved.ratio):
            raise ValueError(
                f"schedule file {self.schedule_file} was calibrated for mode={saved.mode!r}, "
                f"taylor_order={saved.taylor_order}, ratio={saved.ratio}; these settings say mode={self.mode!r}, "
                f"taylor_order={self.taylor_order}, ratio={self.ratio}. Use ToCaConfig.from_schedule_file(path).")
        # the schedule these settings run is the one validated here, read once (not a field:
        # equality, hashing and repr stay those of the path)
        object.__setattr__(self, "_saved_schedule", saved)

    def schedule(self) -> "Schedule":
        """The schedule these settings describe.

        ``schedule_file`` set: its full steps; ``preset`` set: that preset; otherwise full every
        ``interval`` steps (after ``warmup`` full ones) with ``ratio``.
        ``mode="fora"`` sets the ratio to 0; ``mode="duca"`` makes every second partial step
        after a full step an aggressive one.
        """
        from .presets import get_preset  # noqa: PLC0415
        from .schedule import IntervalSchedule, ToCaSchedule  # noqa: PLC0415

        if self.schedule_file is not None:
            return self._saved_schedule.schedule()  # type: ignore[attr-defined]  (set by _check_schedule_file)
        changes: dict[str, object] = {}
        if self.warmup > 1:
            changes["first_full"] = self.warmup
        if self.mode == "fora":
            changes["base_ratio"] = 0.0
        if self.mode == "duca":
            changes["duca"] = True
        if self.preset is not None:
            return get_preset(self.preset, **changes)
        if not changes:
            return IntervalSchedule(self.interval, self.ratio)
        values: dict[str, object] = {"full_rule": "interval", "interval": self.interval,
                                     "base_ratio": self.ratio, "step_levels": None, **changes}
        return ToCaSchedule(**values)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> "ToCaConfig":
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"ToCaConfig has no field(s) {unknown}; fields are {sorted(names)}")
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return ToCaConfig(**values)  # type: ignore[arg-type]
