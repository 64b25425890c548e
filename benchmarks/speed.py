"""Wall clock of whole generations: plain torch.compile against toca-compile, same process.

A diffusers transformer from ``toca flops``' model list (random weights: speed does not depend
on them) or the bundled MNIST DiT runs one generation at a time, every variant in turn after
warm-up, so machine noise hits all of them alike; the speed-up is the ratio of medians.

* ``eager``: the model as it is (no compiler), for scale.
* ``compiled``: ``torch.compile(model)`` with Inductor, the baseline we must beat.
* ``toca``: ``torch.compile(model, backend=ToCa(config).backend)``; the preset written for the
  model (``--preset``), Inductor for every variant.

Each row also gives its FLOPs ratio (uncached FLOPs / the row's FLOPs, counted on the meta device)
and its efficiency ``η = speed-up / FLOPs ratio`` against the baseline (1: the wall clock follows the
FLOPs exactly). ``per-round speed-ups`` are the ratios of each interleaved round, a measure of noise.
``--per-step`` adds rounds that time every model call, and reports toca's full and partial calls
as fractions of the baseline call beside the partial steps' FLOPs fraction (where η is lost),
and the minor page faults per call of each kind (fresh memory touched for the first time).
``--fixed-cost`` times the baseline's calls at smaller batches too and fits ``t(B) = F + V·B``:
``F`` is what a call costs whatever its batch (guards, Inductor's wrapper, kernel launches,
the Python around it). No caching can save it, so with ``f = F / t(B)`` and FLOPs ratio ``R``
even a cached generation whose every call took ``F`` plus its FLOPs' share of the rest would
reach only ``η = 1 / (1 + f·(R − 1))``: the ceiling printed beside the measured η.

The sampler is a fixed-step update ``x += (t_next - t) / 1000 * out`` (its cost is negligible
next to the model's); each generation starts from the same latents. FLOPs per generation are
counted on the meta device with :class:`toca_compile.flops.GenerationCounter` (same model and
schedule). ``--layers N`` builds the model from its config with at most N blocks in each block list
(``num_layers``, ``num_single_layers``, ...), which bounds compile time on big models.

    python benchmarks/speed.py --model mnist --batch 20                  # the bundled DiT, CPU
    python benchmarks/speed.py --model dit-xl-2 --device cuda --batch 16 --dtype bfloat16
    python benchmarks/speed.py --model dit-b-2 --batch 2 --steps 20 --threads 2        # DiT-B/2 (256 tokens), CPU
    python benchmarks/speed.py --model dit-xl-2 --layers 4 --batch 4 --steps 10 --rounds 1  # smoke test
    python benchmarks/speed.py --model mnist --batch 40 --steps 20 --variants compiled,toca --per-step --fixed-cost
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

try:
    import resource  # Unix: page-fault counts per call
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

import torch

from toca_compile import ToCa, ToCaConfig
from toca_compile.flops import GenerationCounter
from toca_compile.flops.cli import MODELS
from toca_compile.runtime import ToCaWarning

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def fewer_layers(config: dict, layers: int | None) -> dict:
    """The config with every ``*layers*`` count capped at ``layers`` (None: unchanged)."""
    if layers is None:
        return dict(config)
    return {k: (min(v, layers) if "layers" in k and isinstance(v, int) and not isinstance(v, bool) else v)
            for k, v in config.items()}


def build(name: str, layers: int | None):
    """(model factory, inputs for a model batch, description). With ``layers`` the model is built
    from its config with fewer blocks (never at full size first: FLUX would need 48 GB)."""
    if name == "mnist":
        from diffusers import DiTTransformer2DModel  # noqa: PLC0415

        from toca_compile.demo import zoo  # noqa: PLC0415

        def factory() -> torch.nn.Module:
            return DiTTransformer2DModel(**fewer_layers(zoo.MNIST_DIT_CONFIG, layers))

        def inputs(batch: int) -> tuple[tuple, dict]:
            return (torch.empty(batch, 1, zoo.IMAGE_SIZE, zoo.IMAGE_SIZE),), dict(
                timestep=torch.empty(batch, dtype=torch.long), class_labels=torch.empty(batch, dtype=torch.long))

        return factory, inputs, "bundled MNIST DiT config (49 tokens)"
    spec = MODELS[name]

    def factory() -> torch.nn.Module:
        if layers is None:
            return spec.build()
        with torch.device("meta"):  # read the published config without allocating weights
            probe = spec.build()
        return type(probe).from_config(fewer_layers(dict(probe.config), layers))

    return factory, spec.inputs, spec.description


def materialize(tree, device: torch.device, dtype: torch.dtype, gen: torch.Generator, key: str = ""):
    """Random stand-ins for the input templates: floats ~ N(0, 1), masks all ones, other integers
    (labels) in [0, 10)."""
    if isinstance(tree, torch.Tensor):
        if "mask" in key:
            return torch.ones(tree.shape, dtype=tree.dtype, device=device)
        if tree.is_floating_point():
            return torch.randn(tree.shape, generator=gen).to(device, dtype)
        return torch.randint(0, 10, tree.shape, generator=gen).to(device)
    if isinstance(tree, dict):
        return {k: materialize(v, device, dtype, gen, k) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(materialize(v, device, dtype, gen, key) for v in tree)
    return tree


def generation(fn, args: tuple, kwargs: dict, steps: int, toca: ToCa | None = None,
               calls: list[float] | None = None, faults: list[int] | None = None,
               marks: dict[int, str] | None = None) -> torch.Tensor:
    """One generation: ``steps`` calls with decreasing timesteps; the latent is the first
    positional input, else ``hidden_states``. With ``toca`` the loop announces its steps
    (``toca.generation`` / ``toca.step``), as a pipeline under ``toca_compile.apply`` does, so
    the timestep is never read back from the device. With ``calls`` the wall time of each model
    call is appended to it (the device is synchronised around every call), and with ``faults``
    the minor page faults of the process during each call (0 where ``resource`` is missing).
    ``marks`` names steps whose call is recorded as a ``torch.profiler`` range of that name."""
    with toca.generation(steps) if toca is not None else contextlib.nullcontext():
        return _denoise(fn, args, kwargs, steps, toca, calls, faults, marks or {})


def minor_faults() -> int:
    """Minor page faults of this process so far (first touches of fresh memory); 0 without ``resource``."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else 0


