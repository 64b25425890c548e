"""``toca demo``: the bundled MNIST DiT sampled with plain torch.compile and with toca-compile.

Generates a fixed set of digits (fixed seed and labels, 50 DDIM steps, classifier-free
guidance batched as in DiT sampling) uncached and cached with the default ToCa settings, then
prints FLOPs per image, the wall-clock ratio (both variants in this process, interleaved
after warm-up), PSNR/SSIM of cached vs uncached images, and class accuracy and
classifier-feature FID of each; writes a side-by-side PNG (uncached | cached | difference).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from ..backend import ToCa
from ..config import ToCaConfig
from ..flops import count_flops, counting
from ..inspection import inspect
from ..stats import format_table


def run_demo(digits: int = 20, steps: int = 50, guidance: float = 3.0, seed: int = 0, rounds: int = 3,
             out: str = "toca_demo.png", config: ToCaConfig | None = None) -> dict:
    from . import metrics, zoo

    config = config or ToCaConfig()
    model, classifier = zoo.load_mnist_dit(), zoo.load_mnist_classifier()
    reference = load_reference_features()
    labels = torch.arange(digits) % zoo.NUM_CLASSES
    print(f"model: bundled MNIST DiT (diffusers DiTTransformer2DModel, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M "
          f"parameters, 7x7 = 49 tokens), {digits} digits, {steps} DDIM steps, CFG {guidance} (batch {2 * digits})")
    x0 = torch.zeros(2 * digits, 1, 28, 28)
    report = inspect(model, x0, timestep=torch.full((2 * digits,), 999), class_labels=torch.zeros(2 * digits, dtype=torch.long))
    print(report)

    def generate(fn, desc):
        print(desc, flush=True)
        return zoo.sample(fn, labels, steps=steps, guidance=guidance, seed=seed, progress=True)

    torch._dynamo.reset()
    plain = torch.compile(model, fullgraph=True, dynamic=False)
    toca = ToCa(config)
    cached = torch.compile(model, backend=toca.backend, fullgraph=True, dynamic=False)
    images = {"uncached": generate(plain, "compile + warm-up: torch.compile"),
              "cached": generate(cached, "compile + warm-up: toca")}
    times: dict[str, list[float]] = {"uncached": [], "cached": []}
    for r in range(rounds):
        for name, fn in (("uncached", plain), ("cached", cached)):
            toca.reset()
            start = time.perf_counter()
            images[name] = generate(fn, f"timing round {r + 1}/{rounds}: {name}")
            times[name].append(time.perf_counter() - start)
    stats = toca.stats()

    flops = {"uncached": count_flops(lambda: generate(model, "FLOP count: uncached")) / digits}
    counter = ToCa(config.replace(compiler="eager"))
    eager = torch.compile(model, backend=counter.backend, fullgraph=True, dynamic=False)
    generate(eager, "FLOP count: warm-up")
    counter.reset()
    with counting(counter) as sink:
        generate(eager, "FLOP count: cached")
    flops["cached"] = sum(sink) / digits

    u, c = images["uncached"], images["cached"]
    psnr, ssim = metrics.psnr(c, u), metrics.ssim(c, u)
    median = {k: statistics.median(v) for k, v in times.items()}
    rows = [("", "GFLOPs/image", "time/generation", "speed-up", "accuracy", "classifier-FID", "PSNR vs uncached", "SSIM vs uncached")]
    for name in ("uncached", "cached"):
        feats = classifier.features(images[name])
        rows.append((
            name if name == "cached" else "uncached (torch.compile)",
            f"{flops[name] / 1e9:.3f}",
            f"{median[name] * 1e3:.0f} ms",
            f"{median['uncached'] / median[name]:.2f}x",
            f"{metrics.class_accuracy(images[name], labels, classifier):.3f}",
            f"{metrics.frechet_distance(feats, reference):.2f}",
            "-" if name == "uncached" else _mean_psnr(psnr),
            "-" if name == "uncached" else f"{ssim.mean():.4f}",
        ))
    print(stats)
    print(f"\nToCa settings: {config}")
    print(format_table(rows))
    print(f"FLOPs ratio {flops['uncached'] / flops['cached']:.2f}x; wall clock: median of {rounds} interleaved rounds "
          f"in this process after warm-up (Inductor, {torch.get_num_threads()} threads); FID against "
          f"{len(reference)} real test digits, on only {digits} samples: a rough indicator")
    path = write_comparison(u, c, out)
    print(f"side-by-side images (uncached | cached | 4x difference): {path}")
    return {"flops": flops, "times": times, "psnr": psnr, "ssim": ssim, "png": path}


def _mean_psnr(psnr: torch.Tensor) -> str:
    """Mean PSNR over the images that differ (identical images have infinite PSNR), and how many do not."""
    finite = psnr[torch.isfinite(psnr)]
    same = psnr.numel() - finite.numel()
    if finite.numel() == 0:
        return "identical"
    return f"{finite.mean():.2f} dB" + (f" ({same} identical)" if same else "")


def load_reference_features() -> torch.Tensor:
    """Classifier features of 2000 real MNIST test digits (examples/reference_features.py)."""
    from safetensors.torch import load

    from .zoo import assets

    data = assets().joinpath("mnist_test_features.safetensors").read_bytes()
    return load(data)["features"].float()


SCALE = 3        # pixels per image pixel in the PNG
TILE_GAP = 1     # between digits in a panel (image pixels)
PANEL_GAP = 4    # between the three panels (image pixels)
HEADER = 16      # caption strip above the panels (PNG pixels)


def _grid(x: torch.Tensor, cols: int) -> torch.Tensor:
    """[B, 1, H, W] in [0, 1] -> one [rows*H + gaps, cols*W + gaps] image, row-major, gaps mid-grey."""
    b, _, h, w = x.shape
    rows = -(-b // cols)
    canvas = torch.full((rows * h + (rows - 1) * TILE_GAP, cols * w + (cols - 1) * TILE_GAP), 0.5)
    for i in range(b):
        r, c = divmod(i, cols)
        top, left = r * (h + TILE_GAP), c * (w + TILE_GAP)
        canvas[top : top + h, left : left + w] = x[i, 0]
    return canvas


def write_comparison(uncached: torch.Tensor, cached: torch.Tensor, out: str, cols: int = 5) -> Path:
    """Three panels, each a grid of the digits (``cols`` per row): uncached | cached | absolute
    difference amplified 4x (a 0.25 change in [0, 1] brightness is white), with a caption strip."""
    from PIL import Image, ImageDraw

    if uncached.shape != cached.shape or uncached.dim() != 4 or uncached.shape[1] != 1:
        raise ValueError(f"expected two [B, 1, H, W] batches of equal shape, got {tuple(uncached.shape)} and "
                         f"{tuple(cached.shape)}")
    cols = max(1, min(cols, uncached.shape[0]))
    u, c = (uncached.clamp(-1, 1) + 1) / 2, (cached.clamp(-1, 1) + 1) / 2
    panels = [_grid(u, cols), _grid(c, cols), _grid(((c - u).abs() * 4).clamp(0, 1), cols)]
    gap = torch.ones(panels[0].shape[0], PANEL_GAP)
    grid = torch.cat([panels[0], gap, panels[1], gap, panels[2]], dim=1)
    body = Image.fromarray((grid * 255).round().to(torch.uint8).numpy(), mode="L")
    body = body.resize((body.width * SCALE, body.height * SCALE), Image.NEAREST)
    image = Image.new("L", (body.width, body.height + HEADER), 255)
    image.paste(body, (0, HEADER))
    draw = ImageDraw.Draw(image)
    panel_w = (panels[0].shape[1] + PANEL_GAP) * SCALE
    for i, caption in enumerate(("uncached (torch.compile)", "cached (toca)", "|difference| x4")):
        draw.text((i * panel_w + 2, 2), caption, fill=0)
    path = Path(out).resolve()
    image.save(path)
    return path
