"""Schedules as published: which steps are full, how many tokens each region refreshes, and
how few compiled variants a generation needs. Expected values are computed here from the
formulas of the official ToCa code, independently of toca_compile.schedule."""
import math
import pickle
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from profiles import examples

from toca_compile import ToCaConfig
from toca_compile.presets import DESCRIPTIONS, PRESETS, get_preset
from toca_compile.schedule import (
    KINDS, IntervalSchedule, ToCaSchedule, distinct_partial_plans, tokens_for,
)

# DiT-XL/2 at 256px: 28 blocks of self-attention + MLP over 256 tokens
DIT_LAYOUT = [(kind, block) for block in range(28) for kind in ("attn", "mlp")]
DIT_TOKENS = [256] * len(DIT_LAYOUT)
# FLUX.1 at 1024px: 19 double-stream blocks (image and text halves of the joint attention
# and of the MLP: 4096 and 512 tokens), then 38 single-stream blocks over 4608 tokens
FLUX_LAYOUT = ([(kind, block) for block in range(19) for kind in ("joint_attn", "joint_attn", "mlp", "mlp")]
               + [("parallel", 19 + block) for block in range(38)])
FLUX_TOKENS = [4096, 512, 4096, 512] * 19 + [4608] * 38
LAYOUTS = {"dit": (DIT_LAYOUT, 28, DIT_TOKENS), "flux": (FLUX_LAYOUT, 57, FLUX_TOKENS)}


def _threshold(T, N, s, *, count_down, sensitive):
    """The official force_scheduler.py: th = round(N / step factor), 2 in DiT's sensitive window."""
    if sensitive and int(0.2 * T) <= s < int(0.4 * T):
        return 2
    return round(N / ((1.4 - 0.8 * s / T) if count_down else (0.8 + 0.4 * s / T)))


def official_full_steps(T, N, *, count_down, sensitive):
    """Full steps (0-based, counting up) as the official DiT / PixArt code runs them.

    Every block asks ``s % cal_threshold == 0`` (or: first step); only a block that computes
    fully (block 0 first) recomputes ``cal_threshold`` for the current step (force_init.py). So
    block 0 tests the threshold of the previous full step, and blocks 1.. the one just set; the
    step is full when all blocks are, i.e. when both are due."""
    full, carried = [], None
    for i in range(T):
        s = T - 1 - i if count_down else i
        if i == 0 or s % carried == 0:
            carried = _threshold(T, N, s, count_down=count_down, sensitive=sensitive)
            if i == 0 or s % carried == 0:
                full.append(i)
    return full


def current_step_threshold_full_steps(T, N, *, count_down, sensitive):
    """The earlier reading (DESIGN.md): the threshold computed at the step itself."""
    return [i for i in range(T)
            if i == 0 or (s := T - 1 - i if count_down else i) % _threshold(T, N, s, count_down=count_down,
                                                                          sensitive=sensitive) == 0]


# -- full steps ----------------------------------------------------------------------
# The hand-written lists below are the official code's rule applied by hand (see each test);
# they replaced the lists of the earlier reading (threshold of the current step), which gave
# one full step more per generation in DiT DDIM-50 (19), two in DDPM-250 (74) and one in
# PixArt DPM-20 (7). That reading stays reachable as lagged_threshold=False (tested below).
DIT_DDIM_50_FULL = [0, 5, 9, 13, 19, 22, 25, 28, 31, 33, 35, 37, 39, 41, 43, 45, 47, 49]
PIXART_DPM_20_FULL = [0, 6, 9, 12, 15, 18]


def test_dit_ddim_50_full_steps_follow_the_official_code():
    # s = 49 - i. i=0 (s=49): first step, th = round(3/(1.4-0.8*49/50)) = round(4.87) = 5.
    # s=45 (i=4): 45 % 5 == 0, so block 0 computes and sets th = round(3/0.68) = 4; 45 % 4 != 0:
    # the other blocks stay partial. s=44 (i=5): 44 % 4 == 0, th(44) = round(4.31) = 4: full.
    # s=40 (i=9) th=4 full; s=36 (i=13) th=round(3.95)=4 full; s=32 (i=17): th(32) = round(3.47)
    # = 3, 32 % 3 != 0: block 0 only. s=30 (i=19): full with th(30) = 3. s in [10, 20): th = 2.
    assert get_preset("dit-ddim-50").full_steps() == DIT_DDIM_50_FULL
    assert official_full_steps(50, 3, count_down=True, sensitive=True) == DIT_DDIM_50_FULL