def _denoise(fn, args: tuple, kwargs: dict, steps: int, toca: ToCa | None,
             calls: list[float] | None = None, faults: list[int] | None = None,
             marks: dict[int, str] | None = None) -> torch.Tensor:
    positional = bool(args)
    x = (args[0] if positional else kwargs["hidden_states"]).clone()
    ts = torch.linspace(999, 0, steps + 1).round().long()
    for i in range(steps):
        if toca is not None:
            toca.step(i)
        kw = dict(kwargs, return_dict=False)
        if "timestep" in kw:
            kw["timestep"] = torch.full_like(kwargs["timestep"], int(ts[i]))
        if calls is not None:
            sync(x.device)
            faulted = minor_faults()
            start = time.perf_counter()
        with torch.profiler.record_function(marks[i]) if marks and i in marks else contextlib.nullcontext():
            if positional:
                out = fn(x, *args[1:], **kw)[0]
            else:
                kw["hidden_states"] = x
                out = fn(**kw)[0]
        if calls is not None:
            sync(x.device)
            calls.append(time.perf_counter() - start)
            if faults is not None:
                faults.append(minor_faults() - faulted)
        out = out[:, : x.shape[1]] if out.shape[1] != x.shape[1] else out  # learned-sigma halves
        x = x + (ts[i + 1] - ts[i]).item() / 1000.0 * out.to(x.dtype)
    return x


def fit_fixed_cost(batches: list[int], seconds: list[float]) -> tuple[float, float]:
    """Least-squares ``(F, V)`` of ``seconds ≈ F + V·batch`` over the measured batches."""
    if len(batches) != len(seconds) or len(set(batches)) < 2:
        raise ValueError("need call times at two or more different batches")
    n = len(batches)
    mean_b, mean_t = sum(batches) / n, sum(seconds) / n
    var_b = sum((b - mean_b) ** 2 for b in batches)
    slope = sum((b - mean_b) * (t - mean_t) for b, t in zip(batches, seconds)) / var_b
    return mean_t - slope * mean_b, slope


