"""FLOPs of whole generations on the meta device: uncached, cached, per block and region kind.

Tiny diffusers DiTs, built on the meta device (no weights, no memory): each test traces in
about a second.
"""
import pytest
import torch

from toca_compile import ToCa, ToCaConfig
from toca_compile.flops import (OTHER, OUTSIDE, OVERHEAD, FlopLog, GenerationCounter, Site, count_flops,
                                counting, generation_flops, kind_of, run_counted)
from toca_compile.presets import get_preset
from toca_compile.runtime import ToCaWarning

TINY_DIT = dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8, num_layers=2,
                sample_size=16, patch_size=2, num_embeds_ada_norm=10)
STEPS = 6


def tiny_dit():
    from diffusers import DiTTransformer2DModel

    return DiTTransformer2DModel(**TINY_DIT)


def tiny_inputs(step=0):
    return (torch.empty(2, 4, 16, 16),), dict(timestep=torch.empty(2, dtype=torch.long),
                                              class_labels=torch.empty(2, dtype=torch.long))


def plain_call_flops(factory=tiny_dit):
    """One call of the eager model, counted directly."""
    with torch.device("meta"), torch.no_grad():
        model = factory().eval()
        args, kwargs = tiny_inputs()
        return count_flops(model, *args, **kwargs)


class GraphBreak(torch.nn.Module):
    """A tiny DiT followed by a graph break and a second (uncacheable) graph."""

    def __init__(self):
        super().__init__()
        self.dit = tiny_dit()
        self.head = torch.nn.Linear(8, 8)

    def forward(self, x, timestep, class_labels):
        y = self.dit(x, timestep=timestep, class_labels=class_labels).sample
        torch._dynamo.graph_break()
        return self.head(y.transpose(1, -1))


def test_uncached_is_steps_times_one_plain_call():
    report = generation_flops(tiny_dit, tiny_inputs, STEPS, ToCaConfig(interval=3, ratio=0.25))
    one = plain_call_flops()
    assert one > 0
    assert report.uncached_per_step == [one] * STEPS
    assert report.uncached == STEPS * one
    assert report.graphs == 1 and not report.fallbacks


@pytest.mark.parametrize("score", ["random", "kvnorm", "attention"])
def test_interval_one_counts_exactly_the_uncached_model(score):
    report = generation_flops(tiny_dit, tiny_inputs, STEPS, ToCaConfig(interval=1, score=score))
    assert report.full_steps == list(range(STEPS)) and report.partial_steps == []
    assert report.cached == report.uncached
    assert report.cached_per_step == report.uncached_per_step
    assert report.ratio == 1.0


def test_cached_generation_costs_fewer_flops():
    report = generation_flops(tiny_dit, tiny_inputs, STEPS, ToCaConfig(interval=3, ratio=0.25))
    assert report.full_steps == [0, 3] and report.partial_steps == [1, 2, 4, 5]
    assert report.cached < report.uncached
    assert report.cached / report.uncached < 1 and report.ratio > 1
    assert 0 < report.saved < 1
    for step in report.partial_steps:
        assert report.cached_per_step[step] < report.uncached_per_step[step]
    assert report.variants == 2  # full + one partial (one fixed ratio)
    assert sum(report.cached_per_step) == report.cached
    text = str(report)
    assert "full steps (2): 0, 3" in text and "partial steps (4): 1-2, 4-5" in text


def test_breakdown_sums_to_the_totals():
    report = generation_flops(tiny_dit, tiny_inputs, STEPS, ToCaConfig(interval=3, ratio=0.25), breakdown=True)
    table = report.breakdown
    assert table.total(0) == report.uncached
    assert table.total(1) == report.cached
    kinds = table.by("kind")
    blocks = table.by("block")
    assert {"attn", "mlp"} <= set(kinds)
    assert {"transformer_blocks.0", "transformer_blocks.1"} <= set(blocks)
    # attention is reused on partial steps, so it saves more than the MLP (which refreshes 25%)
    assert kinds["attn"][0] / kinds["attn"][1] > kinds["mlp"][0] / kinds["mlp"][1] > 1
    if OVERHEAD in kinds:
        assert kinds[OVERHEAD][0] == 0  # the uncached graphs contain no toca nodes
    assert blocks[OUTSIDE][0] == blocks[OUTSIDE][1]  # embeddings and final layer run every step
    for group in ("kind", "block", "block-kind"):
        assert "transformer_blocks" in table.table("block") and table.table(group)