def test_dit_ddpm_250_full_steps_follow_the_official_code():
    expected = official_full_steps(250, 4, count_down=True, sensitive=True)
    assert expected[:12] == [0, 9, 15, 21, 27, 33, 39, 44, 49, 54, 59, 64] and len(expected) == 72
    assert get_preset("dit-ddpm-250").full_steps() == expected


def test_pixart_dpm_20_full_steps_follow_the_official_code():
    # s = i. s=0: first step, th = round(3/0.8) = 4. s=4: 4 % 4 == 0, block 0 sets th(4) =
    # round(3/0.88) = 3 and 4 % 3 != 0: the other blocks stay partial. s=6: th(6) = round(3.26)
    # = 3: full; then th stays 3 (3.06, 2.88, 2.73, 2.59 round to 3): full at 9, 12, 15, 18.
    assert get_preset("pixart-dpm-20").full_steps() == PIXART_DPM_20_FULL
    assert official_full_steps(20, 3, count_down=False, sensitive=False) == PIXART_DPM_20_FULL


def test_the_earlier_current_step_reading_stays_reachable():
    """lagged_threshold=False: the threshold of the step itself (DESIGN.md's reading)."""
    ddim = get_preset("dit-ddim-50", lagged_threshold=False).full_steps()
    assert ddim == current_step_threshold_full_steps(50, 3, count_down=True, sensitive=True)
    assert ddim[:5] == [0, 5, 9, 13, 16] and len(ddim) == 19
    ddpm = get_preset("dit-ddpm-250", lagged_threshold=False).full_steps()
    assert ddpm == current_step_threshold_full_steps(250, 4, count_down=True, sensitive=True) and len(ddpm) == 74
    pixart = get_preset("pixart-dpm-20", lagged_threshold=False).full_steps()
    assert pixart == current_step_threshold_full_steps(20, 3, count_down=False, sensitive=False)
    assert pixart == [0, 3, 6, 9, 12, 15, 18]
    # every other field is the preset's own
    for name in ("dit-ddim-50", "dit-ddpm-250", "pixart-dpm-20"):
        legacy = get_preset(name, lagged_threshold=False)
        assert legacy.replace(lagged_threshold=True) == get_preset(name)


def test_dit_sensitive_steps_refresh_every_second_step():
    schedule = get_preset("dit-ddim-50")
    # s in [10, 20) counting down from 49 is i in (29, 39]: th = 2, so every even s is full
    for i in range(30, 40):
        s = 49 - i
        assert schedule.is_full(i) == (s % 2 == 0), i


def test_lagged_threshold_matches_the_official_per_block_decision():
    """The official code recomputes the threshold in block 0 of a full step, so blocks 1..27
    decide with the new threshold while block 0 decided with the previous one."""
    T, N = 50, 3

    def threshold(s):
        return 2 if int(0.2 * T) <= s < int(0.4 * T) else round(N / (1.4 - 0.8 * s / T))

    blocks_after_first_full, th = [], N
    for i in range(T):
        s = T - 1 - i
        first = i == 0
        block0_full = first or s % th == 0
        if block0_full:
            th = threshold(s)
        if first or s % th == 0:
            blocks_after_first_full.append(i)
    assert get_preset("dit-ddim-50", lagged_threshold=True).full_steps() == blocks_after_first_full
    assert get_preset("dit-ddim-50").lagged_threshold is True


def official_block0_alone_steps(T, N, *, count_down, sensitive):
    """Steps on which the official DiT / PixArt code computes block 0 and no other block: block 0
    is due under the threshold it carries from the last full step, and the threshold it
    recomputes there is not due for the blocks after it."""
    alone, th = [], N
    for i in range(T):
        s = T - 1 - i if count_down else i
        if i == 0:
            th = _threshold(T, N, s, count_down=count_down, sensitive=sensitive)
        elif s % th == 0:
            th = _threshold(T, N, s, count_down=count_down, sensitive=sensitive)
            if s % th != 0:
                alone.append(i)
    return alone


@pytest.mark.parametrize("name, T, N, count_down, sensitive", [
    ("dit-ddim-50", 50, 3, True, True), ("dit-ddpm-250", 250, 4, True, True), ("pixart-dpm-20", 20, 3, False, False)])
