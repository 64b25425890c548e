"""``toca calibrate``: search a schedule under a FLOPs budget and write it as a schedule file.

    toca calibrate --model mnist --flops-ratio 3 --out mnist-3x.json
    toca calibrate --pipeline ./my-local-pipeline --prompt "a red fox" --prompt "a city at night" \\
        --steps 28 --flops-ratio 3 --out flux-3x.json

The file is then used with ``ToCaConfig.from_schedule_file("mnist-3x.json")``. A pipeline is
loaded from a local directory only (``local_files_only``): nothing is downloaded.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from .calibration import MODES


def add_calibrate_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("calibrate", help="search full steps under a FLOPs budget on a few generations and write a "
                                         "schedule file for ToCaConfig.from_schedule_file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", choices=["mnist"], help="the bundled MNIST DiT (DDIM, batched CFG)")
    what.add_argument("--pipeline", help="a diffusers pipeline saved in a local directory")
    p.add_argument("--flops-ratio", type=float, required=True, help="at least this many times fewer model FLOPs")
    p.add_argument("--steps", type=int, default=50, help="denoising steps of the generations to calibrate for")
    p.add_argument("--modes", default="taylorseer,fora", help=f"modes to try, comma-separated, from {', '.join(MODES)}")
    p.add_argument("--ratio", type=float, default=0.15, help="tokens refreshed per partial step in mode toca")
    p.add_argument("--early-weights", default="0,3,10",
                   help="weightings of early steps to plan with (each distinct plan is run and measured)")
    p.add_argument("--samples", type=int, default=20, help="--model mnist: digits generated (labels cycle 0-9)")
    p.add_argument("--guidance", type=float, default=3.0, help="--model mnist: classifier-free guidance scale")
    p.add_argument("--prompt", action="append", default=[], help="--pipeline: a prompt (repeat for more)")
    p.add_argument("--call-kwargs", default="{}", help="--pipeline: JSON of further pipeline arguments")
    p.add_argument("--seed", type=int, default=1000, help="seed of the calibration noise")
    p.add_argument("--out", required=True, help="the schedule file to write (JSON)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run_calibrate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    import torch  # noqa: PLC0415

    from .calibration import ModelRunner, PipelineRunner, calibrate  # noqa: PLC0415

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    try:
        early = [float(w) for w in args.early_weights.split(",") if w.strip()]
    except ValueError:
        parser.error(f"--early-weights must be numbers separated by commas, got {args.early_weights!r}")
    if any(m not in MODES for m in modes) or not modes:
        parser.error(f"--modes must name modes from {', '.join(MODES)}, got {args.modes!r}")
    if args.steps < 2 or args.samples < 1 or not args.flops_ratio >= 1.0:
        parser.error("--steps must be >= 2, --samples >= 1 and --flops-ratio >= 1")
    if args.model == "mnist":
        from .demo import zoo  # noqa: PLC0415

        model = zoo.load_mnist_dit()
        labels = torch.arange(args.samples) % 10
        runner: Any = ModelRunner(model, lambda fn: zoo.sample(fn, labels, steps=args.steps, guidance=args.guidance,
                                                               seed=args.seed, progress=False))
        describe = f"bundled MNIST DiT, DDIM {args.steps} steps, CFG {args.guidance}, {args.samples} digits"
    else:
        if not args.prompt:
            parser.error("--pipeline needs at least one --prompt")
        try:
            extra = json.loads(args.call_kwargs)
        except json.JSONDecodeError as error:
            parser.error(f"--call-kwargs is not JSON: {error}")
        from diffusers import DiffusionPipeline  # noqa: PLC0415

        try:
            pipe = DiffusionPipeline.from_pretrained(args.pipeline, local_files_only=True)
        except (OSError, ValueError) as error:
            parser.error(f"cannot load a pipeline from {args.pipeline!r} (local files only): {error}")
        pipe.set_progress_bar_config(disable=True)
        calls = [{"prompt": p, "num_inference_steps": args.steps, **extra} for p in args.prompt]
        runner = PipelineRunner(pipe, calls, seed=args.seed)
        describe = f"{type(pipe).__name__} from {args.pipeline}, {args.steps} steps, {len(calls)} prompts"
    try:
        result = calibrate(runner, steps=args.steps, flops_ratio=args.flops_ratio, modes=modes, ratio=args.ratio,
                           early_weights=early, progress=not args.no_progress, describe=describe)
    except ValueError as error:
        parser.error(str(error))
    for candidate in result.candidates:
        mark = "*" if candidate is result.best else " "
        print(f"{mark} {candidate.describe()}  full steps {list(candidate.full_steps)}")
    path = result.saved.write(args.out)
    print(f"wrote {path}: use ToCaConfig.from_schedule_file({str(path)!r})")
