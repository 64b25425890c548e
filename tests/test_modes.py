"""The sibling modes of ToCa (FORA, DuCa, TaylorSeer): the compiled backend against the eager
oracle (``oracle.ReferenceToCa``) over whole generations, and the oracle's own semantics
on cases whose answer is known without it.

The compiled runs use the eager executor (``compiler="eager"``) and random scores with no
spatial bonus, which is what the oracle implements.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from profiles import examples

from architectures import (
    ArchSpec,
    JointBlock,
    ParallelBlock,
    TinyDiT,
    arch_specs,
    expected_regions,
    make_inputs,
    timesteps,
)
from oracle import ReferenceToCa, taylor_update, taylor_forecast
from checks import assert_caching_active
from toca_compile import ToCa, ToCaConfig



SETTINGS = examples(12)
FEW = examples(10)


def mode_config(mode: str, **fields) -> ToCaConfig:
    """Settings the oracle implements: random scores, no spatial bonus, eager executor."""
    return ToCaConfig(mode=mode, score="random", spatial_bonus=0.0, compiler="eager", **fields)


def compiled(model: TinyDiT, config: ToCaConfig):
    torch._dynamo.reset()  # one Dynamo cache entry per example, never the recompile limit
    toca = ToCa(config)
    return toca, torch.compile(model, backend=toca.backend, fullgraph=True, dynamic=False)


def run(fn, spec: ArchSpec, steps: int, inputs, branches: int = 1, start: float = 999.0):
    """One generation; CFG branch ``b`` of every step gets ``inputs[b]`` (x, text)."""
    outs = []
    with torch.no_grad():
        for t in timesteps(spec, steps, start=start):
            for b in range(branches):
                x, text = inputs[b]
                outs.append(fn(x, t, text))
    return outs


def branch_inputs(spec: ArchSpec, seed: int, branches: int):
    return [make_inputs(spec, seed + 17 * b) for b in range(branches)]


def compare_generation(spec: ArchSpec, config: ToCaConfig, branches: int, seed: int) -> ToCa:
    """Compiled vs oracle over a generation of 2·interval+2 steps, then a second short one."""
    model = TinyDiT(spec, seed=seed)
    inputs = branch_inputs(spec, seed, branches)
    toca, fast = compiled(model, config)
    oracle = ReferenceToCa(model, config)
    steps = 2 * config.interval + 2
    got = run(fast, spec, steps, inputs, branches)
    want = run(oracle, spec, steps, inputs, branches)
    assert_caching_active(toca)  # the graph really is cached, not run plainly
    assert len(got) == len(want) == steps * branches
    for i, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6, msg=lambda m: f"call {i} (step {i // branches}): {m}")
    assert toca.stats().steps == steps
    # a second generation (timestep goes back up) starts again from a full step
    got2 = run(fast, spec, 3, inputs, branches, start=900.0)
    want2 = run(oracle, spec, 3, inputs, branches, start=900.0)
    for i, (g, w) in enumerate(zip(got2, want2)):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6, msg=lambda m: f"generation 2, call {i}: {m}")
    return toca


# --------------------------------------------------------------------------------------------
# Compiled backend == oracle


@given(arch_specs(), st.integers(2, 4), st.floats(0.0, 1.0), st.integers(1, 2), st.integers(0, 5))
@SETTINGS
def test_fora_compiled_equals_the_reference(spec, interval, ratio, branches, seed):
    # ratio is ignored by FORA; drawing it checks that it really is
    compare_generation(spec, mode_config("fora", interval=interval, ratio=ratio, seed=seed), branches, seed)


@given(arch_specs(), st.integers(3, 4), st.floats(0.05, 1.0), st.integers(1, 2), st.integers(0, 5))
@SETTINGS
def test_duca_compiled_equals_the_reference(spec, interval, ratio, branches, seed):
    config = mode_config("duca", interval=interval, ratio=ratio, seed=seed)
    steps = 2 * interval + 2
    assert any(config.schedule().aggressive(s) for s in range(steps))  # interval >= 3: some exist
    compare_generation(spec, config, branches, seed)


@pytest.mark.parametrize("order", [1, 2])
@given(spec=arch_specs(), interval=st.integers(2, 4), branches=st.integers(1, 2), seed=st.integers(0, 5))
@SETTINGS
def test_taylorseer_compiled_equals_the_reference(order, spec, interval, branches, seed):
    # 2·interval+2 steps: three full steps, so the second difference is exercised too
    config = mode_config("taylorseer", interval=interval, taylor_order=order, seed=seed)
    compare_generation(spec, config, branches, seed)


@pytest.mark.parametrize("order", [1, 2])
@given(spec=arch_specs(), interval=st.integers(2, 4), refresh=st.floats(0.05, 1.0), branches=st.integers(1, 2),
       seed=st.integers(0, 5))
@SETTINGS
def test_taylorseer_with_forecast_refresh_compiled_equals_the_reference(order, spec, interval, refresh, branches, seed):
    # forecast steps overwrite the selected rows of token-wise regions with exact ones
    config = mode_config("taylorseer", interval=interval, taylor_order=order, forecast_refresh=refresh, seed=seed)
    toca = compare_generation(spec, config, branches, seed)
    stats = toca.stats()
    if any(r.mode == "rows" for r in stats.regions):  # some region is token-wise: rows were refreshed
        assert stats.partial_steps > 0 and any(r.tokens_refreshed > 0 for r in stats.regions)


# --------------------------------------------------------------------------------------------
# The oracle on its own


@FEW
@given(spec=arch_specs(), interval=st.integers(2, 4), seed=st.integers(0, 3))
def test_fora_oracle_is_toca_with_ratio_zero(spec, interval, seed):
    model = TinyDiT(spec, seed=seed)
    fora = ReferenceToCa(model, ToCaConfig(score="random", spatial_bonus=0.0, mode="fora", interval=interval, ratio=0.5, seed=seed))
    toca = ReferenceToCa(model, ToCaConfig(score="random", spatial_bonus=0.0, interval=interval, ratio=0.0, seed=seed))
    inputs = branch_inputs(spec, seed, 2)
    for a, b in zip(run(fora, spec, 2 * interval + 1, inputs, 2), run(toca, spec, 2 * interval + 1, inputs, 2)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert all(s.selected is None for s in fora.state[0].values())


def snapshot(oracle: ReferenceToCa, branch: int = 0) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    return {i: (s.cache.clone(), s.stale.clone()) for i, s in oracle.state[branch].items()}


@FEW
@given(spec=arch_specs(), seed=st.integers(0, 3))
def test_duca_aggressive_step_ignores_the_current_x(spec, seed):
    """Interval 3: steps 0 full, 1 ToCa partial, 2 aggressive, 3 full."""
    model = TinyDiT(spec, seed=seed)
    config = ToCaConfig(score="random", spatial_bonus=0.0, mode="duca", interval=3, ratio=0.4, seed=seed)
    assert [config.schedule().aggressive(s) for s in range(4)] == [False, False, True, False]
    a, b = ReferenceToCa(model, config), ReferenceToCa(model, config)
    x, text = make_inputs(spec, seed)
    x_other, text_other = make_inputs(spec, seed + 1)
    t0, t1, t2, t3 = timesteps(spec, 4)
    with torch.no_grad():
        for oracle in (a, b):
            oracle(x, t0, text)
            oracle(x, t1, text)
            assert not oracle.last_full and not oracle.last_aggressive
        stream, before = a.streams[0].clone(), snapshot(a)
        y_a = a(x, t2, text)
        y_b = b(x_other * 3.0 + 1.0, t2, text_other)
        assert a.last_aggressive and b.last_aggressive and not a.last_full
        torch.testing.assert_close(y_a, y_b, rtol=0, atol=0)
        # the stream saved at step 1, under step 2's conditioning
        _, c2, _ = model.embed(x, t2, text)
        torch.testing.assert_close(y_a, model.final(stream, c2), rtol=0, atol=0)
        # ... which really is the current conditioning: step 1's gives something else
        if spec.adaln:
            _, c1, _ = model.embed(x, t1, text)
            assert (y_a - model.final(stream, c1)).abs().max() > 1e-6
        # nothing of the region state moved, and the stream is kept
        assert torch.equal(a.streams[0], stream)
        for i, (cache, stale) in before.items():
            assert torch.equal(a.state[0][i].cache, cache) and torch.equal(a.state[0][i].stale, stale)
        # the next full step is the plain model again
        torch.testing.assert_close(a(x, t3, text), model(x, t3, text), rtol=0, atol=1e-6)
        assert a.last_full and not a.last_aggressive


@FEW
@given(spec=arch_specs(), seed=st.integers(0, 3))
def test_duca_non_aggressive_partial_step_is_a_toca_step(spec, seed):
    model = TinyDiT(spec, seed=seed)
    duca = ReferenceToCa(model, ToCaConfig(score="random", spatial_bonus=0.0, mode="duca", interval=4, ratio=0.3, seed=seed))
    toca = ReferenceToCa(model, ToCaConfig(score="random", spatial_bonus=0.0, interval=4, ratio=0.3, seed=seed))
    x, text = make_inputs(spec, seed)
    ts = timesteps(spec, 2)
    for t in ts:  # steps 0 (full) and 1 (ToCa partial in both)
        torch.testing.assert_close(duca(x, t, text), toca(x, t, text), rtol=0, atol=0)
    assert not duca.last_aggressive


@FEW
@given(spec=arch_specs(), seed=st.integers(0, 3))
def test_duca_branch_first_seen_on_an_aggressive_step_computes_fully(spec, seed):
    model = TinyDiT(spec, seed=seed)
    oracle = ReferenceToCa(model, ToCaConfig(score="random", spatial_bonus=0.0, mode="duca", interval=3, ratio=0.3, seed=seed))
    x, text = make_inputs(spec, seed)
    t0, t1, t2 = timesteps(spec, 3)
    oracle(x, t0, text)
    oracle(x, t1, text)
    oracle(x, t2, text)
    assert oracle.last_aggressive
    torch.testing.assert_close(oracle(x, t2, text), model(x, t2, text), rtol=0, atol=1e-6)  # CFG branch 1
    assert oracle.branch == 1 and oracle.last_full and not oracle.last_aggressive


@dataclass(frozen=True)
class FullAt:
    """A schedule with the given full steps (uneven gaps) and no token refresh."""

    steps: frozenset

    def is_full(self, step: int) -> bool:
        return step in self.steps

    def module_full(self, step: int, kind: str) -> bool:
        return False

    def aggressive(self, step: int) -> bool:
        return False

    def ratio(self, step: int, kind: str, depth: int, num_blocks: int) -> float:
        return 0.0


def linear_model(spec: ArchSpec, seed: int) -> TinyDiT:
    """A TinyDiT in which every branch output is an affine function of the step index.

    The embedding is replaced by ``x`` itself and a fixed conditioning (so gates don't move),
    and every branch by a fixed linear map of its input. Fed ``x_s = x0 + s·dx``, each residual
    stream value and each branch output is then affine in the step index ``s``. The blocks'
    forward and the oracle both call the (patched) branch methods.
    """
    model = TinyDiT(spec, seed=seed)
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(spec.batch, spec.width, generator=g)
    A, B, C, D = (torch.randn(spec.width, spec.width, generator=g) / spec.width**0.5 for _ in range(4))
    model.embed = lambda x, t, text: (x, c, text)
    for block in model.blocks:
        if isinstance(block, ParallelBlock):
            block.parallel_branch = lambda h, mod: h @ A
        elif isinstance(block, JointBlock):
            block.joint_attn_branch = (lambda h, text, mod, keep=block.text_continues:
                                       (h @ A, text @ C if keep else None))
            block.mlp_branch = lambda h, mod: h @ B
            block.text_mlp_branch = lambda text, mod: text @ D
            block.shared_mlp_branch = lambda h, text, mod: torch.cat([text @ D, h @ B], dim=1)
        else:
            block.attn_branch = lambda h, mod: h @ A
            block.mlp_branch = lambda h, mod: h @ B
            block.cross_branch = lambda h, text: h @ C
    return model


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("full_steps", [(0, 3, 6), (0, 2, 5, 6)], ids=["even", "uneven"])
@FEW
@given(spec=arch_specs(research=False), seed=st.integers(0, 3))
def test_taylorseer_forecasts_a_linear_branch_output_exactly(order, full_steps, spec, seed):
    """Once two full steps have been seen the first difference is the exact slope, so every
    later partial step equals the uncached model; the second difference stays 0 (order 2:
    at the second full step it is not formed yet, afterwards the slope does not change)."""
    model = linear_model(spec, seed)
    oracle = ReferenceToCa(model, ToCaConfig(score="random", spatial_bonus=0.0, mode="taylorseer", taylor_order=order), schedule=FullAt(frozenset(full_steps)))
    g = torch.Generator().manual_seed(seed + 100)
    x0 = torch.randn(spec.batch, spec.tokens, spec.width, generator=g)
    dx = torch.randn(spec.batch, spec.tokens, spec.width, generator=g)
    text = make_inputs(spec, seed)[1]
    ts = timesteps(spec, 9)
    second = full_steps[1]
    with torch.no_grad():
        for s, t in enumerate(ts):
            xs = x0 + s * dx
            y = oracle(xs, t, text)
            assert oracle.last_full == (s in full_steps)
            want = model(xs, t, text)
            if s > second:
                torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-4)
            elif 0 < s < second:  # only d0 known: the forecast is the value at step 0
                assert (y - want).abs().max() > 1e-5
        assert oracle.full_steps[0] == list(full_steps)
        for state in oracle.state[0].values():
            assert len(state.derivs) == order + 1
            if order == 2:  # zero up to the rounding of differences of values this large
                scale = 1.0 + float(state.derivs[0].abs().max())
                assert float(state.derivs[2].abs().max()) <= 1e-5 * scale


@FEW
@given(spec=arch_specs(), interval=st.integers(2, 3), seed=st.integers(0, 3))
def test_taylorseer_full_steps_are_the_plain_model_and_all_regions_forecast(spec, interval, seed):
    model = TinyDiT(spec, seed=seed)
    oracle = ReferenceToCa(model, ToCaConfig(score="random", spatial_bonus=0.0, mode="taylorseer", interval=interval, taylor_order=2, seed=seed))
    x, text = make_inputs(spec, seed)
    with torch.no_grad():
        for s, t in enumerate(timesteps(spec, 2 * interval + 1)):
            y = oracle(x, t, text)
            if s % interval == 0:
                assert oracle.last_full
                torch.testing.assert_close(y, model(x, t, text), rtol=0, atol=1e-6)
            else:
                assert not oracle.last_full
                assert all(state.selected is None for state in oracle.state[0].values())
    assert sorted(oracle.state[0]) == list(range(len(expected_regions(spec))))
    assert oracle.full_steps[0] == list(range(0, 2 * interval + 1, interval))


def test_taylor_update_and_forecast_formulas():
    p0, p1, p2 = torch.tensor([1.0]), torch.tensor([4.0]), torch.tensor([13.0])
    d = taylor_update(None, p0, 2, 0.0, 0.0)
    assert [v.item() for v in d] == [1.0, 0.0, 0.0]
    d = taylor_update(d, p1, 2, 1 / 3, 0.0)          # full steps 0, 3
    assert [v.item() for v in d] == [4.0, 1.0, 0.0]
    d = taylor_update(d, p2, 2, 1 / 3, 1 / 3)        # full step 6: d1 = 3, d2 = (3 - 1)/3
    torch.testing.assert_close(torch.cat(d), torch.tensor([13.0, 3.0, 2 / 3]))
    torch.testing.assert_close(taylor_forecast(d, 2), torch.tensor([13.0 + 6.0 + 4 / 3]))
    torch.testing.assert_close(taylor_forecast(d[:2], 2), torch.tensor([19.0]))
