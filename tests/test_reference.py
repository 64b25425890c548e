"""Tests of the eager ToCa oracle (``oracle.ReferenceToCa``) on its own.

The compiled backend is checked against this oracle, so the oracle must itself be right:
these tests pin down its semantics without any compiler involved.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from profiles import examples

from architectures import (
    MIXING,
    ArchSpec,
    JointBlock,
    ParallelBlock,
    residual,
    TinyDiT,
    arch_specs,
    expected_regions,
    make_inputs,
    region_tokens,
    timesteps,
)
from oracle import ReferenceToCa
from toca_compile.config import ToCaConfig
from toca_compile.schedule import tokens_for
from toca_compile.kernels.scores import random_scores


FEW = examples(20)


def snapshot(oracle: ReferenceToCa, branch: int = 0) -> dict[int, dict[str, torch.Tensor]]:
    """Copies of one branch's caches, so later in-place or rebinding changes can't hide."""
    return {
        i: {"cache": s.cache.clone(), "stale": s.stale.clone(), "attn": None if s.attn is None else s.attn.clone()}
        for i, s in oracle.state[branch].items()
    }


def text_stream(spec: ArchSpec) -> set[int]:
    """Region indices on a joint model's text stream (second attn and second mlp of a block)."""
    seen: dict[tuple[int, str], int] = {}
    out = set()
    for i, key in enumerate(expected_regions(spec)):
        seen[key] = seen.get(key, 0) + 1
        if spec.joint and seen[key] == 2:
            out.add(i)
    return out


@FEW
@given(spec=arch_specs(research=False), seed=st.integers(0, 3))
def test_interval_one_is_the_plain_model(spec, seed):
    model = TinyDiT(spec, seed=seed)
    oracle = ReferenceToCa(model, ToCaConfig(score="random", spatial_bonus=0.0, interval=1, ratio=0.3, seed=seed))
    x, text = make_inputs(spec, seed)
    with torch.no_grad():
        for t in timesteps(spec, 3):
            torch.testing.assert_close(oracle(x, t, text), model(x, t, text), rtol=0, atol=1e-6)
            assert oracle.last_full


@FEW
@given(spec=arch_specs(research=False))
def test_ratio_one_recomputes_tokenwise_regions_and_reuses_attention(spec):
    model = TinyDiT(spec)
    oracle = ReferenceToCa(model, ToCaConfig(score="random", spatial_bonus=0.0, interval=3, ratio=1.0))
    x, text = make_inputs(spec)
    t0, t1 = timesteps(spec, 2)
    oracle(x, t0, text)
    before = snapshot(oracle)
    y = oracle(x, t1, text)
    assert oracle.step == 1 and not oracle.last_full
    for i, (_, kind) in enumerate(expected_regions(spec)):
        state = oracle.state[0][i]
        if kind in MIXING:
            assert torch.equal(state.cache, before[i]["cache"]), f"attention region {i} was recomputed"
            assert state.selected is None
        else:
            assert torch.equal(state.stale, torch.zeros_like(state.stale)), f"region {i} has stale rows"
            assert state.selected.shape == state.stale.shape  # k == N
        if kind == "parallel":
            assert torch.equal(state.attn, before[i]["attn"]), "the attention half must stay cached"
    # Reusing attention on a partial step really changes the output.
    assert (y - model(x, t1, text)).abs().max() > 1e-6


@FEW
@given(spec=arch_specs(research=False), ratio=st.floats(0.05, 0.95), interval=st.integers(3, 5))
def test_partial_step_rewrites_exactly_the_selected_rows(spec, ratio, interval):
    model = TinyDiT(spec)
    oracle = ReferenceToCa(model, ToCaConfig(score="random", spatial_bonus=0.0, interval=interval, ratio=ratio))
    x, text = make_inputs(spec)
    ts = timesteps(spec, 3)
    oracle(x, ts[0], text)
    text_regions = text_stream(spec)
    for step, t in enumerate(ts[1:], start=1):
        before = snapshot(oracle)
        oracle(x, t, text)
        assert not oracle.last_full
        for i, ((_, kind), tokens) in enumerate(zip(expected_regions(spec), region_tokens(spec))):
            state = oracle.state[0][i]
            old = before[i]
            if kind in MIXING:
                assert torch.equal(state.cache, old["cache"])
                continue
            k = tokens_for(ratio, tokens)
            assert state.selected.shape == (spec.batch, k)
            chosen = torch.zeros(spec.batch, tokens, dtype=torch.bool)
            chosen.scatter_(1, state.selected, True)
            assert (chosen.sum(1) == k).all(), "selected rows must be distinct"
            if step == 1:  # nothing is stale yet: the seeded draw of (step, region index) decides
                draw = random_scores(0, step, i, spec.batch, tokens).topk(k, dim=1).indices
                assert torch.equal(state.selected.sort(1).values, draw.sort(1).values)
            changed = (state.cache != old["cache"]).any(-1)
            assert not (changed & ~chosen).any(), f"region {i}: an unselected row changed"
            if spec.adaln or i not in text_regions:
                # The timestep reaches every such row, so each recomputed row differs.
                assert (changed.sum(1) == k).all(), f"region {i}: {changed.sum(1).tolist()} rows changed, k={k}"
            # Staleness: selected rows reset to 0, all others one older.
            torch.testing.assert_close(state.stale, torch.where(chosen, 0.0, old["stale"] + 1))
            assert state.stale.max() <= step
            if kind == "parallel":
                assert torch.equal(state.attn, old["attn"])


