"""Why the peers' caches win on the bundled MNIST DiT: one change at a time, same forecast code.

Each row runs toca-compile's own TaylorSeer / FORA (rewritten graphs, eager executor) with a
different set of full steps, or diffusers' TaylorSeer hook on different modules, on the same
noise; it prints the FLOPs ratio (uncached / row, counted on the graphs that ran) and the PSNR
of each image against the uncached one (mean over images). The rows isolate:

* warm-up: full steps 0, 1, 2 before the interval starts;
* the spacing right after the warm-up and a full last step (diffusers' TaylorSeer computes
  steps 0, 1, 2, 4, 7, 10, ... : ``(i - warm-up - 1) % interval == 0``);
* the order of the forecast (1 or 2) and forecasting at all (FORA reuses);
* what is forecast: diffusers' hook on the attention and feed-forward modules (before the adaLN
  gate, like toca-compile's cache points) or on whole blocks (after the gate and the residual);
* full steps placed by ``toca calibrate`` (the shipped schedule files).

    python benchmarks/schedule_ablation.py --samples 100            # the README's table (CPU, ~15 min)
    python benchmarks/schedule_ablation.py --samples 10 --rows warmup   # smoke test
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from toca_compile import ToCa, ToCaConfig
from toca_compile.demo import metrics, zoo
from toca_compile.flops import counting
from toca_compile.runtime import ToCaWarning
from toca_compile.schedule import StepListSchedule

STEPS = 50
SEED = 7


def diffusers_full_steps(interval: int, warmup: int = 3, steps: int = STEPS) -> tuple[int, ...]:
    """The steps diffusers' TaylorSeerCacheHook computes (its ``_measure_should_compute``)."""
    return tuple(i for i in range(steps) if i < warmup or (i - warmup - 1) % interval == 0)


def warmup_full_steps(interval: int, warmup: int, steps: int = STEPS, last: bool = False) -> tuple[int, ...]:
    """``ToCaConfig(warmup=...)``'s rule: ``warmup`` full steps, then every ``interval`` from the last."""
    full = {i for i in range(steps) if i < warmup or (i - (warmup - 1)) % interval == 0}
    return tuple(sorted(full | ({steps - 1} if last else set())))


class Bench:
    def __init__(self, samples: int) -> None:
        from torch.utils.flop_counter import FlopCounterMode  # noqa: PLC0415

        from toca_compile.flops import cpu_attention_formula  # noqa: PLC0415

        self.model = zoo.load_mnist_dit()
        self.labels = torch.arange(samples) % zoo.NUM_CLASSES
        with cpu_attention_formula(), FlopCounterMode(display=False) as counter:
            self.reference = self.generate(self.model)
        self.uncached = counter.get_total_flops()

    def generate(self, fn: Callable) -> torch.Tensor:
        return zoo.sample(fn, self.labels, steps=STEPS, guidance=3.0, seed=SEED, progress=False)

    def psnr(self, images: torch.Tensor) -> float:
        p = metrics.psnr(images, self.reference)
        return float(p[torch.isfinite(p)].mean())

    def toca(self, config: ToCaConfig, full_steps: tuple[int, ...] | None = None) -> tuple[float, float]:
        torch._dynamo.reset()
        schedule = StepListSchedule(STEPS, full_steps) if full_steps is not None else None
        toca = ToCa(config.replace(compiler="eager"), schedule=schedule)
        fn = torch.compile(self.model, backend=toca.backend)
        with counting(toca) as sink:
            images = self.generate(fn)
        torch._dynamo.reset()
        return self.uncached / sum(sink), self.psnr(images)

    def diffusers_taylorseer(self, interval: int, identifiers: list[str]) -> tuple[float, float]:
        """diffusers' TaylorSeer hook (3 warm-up steps, order 1, fp32 factors) on the modules
        ``identifiers`` match, driven as in peers.py (its ``Denoiser`` sets the cache context)."""
        peers = _load_peers()
        model = zoo.load_mnist_dit()
        peers.ds_taylorseer(interval, identifiers=identifiers)(model, None, None)
        denoiser = peers.Denoiser(model)
        denoiser.start()
        denoiser.count = True
        images = self.generate(denoiser)
        return self.uncached / denoiser.flops, self.psnr(images)