def eta_ceiling(fixed_share: float, flops_ratio: float) -> float:
    """η of a generation whose every call costs the fixed share ``f`` of a plain call plus its
    FLOPs' fraction of the rest: generation time ``Σ(f + (1 − f)·φ_i)`` against ``n`` plain calls,
    with ``Σφ_i = n / R``, gives ``1 / (1 + f·(R − 1))``."""
    if not 0.0 <= fixed_share <= 1.0 or flops_ratio <= 0:
        raise ValueError(f"fixed share must be in [0, 1] and the FLOPs ratio positive, got {fixed_share}, {flops_ratio}")
    return 1.0 / (1.0 + fixed_share * (flops_ratio - 1.0))


def measure_fixed_cost(fn, template, batch: int, device: torch.device, dtype: torch.dtype, steps: int,
                       rounds: int) -> dict:
    """Median per-call time of ``fn`` at ``batch`` and at smaller batches (1, batch/4, batch/2),
    interleaved round by round after a warm-up at each, and the fit of ``F + V·B`` to them."""
    batches = sorted({1, max(1, batch // 4), max(1, batch // 2), batch})
    gen = torch.Generator().manual_seed(1)
    inputs = {b: tuple(materialize(t, device, dtype, gen) for t in template(b)) for b in batches}
    calls: dict[int, list[float]] = {b: [] for b in batches}
    with torch.no_grad():
        for b in batches:  # warm-up: one compiled graph per batch
            generation(fn, *inputs[b], steps)
        for _ in range(rounds):
            for b in batches:
                generation(fn, *inputs[b], steps, calls=calls[b])
    medians = [statistics.median(calls[b]) for b in batches]
    fixed, per_item = fit_fixed_cost(batches, medians)
    at_batch = medians[batches.index(batch)]
    return {"batches": batches, "median_call_ms": [m * 1e3 for m in medians], "fixed_ms": fixed * 1e3,
            "per_item_ms": per_item * 1e3, "fixed_share": fixed / at_batch,
            "residual_ms": [(m - fixed - per_item * b) * 1e3 for b, m in zip(batches, medians)]}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnist", choices=["mnist", *sorted(MODELS)])
    parser.add_argument("--layers", type=int, default=None, help="at most N blocks per block list (compile time)")
    parser.add_argument("--batch", type=int, default=None,
                        help="model batch per call (CFG counts twice; default: the model's default)")
    parser.add_argument("--preset", default=None, help="toca preset (default: the model's own, else ToCa defaults)")
    parser.add_argument("--steps", type=int, default=None, help="calls per generation (default: the preset's)")
    parser.add_argument("--rounds", type=int, default=5, help="timed generations per variant, interleaved")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--variants", default="eager,compiled,toca")
    parser.add_argument("--toca-compiler", default="inductor", choices=["inductor", "eager"],
                        help="executor of toca's variants (eager: a quick smoke test, not a timing)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--per-step", action="store_true",
                        help="also time every model call (one more interleaved round per variant) and report "
                             "toca's full and partial calls against the baseline call")
    parser.add_argument("--fixed-cost", action="store_true",
                        help="also time the baseline's calls (compiled, else the first variant) at batches 1, B/4, "
                             "B/2 and B, fit t = F + V*B, and print the η ceiling that F sets (see above)")
    args = parser.parse_args(argv)
    if args.layers is not None and args.layers < 1:
        parser.error("--layers must be >= 1")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or set(variants) - {"eager", "compiled", "toca"}:
        parser.error("--variants: a comma-separated subset of eager, compiled, toca")
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", ToCaWarning)

    factory, template, desc = build(args.model, args.layers)
    preset = args.preset or (MODELS[args.model].preset if args.model in MODELS else None)
    config = ToCaConfig(preset=preset, compiler=args.toca_compiler)
    if preset and args.steps:  # the preset re-timed to fewer or more steps
        from toca_compile.presets import get_preset  # noqa: PLC0415

        schedule = get_preset(preset, num_steps=args.steps)
    else:
        schedule = config.schedule()
    steps = args.steps or schedule.num_steps or 50
    batch = args.batch or (MODELS[args.model].batch if args.model in MODELS else 2)

    torch.manual_seed(0)
    with torch.device(device):
        model = factory().to(dtype).eval().requires_grad_(False)
    n_blocks = sum(len(c) for n, c in model.named_children() if isinstance(c, torch.nn.ModuleList)
                   and n.endswith("blocks"))
    gen = torch.Generator().manual_seed(0)
    call_args, call_kwargs = template(batch)
    call_args = materialize(call_args, device, dtype, gen)
    call_kwargs = materialize(call_kwargs, device, dtype, gen)

    fns, tocas = {}, {}
    if "eager" in variants:
        fns["eager"] = model
    if "compiled" in variants:
        fns["compiled"] = torch.compile(model, fullgraph=False, dynamic=False)
    toca = None
    if "toca" in variants:
        toca = ToCa(config, schedule=schedule)
        fns["toca"] = torch.compile(model, backend=toca.backend, fullgraph=False, dynamic=False)
        tocas["toca"] = toca

    base = "compiled" if "compiled" in fns else next(iter(fns))  # the variant every ratio is taken against
    print(f"{desc}{f', at most {args.layers} blocks per list' if args.layers else ''} ({n_blocks} blocks); "
          f"batch {batch}, {steps} steps, {args.dtype} on {device}; toca: {preset or config}", flush=True)
    outputs, compile_s = {}, {}
    with torch.no_grad():
        for name, fn in fns.items():  # warm-up: compiles every graph and variant
            start = time.perf_counter()
            outputs[name] = generation(fn, call_args, call_kwargs, steps, tocas.get(name))
            sync(device)
            compile_s[name] = time.perf_counter() - start
            print(f"warm-up {name}: {compile_s[name]:.1f} s", flush=True)
        times: dict[str, list[float]] = {name: [] for name in fns}
        for r in range(args.rounds):
            for name, fn in fns.items():
                sync(device)
                start = time.perf_counter()
                generation(fn, call_args, call_kwargs, steps, tocas.get(name))
                sync(device)
                times[name].append(time.perf_counter() - start)
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {t[-1] * 1e3:.1f} ms" for n, t in times.items()),
                  flush=True)

        calls: dict[str, list[float]] = {}
        faults: dict[str, list[int]] = {}
        if args.per_step:  # separate rounds: timing each call synchronises the device around it
            for _ in range(args.rounds):
                for name, fn in fns.items():
                    generation(fn, call_args, call_kwargs, steps, tocas.get(name), calls.setdefault(name, []),
                               faults.setdefault(name, []))
        fixed = None
        if args.fixed_cost:  # last: its recompiles add cache entries to the guards' walk
            fixed = measure_fixed_cost(fns[base], template, batch, device, dtype, steps, args.rounds)

    counter = GenerationCounter(factory, template(batch))
    report = counter.report(config, steps, schedule=schedule)
    median = {n: statistics.median(t) for n, t in times.items()}
    ref_name = next((n for n in ("compiled", "eager") if n in outputs), None)  # the uncached output to compare
    ref = outputs[ref_name].float() if ref_name else None
    flops = {name: report.cached if name == "toca" else report.uncached for name in fns}
    speedup = {name: median[base] / median[name] for name in fns}
    flops_ratio = {name: flops[base] / flops[name] for name in fns}
    eta = {name: speedup[name] / flops_ratio[name] for name in fns}
    per_round = {name: [b / t for b, t in zip(times[base], times[name])] for name in fns}
    lines = [f"| variant | ms / generation (median) | speed-up vs {base} | TFLOPs / generation | FLOPs ratio | η | "
             f"rel. L2 vs {ref_name or '-'} |", "|---|---|---|---|---|---|---|"]
    for name in fns:
        err = (outputs[name].float() - ref).norm() / ref.norm() if ref is not None else float("nan")
        lines.append(f"| {name} | {median[name] * 1e3:.1f} | {speedup[name]:.2f}× | {flops[name] / 1e12:.3f} | "
                     f"{flops_ratio[name]:.2f}× | {eta[name]:.2f} | {err:.2e} |")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU, " \
        f"{torch.get_num_threads()} threads"
    table = "\n".join(lines)
    print(table)
    stats = toca.stats() if toca else None
    print(f"FLOPs ratio {report.uncached / report.cached:.2f}×; {args.rounds} interleaved rounds after warm-up; "
          f"{where}; torch {torch.__version__}; toca stats: {stats.full_steps if stats else '-'} full / "
          f"{stats.partial_steps if stats else '-'} partial steps")
    for name in fns:
        if name != base:
            spread = per_round[name]
            print(f"per-round speed-ups of {name} vs {base}: " + ", ".join(f"{r:.2f}" for r in spread)
                  + f" (min {min(spread):.2f}, max {max(spread):.2f})")
    per_step = _per_step(calls, faults, base, steps, schedule, report) if args.per_step and "toca" in calls else None
    if per_step:
        print(f"per call, against the median {base} call ({per_step['baseline_ms']:.2f} ms): toca full steps "
              f"{per_step['full_time']:.3f}, partial steps {per_step['partial_time']:.3f} "
              f"(their FLOPs: {per_step['partial_flops']:.3f} on average); minor page faults per call "
              f"(median): {base} {per_step['baseline_faults']:g}, toca full {per_step['full_faults']:g}, "
              f"partial {per_step['partial_faults']:g}")
    if fixed is not None:
        fixed["eta_ceiling"] = {n: eta_ceiling(min(1.0, max(0.0, fixed["fixed_share"])), flops_ratio[n])
                                for n in fns if n != base}
        print(f"{base} calls at batches {fixed['batches']}: median " +
              ", ".join(f"{m:.2f}" for m in fixed["median_call_ms"]) +
              f" ms; fit F = {fixed['fixed_ms']:.2f} ms + {fixed['per_item_ms']:.3f} ms per batch item "
              f"(residuals " + ", ".join(f"{r:+.2f}" for r in fixed["residual_ms"]) +
              f" ms); fixed share at batch {batch}: f = {fixed['fixed_share']:.3f}; η ceiling 1/(1 + f(R-1)): " +
              ", ".join(f"{n} {e:.3f} (measured {eta[n]:.3f})" for n, e in fixed["eta_ceiling"].items()))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "command": "python benchmarks/speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "model": desc, "layers": args.layers, "blocks": n_blocks, "batch": batch, "steps": steps,
            "dtype": args.dtype, "device": where, "torch": torch.__version__, "preset": preset,
            "times_s": times, "median_s": median, "warmup_s": compile_s,
            "tflops": {"uncached": report.uncached / 1e12, "toca": report.cached / 1e12},
            "speedup": speedup, "flops_ratio": flops_ratio, "eta": eta, "per_round_speedup": per_round,
            "table": table, "per_step": per_step, "fixed_cost": fixed, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }, indent=1) + "\n", encoding="utf-8")
    return 0


