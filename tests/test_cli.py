"""The command line rejects bad input with a clear message; the demo's PNG has one row per digit."""
import pytest
import torch
from PIL import Image

from toca_compile.cli import main
from toca_compile.demo import write_comparison


@pytest.mark.parametrize("argv, message", [
    (["demo", "--steps", "0"], "--steps must be >= 1"),
    (["demo", "--ratio", "1.5"], "ToCaConfig.ratio"),
    (["demo", "--interval", "0"], "ToCaConfig.interval"),
])
def test_demo_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_comparison_png_is_uncached_cached_difference(tmp_path):
    uncached = torch.zeros(3, 1, 28, 28) - 1
    cached = uncached.clone()
    cached[1, 0, 5, 5] = 1.0
    path = write_comparison(uncached, cached, str(tmp_path / "cmp.png"))
    image = Image.open(path)
    assert image.size == (3 * (28 * 3 + 4), 3 * 28 * 3)
    pixels = torch.tensor(list(image.getdata()), dtype=torch.uint8).reshape(image.height, image.width)
    diff = pixels[:, 3 * (2 * 28 + 4):]
    assert diff.max() == 255 and (diff > 0).sum() == 9  # one changed pixel, shown 3x3 after scaling