def tiny_pixart():
    from diffusers import PixArtTransformer2DModel

    return PixArtTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8,
                                    num_layers=2, cross_attention_dim=32, caption_channels=24, sample_size=16,
                                    patch_size=2, use_additional_conditions=False)


def tiny_pixart_inputs(step=0):
    return (torch.empty(2, 4, 16, 16),), dict(
        encoder_hidden_states=torch.empty(2, 8, 24), encoder_attention_mask=torch.empty(2, 8, dtype=torch.long),
        timestep=torch.empty(2, dtype=torch.long), added_cond_kwargs={"resolution": None, "aspect_ratio": None},
        return_dict=False)


def test_breakdown_of_cross_attention():
    report = generation_flops(tiny_pixart, tiny_pixart_inputs, STEPS, ToCaConfig(interval=3, ratio=0.25),
                              breakdown=True)
    kinds = report.breakdown.by("kind")
    assert {"attn", "cross_attn", "mlp"} <= set(kinds)
    # the text K/V projections are cross-attention work off the branch: they run every step
    uncached, cached = kinds["cross_attn (rest)"]
    assert uncached == cached > 0
    assert kinds["cross_attn"][1] < kinds["cross_attn"][0]
    assert report.breakdown.total(1) == report.cached


def test_kind_of_sites():
    kinds = {"blocks.0.attn1": "attn", "blocks.0.attn1.to_q": "attn", "blocks.0.ff.net.2": "mlp",
             "blocks.0.norm1.norm": "attn"}
    assert kind_of(Site("blocks.0", "blocks.0.attn1.to_q"), kinds) == "attn"
    assert kind_of(Site("blocks.0", "blocks.0.attn1.to_k"), kinds) == "attn (rest)"
    assert kind_of(Site("blocks.0", "blocks.0.norm1.linear"), kinds) == OTHER  # norm1 itself is not on a branch
    assert kind_of(Site("blocks.0", "blocks.0"), kinds) == OTHER
    assert kind_of(Site("blocks.0", "blocks.0.attn1.to_q", inserted=True), kinds) == OVERHEAD
    assert kind_of(Site(OUTSIDE, "proj_out"), kinds) == "-"


def test_fora_saves_at_least_as_much_as_toca_at_equal_interval():
    counter = GenerationCounter(tiny_dit, tiny_inputs)
    fora = counter.report(ToCaConfig(interval=3, mode="fora"), STEPS)
    toca = counter.report(ToCaConfig(interval=3, ratio=0.25), STEPS)
    assert fora.uncached == toca.uncached
    assert fora.full_steps == toca.full_steps
    assert fora.ratio >= toca.ratio > 1


def test_memoized_counts_equal_counting_every_call():
    memo = generation_flops(tiny_dit, tiny_inputs, 4, ToCaConfig(interval=2, ratio=0.3), breakdown=True)
    every = generation_flops(tiny_dit, tiny_inputs, 4, ToCaConfig(interval=2, ratio=0.3), breakdown=True,
                             memoize=False)
    assert (memo.uncached_per_step, memo.cached_per_step) == (every.uncached_per_step, every.cached_per_step)
    assert memo.breakdown.rows == every.breakdown.rows


def test_preset_name_and_retimed_schedule():
    schedule = get_preset("dit-ddim-50", num_steps=12)
    report = generation_flops(tiny_dit, tiny_inputs, None, "dit-ddim-50", schedule=schedule)
    assert report.steps == 12
    assert report.full_steps == schedule.full_steps()
    assert report.cached < report.uncached
    by_name = generation_flops(tiny_dit, tiny_inputs, 5, "fora")
    assert by_name.full_steps == [0, 3] and "preset fora" in by_name.schedule


def test_graph_breaks_and_uncacheable_graphs_are_counted():
    head = 2 * 2 * 16 * 16 * 8 * 8  # Linear(8, 8) on [2, 16, 16, 8]
    with pytest.warns(ToCaWarning, match="nothing cached"):
        report = generation_flops(GraphBreak, tiny_inputs, STEPS, ToCaConfig(interval=3, ratio=0.25), breakdown=True)
    assert report.graphs == 2
    assert report.uncached == STEPS * (plain_call_flops() + head)
    assert report.cached < report.uncached
    assert report.fallbacks  # the second graph has no transformer block
    assert report.breakdown.total(1) == report.cached


