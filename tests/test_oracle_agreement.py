"""The compiled path against the independent eager oracle (tests/oracle.py), for every score
(attention received with sampled or all query rows, cross-attention entropy, value norms,
random), the spatial bonus, shared CFG selection, staleness, every mode and every preset.

Not only the outputs are compared: after every call, every region's cache, staleness counters
(which say which rows were selected) and base scores must equal the oracle's. The compiled runs
use the eager executor (fp32), so the tolerance is 1e-6.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from profiles import examples

from architectures import ArchSpec, TinyDiT, arch_specs, make_inputs, timesteps
from oracle import MIXING, ReferenceToCa
from toca_compile import ToCa, ToCaConfig
from toca_compile.presets import PRESETS

TOL = dict(rtol=1e-6, atol=1e-6)


def compare_states(toca: ToCa, oracle: ReferenceToCa, branch: int, where: str) -> None:
    ours = toca.region_states(0, branch)
    theirs = oracle.state[branch]
    assert len(ours) == len(theirs) == len(oracle.regions), where
    for name, state in ours.items():
        index = int(name.split(":")[0])
        want = theirs[index]
        label = f"{where}, region {name}"
        torch.testing.assert_close(state["slot0"], want.derivs[0] if want.derivs else want.cache, **TOL,
                                   msg=lambda m: f"{label}: cache: {m}")
        if want.derivs:
            for order in range(1, len(want.derivs)):
                torch.testing.assert_close(state[f"taylor{order}"], want.derivs[order], **TOL,
                                           msg=lambda m: f"{label}: difference {order}: {m}")
        if want.kind in MIXING:
            assert "stale" not in state, label  # reused whole: no selection state
            continue
        if "stale" in state and oracle.mode != "taylorseer":
            assert torch.equal(state["stale"], want.stale), f"{label}: selected rows differ"
        if want.base is not None:
            torch.testing.assert_close(state["base"], want.base, **TOL, msg=lambda m: f"{label}: base score: {m}")
        if want.attn is not None and "slot1" in state:
            cached = state["slot1"]
            if cached.dim() == 4:  # the attention output before its heads are merged: [B, H, N, D]
                cached = cached.transpose(1, 2).reshape(want.attn.shape)
            torch.testing.assert_close(cached, want.attn, **TOL, msg=lambda m: f"{label}: attention half: {m}")


def run_both(spec: ArchSpec, config: ToCaConfig, steps: int, branches: int, seed: int = 0, generations: int = 2):
    model = TinyDiT(spec, seed=seed)
    torch._dynamo.reset()
    toca = ToCa(config)
    fast = torch.compile(model, backend=toca.backend, fullgraph=True)
    oracle = ReferenceToCa(model, config)
    inputs = [make_inputs(spec, seed + 31 * b) for b in range(branches)]
    with torch.no_grad():
        for g in range(generations):
            for i, t in enumerate(timesteps(spec, steps, start=999.0 - g)):
                for b, (x, text) in enumerate(inputs):
                    where = f"generation {g}, step {i}, branch {b}"
                    got = fast(x, t, text)
                    want = oracle(x, t, text)
                    torch.testing.assert_close(got, want, **TOL, msg=lambda m: f"{where}: output: {m}")
                    if not oracle.last_aggressive:
                        compare_states(toca, oracle, b, where)
    assert not toca.fallbacks and toca.stats().uncached_calls == 0  # caching really was active
    return toca


settings_ = st.fixed_dictionaries({
    "score": st.sampled_from(["attention", "kvnorm", "random"]),
    "score_queries": st.integers(1, 32),          # below the token count: the sampled estimate
    "entropy_weight": st.sampled_from([0.0, 1.0, 0.5]),
    "spatial_cell": st.integers(1, 3),
    "spatial_bonus": st.sampled_from([0.0, 0.6]),
    "cfg_shared": st.booleans(),
    "staleness_weight": st.sampled_from([0.0, 0.25, 2.0]),
    "interval": st.integers(2, 4),
    "ratio": st.floats(0.05, 0.95),
    "seed": st.integers(0, 1000),
    "mode": st.sampled_from(["toca", "toca", "duca", "fora", "taylorseer"]),
    "taylor_order": st.integers(1, 2),
})


@given(spec=arch_specs(), fields=settings_, branches=st.integers(1, 2))
@examples(25)
def test_compiled_path_equals_the_oracle_state_by_state(spec, fields, branches):
    config = ToCaConfig(compiler="eager", **fields)
    run_both(spec, config, steps=2 * config.interval + 2, branches=branches)


PRESET_MODELS = {
    "dit-ddim-50": ArchSpec(depth=3, tokens=16),
    "dit-ddpm-250": ArchSpec(depth=3, tokens=16),
    "dit-fora-50": ArchSpec(depth=2, tokens=16),
    "pixart-dpm-20": ArchSpec(depth=3, tokens=16, cross_attn=True, text_tokens=3),
    "opensora-rflow-30": ArchSpec(depth=2, tokens=16, cross_attn=True, text_tokens=3),
    "flux-50-n4": ArchSpec(depth=3, tokens=16, parallel=True),
    "flux-50-n5": ArchSpec(depth=3, tokens=16, joint=True, text_tokens=4),
    "flux-50-n6": ArchSpec(depth=3, tokens=16, parallel=True),
    "fora": ArchSpec(depth=2, tokens=16, cross_attn=True),
    "default": ArchSpec(depth=2, tokens=16),
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_equals_the_oracle(preset):
    """The published schedules (default scores: attention received, entropy, spatial bonus) over
    the first 30 steps of a generation (all of it for shorter presets), batched CFG."""
    spec = PRESET_MODELS[preset]
    steps = min(PRESETS[preset].num_steps, 30)
    toca = run_both(spec, ToCaConfig(preset=preset, compiler="eager"), steps=steps, branches=1, generations=1)
    stats = toca.stats()
    assert stats.full_steps + stats.partial_steps == steps and stats.partial_steps > 0


@given(spec=arch_specs(), mode=st.sampled_from(["toca", "fora", "taylorseer"]), order=st.integers(1, 2),
       full=st.sets(st.integers(1, 11), max_size=6), warmup=st.integers(1, 4))
@examples(10)
def test_listed_full_steps_and_warmup_equal_the_oracle(spec, mode, order, full, warmup, tmp_path_factory):
    """Irregularly spaced full steps (a calibrated schedule file; TaylorSeer divides by each
    gap) and warm-up full steps, over a generation longer than the file's steps."""
    from toca_compile.calibration import SavedSchedule

    path = tmp_path_factory.mktemp("schedule") / "s.json"
    SavedSchedule(12, (0, *sorted(full)), mode, order, 0.3).write(path)
    listed = ToCaConfig.from_schedule_file(str(path), compiler="eager")
    run_both(spec, listed, steps=14, branches=1, generations=1)
    warm = ToCaConfig(mode=mode, taylor_order=order, ratio=0.3, interval=3, warmup=warmup, compiler="eager")
    toca = run_both(spec, warm, steps=10, branches=1, generations=1)
    assert toca.stats().full_steps == sum(1 for i in range(10) if i < warmup or (i - warmup + 1) % 3 == 0)


def test_the_oracle_covers_every_preset():
    from oracle import PUBLISHED

    assert set(PUBLISHED) == set(PRESETS)