def test_block_0_computes_alone_where_the_official_code_does(name, T, N, count_down, sensitive):
    schedule = get_preset(name)
    expected = official_block0_alone_steps(T, N, count_down=count_down, sensitive=sensitive)
    assert expected and schedule.first_block_steps() == expected
    for i in range(T):
        assert schedule.block_full(i, 0) == (i in expected)
        assert not any(schedule.block_full(i, depth) for depth in range(1, 28))
        assert not (schedule.block_full(i, 0) and schedule.is_full(i))
    # the earlier reading: those steps partial in every block; the full steps do not move
    earlier = get_preset(name, first_block_alone=False)
    assert earlier.first_block_steps() == [] and earlier.full_steps() == schedule.full_steps()
    # without the lagged threshold block 0 is never due alone
    assert get_preset(name, lagged_threshold=False).first_block_steps() == []


def test_block_0_alone_adds_one_variant_per_such_step_with_block_0_whole():
    schedule = get_preset("dit-ddim-50")
    plans = distinct_partial_plans(schedule, DIT_LAYOUT, 28, DIT_TOKENS)
    alone = [p for p in plans if p[0] == 256]
    assert 1 <= len(alone) <= len(schedule.first_block_steps())
    for plan in alone:  # block 0's attention and MLP whole, every later attention reused
        assert plan[:2] == (256, 256)
        assert all(k == 0 for k, (kind, _) in zip(plan[2:], DIT_LAYOUT[2:]) if kind == "attn")


