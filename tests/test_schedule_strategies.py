"""The pieces of toca_compile.schedule as specifications: each full-step rule against a plain
re-derivation written here (not the implementation's helpers), the base class's defaults, and
a user-defined schedule driving the compiled model exactly as the eager oracle does."""
from __future__ import annotations

import math
import pickle
from dataclasses import dataclass

import pytest
import torch
from architectures import ArchSpec, TinyDiT, make_inputs, timesteps
from hypothesis import assume, given
from hypothesis import strategies as st
from oracle import ReferenceToCa
from profiles import examples

from toca_compile import ToCa, ToCaConfig
from toca_compile.presets import get_preset
from toca_compile.schedule import (
    FULL_RULES,
    KINDS,
    CyclesRule,
    ForeignSchedule,
    FullStepRule,
    IntervalRule,
    IntervalSchedule,
    Schedule,
    StepListSchedule,
    ThresholdRule,
    ToCaSchedule,
    as_schedule,
    distinct_partial_plans,
)


# -- the full-step rules, re-derived -----------------------------------------------------
def interval_expected(T: int, N: int, F: int, horizon: int) -> set[int]:
    """F warm-up steps, then a full step every N counted from the last warm-up step."""
    full, step = set(range(F)), F - 1
    while step < horizon:
        full.add(step)
        step += N
    return {i for i in full if i < horizon}


@examples(60)
@given(T=st.integers(1, 90), N=st.integers(1, 9), F=st.integers(1, 5))
def test_interval_rule_is_warmup_then_every_interval(T, N, F):
    assume(F <= T)  # a table shorter than the warm-up continues from its last step (see full_after)
    schedule = ToCaSchedule(num_steps=T, full_rule="interval", interval=N, first_full=F)
    horizon = T + 3 * N + 2  # past the table the pattern goes on
    want = interval_expected(T, N, F, horizon)
    assert IntervalRule().full_steps(schedule) == [i in want for i in range(T)]
    assert schedule.full_steps() == sorted(i for i in want if i < T)
    assert {i for i in range(horizon) if schedule.is_full(i)} == want


def official_threshold(T: int, N: int, s: int, *, count_down: bool, weight: float,
                       window: tuple[float, float] | None) -> int:
    """th(s) of the official DiT (counting down) / PixArt (counting up) code."""
    if window is not None and int(window[0] * T) <= s < int(window[1] * T):
        return 2
    if count_down:
        th = round(N / (1 + weight - 2 * weight * s / T))
    else:
        th = round(N / (1 - weight + 2 * weight * s / T))
    return max(th, 1)


def threshold_expected(T: int, N: int, F: int, *, count_down: bool, weight: float,
                       window: tuple[float, float] | None, lagged: bool) -> list[bool]:
    """Full steps of the blocks after the first, simulating the official loop: block 0 holds
    one threshold, refreshed (to th(s)) whenever block 0 computes fully; not lagged, every
    block uses th(s) of the current step."""
    held, full = N, []
    for i in range(T):
        s = T - 1 - i if count_down else i
        now = official_threshold(T, N, s, count_down=count_down, weight=weight, window=window)
        if i < F:
            held = now
            full.append(True)
        elif not lagged:
            full.append(s % now == 0)
        else:
            block0_full = s % held == 0
            if block0_full:
                held = now
            full.append(block0_full and s % held == 0)
    return full


windows = st.one_of(st.none(), st.tuples(st.floats(0, 1), st.floats(0, 1)).map(lambda p: tuple(sorted(p))))


@examples(80)
@given(T=st.integers(1, 260), N=st.integers(1, 8), F=st.integers(1, 3), count_down=st.booleans(),
       weight=st.floats(-0.9, 0.9), window=windows, lagged=st.booleans())
