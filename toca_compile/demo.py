"""``toca demo``: compile a small DiT with and without caching, show what was found and saved.

Uses diffusers' ``DiTTransformer2DModel`` (the DiT-XL/2 code path) at a small config with
random weights, a 20-step descending timestep sequence and classifier-free guidance batched
as in DiT sampling. FLOPs are counted by running the rewritten graphs with the eager
executor; ``--time`` also measures the wall-clock ratio with Inductor.
"""
from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from .backend import ToCa
from .config import ToCaConfig
from .flops import counting
from .inspect import inspect
from .stats import format_table

DEMO_DIT = dict(num_attention_heads=4, attention_head_dim=16, in_channels=4, out_channels=4, num_layers=4,
                sample_size=16, patch_size=2, num_embeds_ada_norm=10, norm_type="ada_norm_zero")


def _model_and_inputs(seed: int):
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(seed)
    model = DiTTransformer2DModel(**DEMO_DIT).eval()
    for block in model.transformer_blocks:  # random gates instead of adaLN-Zero's zeros
        torch.nn.init.normal_(block.norm1.linear.weight, std=0.05)
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(2, 4, 16, 16, generator=g)
    labels = torch.tensor([3, 10])  # one class, one null class: batched CFG
    return model, latents, labels


def _sample(fn, latents, labels, steps: int, desc: str):
    x = latents.clone()
    for t in tqdm(torch.linspace(999, 0, steps).round().long(), desc=desc, leave=False):
        eps = fn(x, timestep=t.repeat(x.shape[0]), class_labels=labels).sample
        x = x - 0.02 * eps  # a simple update: enough to make consecutive steps related
    return x


def run_demo(steps: int = 20, interval: int = 3, ratio: float = 0.15, seed: int = 0, measure_time: bool = False) -> None:
    model, latents, labels = _model_and_inputs(seed)
    print(f"model: diffusers DiTTransformer2DModel {DEMO_DIT}, random weights, "
          f"{latents.shape[-1] // 2}x{latents.shape[-1] // 2} = {(latents.shape[-1] // 2) ** 2} tokens, batch 2 (CFG)")
    report = inspect(model, latents, timestep=torch.tensor([999, 999]), class_labels=labels)
    print(report)
    config = ToCaConfig(interval=interval, ratio=ratio, seed=seed)
    flops = {}
    outs = {}
    with torch.no_grad():
        for name, cfg in (("uncached", config.replace(interval=1, compiler="eager")), ("cached", config.replace(compiler="eager"))):
            torch._dynamo.reset()
            toca = ToCa(cfg)
            fn = torch.compile(model, backend=toca.backend, fullgraph=True, dynamic=False)
            _sample(fn, latents, labels, 2, f"warm-up {name}")
            toca.reset()
            with counting(toca) as sink:
                outs[name] = _sample(fn, latents, labels, steps, f"{name} (FLOP count)")
            flops[name] = sum(sink)
            if name == "cached":
                print(toca.stats())
    diff = (outs["cached"] - outs["uncached"]).abs().max().item()
    rows = [("variant", "GFLOPs / generation", "ratio")]
    for name in ("uncached", "cached"):
        rows.append((name, f"{flops[name] / 1e9:.3f}", f"{flops['uncached'] / flops[name]:.2f}x"))
    print(f"\n{steps} steps, ToCaConfig(interval={interval}, ratio={ratio}):")
    print(format_table(rows))
    print(f"max |cached - uncached| of the final sample: {diff:.4f} (random weights: not a quality measure)")
    if measure_time:
        _time_inductor(model, latents, labels, config, steps)


def _time_inductor(model, latents, labels, config: ToCaConfig, steps: int, rounds: int = 3) -> None:
    torch._dynamo.reset()
    plain = torch.compile(model, fullgraph=True, dynamic=False)
    toca = ToCa(config)
    cached = torch.compile(model, backend=toca.backend, fullgraph=True, dynamic=False)
    times = {"torch.compile": [], "toca": []}
    with torch.no_grad():
        _sample(plain, latents, labels, steps, "compile: plain Inductor")
        _sample(cached, latents, labels, steps, "compile: toca variants")
        for _ in tqdm(range(rounds), desc="timing (interleaved)"):
            for name, fn in (("torch.compile", plain), ("toca", cached)):
                toca.reset()
                start = time.perf_counter()
                _sample(fn, latents, labels, steps, name)
                times[name].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    print(f"wall clock (best of {rounds}, interleaved, one process): plain {best['torch.compile'] * 1e3:.1f} ms, "
          f"toca {best['toca'] * 1e3:.1f} ms, speed-up {best['torch.compile'] / best['toca']:.2f}x")