def _single(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


@given(ratio=st.floats(0.0, 1.0), tokens=st.integers(1, 20_000))
@examples(200)
def test_floor_rounding_is_the_official_int_of_a_single_precision_product(ratio, tokens):
    k = tokens_for(ratio, tokens, "floor")
    assert k == (int(_single(_single(ratio) * tokens)) if ratio > 0 else 0)
    assert 0 <= k <= tokens_for(ratio, tokens, "ceil")


def test_floor_rounding_truncates_in_single_precision_not_double():
    # 0.525 is not exact in binary: 0.525 * 120 is 63.0 in double, 62.999996 in single
    assert math.floor(0.525 * 120) == 63
    assert tokens_for(0.525, 120, "floor") == int(_single(_single(0.525) * 120)) == 62
    assert tokens_for(0.525, 120) == 63


def test_official_presets_round_down_and_ours_round_up():
    for name, schedule in PRESETS.items():
        official = name not in ("fora", "default")
        assert schedule.token_rounding == ("floor" if official else "ceil"), name
    dit = get_preset("dit-ddim-50")
    ratio = dit.ratio(20, "mlp", 5, 28)
    assert ratio > 0 and dit.tokens(20, "mlp", 5, 28, 256) == int(_single(_single(ratio) * 256))
    assert get_preset("dit-ddim-50", token_rounding="ceil").tokens(20, "mlp", 5, 28, 256) == math.ceil(ratio * 256)
    # a ratio that rounds to no token: the region reuses its cache on that step
    tiny = get_preset("dit-ddim-50", base_ratio=0.001)
    assert tiny.tokens(20, "mlp", 5, 28, 256) == 0 and tokens_for(tiny.ratio(20, "mlp", 5, 28), 256) == 1


def test_dit_fora_follows_the_official_dit_code_with_ratio_zero():
    # force_scheduler.py with fresh_ratio 0: no step weight, no sensitive window, th = 3;
    # cal_type.py: the first step (s = 49) is full, then every s % 3 == 0: s = 48, 45, .., 0
    expected = [0, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 34, 37, 40, 43, 46, 49]
    schedule = get_preset("dit-fora-50")
    assert schedule.full_steps() == expected
    assert all(schedule.ratio(i, kind, 3, 28) == 0.0 for i in range(50) for kind in KINDS)


@pytest.mark.parametrize("name, interval", [("flux-50-n4", 4), ("flux-50-n5", 5), ("flux-50-n6", 6)])
def test_flux_first_three_steps_full_then_every_n(name, interval):
    expected = [0, 1, 2] + list(range(2 + interval, 50, interval))
    assert get_preset(name).full_steps() == expected


def test_flux_full_steps_follow_the_official_counter():
    """flux-ToCa cal_type.py: steps 0..2 full; a counter reset on full steps and incremented on
    partial ones makes the step full when it equals N - 1 (the last step is not forced)."""
    hand = {
        "flux-50-n4": [0, 1, 2, 6, 10, 14, 18, 22, 26, 30, 34, 38, 42, 46],
        "flux-50-n5": [0, 1, 2, 7, 12, 17, 22, 27, 32, 37, 42, 47],
        "flux-50-n6": [0, 1, 2, 8, 14, 20, 26, 32, 38, 44],
        # fresh_ratio 0 (FORA): only step 0 is a warm-up step
        "fora": list(range(0, 50, 3)),
    }
    for name, expected in hand.items():
        warm = 1 if name == "fora" else 3
        N = get_preset(name).interval
        full, counter = [], 0
        for i in range(50):
            if i < warm or counter == N - 1:
                full.append(i)
                counter = 0
            else:
                counter += 1
        assert full == expected == get_preset(name).full_steps(), name


def test_fora_and_default_refresh_every_third_step():
    for name in ("fora", "default"):
        assert get_preset(name).full_steps() == list(range(0, 50, 3))
    assert all(get_preset("fora").ratio(i, kind, 3, 28) == 0.0 for i in range(50) for kind in KINDS)


def test_opensora_per_module_cycles():
    schedule = get_preset("opensora-rflow-30")
    assert schedule.full_steps() == [0, 1, 2, 6, 12, 18, 24]
    for i in range(3, 30):
        if schedule.is_full(i):
            continue
        # self-attention and MLP every 3 steps, cross-attention every 6 (official: step % cycle)
        assert schedule.module_full(i, "attn") == (i % 3 == 0)
        assert schedule.module_full(i, "mlp") == (i % 3 == 0)
        assert schedule.module_full(i, "cross_attn") is False
        expected_mlp = 1.0 if i % 3 == 0 else 0.1 * (1 + 0.33 * 1.5)
        assert schedule.ratio(i, "mlp", 5, 28) == pytest.approx(expected_mlp)
        assert schedule.ratio(i, "cross_attn", 5, 28) == 0.0
    assert not any(schedule.module_full(i, kind) for i in schedule.full_steps() for kind in KINDS)


def test_duca_alternates_conservative_and_aggressive_partial_steps():
    schedule = get_preset("flux-50-n5", duca=True)
    pattern = [("F" if schedule.is_full(i) else "A" if schedule.aggressive(i) else "T") for i in range(13)]
    assert "".join(pattern) == "FFFTATAFTATAF"
    assert not any(get_preset("flux-50-n5").aggressive(i) for i in range(50))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_steps_beyond_the_generation_do_not_crash_and_keep_refreshing(name):
    schedule = get_preset(name)
    T = schedule.num_steps
    later = range(T, T + 40)
    assert any(schedule.is_full(i) for i in later)
    for i in [-1, *later]:
        schedule.aggressive(i)
        for kind, depth in [("mlp", 3), ("parallel", 40), ("attn", 0)]:
            assert 0.0 <= schedule.ratio(i, kind, depth, 57) <= 1.0
    assert schedule.step_factor_at(T + 100) == schedule.step_factor_at(T - 1)


# -- ratios ---------------------------------------------------------------------------
def test_dit_ddim_50_ratios_equal_the_official_formula_without_bucketing():
    schedule = get_preset("dit-ddim-50", step_levels=None)
    T = 50
    for i in range(T):
        s = T - 1 - i  # the official step index counts down
        for layer in range(28):
            step_factor = max(0.0, 1 + 2.0 - 2 * 2.0 * s / T)
            layer_factor = 1 - 0.2 + 2 * 0.2 * layer / 27
            expected = min(1.0, 0.07 * step_factor * layer_factor * (1 + 0.6 * 2.5))
            assert schedule.ratio(i, "mlp", layer, 28) == pytest.approx(expected)
            assert schedule.ratio(i, "attn", layer, 28) == 0.0


def test_pixart_ratios_equal_the_official_formula_without_bucketing():
    schedule = get_preset("pixart-dpm-20", step_levels=None)
    for s in range(20):
        for layer in (0, 13, 27):
            base = 0.3 * (1.9 - 1.8 * s / 20) * (1.6 - 1.2 * layer / 27)
            assert schedule.ratio(s, "cross_attn", layer, 28) == pytest.approx(min(1.0, base * 0.6))
            assert schedule.ratio(s, "mlp", layer, 28) == pytest.approx(min(1.0, base * 1.6))


def test_flux_layer_factor_counts_blocks_within_each_stream():
    schedule = get_preset("flux-50-n5")
    step = 3  # partial
    assert not schedule.is_full(step)
    for block in range(19):
        assert schedule.ratio(step, "mlp", block, 57) == pytest.approx(0.1 * (1.5 - block / 27) * 0.4)
        assert schedule.ratio(step, "joint_attn", block, 57) == 0.0
    for index in range(38):
        expected = max(0.0, 0.1 * (1.5 - index / 27) * 1.6)
        assert schedule.ratio(step, "parallel", 19 + index, 57) == pytest.approx(expected)


def test_ratios_are_clamped_to_one():
    schedule = ToCaSchedule(base_ratio=0.9, layer_factor=(3.0, 3.0), module_factors={"mlp": 5.0})
    assert schedule.ratio(1, "mlp", 0, 4) == 1.0
    assert tokens_for(schedule.ratio(1, "mlp", 0, 4), 77) == 77


schedules = st.builds(
    ToCaSchedule,
    num_steps=st.integers(1, 120),
    full_rule=st.sampled_from(["interval", "threshold"]),
    interval=st.integers(1, 7),
    first_full=st.integers(1, 4),
    count_down=st.booleans(),
    threshold_weight=st.floats(-0.9, 0.9),
    base_ratio=st.floats(0.0, 1.0),
    step_factor=st.tuples(st.floats(-5, 5), st.floats(-5, 5)),
    step_levels=st.one_of(st.none(), st.integers(1, 6)),
    layer_factor=st.tuples(st.floats(-3, 3), st.floats(-3, 3)),
    module_factors=st.dictionaries(st.sampled_from(KINDS), st.floats(0, 4)),
    duca=st.booleans(),
)


@examples(60)
@given(schedule=schedules, step=st.integers(-5, 300), kind=st.sampled_from(KINDS),
       num_blocks=st.integers(1, 60), data=st.data())
def test_ratio_is_in_unit_interval_and_k_never_exceeds_n(schedule, step, kind, num_blocks, data):
    depth = data.draw(st.integers(0, num_blocks - 1))
    tokens = data.draw(st.integers(1, 5000))
    ratio = schedule.ratio(step, kind, depth, num_blocks)
    assert 0.0 <= ratio <= 1.0
    assert 0 <= tokens_for(ratio, tokens) <= tokens


@examples(60)
@given(start=st.floats(-3, 3), end=st.floats(-3, 3), num_blocks=st.integers(2, 60),
       span=st.one_of(st.none(), st.integers(1, 40)))
def test_layer_factor_is_monotone_over_depth(start, end, num_blocks, span):
    schedule = ToCaSchedule(layer_factor=(start, end), layer_span=span)
    values = [schedule.layer_value("mlp", depth, num_blocks) for depth in range(num_blocks)]
    pairs = list(zip(values, values[1:]))
    if start <= end:
        assert all(a <= b + 1e-12 for a, b in pairs)
    else:
        assert all(a >= b - 1e-12 for a, b in pairs)
    assert values[0] == pytest.approx(start)


# -- bucketing: how many variants a generation compiles -------------------------------
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_generation_needs_at_most_step_levels_partial_variants(name, layout):
    schedule = get_preset(name)
    kinds_depths, num_blocks, tokens = LAYOUTS[layout]
    plans = distinct_partial_plans(schedule, kinds_depths, num_blocks, tokens)
    n = len(kinds_depths)
    # a step on which a kind (module cycles) or a block (block 0 alone) computes fully may add
    # a variant of its own; every other partial step takes one of step_levels variants
    refreshing = {i for i in range(schedule.num_steps) if not schedule.is_full(i)
                  and any(schedule.module_full(i, kind) or schedule.block_full(i, depth) for kind, depth in kinds_depths)}
    module_patterns = {tuple(schedule.module_full(i, kind) for kind, _ in kinds_depths) for i in refreshing}
    module_patterns.discard((False,) * n)
    assert 1 <= len(plans) <= schedule.step_levels + len(module_patterns) + len(schedule.first_block_steps())
    plain = [p for p in plans if not any(k == t for k, t, (kind, _) in zip(p, tokens, kinds_depths)
                                         if kind in ("attn", "joint_attn"))]
    assert len(plain) <= schedule.step_levels
    for plan in plans:
        assert all(0 <= k <= t for k, t in zip(plan, tokens))


@examples(20)
@given(levels=st.integers(1, 8), name=st.sampled_from(["dit-ddim-50", "dit-ddpm-250", "pixart-dpm-20"]))
def test_step_levels_bounds_the_variants_of_step_dependent_presets(levels, name):
    schedule = get_preset(name, step_levels=levels)
    plans = distinct_partial_plans(schedule, DIT_LAYOUT, 28, DIT_TOKENS)
    assert len(plans) <= levels + len(schedule.first_block_steps())  # block 0 alone: a variant per such step
    factors = {schedule.step_factor_at(i) for i in range(schedule.num_steps) if not schedule.is_full(i)}
    assert len(factors) <= levels


def test_bucketing_stays_close_to_the_exact_step_factor():
    exact = get_preset("dit-ddpm-250", step_levels=None)
    bucketed = get_preset("dit-ddpm-250")
    partial = [i for i in range(250) if not exact.is_full(i)]
    values = [exact.step_factor_at(i) for i in partial]
    half_gap = (max(values) - min(values)) / (2 * (bucketed.step_levels - 1))
    assert all(abs(exact.step_factor_at(i) - bucketed.step_factor_at(i)) <= half_gap + 1e-9 for i in partial)


def test_distinct_partial_plans_needs_a_step_count_for_plain_schedules():
    plans = distinct_partial_plans(IntervalSchedule(3, 0.25), DIT_LAYOUT, 28, DIT_TOKENS, num_steps=10)
    assert plans == {tuple(0 if kind == "attn" else 64 for kind, _ in DIT_LAYOUT)}
    with pytest.raises(ValueError, match="num_steps"):
        distinct_partial_plans(IntervalSchedule(3, 0.25), DIT_LAYOUT, 28, DIT_TOKENS)


# -- presets and validation ------------------------------------------------------------
def test_every_preset_has_a_description():
    assert set(DESCRIPTIONS) == set(PRESETS)
    assert {"dit-ddim-50", "dit-ddpm-250", "pixart-dpm-20", "opensora-rflow-30",
            "flux-50-n4", "flux-50-n5", "flux-50-n6", "fora", "default"} <= set(PRESETS)


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError) as info:
        get_preset("dit-ddim-5O")
    assert "dit-ddim-5O" in str(info.value)
    assert all(name in str(info.value) for name in PRESETS)