def test_threshold_rule_is_the_official_dit_pixart_loop(T, N, F, count_down, weight, window, lagged):
    schedule = ToCaSchedule(num_steps=T, full_rule="threshold", interval=N, first_full=F, count_down=count_down,
                            threshold_weight=weight, sensitive_window=window, lagged_threshold=lagged)
    want = threshold_expected(T, N, F, count_down=count_down, weight=weight, window=window, lagged=lagged)
    assert ThresholdRule().full_steps(schedule) == want
    assert [schedule.is_full(i) for i in range(T)] == want
    last = max(i for i in range(T) if want[i])
    assert [schedule.is_full(i) for i in range(T, T + 2 * N + 1)] == [(i - last) % N == 0
                                                                      for i in range(T, T + 2 * N + 1)]


@pytest.mark.parametrize("lagged", [True, False])
@pytest.mark.parametrize("T, N, dit, preset", [(50, 3, True, "dit-ddim-50"), (250, 4, True, "dit-ddpm-250"),
                                               (20, 3, False, "pixart-dpm-20")])
def test_threshold_rule_reproduces_the_presets_settings(T, N, dit, preset, lagged):
    """Both readings of the presets' settings; the presets themselves take the official code's
    (lagged: block 0 keeps the threshold of the previous full step)."""
    weight, window = (0.4, (0.2, 0.4)) if dit else (0.2, None)
    schedule = ToCaSchedule(num_steps=T, full_rule="threshold", interval=N, count_down=dit, threshold_weight=weight,
                            sensitive_window=window, lagged_threshold=lagged)
    want = [i for i, f in enumerate(threshold_expected(
        T, N, 1, count_down=dit, weight=weight, window=window, lagged=lagged)) if f]
    assert schedule.full_steps() == want
    assert get_preset(preset, lagged_threshold=lagged).full_steps() == want
    if lagged:
        assert get_preset(preset).full_steps() == want


@examples(60)
@given(T=st.integers(1, 80), F=st.integers(1, 4), origin=st.integers(0, 4),
       cycles=st.dictionaries(st.sampled_from(KINDS), st.integers(1, 7), min_size=1))
def test_cycles_rule_is_full_when_every_module_is_due(T, F, origin, cycles):
    assume(F <= T)  # past a table shorter than the warm-up only the cycles count
    schedule = ToCaSchedule(num_steps=T, full_rule="cycles", first_full=F, module_cycles=cycles, cycle_origin=origin)

    def due(i: int, kind: str) -> bool:
        return kind in cycles and i >= origin and (i - origin) % cycles[kind] == 0

    horizon = T + 20
    want = [i < F or all(due(i, kind) for kind in cycles) for i in range(horizon)]
    assert CyclesRule().full_steps(schedule) == want[:T]
    assert [schedule.is_full(i) for i in range(horizon)] == want
    for i in range(horizon):  # a due module refreshes fully on an otherwise partial step
        assert [schedule.module_full(i, kind) for kind in KINDS] == [not want[i] and due(i, kind) for kind in KINDS]


def test_cycles_rule_needs_cycles_and_names_the_field():
    with pytest.raises(ValueError, match=r"ToCaSchedule.module_cycles must be non-empty when full_rule is 'cycles'"):
        ToCaSchedule(full_rule=CyclesRule())


# -- rules by name or as objects ---------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FULL_RULES))
def test_a_rule_object_is_the_rule_its_name_names(name):
    extra = {"module_cycles": {"mlp": 2, "attn": 3}} if name == "cycles" else {}
    by_name = ToCaSchedule(full_rule=name, num_steps=40, **extra)
    by_object = ToCaSchedule(full_rule=type(FULL_RULES[name])(), num_steps=40, **extra)
    assert by_object == by_name and hash(by_object) == hash(by_name)
    assert by_object.full_rule == name and by_name.rule == FULL_RULES[name]
    assert repr(by_object) == repr(by_name)


def test_an_unknown_rule_name_lists_the_names():
    with pytest.raises(ValueError) as info:
        ToCaSchedule(full_rule="every-other")
    message = str(info.value)
    assert message.startswith("ToCaSchedule.full_rule must be one of ['interval', 'threshold', 'cycles']")
    assert "FullStepRule" in message and "'every-other'" in message


