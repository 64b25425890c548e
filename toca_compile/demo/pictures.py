"""``toca plot``: the pictures of :mod:`toca_compile.plots` for the bundled MNIST DiT.

The variants run with the eager executor: the pictures show decisions, which do not depend on
the compiler, and need no Inductor compile.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..backend import ToCa
from ..config import ToCaConfig
from .. import plots


def write_pictures(out: str | Path = "toca_pictures", steps: int = 50, digits: int = 4, step: int | None = None,
                   region: str | None = None, config: ToCaConfig | None = None, seed: int = 0) -> dict[str, Path]:
    """Generate ``digits`` digits with caching and write ``refresh_heatmap.png``,
    ``schedule_strip.png`` and ``token_overlay.png`` (the tokens ``region`` computed afresh at
    ``step``, outlined on the first digit) into ``out``. Returns the paths by name."""
    from . import zoo

    config = (config or ToCaConfig()).replace(compiler="eager")
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (a partial step to show), got {steps}")
    toca = ToCa(config)
    schedule = toca.schedule
    partial = [i for i in range(steps) if not schedule.is_full(i)]
    if not partial:
        raise ValueError(f"the schedule of {config} computes every one of {steps} steps in full: nothing to show")
    step = partial[len(partial) // 2] if step is None else step
    if not 0 <= step < steps:
        raise ValueError(f"step must be in [0, {steps}), got {step}")
    model = zoo.load_mnist_dit()
    region = region or f"transformer_blocks.{len(model.transformer_blocks) // 2}.mlp"
    masks: list[torch.Tensor] = []

    def capture(i: int, t: torch.Tensor, x: torch.Tensor) -> None:
        if i == step:
            masks.append(plots.refreshed_tokens(toca, region)[0])

    torch._dynamo.reset()
    fast = torch.compile(model, backend=toca.backend, dynamic=False)
    images = zoo.sample(fast, torch.arange(digits) % 10, steps=steps, seed=seed, progress=False, callback=capture)
    torch._dynamo.reset()
    summary = toca.summary()
    summary.name = "bundled MNIST DiT"
    out = Path(out)
    paths = {"refresh_heatmap": out / "refresh_heatmap.png", "schedule_strip": out / "schedule_strip.png",
             "token_overlay": out / "token_overlay.png"}
    plots.plot_refresh_heatmap(summary, paths["refresh_heatmap"])
    plots.plot_schedule_strip(summary, paths["schedule_strip"])
    side = zoo.IMAGE_SIZE // zoo.MNIST_DIT_CONFIG["patch_size"]
    plots.plot_token_overlay(images[0, 0], masks[0], (side, side), paths["token_overlay"],
                             title=f"{region}\nstep {step}: {int(masks[0].sum())} of {side * side} tokens afresh")
    return paths