def test_counting_still_yields_a_list_of_call_flops():
    torch._dynamo.reset()
    with torch.device("meta"):
        model = tiny_dit().eval()
        args, kwargs = tiny_inputs()
    toca = ToCa(ToCaConfig(interval=2, ratio=0.25, compiler="eager"))
    fast = torch.compile(model, backend=toca.backend, dynamic=False)
    with torch.no_grad():
        fast(*args, **kwargs)
        with counting(toca) as sink, toca.generation(steps=2):  # on meta the steps must be given
            for step in range(2):
                toca.step(step)
                fast(*args, **kwargs)
    assert isinstance(sink, list) and isinstance(sink, FlopLog)
    assert len(sink) == 2 and sink[0] > sink[1] > 0
    assert [c.flops for c in sink.calls] == list(sink)
    plain: list[int] = []
    assert run_counted(plain, torch.matmul, torch.ones(2, 3), torch.ones(3, 4)).shape == (2, 4)
    assert plain == [2 * 2 * 3 * 4]
    assert run_counted(None, torch.add, torch.ones(1), torch.ones(1)).item() == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        generation_flops(tiny_dit, tiny_inputs, 0, ToCaConfig())
    with pytest.raises(TypeError, match="config_or_schedule"):
        generation_flops(tiny_dit, tiny_inputs, 2, 3.0)
    with pytest.raises(ValueError, match="preset"):
        generation_flops(tiny_dit, tiny_inputs, 2, "no-such-preset")


