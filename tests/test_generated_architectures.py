"""The backend on hypothesis-generated transformers, checked against their construction,
against the uncached model, and against the eager reference implementation (the oracle).

These run the rewritten graphs with the eager executor so that many architectures fit in CI;
test_inductor.py sends a fixed set of them through Inductor.
"""
import warnings

import pytest
import torch
from architectures import (
    ArchSpec,
    TinyDiT,
    arch_specs,
    expected_regions,
    make_inputs,
    timesteps,
)
from checks import NOTHING_TO_CACHE, assert_caching_active
from hypothesis import event, given
from hypothesis import strategies as st
from oracle import ReferenceToCa
from profiles import examples

import toca_compile
from toca_compile import ToCa, ToCaConfig, ToCaWarning


def oracle_config(**fields):
    """The settings the reference implements: random scores, no spatial bonus."""
    return ToCaConfig(score="random", spatial_bonus=0.0, **fields)

SETTINGS = examples(25)


def _compiled(model, config):
    torch._dynamo.reset()  # one Dynamo cache entry per example, never the recompile limit
    toca = ToCa(config)
    return toca, torch.compile(model, backend=toca.backend, fullgraph=True, dynamic=False)


def _run(fn, spec, steps, text, x, cfg_branches=1):
    outs = []
    with torch.no_grad():
        for t in timesteps(spec, steps):
            for _ in range(cfg_branches):
                outs.append(fn(x, t, text))
    return outs


@given(arch_specs())
@SETTINGS
def test_detection_finds_exactly_the_constructed_regions(spec):
    model = TinyDiT(spec)
    x, text = make_inputs(spec)
    torch._dynamo.reset()
    report = toca_compile.inspect(model, x, timesteps(spec, 1)[0], text)
    assert len(report.graphs) == 1 and not report.graphs[0].reason
    assert [(r.block, r.kind) for r in report.regions] == expected_regions(spec)
    assert report.graphs[0].timestep is not None
    whole = ("cross_attn", "parallel") if spec.attention == "mha" else ()  # an opaque attention node inside
    for region in report.regions:
        if region.kind in ("mlp", "cross_attn", "parallel") and region.kind not in whole:
            assert region.partial_ok, region.note  # token-wise branches recompute rows
        assert (region.batch_axis, region.token_axis) == ((1, 0) if spec.seq_first else (0, 1))


@given(arch_specs(), st.integers(2, 5))
@SETTINGS
def test_interval_one_equals_the_uncached_model(spec, steps):
    model = TinyDiT(spec)
    x, text = make_inputs(spec)
    toca, fast = _compiled(model, ToCaConfig(interval=1, ratio=0.5, compiler="eager"))  # default scores
    for got, want in zip(_run(fast, spec, steps, text, x), _run(model, spec, steps, text, x)):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert_caching_active(toca)


@given(arch_specs(), st.integers(2, 4), st.floats(0.0, 1.0), st.integers(1, 2), st.integers(0, 5))
@SETTINGS
def test_compiled_caching_equals_the_reference_over_a_generation(spec, interval, ratio, branches, seed):
    model = TinyDiT(spec)
    x, text = make_inputs(spec, seed)
    config = oracle_config(interval=interval, ratio=ratio, seed=seed, compiler="eager")
    toca, fast = _compiled(model, config)
    oracle = ReferenceToCa(model, config)
    steps = 2 * interval + 1
    got = _run(fast, spec, steps, text, x, branches)
    want = _run(oracle, spec, steps, text, x, branches)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)
    assert_caching_active(toca, partial=True)
    stats = toca.stats()
    assert stats.steps == steps and stats.full_steps == len(range(0, steps, interval))
    # a second generation (timestep goes back up) starts again from a full step
    got2 = _run(fast, spec, 2, text, x, branches)
    want2 = _run(oracle, spec, 2, text, x, branches)
    for g, w in zip(got2, want2):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)