def test_overrides_replace_fields_and_are_validated():
    schedule = get_preset("flux-50-n5", num_steps=28, step_levels=2)
    assert (schedule.num_steps, schedule.step_levels, schedule.interval) == (28, 2, 5)
    merged = get_preset("opensora-rflow-30", module_cycles={"cross_attn": 3})
    assert dict(merged.module_cycles)["mlp"] == 3 and dict(merged.module_cycles)["cross_attn"] == 3
    assert PRESETS["flux-50-n5"].num_steps == 50  # presets are not mutated
    with pytest.raises(ValueError, match="no field"):
        get_preset("fora", intervall=2)


@pytest.mark.parametrize("field, value, message", [
    ("num_steps", 0, "ToCaSchedule.num_steps must be an integer >= 1"),
    ("interval", 2.5, "ToCaSchedule.interval must be an integer >= 1"),
    ("first_full", 0, "ToCaSchedule.first_full must be an integer >= 1"),
    ("full_rule", "every-other", "ToCaSchedule.full_rule must be one of"),
    ("base_ratio", 1.5, "ToCaSchedule.base_ratio must be a number in [0.0, 1.0]"),
    ("base_ratio", float("nan"), "ToCaSchedule.base_ratio must be a number in [0.0, 1.0]"),
    ("threshold_weight", 1.0, "ToCaSchedule.threshold_weight must be a number in (-1.0, 1.0)"),
    ("step_factor", (1.0,), "ToCaSchedule.step_factor must be a pair"),
    ("layer_factor", (1.0, float("inf")), "ToCaSchedule.layer_factor must be a pair"),
    ("step_levels", 0, "ToCaSchedule.step_levels must be an integer >= 1 or None"),
    ("sensitive_window", (0.5, 0.2), "ToCaSchedule.sensitive_window must be None or a pair"),
    ("module_factors", {"ffn": 1.0}, "ToCaSchedule.module_factors must be keyed by region kinds"),
    ("module_factors", {"mlp": -1.0}, "ToCaSchedule.module_factors['mlp'] must be a finite number >= 0"),
    ("module_cycles", {"attn": 0}, "ToCaSchedule.module_cycles['attn'] must be an integer >= 1"),
    ("duca", 1, "ToCaSchedule.duca must be True or False"),
    ("first_block_alone", "yes", "ToCaSchedule.first_block_alone must be True or False"),
    ("token_rounding", "round", "ToCaSchedule.token_rounding must be one of ['ceil', 'floor']"),
])
def test_bad_schedule_values_raise_value_error_naming_the_field(field, value, message):
    with pytest.raises(ValueError) as info:
        get_preset("dit-ddim-50", **{field: value})
    assert message in str(info.value)