# -- the `toca flops` command --------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--model", "dit-xl-2", "--preset", "fora", "--interval", "2"], "either --preset or --interval"),
    (["--model", "dit-xl-2", "--ratio", "1.5"], "ToCaConfig.ratio"),
    (["--model", "dit-xl-2", "--interval", "0"], "ToCaConfig.interval"),
    (["--model", "dit-xl-2", "--steps", "0"], "--steps"),
    (["--model", "dit-xl-2", "--batch", "0"], "--batch"),
    (["--model", "no-such-model"], "invalid choice"),
    (["--model", "dit-xl-2", "--preset", "no-such-preset"], "invalid choice"),
    (["--model", "flux-dev", "--current-step-threshold"], "threshold-rule presets"),
    (["--model", "dit-xl-2", "--interval", "3", "--current-step-threshold"], "threshold-rule presets"),
    (["--model", "dit-xl-2", "--interval", "3", "--round-up"], "--round-up applies to the presets"),
    (["--model", "dit-xl-2", "--ratio", "0.2", "--no-first-block-alone"], "--no-first-block-alone applies"),
    (["--model", "dit-xl-2", "--interval", "3", "--exact-step-factors"], "--exact-step-factors applies"),
])
def test_cli_rejects_bad_input(argv, message, capsys):
    from toca_compile.flops.cli import main

    with pytest.raises(SystemExit) as info:
        main(["flops", *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_counts_the_earlier_threshold_reading_on_request():
    """Presets take the official code's full steps; --current-step-threshold the earlier reading."""
    import argparse

    from toca_compile.flops.cli import add_flops_parser, build_request

    sub = argparse.ArgumentParser().add_subparsers()
    parser = add_flops_parser(sub)
    for preset in ("dit-ddim-50", "pixart-dpm-20"):
        official = build_request(parser.parse_args(["--model", "dit-xl-2", "--preset", preset]))[2]
        earlier = build_request(parser.parse_args(["--model", "dit-xl-2", "--preset", preset,
                                                   "--current-step-threshold"]))[2]
        assert official.full_steps() == get_preset(preset).full_steps()
        assert earlier.full_steps() == get_preset(preset, lagged_threshold=False).full_steps()
        assert len(earlier.full_steps()) == len(official.full_steps()) + 1
        assert official.first_block_steps() and official.token_rounding == "floor"
        assert earlier.first_block_steps() == []  # without the lag block 0 is never due alone
        own = build_request(parser.parse_args(["--model", "dit-xl-2", "--preset", preset,
                                               "--no-first-block-alone", "--round-up"]))[2]
        assert own == get_preset(preset, first_block_alone=False, token_rounding="ceil")
        exact = build_request(parser.parse_args(["--model", "dit-xl-2", "--preset", preset,
                                                 "--exact-step-factors"]))[2]
        assert exact == get_preset(preset, step_levels=None) and official.step_levels == 4


def test_cli_runs_a_model_with_breakdown(monkeypatch, capsys):
    from toca_compile.flops import cli as flops_cli

    tiny = flops_cli.ModelSpec("tiny-dit", "tiny DiT", tiny_dit, lambda batch: tiny_inputs(), 2, "dit-ddim-50", 50)
    monkeypatch.setitem(flops_cli.MODELS, "dit-xl-2", tiny)
    flops_cli.main(["flops", "--model", "dit-xl-2", "--steps", "8", "--breakdown", "--no-progress"])
    out = capsys.readouterr().out
    assert "re-timed from 50 to 8 steps" in out
    assert "uncached:" in out and "cached:" in out and "fewer" in out
    assert "per region kind" in out and "per block" in out and "transformer_blocks.1" in out


def test_block_0_alone_costs_block_0_only_on_the_steps_the_official_code_computes_it():
    """dit-ddim-50 computes block 0 by itself at steps 4 and 17 (the official code); the
    earlier reading (first_block_alone=False) keeps those steps partial in every block."""
    official = get_preset("dit-ddim-50")
    earlier = get_preset("dit-ddim-50", first_block_alone=False)
    alone = official.first_block_steps()
    assert alone
    a = generation_flops(tiny_dit, tiny_inputs, 50, "dit-ddim-50", breakdown=True)
    b = generation_flops(tiny_dit, tiny_inputs, 50, "dit-ddim-50", schedule=earlier, breakdown=True)
    assert a.full_steps == b.full_steps == official.full_steps()
    differ = [i for i in range(50) if a.cached_per_step[i] != b.cached_per_step[i]]
    assert differ == alone and all(a.cached_per_step[i] > b.cached_per_step[i] for i in alone)
    blocks_a, blocks_b = a.breakdown.by("block"), b.breakdown.by("block")
    changed = {name for name in blocks_a if blocks_a[name][1] != blocks_b[name][1]}
    assert changed == {"transformer_blocks.0"}
    extra = blocks_a["transformer_blocks.0"][1] - blocks_b["transformer_blocks.0"][1]
    assert extra == sum(a.cached_per_step[i] - b.cached_per_step[i] for i in alone)


def test_cli_counts_pixart_with_a_prompts_own_tokens(monkeypatch, capsys):
    """The official PixArt code drops the caption's padding before the blocks; --text-tokens
    counts the keys/values of that many tokens instead of diffusers' 120 padded ones."""
    import argparse

    from toca_compile.flops.cli import add_flops_parser, build_request

    sub = argparse.ArgumentParser().add_subparsers()
    parser = add_flops_parser(sub)
    spec = build_request(parser.parse_args(["--model", "pixart-alpha-256", "--text-tokens", "40"]))[0]
    args, kwargs = spec.inputs(2)
    assert kwargs["encoder_hidden_states"].shape == (2, 40, 4096)
    assert kwargs["encoder_attention_mask"].shape == (2, 40)
    assert "40 T5 tokens, no padding" in spec.description
    default = build_request(parser.parse_args(["--model", "pixart-alpha-256"]))[0]
    assert default.inputs(2)[1]["encoder_hidden_states"].shape == (2, 120, 4096)
    for argv, message in ((["--model", "flux-dev", "--text-tokens", "40"], "applies to the PixArt models"),
                          (["--model", "pixart-alpha", "--text-tokens", "0"], r"--text-tokens must be in \[1, 120\]")):
        with pytest.raises(ValueError, match=message):
            build_request(parser.parse_args(argv))


def test_cli_counts_the_authors_attention_projection_on_request():
    """--recompute-attention-projection counts what the authors' FLUX and FORA code runs:
    reused attention branches project their cached attention output again on every token."""
    import argparse

    from toca_compile.flops.cli import add_flops_parser, build_request

    sub = argparse.ArgumentParser().add_subparsers()
    parser = add_flops_parser(sub)
    for extra in ([], ["--preset", "fora"], ["--interval", "4", "--ratio", "0.2"]):
        default = build_request(parser.parse_args(["--model", "flux-dev", *extra]))[1]
        authors = build_request(parser.parse_args(["--model", "flux-dev", *extra,
                                                   "--recompute-attention-projection"]))[1]
        assert default.attention_projection == "reuse"
        assert authors == default.replace(attention_projection="recompute")