def _per_step(calls: dict[str, list[float]], faults: dict[str, list[int]], base: str, steps: int, schedule,
              report) -> dict:
    """Median toca call time at full and at partial steps as fractions of the median ``base``
    call, the average FLOPs fraction of a partial step (from the generation's totals), and the
    median minor page faults per call of each kind."""
    per_call = statistics.median(calls[base])
    is_full = [i % steps == 0 or schedule.is_full(i % steps) for i in range(len(calls["toca"]))]
    full = [t for t, f in zip(calls["toca"], is_full) if f]
    partial = [t for t, f in zip(calls["toca"], is_full) if not f]

    def median_faults(values: list[int]) -> float:
        return statistics.median(values) if values else float("nan")
    n_full = len(full) // max(1, len(calls["toca"]) // steps)
    n_partial = steps - n_full
    step_flops = report.uncached / steps
    partial_flops = (report.cached - n_full * step_flops) / max(1, n_partial) / step_flops
    return {"baseline_ms": per_call * 1e3, "full_time": statistics.median(full) / per_call if full else float("nan"),
            "partial_time": statistics.median(partial) / per_call if partial else float("nan"),
            "partial_flops": partial_flops, "full_steps": n_full, "partial_steps": n_partial,
            "baseline_faults": median_faults(faults.get(base, [])),
            "full_faults": median_faults([n for n, f in zip(faults.get("toca", []), is_full) if f]),
            "partial_faults": median_faults([n for n, f in zip(faults.get("toca", []), is_full) if not f])}


if __name__ == "__main__":
    sys.exit(main())