def test_cycles_rule_needs_cycles():
    with pytest.raises(ValueError, match="ToCaSchedule.module_cycles"):
        ToCaSchedule(full_rule="cycles")


def test_schedules_are_immutable_hashable_and_picklable():
    schedule = get_preset("opensora-rflow-30")
    with pytest.raises(TypeError):
        schedule.module_factors["mlp"] = 2.0  # type: ignore[index]
    assert hash(schedule) == hash(get_preset("opensora-rflow-30"))
    assert schedule == get_preset("opensora-rflow-30")
    clone = pickle.loads(pickle.dumps(schedule))
    assert clone == schedule and clone.full_steps() == schedule.full_steps()


# -- the interval schedule and the config ------------------------------------------------
def test_interval_schedule_keeps_its_behaviour_and_speaks_the_new_protocol():
    schedule = IntervalSchedule(3, 0.2)
    assert [schedule.is_full(i) for i in range(7)] == [True, False, False, True, False, False, True]
    assert schedule.ratio(1, "mlp", 0, 4) == 0.2 and schedule.ratio(1, "joint_attn", 0, 4) == 0.0
    assert not schedule.module_full(1, "mlp") and not schedule.aggressive(2)


def test_config_schedule_uses_the_preset_or_interval_and_ratio():
    assert ToCaConfig().schedule() == IntervalSchedule(3, 0.15)
    assert ToCaConfig(preset="flux-50-n5").schedule() == get_preset("flux-50-n5")
    assert ToCaConfig(preset="pixart-dpm-20", mode="duca").schedule().duca
    fora = ToCaConfig(interval=4, mode="fora").schedule()
    assert fora.full_steps()[:3] == [0, 4, 8] and fora.ratio(1, "mlp", 0, 4) == 0.0
    duca = ToCaConfig(interval=4, ratio=0.2, mode="duca").schedule()
    assert [duca.aggressive(i) for i in range(5)] == [False, False, True, False, False]
    assert duca.ratio(1, "mlp", 0, 4) == 0.2