@given(arch_specs(), st.floats(0.05, 0.9))
@SETTINGS
def test_a_partial_step_changes_only_the_rows_the_oracle_selects(spec, ratio):
    """The rows a partial step may write come from the oracle (its own scores and draws), never
    from the implementation's counters: refreshing every row, or the wrong ones, fails here."""
    model = TinyDiT(spec)
    x, text = make_inputs(spec)
    config = ToCaConfig(interval=4, ratio=ratio, compiler="eager")  # attention score, spatial bonus
    toca, fast = _compiled(model, config)
    oracle = ReferenceToCa(model, config)
    ts = timesteps(spec, 3)
    with torch.no_grad():
        for t, scale in ((ts[0], 1.0), (ts[1], 1.0)):
            fast(x * scale, t, text)
            oracle(x * scale, t, text)
        before = {name: {k: v.clone() for k, v in s.items()} for name, s in toca.region_states().items()}
        fast(x * 1.5, ts[2], text)
        oracle(x * 1.5, ts[2], text)
    assert_caching_active(toca, partial=True)
    for name, state in toca.region_states().items():
        index = int(name.split(":")[0])
        want = oracle.state[0][index]
        cache, old = state["slot0"], before[name]["slot0"]
        if want.selected is None:  # reused whole: untouched on partial steps
            assert torch.equal(cache, old), name
            continue
        chosen = torch.zeros(want.stale.shape, dtype=torch.bool)
        chosen.scatter_(1, want.selected, True)
        if spec.seq_first:  # caches are [N, B, C]
            chosen = chosen.t()
        assert torch.equal(cache[~chosen], old[~chosen]), f"{name}: a row the oracle did not select changed"
        torch.testing.assert_close(cache[chosen], want.cache[chosen], rtol=1e-6, atol=1e-6)


@given(arch_specs(depth=1))
@examples(8)
def test_no_recompiles_during_or_across_generations(spec):
    model = TinyDiT(spec)
    x, text = make_inputs(spec)
    toca, fast = _compiled(model, oracle_config(interval=2, ratio=0.3, compiler="eager"))
    _run(fast, spec, 3, text, x)  # warm-up: compiles the full and the partial variant
    torch.compiler.set_stance("fail_on_recompile")
    try:
        _run(fast, spec, 5, text, x, cfg_branches=2)
        _run(fast, spec, 5, text, x)
    finally:
        torch.compiler.set_stance("default")
    # full + partial; with cross-attention also the first full step, which fills the text K/V
    # cache that later full steps read (ToCaConfig.constant_kv; tests/test_constant_kv.py)
    assert toca.stats().variants_compiled == 2 + spec.cross_attn


@given(arch_specs(graph_breaks=True), st.integers(2, 3), st.floats(0.05, 0.95), st.integers(0, 5))
@examples(20)
def test_every_generated_model_equals_the_oracle_or_falls_back_with_a_warning(spec, interval, ratio, seed):
    """The fuzz contract, over every generator option and graph breaks inside and between blocks:
    no exception escapes, and either every output equals the oracle's with caching active, or
    the backend said with a ToCaWarning that it runs a graph uncached."""
    model = TinyDiT(spec)
    x, text = make_inputs(spec, seed)
    config = oracle_config(interval=interval, ratio=ratio, seed=seed, compiler="eager")
    torch._dynamo.reset()
    toca = ToCa(config)
    fast = torch.compile(model, backend=toca.backend, dynamic=False)  # graph breaks allowed
    oracle = ReferenceToCa(model, config)
    steps = 2 * interval + 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _run(fast, spec, steps, text, x)
    fallbacks = [str(w.message) for w in caught
                 if issubclass(w.category, ToCaWarning) and NOTHING_TO_CACHE not in str(w.message)]
    event(f"graph break: {spec.graph_break}")
    if fallbacks:
        event("outcome: fell back with a ToCaWarning")
        return  # the backend said so; nothing else is promised
    for i, (g, w) in enumerate(zip(got, _run(oracle, spec, steps, text, x))):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6, msg=lambda m, i=i: f"step {i}: {m}")
    assert_caching_active(toca, partial=True)
    assert toca.stats().full_steps == len(range(0, steps, interval))
    event("outcome: equal to the oracle, caching active")


@pytest.mark.parametrize("fields, reason", [
    ({"post_norm": True}, "post_norm"),                               # adaLN on by default
    ({"post_norm": True, "adaln": False, "joint": True}, "post_norm"),
    ({"attention": "mha", "rope": True}, "need sdpa or manual"),
    ({"attention": "mha", "qk_norm": True}, "need sdpa or manual"),
    ({"attention": "mha", "key_mask": "bool"}, "need sdpa or manual"),
    ({"heads": 4, "kv_heads": 3}, "kv_heads divides heads"),
    ({"width": 12, "heads": 4, "rope": True}, "even head dim"),
    ({"two_attn": True, "cross_attn": True}, "two_attn"),
    ({"shared_block": True, "joint": True}, "shared_block"),
    ({"joint": True, "block_output": "tensor"}, "joint blocks return their text"),
    ({"registers": 5}, "registers"),
    ({"key_mask": "yes"}, "known key_mask"),
    ({"tokens": 97}, "tokens"),
])
def test_invalid_option_combinations_are_rejected(fields, reason):
    with pytest.raises(ValueError, match=reason):
        ArchSpec(**fields)
