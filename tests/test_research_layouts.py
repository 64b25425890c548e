"""Research-code layouts, one fixed model each (no hypothesis): the regions the detector finds,
caching really active, and every output of a generation with partial steps equal to the eager
oracle (tests/oracle.py) at 1e-6 (eager executor, fp32).

The hypothesis generator (architectures.arch_specs) mixes these options freely; these tests pin
each one down on its own so that a regression names the layout it breaks. The last tests cover
blocks split across graphs by graph breaks.
"""
from __future__ import annotations

import pytest
import torch
from architectures import (
    ArchSpec,
    TinyDiT,
    expected_regions,
    make_inputs,
    region_tokens,
    timesteps,
)
from checks import assert_caching_active
from oracle import ReferenceToCa

import toca_compile
from toca_compile import ToCa, ToCaConfig

TOL = {"rtol": 1e-6, "atol": 1e-6}
#: default scores (attention received, sampled query rows, entropy, spatial bonus) unless a
#: layout's regions have none; interval 3: steps 1, 2, 4, 5 are partial
SCORED = ToCaConfig(interval=3, ratio=0.3, compiler="eager")
RANDOM = ToCaConfig(interval=3, ratio=0.3, score="random", spatial_bonus=0.0, compiler="eager")


def inspect(spec: ArchSpec):
    model = TinyDiT(spec)
    x, text = make_inputs(spec)
    torch._dynamo.reset()
    return toca_compile.inspect(model, x, timesteps(spec, 1)[0], text)


def assert_regions_as_constructed(spec: ArchSpec):
    report = inspect(spec)
    assert [(r.block, r.kind) for r in report.regions] == expected_regions(spec), str(report)
    assert [r.tokens for r in report.regions] == region_tokens(spec), str(report)
    return report


def assert_equals_the_oracle(spec: ArchSpec, config: ToCaConfig = SCORED, steps: int = 6, branches: int = 1) -> ToCa:
    """A generation through the compiled backend and through the oracle: equal outputs, and
    caching active with partial steps."""
    model = TinyDiT(spec)
    x, text = make_inputs(spec)
    torch._dynamo.reset()
    toca = ToCa(config)
    fast = torch.compile(model, backend=toca.backend, fullgraph=spec.graph_break == "none", dynamic=False)
    oracle = ReferenceToCa(model, config)
    with torch.no_grad():
        for i, t in enumerate(timesteps(spec, steps)):
            for b in range(branches):
                torch.testing.assert_close(fast(x, t, text), oracle(x, t, text), **TOL,
                                           msg=lambda m, i=i, b=b: f"step {i}, branch {b}: {m}")
    assert_caching_active(toca, partial=True)
    return toca


def check(spec: ArchSpec, config: ToCaConfig = SCORED):
    report = assert_regions_as_constructed(spec)
    assert_equals_the_oracle(spec, config)
    return report


# --------------------------------------------------------------------------------------------
# Layouts of research code


def test_nn_multihead_attention_is_a_self_attention_reused_whole():
    report = check(ArchSpec(attention="mha", tokens=12))
    attn, mlp = report.regions[:2]
    assert attn.kind == "attn" and not attn.partial_ok
    assert mlp.partial_ok  # the MLP after it still refreshes rows


def test_nn_multihead_cross_attention_is_found_but_reused_whole():
    """One opaque node computes the whole cross-attention: it cannot run on a row subset."""
    report = check(ArchSpec(attention="mha", cross_attn=True, tokens=12), RANDOM)
    cross = [r for r in report.regions if r.kind == "cross_attn"]
    assert cross and not any(r.partial_ok for r in cross)


@pytest.mark.parametrize("cross_attn", [False, True], ids=["dit", "pixart"])
def test_sequence_first_streams_cache_along_their_token_axis(cross_attn):
    report = check(ArchSpec(seq_first=True, cross_attn=cross_attn, tokens=12))
    assert all((r.batch_axis, r.token_axis) == (1, 0) for r in report.regions)