@dataclass(frozen=True)
class Squares(FullStepRule):
    """A user's rule: full at 0, 1, 4, 9, ...; past the table every 5 steps after the last."""

    def full_steps(self, schedule: ToCaSchedule) -> list[bool]:
        return [round(i ** 0.5) ** 2 == i for i in range(schedule.num_steps)]

    def full_after(self, schedule: ToCaSchedule, step: int, last_full: int) -> bool:
        return (step - last_full) % 5 == 0


@dataclass(frozen=True)
class Broken(FullStepRule):
    def full_steps(self, schedule: ToCaSchedule) -> list[bool]:
        return [False] * schedule.num_steps


def test_a_user_rule_drives_full_steps_ratios_and_duca():
    schedule = ToCaSchedule(num_steps=20, full_rule=Squares(), duca=True, base_ratio=0.5, step_levels=None)
    assert schedule.full_rule == Squares() and schedule.full_steps() == [0, 1, 4, 9, 16]
    assert [i for i in range(20, 32) if schedule.is_full(i)] == [21, 26, 31]
    assert [schedule.aggressive(i) for i in range(4, 9)] == [False, False, True, False, True]
    assert schedule.ratio(2, "mlp", 0, 4) == 0.5 and schedule.ratio(2, "attn", 0, 4) == 0.0
    clone = pickle.loads(pickle.dumps(schedule))
    assert clone == schedule and hash(clone) == hash(schedule) and clone.full_steps() == schedule.full_steps()
    assert schedule.replace(num_steps=10).full_steps() == [0, 1, 4, 9]


def test_a_rule_that_flags_no_full_step_is_refused():
    schedule = ToCaSchedule(num_steps=6, full_rule=Broken())
    with pytest.raises(ValueError, match="at least one as full"):
        schedule.is_full(0)


# -- the base class --------------------------------------------------------------------
class EveryOther(Schedule):
    def is_full(self, step: int) -> bool:
        return step % 2 == 0


def test_the_base_class_answers_everything_but_is_full():
    schedule = EveryOther()
    assert schedule.num_steps is None
    assert not schedule.module_full(1, "mlp") and schedule.ratio(1, "mlp", 0, 4) == 0.0
    assert not schedule.aggressive(3)
    with pytest.raises(TypeError):
        Schedule()  # type: ignore[abstract]

    class NoRule(Schedule):
        pass

    with pytest.raises(TypeError, match="is_full"):
        NoRule()  # type: ignore[abstract]


def test_every_shipped_schedule_is_a_schedule():
    for schedule in (IntervalSchedule(3, 0.1), StepListSchedule(8, (0, 4)), ToCaSchedule(), ToCaConfig().schedule(),
                     ToCaConfig(preset="flux-50-n5").schedule(), ToCaConfig(warmup=2).schedule()):
        assert isinstance(schedule, Schedule)
    assert IntervalSchedule(3, 0.1).num_steps is None and StepListSchedule(8, (0, 4)).num_steps == 8


@dataclass(frozen=True)
class Planned(Schedule):
    """A dataclass subclass whose num_steps is a required field before other required ones."""

    num_steps: int
    full: frozenset

    def is_full(self, step: int) -> bool:
        return step in self.full


def test_a_dataclass_subclass_may_require_num_steps():
    with pytest.raises(TypeError):
        Planned(frozenset({0}))  # type: ignore[call-arg]
    schedule = Planned(5, frozenset({0, 3}))
    assert schedule.num_steps == 5
    plans = distinct_partial_plans(schedule, [("attn", 0), ("mlp", 0)], 1, [8, 8])  # num_steps from the schedule
    assert plans == {(0, 0)}


@dataclass(frozen=True)
class DuckTyped:
    """A schedule written against the old protocol: the four methods, no base class."""

    num_steps = 7

    def is_full(self, step: int) -> bool:
        return step % 3 == 0

    def module_full(self, step: int, kind: str) -> bool:
        return False

    def ratio(self, step: int, kind: str, depth: int, num_blocks: int) -> float:
        return 0.25

    def aggressive(self, step: int) -> bool:
        return False