@pytest.mark.parametrize("field, value, allowed", [
    ("preset", "dit", "None or one of"), ("mode", "teacache", "one of"),
    ("taylor_order", 3, "1 or 2"), ("taylor_order", True, "1 or 2"),
])
def test_config_rejects_bad_new_fields(field, value, allowed):
    with pytest.raises(ValueError) as info:
        ToCaConfig(**{field: value})
    assert f"ToCaConfig.{field}" in str(info.value) and allowed in str(info.value)


def test_config_defaults_are_toca_as_published():
    config = ToCaConfig()
    assert (config.interval, config.ratio, config.score, config.preset, config.mode, config.taylor_order) == (
        3, 0.15, "attention", None, "toca", 1)
    assert (config.spatial_cell, config.spatial_bonus) == (None, None) and config.spatial == (2, 0.6)
    assert math.isclose(config.staleness_weight, 0.25)


def test_a_preset_brings_the_spatial_bonus_of_its_code_unless_the_config_sets_one():
    from oracle import OFFICIAL_SPATIAL  # the authors' calls, written down independently

    for name in PRESETS:
        assert ToCaConfig(preset=name).spatial == OFFICIAL_SPATIAL.get(name, (2, 0.6)), name
    assert ToCaConfig(preset="pixart-dpm-20").spatial == (4, 0.4)
    assert ToCaConfig(preset="flux-50-n5").spatial[1] == 0.0
    assert ToCaConfig(preset="pixart-dpm-20", spatial_bonus=0.6).spatial == (4, 0.6)
    assert ToCaConfig(preset="flux-50-n5", spatial_cell=3, spatial_bonus=0.5).spatial == (3, 0.5)
    assert ToCaConfig(spatial_cell=4).spatial == (4, 0.6)
    for field, value in (("spatial_cell", 0), ("spatial_bonus", -0.1)):
        with pytest.raises(ValueError, match=f"ToCaConfig.{field}"):
            ToCaConfig(**{field: value})