def test_timestep_embedding_read_from_a_precomputed_sin_cos_table_is_the_timestep():
    report = check(ArchSpec(time_table=True, tokens=12))
    assert report.graphs[0].timestep is not None


def test_adaln_gate_applied_inside_a_norm_after_the_branch_still_joins_the_residual():
    check(ArchSpec(gate_in_norm=True, cross_attn=True, tokens=12))


def test_post_norm_residuals_norm_after_the_join():
    check(ArchSpec(post_norm=True, adaln=False, cross_attn=True, tokens=12))


def test_qk_norm_over_the_head_dim_feeds_the_attention_score():
    check(ArchSpec(qk_norm=True, heads=2, width=16, norm="rms", tokens=12))


def test_rotary_tables_are_gathered_for_the_recomputed_cross_attention_rows():
    """The cross-attention queries are rotated by their token's position: a partial step must
    gather the cos/sin rows of exactly the tokens it recomputes."""
    report = check(ArchSpec(rope=True, cross_attn=True, tokens=12))
    assert all(r.partial_ok for r in report.regions if r.kind == "cross_attn")


def test_rotary_tables_with_a_sequence_first_stream():
    check(ArchSpec(rope=True, cross_attn=True, seq_first=True, tokens=12))


@pytest.mark.parametrize("variant", ["plain", "parallel", "joint"])
def test_rotary_embedding_on_self_parallel_and_joint_attention(variant):
    check(ArchSpec(rope=True, tokens=12, parallel=variant == "parallel", joint=variant == "joint"))


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_grouped_query_attention_with_fewer_kv_heads(kv_heads):
    check(ArchSpec(heads=4, kv_heads=kv_heads, width=16, cross_attn=True, tokens=12))


@pytest.mark.parametrize("kind", ["bool", "additive"])
@pytest.mark.parametrize("attention", ["sdpa", "manual"])
def test_key_padding_masks_on_self_and_cross_attention(kind, attention):
    """Masked attention is still found; a masked SDPA gives no attention score, so rows are
    drawn at random (the oracle does the same)."""
    check(ArchSpec(key_mask=kind, attention=attention, cross_attn=True, tokens=12))


def test_register_tokens_are_part_of_the_stream_the_regions_cache():
    report = check(ArchSpec(registers=4, tokens=12))
    assert {r.tokens for r in report.regions} == {16}


def test_two_self_attention_residuals_per_block_each_have_a_cache():
    report = check(ArchSpec(two_attn=True, depth=2, tokens=12))
    assert [r.kind for r in report.regions] == ["attn", "attn", "mlp"] * 2


def test_a_block_module_called_twice_keeps_a_cache_per_call():
    """Same weights, two call sites in one graph: two blocks (one per call), each region its own
    cache."""
    spec = ArchSpec(shared_block=True, depth=2, tokens=12)
    report = assert_regions_as_constructed(spec)
    assert [r.block for r in report.regions] == [0, 0, 1, 1, 2, 2]
    assert_equals_the_oracle(spec, RANDOM)


@pytest.mark.parametrize("output", ["tensor", "tuple", "dict"])
def test_blocks_returning_a_tensor_a_tuple_or_a_dict(output):
    check(ArchSpec(block_output=output, cross_attn=True, tokens=12))


def test_joint_blocks_returning_a_dict():
    check(ArchSpec(block_output="dict", joint=True, depth=2, tokens=12))


def test_joint_blocks_with_one_mlp_over_both_streams_refresh_each_stream_per_token():
    """CogVideoX's feed-forward: ONE MLP over cat(text, image), sliced back into the streams.
    Each stream's MLP region is refreshed per token (its rows at their offset of the joint axis),
    the joint attention reused whole; every step equals the oracle, which runs the MLP on each
    stream's rows alone."""
    report = check(ArchSpec(joint=True, shared_mlp=True, depth=2, tokens=12))
    assert [(r.kind, r.partial_ok) for r in report.regions if r.kind == "mlp"] == [("mlp", True)] * 3


