"""Which steps are full, and how many tokens each region refreshes on partial steps.

The schedule is a plain object queried by the runtime on the host once per call; it never
reaches the compiled graphs except through the static ``k`` of the variant it selects.

Three schedules live here:

* :class:`IntervalSchedule`: full every ``interval`` steps, one fixed ratio (the
  ``ToCaConfig(interval=..., ratio=...)`` behaviour).
* :class:`StepListSchedule`: the full steps listed one by one (a calibrated schedule from
  :mod:`toca_compile.calibration`, which places them where the model's output changes least
  predictably).
* :class:`ToCaSchedule`: the schedules of the official ToCa code (step-dependent full-step
  rules, step x layer x module ratio factors, per-module refresh cycles, DuCa alternation),
  with the step factor *bucketed* so that a generation needs only a few compiled variants.
  Named instances are in :mod:`toca_compile.presets`.

Step indices are 0-based from the first call of a generation and always count up; rules
that the official code states with a step index counting down are translated here
(``count_down=True``).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Literal, Protocol, get_args

from .regions import MIXING_KINDS, RegionKind

#: every region kind the detector can report
KINDS: tuple[str, ...] = get_args(RegionKind)

FullRule = Literal["interval", "threshold", "cycles"]
_FULL_RULES: tuple[str, ...] = get_args(FullRule)


def tokens_for(ratio: float, tokens: int) -> int:
    """Tokens refreshed out of ``tokens`` at ``ratio``: ceil(ratio * N), at least 1 if ratio > 0."""
    if ratio <= 0:
        return 0
    return min(tokens, max(1, math.ceil(ratio * tokens - 1e-9)))


class Schedule(Protocol):
    """What the runtime asks once per call (``step`` is 0-based from the generation start).

    ``is_full``: every region computes all tokens and refills its cache.
    ``module_full``: on a non-full step, regions of this kind still compute fully and refill
        (per-module refresh cycles, as in the official OpenSora code).
    ``ratio``: fraction of tokens a token-wise region (``"mlp"``, ``"cross_attn"``,
        ``"parallel"``) recomputes on a partial step; ``"attn"``/``"joint_attn"`` get their
        module factor too (0 in every preset: the branch output is reused whole).
    ``aggressive``: DuCa; on this partial step no block runs.
    """

    def is_full(self, step: int) -> bool: ...

    def module_full(self, step: int, kind: str) -> bool: ...

    def ratio(self, step: int, kind: str, depth: int, num_blocks: int) -> float: ...

    def aggressive(self, step: int) -> bool: ...


class _FixedRatio:
    """Partial steps of a schedule with one ratio: every token-wise region refreshes
    ``base_ratio`` of its tokens, token-mixing ones reuse; no per-module cycles, no DuCa."""

    base_ratio: float

    def module_full(self, step: int, kind: str) -> bool:
        return False

    def ratio(self, step: int, kind: str, depth: int, num_blocks: int) -> float:
        return 0.0 if kind in MIXING_KINDS else self.base_ratio

    def aggressive(self, step: int) -> bool:
        return False


@dataclass(frozen=True)
class IntervalSchedule(_FixedRatio):
    """Full every ``interval`` steps (step 0 included); a fixed ratio for token-wise regions."""

    interval: int
    base_ratio: float

    def is_full(self, step: int) -> bool:
        return step % self.interval == 0


@dataclass(frozen=True)
class StepListSchedule(_FixedRatio):
    """Full exactly at ``full_steps`` (step 0 always), a fixed ratio for token-wise regions.

    Steps at or past ``num_steps`` are full: the list says nothing about them, and computing
    everything is never wrong (a generation longer than the calibrated one runs uncached
    from there on rather than on a guessed pattern).
    """

    num_steps: int
    full_steps: tuple[int, ...]
    base_ratio: float = 0.0

    def __post_init__(self) -> None:
        _int("num_steps", self.num_steps, 1)
        steps = self.full_steps
        if not isinstance(steps, (tuple, list)) or not all(_is_int(s) for s in steps):
            _fail("full_steps", "a list of integer step indices", steps)
        ordered = tuple(sorted(set(int(s) for s in steps)))
        if not ordered or ordered[0] != 0 or ordered[-1] >= self.num_steps:
            _fail("full_steps", f"step indices in [0, {self.num_steps - 1}] that include 0", steps)
        object.__setattr__(self, "full_steps", ordered)
        _number("base_ratio", self.base_ratio, 0.0, 1.0)

    @cached_property
    def _full(self) -> frozenset[int]:
        return frozenset(self.full_steps)

    def is_full(self, step: int) -> bool:
        return step >= self.num_steps or step in self._full


#: module factors a ToCaSchedule starts from; a schedule's own entries replace these
DEFAULT_MODULE_FACTORS: dict[str, float] = {
    "attn": 0.0, "joint_attn": 0.0, "cross_attn": 1.0, "mlp": 1.0, "parallel": 1.0,
}


@dataclass(frozen=True)
class ToCaSchedule:
    """A ToCa schedule: which steps are full, and the ratio of every region on the others.

    Full steps (``full_rule``), with ``i`` the 0-based step and ``F = first_full``:

    * ``"interval"``: the first ``F`` steps are full, then every ``interval``-th step counted
      from step ``F - 1`` (``F = 1``: ``i % interval == 0``; FLUX: ``F = 3``).
    * ``"threshold"``: the official DiT / PixArt rule. With ``s`` the official step index
      (``T-1-i`` if ``count_down`` else ``i``) and ``w = threshold_weight``, the threshold
      is ``th = round(interval / (1 + w - 2w s/T))`` when counting down (DiT) and
      ``round(interval / (1 - w + 2w s/T))`` when counting up (PixArt); it is forced to 2
      while ``s`` lies in ``[int(lo T), int(hi T))`` for ``sensitive_window = (lo, hi)``.
      Step ``i`` is full if ``i < F`` or ``s % th == 0``. With ``lagged_threshold`` the
      threshold in force is the one computed at the previous full step, which is what the
      official code effectively does for all layers but the first (see
      :meth:`_threshold_full`).
    * ``"cycles"``: the first ``F`` steps are full; afterwards a step is full when every
      kind of ``module_cycles`` is due. Kind ``K`` is due at step ``i`` when
      ``(i - cycle_origin) % module_cycles[K] == 0`` (the official OpenSora code: origin 0).
      ``module_cycles`` also works with the other rules: a due kind computes fully on an
      otherwise partial step (:meth:`module_full`).

    Ratio of a region of ``kind`` in block ``depth`` on partial step ``i``, clamped to [0, 1]::

        base_ratio * step_factor(i) * layer_factor(kind, depth) * module_factors[kind]

    * step factor: linear from ``step_factor[0]`` at the start of the generation to
      ``step_factor[1]`` at its end (progress ``q = 1 - s/T`` counting down, ``s/T``
      counting up), clamped >= 0, then snapped to one of ``step_levels`` evenly spaced
      values between its smallest and largest value over the partial steps (bucketing:
      each level is one compiled variant; ``None`` = exact values).
    * layer factor: linear from ``layer_factor[0]`` at layer 0 to ``layer_factor[1]`` at
      layer ``layer_span`` (``None``: the model's last block, ``num_blocks - 1``), not
      clamped before the product; ``l = depth - stream_offsets.get(kind, 0)`` (FLUX
      single-stream blocks count from 0 in the official code).
    * module factor: per kind, over :data:`DEFAULT_MODULE_FACTORS`.

    ``duca``: partial steps alternate conservative (ToCa ratios; the first after each full
    step) and aggressive (no block runs; :meth:`aggressive`).

    Steps beyond ``num_steps - 1`` keep the last step factor; full steps go on as
    :meth:`_full_at` says (a schedule never stops refreshing its caches).
    """

    num_steps: int = 50
    full_rule: FullRule = "interval"
    interval: int = 3
    first_full: int = 1
    count_down: bool = False
    threshold_weight: float = 0.0
    sensitive_window: tuple[float, float] | None = None
    lagged_threshold: bool = False
    base_ratio: float = 0.15
    step_factor: tuple[float, float] = (1.0, 1.0)
    step_levels: int | None = 4
    layer_factor: tuple[float, float] = (1.0, 1.0)
    layer_span: int | None = None
    stream_offsets: Mapping[str, int] = field(default_factory=dict)
    module_factors: Mapping[str, float] = field(default_factory=dict)
    module_cycles: Mapping[str, int] = field(default_factory=dict)
    cycle_origin: int = 0
    duca: bool = False

    def __post_init__(self) -> None:
        _int("num_steps", self.num_steps, 1)
        _choice("full_rule", self.full_rule, _FULL_RULES)
        _int("interval", self.interval, 1)
        _int("first_full", self.first_full, 1)
        _bool("count_down", self.count_down)
        _number("threshold_weight", self.threshold_weight, -1.0, 1.0, open_range=True)
        if self.sensitive_window is not None:
            window = _pair("sensitive_window", self.sensitive_window)
            if not 0.0 <= window[0] <= window[1] <= 1.0:
                _fail("sensitive_window", "None or a pair (lo, hi) with 0 <= lo <= hi <= 1", self.sensitive_window)
            object.__setattr__(self, "sensitive_window", window)
        _bool("lagged_threshold", self.lagged_threshold)
        _number("base_ratio", self.base_ratio, 0.0, 1.0)
        object.__setattr__(self, "step_factor", _pair("step_factor", self.step_factor))
        if self.step_levels is not None:
            _int("step_levels", self.step_levels, 1, allow_none=True)
        object.__setattr__(self, "layer_factor", _pair("layer_factor", self.layer_factor))
        if self.layer_span is not None:
            _int("layer_span", self.layer_span, 1, allow_none=True)
        offsets = _kind_map("stream_offsets", self.stream_offsets, "an integer >= 0",
                            lambda v: _is_int(v) and v >= 0)
        factors = _kind_map("module_factors", self.module_factors, "a finite number >= 0",
                            lambda v: _is_number(v) and math.isfinite(v) and v >= 0)
        cycles = _kind_map("module_cycles", self.module_cycles, "an integer >= 1",
                           lambda v: _is_int(v) and v >= 1)
        object.__setattr__(self, "stream_offsets", _frozen_map(offsets))
        object.__setattr__(self, "module_factors", _frozen_map({**DEFAULT_MODULE_FACTORS, **factors}))
        object.__setattr__(self, "module_cycles", _frozen_map(cycles))
        _int("cycle_origin", self.cycle_origin, 0)
        _bool("duca", self.duca)
        if self.full_rule == "cycles" and not cycles:
            _fail("module_cycles", "non-empty when full_rule is 'cycles'", self.module_cycles)

    # -- the Schedule protocol ---------------------------------------------------------
    def is_full(self, step: int) -> bool:
        return self._full_at(max(int(step), 0))

    def module_full(self, step: int, kind: str) -> bool:
        i = max(int(step), 0)
        return not self._full_at(i) and self._due(i, kind)

    def ratio(self, step: int, kind: str, depth: int, num_blocks: int) -> float:
        if self.module_full(step, kind):
            return 1.0
        value = (self.base_ratio * self.step_factor_at(step) * self.layer_value(kind, depth, num_blocks)
                 * self.module_factor(kind))
        return _clamp01(value)

    def aggressive(self, step: int) -> bool:
        since = self._since_full(max(int(step), 0))
        return self.duca and since > 0 and since % 2 == 0

    # -- helpers ---------------------------------------------------------------------
    def full_steps(self) -> list[int]:
        """0-based indices of the full steps of one generation of ``num_steps`` steps."""
        return [i for i, full in enumerate(self._table.full) if full]

    def step_factor_at(self, step: int) -> float:
        """The (clamped, bucketed) step factor used at ``step``."""
        return self._table.step_factor[self._clamp(step)]

    def layer_value(self, kind: str, depth: int, num_blocks: int) -> float:
        """The layer factor of a region of ``kind`` in block ``depth`` of ``num_blocks``."""
        layer = max(depth - self.stream_offsets.get(kind, 0), 0)
        span = self.layer_span if self.layer_span is not None else max(num_blocks - 1, 1)
        start, end = self.layer_factor
        return start + (end - start) * layer / span

    def module_factor(self, kind: str) -> float:
        return self.module_factors.get(kind, 1.0)

    def replace(self, **changes: object) -> "ToCaSchedule":
        """A copy with ``changes`` applied and validated (unknown names raise ValueError)."""
        names = [f.name for f in fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise ValueError(f"ToCaSchedule has no field(s) {unknown}; fields are {sorted(names)}")
        values = {name: getattr(self, name) for name in names}
        values.update(changes)
        return ToCaSchedule(**values)  # type: ignore[arg-type]

    def _clamp(self, step: int) -> int:
        return min(max(int(step), 0), self.num_steps - 1)

    def _full_at(self, i: int) -> bool:
        """Full-step rule; past ``num_steps`` the cycles go on (``"cycles"``), or full steps
        recur every ``interval`` steps after the last full step of the table (other rules)."""
        table = self._table
        if i < self.num_steps:
            return table.full[i]
        if self.full_rule == "cycles":
            return all(self._due(i, kind) for kind in self.module_cycles)
        return (i - table.last_full) % self.interval == 0

    def _since_full(self, i: int) -> int:
        """Steps since the last full step (0 on a full step)."""
        table, walked = self._table, 0
        while i >= self.num_steps:
            if self._full_at(i):
                return walked
            walked, i = walked + 1, i - 1
        return walked + table.since_full[i]

    def _official_step(self, i: int) -> int:
        return self.num_steps - 1 - i if self.count_down else i

    def _due(self, i: int, kind: str) -> bool:
        cycle = self.module_cycles.get(kind)
        return cycle is not None and i >= self.cycle_origin and (i - self.cycle_origin) % cycle == 0

    def _threshold(self, s: int) -> int:
        T, w = self.num_steps, self.threshold_weight
        if self.sensitive_window is not None:
            lo, hi = self.sensitive_window
            if int(T * lo) <= s < int(T * hi):
                return 2
        denominator = 1 + w - 2 * w * s / T if self.count_down else 1 - w + 2 * w * s / T
        return max(1, round(self.interval / denominator))

    def _threshold_full(self) -> list[bool]:
        """Full steps under the threshold rule.

        Plain: full iff ``s % th(s) == 0``. Lagged (what the official DiT/PixArt code does
        for every block after the first): the threshold is recomputed only when block 0 runs
        a full step, and block 0 decides with the threshold of the previous full step; so
        the later blocks are full iff ``s % th_prev == 0`` and ``s % th(s) == 0``. A step
        on which only block 0 would be full counts as partial here.
        """
        full, previous = [], self.interval
        for i in range(self.num_steps):
            s = self._official_step(i)
            if i < self.first_full:
                full.append(True)
                previous = self._threshold(s)
            elif not self.lagged_threshold:
                full.append(s % self._threshold(s) == 0)
            elif s % previous == 0:
                previous = self._threshold(s)
                full.append(s % previous == 0)
            else:
                full.append(False)
        return full

    def _full_list(self) -> list[bool]:
        F, N = self.first_full, self.interval
        if self.full_rule == "interval":
            return [i < F or (i - (F - 1)) % N == 0 for i in range(self.num_steps)]
        if self.full_rule == "threshold":
            return self._threshold_full()
        return [i < F or all(self._due(i, kind) for kind in self.module_cycles) for i in range(self.num_steps)]

    def _raw_step_factor(self, i: int) -> float:
        s, T = self._official_step(i), self.num_steps
        progress = 1 - s / T if self.count_down else s / T
        start, end = self.step_factor
        return max(0.0, start + (end - start) * progress)

    @cached_property
    def _table(self) -> "_StepTable":
        full = self._full_list()
        since, count = [], 0
        for is_full in full:
            count = 0 if is_full else count + 1
            since.append(count)
        aggressive = [self.duca and n > 0 and n % 2 == 0 for n in since]
        raw = [self._raw_step_factor(i) for i in range(self.num_steps)]
        conservative = [raw[i] for i in range(self.num_steps) if not full[i] and not aggressive[i]]
        factors = _bucket(raw, conservative or raw, self.step_levels)
        last_full = max(i for i, f in enumerate(full) if f)
        return _StepTable(tuple(full), tuple(since), tuple(factors), last_full)


@dataclass(frozen=True)
class _StepTable:
    full: tuple[bool, ...]
    since_full: tuple[int, ...]     # steps since the last full step, 0 on full steps
    step_factor: tuple[float, ...]  # clamped and bucketed
    last_full: int


def _bucket(values: list[float], reference: list[float], levels: int | None) -> list[float]:
    """Snap every value to the nearest of ``levels`` evenly spaced values over ``reference``."""
    if levels is None:
        return list(values)
    lo, hi = min(reference), max(reference)
    if hi - lo <= 1e-12:
        return [lo] * len(values)
    if levels == 1:
        return [(lo + hi) / 2] * len(values)
    width = (hi - lo) / (levels - 1)
    out = []
    for value in values:
        j = min(max(round((value - lo) / width), 0), levels - 1)
        out.append(lo + j * width)
    return out


def distinct_partial_plans(schedule: Schedule, kinds_depths: list[tuple[str, int]], num_blocks: int,
                           tokens: list[int], num_steps: int | None = None) -> set[tuple[int, ...]]:
    """The tuples of per-region ``k`` that the partial steps of one generation use.

    One tuple per compiled partial variant: ``k = tokens_for(ratio, N)`` for token-wise
    regions, 0 for token-mixing regions (reused whole), ``N`` for a region whose kind is
    :meth:`~Schedule.module_full` on that step. Full steps and DuCa aggressive steps (no
    block runs) are separate variants and are not listed.
    """
    if len(kinds_depths) != len(tokens):
        raise ValueError(f"kinds_depths has {len(kinds_depths)} regions but tokens has {len(tokens)}")
    steps = num_steps if num_steps is not None else getattr(schedule, "num_steps", None)
    if steps is None:
        raise ValueError("distinct_partial_plans needs num_steps for a schedule without a num_steps field")
    plans: set[tuple[int, ...]] = set()
    for step in range(steps):
        if schedule.is_full(step) or schedule.aggressive(step):
            continue
        ks = []
        for (kind, depth), n in zip(kinds_depths, tokens):
            if schedule.module_full(step, kind):
                ks.append(n)
            elif kind in MIXING_KINDS:
                ks.append(0)
            else:
                ks.append(tokens_for(schedule.ratio(step, kind, depth, num_blocks), n))
        plans.add(tuple(ks))
    return plans


# -- validation ------------------------------------------------------------------------
def _fail(name: str, allowed: str, value: object) -> None:
    raise ValueError(f"ToCaSchedule.{name} must be {allowed}, got {value!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _int(name: str, value: object, low: int, allow_none: bool = False) -> None:
    if not (_is_int(value) and value >= low):  # type: ignore[operator]
        _fail(name, f"an integer >= {low}" + (" or None" if allow_none else ""), value)


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        _fail(name, f"one of {list(allowed)}", value)


def _bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        _fail(name, "True or False", value)


def _number(name: str, value: object, low: float, high: float, open_range: bool = False) -> None:
    ok = _is_number(value)
    if ok:
        ok = (low < value < high) if open_range else (low <= value <= high)  # type: ignore[operator]
    if not ok:
        _fail(name, f"a number in ({low}, {high})" if open_range else f"a number in [{low}, {high}]", value)


def _pair(name: str, value: object) -> tuple[float, float]:
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(_is_number(v) and math.isfinite(v) for v in value)):
        return (float(value[0]), float(value[1]))
    _fail(name, "a pair of finite numbers (start, end)", value)
    raise AssertionError  # unreachable


def _kind_map(name: str, value: object, allowed: str, check) -> dict[str, object]:
    items: Iterable
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (tuple, list)) and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in value):
        items = value
    else:
        _fail(name, f"a mapping from region kind ({', '.join(KINDS)}) to {allowed}", value)
        raise AssertionError  # unreachable
    out = {}
    for kind, v in items:
        if kind not in KINDS:
            _fail(name, f"keyed by region kinds {list(KINDS)}", value)
        if not check(v):
            _fail(f"{name}[{kind!r}]", allowed, v)
        out[kind] = v
    return out


class _FrozenMap(dict):
    """A read-only, hashable dict, so that a frozen schedule stays hashable."""

    def _readonly(self, *args, **kwargs):
        raise TypeError("schedule mappings are read-only; use ToCaSchedule.replace(...)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))

    def __reduce__(self):
        return (_FrozenMap, (list(self.items()),))

    def __repr__(self) -> str:
        return repr(dict(self))


def _frozen_map(values: Mapping) -> _FrozenMap:
    return _FrozenMap(sorted(values.items()))


def _clamp01(value: float) -> float:
    if value != value:  # NaN
        return 0.0
    return min(max(value, 0.0), 1.0)
