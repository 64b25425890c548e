"""The command line rejects bad input with a clear message; the demo's PNG shows uncached | cached | difference grids."""
import numpy as np
import pytest
import torch
from PIL import Image

from toca_compile.cli import main
from toca_compile.demo.run import HEADER, PANEL_GAP, SCALE, TILE_GAP, write_comparison


@pytest.mark.parametrize("argv, message", [
    (["demo", "--steps", "0"], "--steps must be >= 1"),
    (["demo", "--ratio", "1.5"], "ToCaConfig.ratio"),
    (["demo", "--interval", "0"], "ToCaConfig.interval"),
])
def test_demo_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["calibrate", "--model", "mnist", "--flops-ratio", "0.5", "--out", "x.json"], "--flops-ratio >= 1"),
    (["calibrate", "--model", "mnist", "--flops-ratio", "2", "--modes", "duca", "--out", "x.json"], "--modes"),
    (["calibrate", "--model", "mnist", "--flops-ratio", "2", "--early-weights", "a", "--out", "x.json"],
     "--early-weights"),
    (["calibrate", "--pipeline", "/nonexistent", "--flops-ratio", "2", "--out", "x.json"], "--prompt"),
    (["calibrate", "--flops-ratio", "2", "--out", "x.json"], "one of the arguments --model --pipeline"),
])
def test_calibrate_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_calibrate_writes_a_schedule_file_that_configures_caching(tmp_path, capsys):
    from toca_compile import ToCaConfig
    from toca_compile.calibration import read_schedule_file

    out = tmp_path / "s.json"
    main(["calibrate", "--model", "mnist", "--flops-ratio", "2", "--steps", "6", "--samples", "2",
          "--modes", "fora", "--early-weights", "0", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    saved = read_schedule_file(out)
    assert saved.mode == "fora" and saved.num_steps == 6 and len(saved.full_steps) <= 3
    assert saved.info["flops_ratio"] >= 2 * 0.995 and f"wrote {out}" in printed
    assert ToCaConfig.from_schedule_file(str(out)).schedule().full_steps == saved.full_steps


def test_comparison_png_is_uncached_cached_difference_grids(tmp_path):
    uncached = torch.zeros(3, 1, 28, 28) - 1
    cached = uncached.clone()
    cached[2, 0, 5, 5] = 1.0  # third digit: second row of a 2-column grid
    path = write_comparison(uncached, cached, str(tmp_path / "cmp.png"), cols=2)
    image = Image.open(path)
    panel = 2 * 28 + TILE_GAP  # a 2 x 2 grid of digits (the fourth tile is empty)
    assert image.size == ((3 * panel + 2 * PANEL_GAP) * SCALE, HEADER + panel * SCALE)
    pixels = torch.from_numpy(np.asarray(image).copy())
    body = pixels[HEADER:]
    diff = body[:, 2 * (panel + PANEL_GAP) * SCALE:]
    changed = (diff == 255).nonzero()
    assert len(changed) == SCALE * SCALE  # one changed pixel, shown SCALE x SCALE
    row, col = (changed.min(0).values // SCALE).tolist()
    assert (row, col) == (28 + TILE_GAP + 5, 5)
    assert (body[:, : panel * SCALE] == 255).sum() == 0  # the uncached panel has no white pixel


def test_comparison_rejects_mismatched_batches(tmp_path):
    with pytest.raises(ValueError, match="equal shape"):
        write_comparison(torch.zeros(2, 1, 28, 28), torch.zeros(3, 1, 28, 28), str(tmp_path / "x.png"))