def test_objects_without_the_base_class_are_wrapped_or_refused():
    duck = DuckTyped()
    toca = ToCa(ToCaConfig(compiler="eager"), schedule=duck)
    assert isinstance(toca.schedule, ForeignSchedule) and toca.schedule.schedule is duck
    assert toca.schedule.num_steps == 7 and toca.schedule.is_full(3) and toca.schedule.ratio(1, "mlp", 0, 2) == 0.25
    assert pickle.loads(pickle.dumps(toca.schedule)) == toca.schedule

    class Partial:
        def is_full(self, step: int) -> bool:
            return True

    with pytest.raises(TypeError, match=r"lacks the Schedule method\(s\) \['module_full', 'ratio', 'aggressive'\]"):
        toca.schedule = Partial()


# -- a user-defined schedule drives the compiled model ------------------------------------
SPEC = ArchSpec(depth=3, width=16, heads=2, mlp="gelu", norm="layer", adaln=True, cross_attn=True,
                attention="sdpa", sdpa_kwargs=False, batch=2, tokens=16, text_tokens=3, explicit_shapes=False)


@dataclass(frozen=True)
class Custom(Schedule):
    """Full at 0 and 4; cross-attention refreshes fully at step 2, block 1 at step 5; the MLP
    ratio grows per step and per block; the rest is the base class's (no DuCa)."""

    num_steps: int = 7

    def is_full(self, step: int) -> bool:
        return step in (0, 4)

    def module_full(self, step: int, kind: str) -> bool:
        return step == 2 and kind == "cross_attn"

    def block_full(self, step: int, depth: int) -> bool:
        return step == 5 and depth == 1

    def ratio(self, step: int, kind: str, depth: int, num_blocks: int) -> float:
        return 0.0 if kind in ("attn", "joint_attn") else min(1.0, 0.1 * step + 0.05 * depth)


def test_a_user_schedule_runs_the_compiled_model_as_the_oracle_does():
    schedule = Custom()
    config = ToCaConfig(compiler="eager")
    model = TinyDiT(SPEC)
    x, text = make_inputs(SPEC)
    torch._dynamo.reset()
    toca = ToCa(config, schedule=schedule)
    assert toca.schedule is schedule
    fast = torch.compile(model, backend=toca.backend, fullgraph=True, dynamic=False)
    oracle = ReferenceToCa(model, config, schedule=schedule)
    with torch.no_grad():
        for i, t in enumerate(timesteps(SPEC, schedule.num_steps)):
            got, want = fast(x, t, text), oracle(x, t, text)
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, msg=lambda m, i=i: f"step {i}: {m}")
            assert oracle.last_full == schedule.is_full(i)
    stats = toca.stats()
    assert (stats.full_steps, stats.partial_steps) == (2, 5)
    assert not toca.fallbacks and stats.uncached_calls == 0
    # block 1's MLP computed all 16 tokens at step 5 on top of its ratio at the other partial
    # steps, in each batch row
    mlp1 = next(r for r in stats.regions if r.block == 1 and r.kind == "mlp")
    expected = 16 + sum(math.ceil(min(1.0, 0.1 * i + 0.05) * 16 - 1e-9) for i in (1, 2, 3, 6))
    assert mlp1.tokens_refreshed == expected * SPEC.batch


def test_a_foreign_schedule_may_answer_block_full_and_tokens():
    class Foreign:  # the four required methods, plus the two optional ones
        def is_full(self, step): return step == 0
        def module_full(self, step, kind): return False
        def ratio(self, step, kind, depth, num_blocks): return 0.5
        def aggressive(self, step): return False
        def block_full(self, step, depth): return depth == 2
        def tokens(self, step, kind, depth, num_blocks, tokens): return 3

    class Plain:
        def is_full(self, step): return step == 0
        def module_full(self, step, kind): return False
        def ratio(self, step, kind, depth, num_blocks): return 0.5
        def aggressive(self, step): return False

    foreign, plain = as_schedule(Foreign()), as_schedule(Plain())
    assert foreign.block_full(1, 2) and not foreign.block_full(1, 1) and foreign.tokens(1, "mlp", 0, 4, 16) == 3
    assert not plain.block_full(1, 2) and plain.tokens(1, "mlp", 0, 4, 16) == 8