@pytest.mark.parametrize("tokens", [12, 4], ids=["more-image-tokens", "as-many-as-text"])
def test_joint_attention_scores_each_stream_from_its_own_rows_and_columns(tokens):
    """The image and text MLPs of a joint block select by the attention their own tokens
    received in the joint attention (text rows first here: the image tokens start at 4); with
    as many image as text tokens only the graph's data flow tells the two apart."""
    spec = ArchSpec(joint=True, depth=2, tokens=tokens, text_tokens=4)
    report = check(spec)
    sources = {(p.region.block, p.region.tokens, p.region.index): p.score for p in report.graphs[0].plans if p.partial}
    assert all(s.kind == "attention" and s.span == key[1] for key, s in sources.items()), sources
    # regions in graph order: block 0 image MLP, block 0 text MLP, block 1 image MLP
    offsets = [s.offset for _, s in sorted(sources.items(), key=lambda item: item[0][2])]
    assert offsets == [4, 0, 4]


def test_conv_patch_embedding_gives_the_spatial_grid_of_the_bonus():
    """Image in, image out; the tokens come from a 4×4 grid, so the spatial bonus works on 2×2
    squares of it (the oracle re-derives them)."""
    spec = ArchSpec(wrapper=True, tokens=16, cross_attn=True)
    report = check(spec, ToCaConfig(interval=3, ratio=0.3, spatial_cell=2, spatial_bonus=0.6, compiler="eager"))
    grids = {p.score.grid for p in report.graphs[0].plans if p.partial}
    assert grids == {(4, 4)}


def test_conv_patch_embedding_with_registers_has_tokens_on_a_line():
    check(ArchSpec(wrapper=True, registers=1, tokens=16), ToCaConfig(interval=3, ratio=0.3, spatial_bonus=0.6, compiler="eager"))


def test_more_tokens_than_score_queries_use_the_sampled_attention_estimate():
    spec = ArchSpec(tokens=80, cross_attn=True, depth=1)
    assert spec.tokens > SCORED.score_queries
    check(spec)


def test_every_research_option_at_once():
    check(ArchSpec(depth=2, heads=4, width=16, kv_heads=2, cross_attn=True, seq_first=True, time_table=True,
                   gate_in_norm=True, qk_norm=True, rope=True, registers=1, block_output="dict", wrapper=True,
                   tokens=12), RANDOM)


# --------------------------------------------------------------------------------------------
# Blocks split by graph breaks


def test_a_block_module_called_twice_scores_each_call_with_its_own_attention():
    assert_equals_the_oracle(ArchSpec(shared_block=True, depth=1, tokens=12))


@pytest.mark.parametrize("batch", [1, 2])
def test_a_sequence_first_stream_across_a_graph_break_inside_a_block_reads_its_axis_off_the_modulation(batch):
    """The graph after the break holds the MLP alone: its adaLN shift/scale/gate [1, B, C] say
    which axis holds the tokens, also at batch 1 ([N, 1, C] against [1, 1, C]). (Its score
    cannot reach the attention in the graph before the break, so the draws are compared.)"""
    spec = ArchSpec(seq_first=True, graph_break="inside", depth=1, tokens=6, batch=batch)
    report = inspect(spec)
    mlp = [r for r in report.regions if r.kind == "mlp"]
    assert mlp and all((r.batch_axis, r.token_axis, r.partial_ok) == (1, 0, True) for r in mlp), str(report)
    assert_equals_the_oracle(spec, RANDOM)


@pytest.mark.parametrize("seq_first", [False, True], ids=["batch-first", "sequence-first"])
def test_a_stream_whose_token_axis_nothing_shows_is_reused_whole(seq_first):
    """No attention and no modulation in the graph after the break: [N, B, C] and [B, N, C]
    look alike, so the MLP is reused whole instead of refreshed along a guessed axis."""
    spec = ArchSpec(seq_first=seq_first, graph_break="inside", adaln=False, depth=1, tokens=6)
    report = inspect(spec)
    mlp = [r for r in report.regions if r.kind == "mlp"]
    assert mlp and not any(r.partial_ok for r in mlp), str(report)
    assert all("which axis" in r.note for r in mlp)