def _load_peers():
    """benchmarks/peers.py, loaded by path under the name the tests use."""
    import importlib.util  # noqa: PLC0415

    name = "bench_peers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().with_name("peers.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules[name]


def rows(bench: Bench) -> dict[str, list[tuple[str, Callable[[], tuple[float, float]]]]]:
    t1 = ToCaConfig(mode="taylorseer", taylor_order=1)
    t2 = ToCaConfig(mode="taylorseer", taylor_order=2)
    fora = ToCaConfig(mode="fora")
    groups: dict[str, list] = {"warmup": [], "spacing": [], "order": [], "modules": [], "calibrated": []}
    for n in (3, 4):
        groups["warmup"] += [
            (f"TaylorSeer O=1, full every {n} (0, {n}, {2 * n}, ...)", lambda n=n: bench.toca(t1.replace(interval=n))),
            (f"TaylorSeer O=1, 3 warm-up, then every {n} from step 2",
             lambda n=n: bench.toca(t1, warmup_full_steps(n, 3))),
        ]
        groups["spacing"] += [
            (f"TaylorSeer O=1, 3 warm-up, then every {n} from step 2, last step full",
             lambda n=n: bench.toca(t1, warmup_full_steps(n, 3, last=True))),
            (f"TaylorSeer O=1 on diffusers' full steps, interval {n}",
             lambda n=n: bench.toca(t1, diffusers_full_steps(n))),
        ]
        groups["order"] += [
            (f"TaylorSeer O=2 on diffusers' full steps, interval {n}",
             lambda n=n: bench.toca(t2, diffusers_full_steps(n))),
            (f"FORA (reuse) on diffusers' full steps, interval {n}",
             lambda n=n: bench.toca(fora, diffusers_full_steps(n))),
        ]
        groups["modules"] += [
            (f"diffusers TaylorSeer hook, attn1 + ff (before the gate), interval {n}",
             lambda n=n: bench.diffusers_taylorseer(n, [r"transformer_blocks\.\d+\.(attn1|ff)"])),
            (f"diffusers TaylorSeer hook, whole blocks (after gate + residual), interval {n}",
             lambda n=n: bench.diffusers_taylorseer(n, [r"transformer_blocks\.\d+"])),
        ]
    for ratio, path in zoo.mnist_schedule_files().items():
        saved = ToCaConfig.from_schedule_file(path)
        groups["calibrated"].append((f"calibrated for {ratio:g}x ({Path(path).name})", lambda s=saved: bench.toca(s)))
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100, help="images (labels cycle 0-9), one batch")
    parser.add_argument("--rows", default="warmup,spacing,order,modules,calibrated", help="groups to run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error("--samples must be >= 1")
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", ToCaWarning)
    start = time.perf_counter()
    bench = Bench(args.samples)
    groups = rows(bench)
    wanted = [g.strip() for g in args.rows.split(",") if g.strip()]
    unknown = [g for g in wanted if g not in groups]
    if unknown:
        parser.error(f"unknown --rows {unknown}; groups are {sorted(groups)}")
    chosen = [row for g in wanted for row in groups[g]]
    print(f"{args.samples} images, DDIM {STEPS} steps, CFG 3, noise seed {SEED}; PSNR vs uncached (mean over images)")
    print(f"| {'row':<72} | FLOPs ratio | PSNR (dB) |\n|---|---|---|")
    for label, run in tqdm(chosen, desc="rows", leave=False, file=sys.stderr):
        ratio, psnr = run()
        tqdm.write(f"| {label:<72} | {ratio:5.2f}× | {psnr:6.2f} |")
    print(f"({(time.perf_counter() - start) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