def at_rows(full: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return torch.stack([full[b, idx[b]] for b in range(full.shape[0])])


@FEW
@given(spec=arch_specs(research=False), ratio=st.floats(0.1, 0.9))
def test_recomputed_rows_equal_the_branch_on_all_rows(spec, ratio):
    """Block 0 re-derived with full-width branch calls on the cached values: rows must agree.

    This checks gathering and scattering independently of how the oracle does it: each
    recomputed row equals the branch evaluated on every token, read at that row.
    """
    model = TinyDiT(spec)
    oracle = ReferenceToCa(model, ToCaConfig(score="random", spatial_bonus=0.0, interval=3, ratio=ratio))
    x, text = make_inputs(spec)
    t0, t1 = timesteps(spec, 2)
    oracle(x, t0, text)
    oracle(x, t1, text)
    states = oracle.state[0]
    block = model.blocks[0]
    with torch.no_grad():
        h, c, txt = model.embed(x, t1, text)
        mod = block.modulation(c)
        expect: list[torch.Tensor] = []  # full-width branch outputs of block 0's token-wise regions
        if isinstance(block, ParallelBlock):
            expect.append(block.parallel_out(states[0].attn, block.parallel_mlp(block.parallel_input(h, mod))))
        elif isinstance(block, JointBlock):
            h = residual(h, block.gate_attn(mod), states[0].cache)
            expect.append(block.mlp_branch(h, mod))
            if block.text_continues:
                txt = residual(txt, block.gate_attn_text(mod), states[1].cache)
                expect.append(block.text_mlp_branch(txt, mod))
        else:
            h = residual(h, block.gate_attn(mod), states[0].cache)
            if spec.cross_attn:
                expect.append(block.cross_branch(h, txt))
                h = h + states[1].cache
            expect.append(block.mlp_branch(h, mod))
    tokenwise = [i for i, (b, kind) in enumerate(expected_regions(spec)) if b == 0 and kind not in MIXING]
    assert len(tokenwise) == len(expect)
    for i, full in zip(tokenwise, expect):
        idx = states[i].selected
        torch.testing.assert_close(at_rows(states[i].cache, idx), at_rows(full, idx), rtol=1e-5, atol=1e-6)


@FEW
@given(spec=arch_specs(research=False), seed=st.integers(0, 100))
def test_heavy_staleness_refreshes_the_other_half_next(spec, seed):
    """With a dominant staleness term, a half-ratio step picks exactly the rows skipped before."""
    model = TinyDiT(spec)
    oracle = ReferenceToCa(model, ToCaConfig(score="random", spatial_bonus=0.0, interval=10, ratio=0.5, staleness_weight=100.0, seed=seed))
    x, text = make_inputs(spec)
    ts = timesteps(spec, 3)
    oracle(x, ts[0], text)
    oracle(x, ts[1], text)
    first = {i: s.selected for i, s in oracle.state[0].items() if s.selected is not None}
    oracle(x, ts[2], text)
    for i, tokens in enumerate(region_tokens(spec)):
        if i not in first or tokens % 2:
            continue
        both = torch.cat([first[i], oracle.state[0][i].selected], dim=1).sort(1).values
        assert torch.equal(both, torch.arange(tokens).expand(spec.batch, -1)), f"region {i}"


@FEW
@given(spec=arch_specs(research=False), interval=st.integers(1, 3))
def test_sequential_cfg_branches_have_separate_state(spec, interval):
    model = TinyDiT(spec)
    config = ToCaConfig(score="random", spatial_bonus=0.0, interval=interval, ratio=0.25)
    shared, only_cond, only_uncond = (ReferenceToCa(model, config) for _ in range(3))
    x, text = make_inputs(spec, seed=0)
    x_u, text_u = make_inputs(spec, seed=1)  # the "unconditional" branch sees other inputs
    for t in timesteps(spec, 4):
        torch.testing.assert_close(shared(x, t, text), only_cond(x, t, text), rtol=0, atol=0)
        assert shared.branch == 0
        torch.testing.assert_close(shared(x_u, t, text_u), only_uncond(x_u, t, text_u), rtol=0, atol=0)
        assert shared.branch == 1
    assert len(shared.state) == 2
    assert not torch.equal(shared.state[0][0].cache, shared.state[1][0].cache)


@FEW
@given(spec=arch_specs(research=False), interval=st.integers(2, 3))
def test_timestep_going_up_starts_a_new_generation(spec, interval):
    model = TinyDiT(spec)
    config = ToCaConfig(score="random", spatial_bonus=0.0, interval=interval, ratio=0.3)
    oracle = ReferenceToCa(model, config)
    x, text = make_inputs(spec)
    x2, text2 = make_inputs(spec, seed=5)
    for t in timesteps(spec, 4):
        oracle(x, t, text)
    assert oracle.step == 3
    # A second generation (other inputs, timesteps rising again) behaves like a fresh oracle.
    fresh = ReferenceToCa(model, config)
    for step, t in enumerate(timesteps(spec, 3, start=900.0)):
        torch.testing.assert_close(oracle(x2, t, text2), fresh(x2, t, text2), rtol=0, atol=0)
        assert oracle.step == step and oracle.branch == 0
    assert len(oracle.state) == 1


def test_reset_starts_a_new_generation_even_at_lower_t():
    spec = ArchSpec(cross_attn=True)
    model = TinyDiT(spec)
    config = ToCaConfig(score="random", spatial_bonus=0.0, interval=3, ratio=0.3)
    oracle, fresh = ReferenceToCa(model, config), ReferenceToCa(model, config)
    x, text = make_inputs(spec)
    ts = timesteps(spec, 4)
    oracle(x, ts[0], text)
    oracle(x, ts[1], text)
    oracle.reset()
    for t in ts[2:]:  # lower t than before the reset: still step 0 after it
        torch.testing.assert_close(oracle(x, t, text), fresh(x, t, text), rtol=0, atol=0)
    assert oracle.step == 1


def test_branch_first_seen_on_a_partial_step_computes_fully():
    spec = ArchSpec()
    model = TinyDiT(spec)
    oracle = ReferenceToCa(model, ToCaConfig(score="random", spatial_bonus=0.0, interval=3))
    x, _ = make_inputs(spec)
    t0, t1, t2 = timesteps(spec, 3)
    oracle(x, t0)
    oracle(x, t1)
    assert not oracle.last_full
    torch.testing.assert_close(oracle(x, t1), model(x, t1), rtol=0, atol=1e-6)  # new CFG branch
    assert oracle.last_full and oracle.branch == 1
    oracle(x, t2)
    oracle(x, t2)
    assert not oracle.last_full  # from now on the new branch has caches to reuse


@examples(30)
@given(spec=arch_specs(research=False))
def test_specs_are_valid_and_regions_well_formed(spec):
    assert spec.width % spec.heads == 0
    assert spec.cross_attn + spec.joint + spec.parallel <= 1
    regions = expected_regions(spec)
    assert len(regions) == len(region_tokens(spec))
    assert [b for b, _ in regions] == sorted(b for b, _ in regions)
    assert {b for b, _ in regions} == set(range(spec.depth))


@pytest.mark.parametrize("flag", ["cross_attn", "joint", "parallel"])
def test_strategy_pins_fields(flag):
    @examples(5)
    @given(spec=arch_specs(research=False, **{flag: True, "adaln": False, "depth": 2}))
    def check(spec):
        assert getattr(spec, flag) and not spec.adaln and spec.depth == 2

    check()


def test_invalid_spec_is_rejected():
    with pytest.raises(ValueError, match="at most one"):
        ArchSpec(joint=True, parallel=True)
    with pytest.raises(ValueError, match="multiple of heads"):
        ArchSpec(width=10, heads=4)


@pytest.mark.parametrize(
    "spec",
    [
        ArchSpec(depth=2, adaln=True, attention="manual", explicit_shapes=True, mlp="swiglu", norm="rms"),
        ArchSpec(depth=2, adaln=False, cross_attn=True, sdpa_kwargs=True, mlp="gelu_tanh"),
        ArchSpec(depth=2, adaln=True, joint=True, mlp="gelu"),
        ArchSpec(depth=2, adaln=True, parallel=True, explicit_shapes=True, mlp="silu"),
    ],
    ids=["dit", "pixart", "joint", "parallel"],
)
def test_model_traces_into_one_dynamo_graph(spec):
    """The compiler needs the whole model in one graph; check it traces with fullgraph=True."""
    graphs = []

    def capture(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    model = TinyDiT(spec)
    x, text = make_inputs(spec)
    (t,) = timesteps(spec, 1)
    torch._dynamo.reset()
    with torch.no_grad():
        out = torch.compile(model, backend=capture, fullgraph=True)(x, t, text)
        torch.testing.assert_close(out, model(x, t, text), rtol=0, atol=1e-6)
    assert len(graphs) == 1
    attention = {"scaled_dot_product_attention", "softmax"}
    anchors = [n for n in graphs[0].graph.nodes if getattr(n.target, "__name__", "") in attention]
    per_block = {"plain": 1, "cross": 2, "joint": 1, "parallel": 1}[spec.variant]
    assert len(anchors) == per_block * spec.depth
