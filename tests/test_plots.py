"""The pictures show what ran: the refresh heatmap's numbers are the schedule's decisions
(re-derived here from the settings), the overlay's tokens are the ones a partial step
computed afresh, and ``toca plot`` writes all three files for the bundled model."""
from __future__ import annotations

import math

import pytest
import torch

from toca_compile import ToCa, ToCaConfig, plots
from toca_compile.demo import zoo
from toca_compile.stats import Summary

STEPS, INTERVAL, RATIO = 5, 3, 0.15


@pytest.fixture(scope="module")
def run():
    """Four steps of the bundled DiT (two digits, batched CFG), the refresh mask of the middle
    block's MLP captured after every step."""
    toca = ToCa(ToCaConfig(compiler="eager", interval=INTERVAL, ratio=RATIO))
    model = zoo.load_mnist_dit()
    masks: dict[int, torch.Tensor] = {}
    errors: dict[str, str] = {}

    def capture(i, t, x):
        masks[i] = plots.refreshed_tokens(toca, "transformer_blocks.3.mlp")
        for name in ("no.such.region", "transformer_blocks.3.attn"):
            try:
                plots.refreshed_tokens(toca, name)
            except ValueError as error:
                errors[name] = str(error)

    torch._dynamo.reset()
    fast = torch.compile(model, backend=toca.backend, dynamic=False)
    zoo.sample(fast, torch.arange(2), steps=STEPS, seed=0, progress=False, callback=capture)
    torch._dynamo.reset()
    return toca, masks, errors


def test_the_heatmap_holds_each_regions_refreshed_fraction_per_step(run):
    toca = run[0]
    labels, steps, matrix = plots.refresh_matrix(toca.summary())
    assert steps == list(range(STEPS))
    assert labels == [f"transformer_blocks.{b}.{kind}" for b in range(6) for kind in ("attn", "mlp")]
    k = math.ceil(RATIO * 49)
    for j, step in enumerate(steps):
        full = step % INTERVAL == 0
        for i, label in enumerate(labels):
            expected = 1.0 if full else (0.0 if label.endswith("attn") else k / 49)
            assert matrix[i, j].item() == pytest.approx(expected), (label, step)


def test_the_overlay_mask_is_the_rows_a_partial_step_recomputed(run):
    masks = run[1]
    k = math.ceil(RATIO * 49)
    for step, mask in masks.items():
        assert mask.shape == (4, 49)  # 2 digits x (conditional, unconditional)
        if step % INTERVAL == 0:
            assert mask.all()  # a full step refreshes everything
        else:
            assert mask.sum(dim=1).tolist() == [k] * 4


def test_asking_for_what_does_not_exist_says_so(run):
    toca, _, errors = run
    assert "is not one of" in errors["no.such.region"]
    assert "selects no tokens" in errors["transformer_blocks.3.attn"]
    with pytest.raises(ValueError, match="no live state"):  # the graphs were freed by torch._dynamo.reset()
        plots.refreshed_tokens(toca, "transformer_blocks.3.mlp")
    with pytest.raises(ValueError, match="no generation yet"):
        plots.refresh_matrix(Summary())
    with pytest.raises(ValueError, match="grid"):
        plots.plot_token_overlay(torch.zeros(28, 28), torch.zeros(10, dtype=torch.bool), (7, 7))


def test_toca_plot_writes_the_three_pictures(tmp_path):
    from toca_compile.cli import main

    main(["plot", "--out", str(tmp_path), "--steps", "4", "--digits", "1"])
    for name in ("refresh_heatmap", "schedule_strip", "token_overlay"):
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, name
