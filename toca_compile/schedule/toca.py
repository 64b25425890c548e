"""The schedules of the official ToCa code, with the step factor bucketed into few variants."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property

from ..validation import (
    check_bool,
    check_int,
    check_number,
    check_pair,
    fail,
    is_int,
    is_number,
)
from .base import Schedule
from .helpers import KINDS, TOKEN_ROUNDINGS, TokenRounding, tokens_for
from .rules import FULL_RULES, FullRule, FullStepRule, ThresholdRule, resolve_rule

_OWNER = "ToCaSchedule"

#: module factors a ToCaSchedule starts from; a schedule's own entries replace these
DEFAULT_MODULE_FACTORS: dict[str, float] = {
    "attn": 0.0, "joint_attn": 0.0, "cross_attn": 1.0, "mlp": 1.0, "parallel": 1.0,
}


@dataclass(frozen=True)
class ToCaSchedule(Schedule):
    """A ToCa schedule: which steps are full, and the ratio of every region on the others.

    Full steps: ``full_rule``, the name of a rule of :data:`~toca_compile.schedule.FULL_RULES`
    or a :class:`~toca_compile.schedule.FullStepRule` object (a built-in rule given as an
    object is stored by its name). With ``i`` the 0-based step and ``F = first_full``:

    * ``"interval"`` (:class:`~toca_compile.schedule.IntervalRule`): the first ``F`` steps are
      full, then every ``interval``-th step counted from step ``F - 1`` (``F = 1``:
      ``i % interval == 0``; FLUX: ``F = 3``).
    * ``"threshold"`` (:class:`~toca_compile.schedule.ThresholdRule`): the official DiT /
      PixArt rule. With ``s`` the official step index (``T-1-i`` if ``count_down`` else ``i``)
      and ``w = threshold_weight``, the threshold is ``th = round(interval / (1 + w - 2w s/T))``
      when counting down (DiT) and ``round(interval / (1 - w + 2w s/T))`` when counting up
      (PixArt); it is forced to 2 while ``s`` lies in ``[int(lo T), int(hi T))`` for
      ``sensitive_window = (lo, hi)``. Step ``i`` is full if ``i < F`` or ``s % th == 0``. With
      ``lagged_threshold`` the threshold in force is the one computed at the previous full
      step, which is what the official code effectively does for all layers but the first.
      ``first_block_alone`` (with ``lagged_threshold``): on a step where the previous full
      step's threshold is due but the one recomputed there is not, block 0 computes fully on
      its own (:meth:`block_full`), as in the official code; False: the step is partial in
      every block. Without ``lagged_threshold`` (or with another rule) block 0 is never due
      alone, and the flag changes nothing.
    * ``"cycles"`` (:class:`~toca_compile.schedule.CyclesRule`): the first ``F`` steps are
      full; afterwards a step is full when every kind of ``module_cycles`` is due. Kind ``K``
      is due at step ``i`` when ``(i - cycle_origin) % module_cycles[K] == 0`` (the official
      OpenSora code: origin 0). ``module_cycles`` also works with the other rules: a due kind
      computes fully on an otherwise partial step (:meth:`module_full`).

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

    ``token_rounding``: how a region of ``N`` tokens turns its ratio into a token count:
    ``"ceil"`` (``ceil(r N)``, at least 1 for a positive ratio) or ``"floor"`` (the official
    code's ``int(r N)`` in float32, which may be 0: the region then reuses its cache).

    ``duca``: partial steps alternate conservative (ToCa ratios; the first after each full
    step) and aggressive (no block runs; :meth:`aggressive`).

    Steps beyond ``num_steps - 1`` keep the last step factor; full steps go on as the rule's
    :meth:`~toca_compile.schedule.FullStepRule.full_after` says (a schedule never stops
    refreshing its caches).
    """

    num_steps: int = 50
    full_rule: FullRule | FullStepRule = "interval"
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
    first_block_alone: bool = False
    token_rounding: TokenRounding = "ceil"

    def __post_init__(self) -> None:
        check_int(_OWNER, "num_steps", self.num_steps, 1)
        rule = resolve_rule(self.full_rule)
        if rule is None:
            fail(_OWNER, "full_rule", f"one of {list(FULL_RULES)} or a FullStepRule", self.full_rule)
        if FULL_RULES.get(rule.name) == rule:  # a built-in rule is stored by name (repr, equality)
            object.__setattr__(self, "full_rule", rule.name)
        check_int(_OWNER, "interval", self.interval, 1)
        check_int(_OWNER, "first_full", self.first_full, 1)
        check_bool(_OWNER, "count_down", self.count_down)
        check_number(_OWNER, "threshold_weight", self.threshold_weight, -1.0, 1.0, open_range=True, noun="a number")
        if self.sensitive_window is not None:
            window = check_pair(_OWNER, "sensitive_window", self.sensitive_window)
            if not 0.0 <= window[0] <= window[1] <= 1.0:
                fail(_OWNER, "sensitive_window", "None or a pair (lo, hi) with 0 <= lo <= hi <= 1",
                     self.sensitive_window)
            object.__setattr__(self, "sensitive_window", window)
        check_bool(_OWNER, "lagged_threshold", self.lagged_threshold)
        check_number(_OWNER, "base_ratio", self.base_ratio, 0.0, 1.0, noun="a number")
        object.__setattr__(self, "step_factor", check_pair(_OWNER, "step_factor", self.step_factor))
        check_int(_OWNER, "step_levels", self.step_levels, 1, allow_none=True)
        object.__setattr__(self, "layer_factor", check_pair(_OWNER, "layer_factor", self.layer_factor))
        check_int(_OWNER, "layer_span", self.layer_span, 1, allow_none=True)
        offsets = _kind_map("stream_offsets", self.stream_offsets, "an integer >= 0",
                            lambda v: is_int(v) and v >= 0)
        factors = _kind_map("module_factors", self.module_factors, "a finite number >= 0",
                            lambda v: is_number(v) and math.isfinite(v) and v >= 0)
        cycles = _kind_map("module_cycles", self.module_cycles, "an integer >= 1",
                           lambda v: is_int(v) and v >= 1)
        object.__setattr__(self, "stream_offsets", _frozen_map(offsets))
        object.__setattr__(self, "module_factors", _frozen_map({**DEFAULT_MODULE_FACTORS, **factors}))
        object.__setattr__(self, "module_cycles", _frozen_map(cycles))
        check_int(_OWNER, "cycle_origin", self.cycle_origin, 0)
        check_bool(_OWNER, "duca", self.duca)
        check_bool(_OWNER, "first_block_alone", self.first_block_alone)
        if self.token_rounding not in TOKEN_ROUNDINGS:
            fail(_OWNER, "token_rounding", f"one of {list(TOKEN_ROUNDINGS)}", self.token_rounding)
        rule.check(self)

    # -- the Schedule interface ----------------------------------------------------------
    def is_full(self, step: int) -> bool:
        return self._full_at(max(int(step), 0))

    def module_full(self, step: int, kind: str) -> bool:
        i = max(int(step), 0)
        return not self._full_at(i) and self.module_due(i, kind)

    def block_full(self, step: int, depth: int) -> bool:
        i = max(int(step), 0)
        return (self.first_block_alone and depth == 0 and i < self.num_steps and not self._full_at(i)
                and self._table.first_block[i])

    def tokens(self, step: int, kind: str, depth: int, num_blocks: int, tokens: int) -> int:
        return tokens_for(self.ratio(step, kind, depth, num_blocks), tokens, self.token_rounding)

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
    @property
    def rule(self) -> FullStepRule:
        """The full-step rule ``full_rule`` names (or is)."""
        rule = resolve_rule(self.full_rule)
        assert rule is not None  # validated in __post_init__
        return rule

    def full_steps(self) -> list[int]:
        """0-based indices of the full steps of one generation of ``num_steps`` steps."""
        return [i for i, full in enumerate(self._table.full) if full]

    def first_block_steps(self) -> list[int]:
        """0-based indices of the partial steps on which block 0 alone computes fully
        (``first_block_alone``; empty without it)."""
        return [i for i in range(self.num_steps) if self.block_full(i, 0)]

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

    def official_step(self, step: int) -> int:
        """The step index of the official code at 0-based ``step``: ``T-1-step`` if ``count_down``."""
        return self.num_steps - 1 - step if self.count_down else step

    def module_due(self, step: int, kind: str) -> bool:
        """Kind ``kind``'s refresh cycle is due at ``step`` (False for kinds without a cycle)."""
        cycle = self.module_cycles.get(kind)
        return cycle is not None and step >= self.cycle_origin and (step - self.cycle_origin) % cycle == 0

    def replace(self, **changes: object) -> ToCaSchedule:
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
        """Full-step rule: the table up to ``num_steps``, then what the rule says."""
        table = self._table
        if i < self.num_steps:
            return table.full[i]
        return self.rule.full_after(self, i, table.last_full)

    def _since_full(self, i: int) -> int:
        """Steps since the last full step (0 on a full step)."""
        table, walked = self._table, 0
        while i >= self.num_steps:
            if self._full_at(i):
                return walked
            walked, i = walked + 1, i - 1
        return walked + table.since_full[i]

    def _raw_step_factor(self, i: int) -> float:
        s, T = self.official_step(i), self.num_steps
        progress = 1 - s / T if self.count_down else s / T
        start, end = self.step_factor
        return max(0.0, start + (end - start) * progress)

    @cached_property
    def _table(self) -> _StepTable:
        full = [bool(f) for f in self.rule.full_steps(self)]
        if len(full) != self.num_steps or not any(full):
            raise ValueError(f"full-step rule {self.full_rule!r} must flag each of the {self.num_steps} steps "
                             f"and at least one as full, got {len(full)} flags, {sum(full)} full")
        since, count = [], 0
        for is_full in full:
            count = 0 if is_full else count + 1
            since.append(count)
        aggressive = [self.duca and n > 0 and n % 2 == 0 for n in since]
        raw = [self._raw_step_factor(i) for i in range(self.num_steps)]
        conservative = [raw[i] for i in range(self.num_steps) if not full[i] and not aggressive[i]]
        factors = _bucket(raw, conservative or raw, self.step_levels)
        last_full = max(i for i, f in enumerate(full) if f)
        rule = self.rule
        first_block = rule.first_block_steps(self) if isinstance(rule, ThresholdRule) else full
        return _StepTable(tuple(full), tuple(since), tuple(factors), last_full, tuple(bool(f) for f in first_block))


@dataclass(frozen=True)
class _StepTable:
    full: tuple[bool, ...]
    since_full: tuple[int, ...]     # steps since the last full step, 0 on full steps
    step_factor: tuple[float, ...]  # clamped and bucketed
    last_full: int
    first_block: tuple[bool, ...]   # block 0 computes fully (a superset of ``full``)


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


def _kind_map(name: str, value: object, allowed: str, check) -> dict[str, object]:
    items: Iterable
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (tuple, list)) and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in value):
        items = value
    else:
        fail(_OWNER, name, f"a mapping from region kind ({', '.join(KINDS)}) to {allowed}", value)
    out = {}
    for kind, v in items:
        if kind not in KINDS:
            fail(_OWNER, name, f"keyed by region kinds {list(KINDS)}", value)
        if not check(v):
            fail(_OWNER, f"{name}[{kind!r}]", allowed, v)
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


__all__ = ["DEFAULT_MODULE_FACTORS", "ToCaSchedule"]
