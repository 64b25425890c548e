"""GPU check: a whole generation under ``torch.cuda.set_sync_debug_mode("error")``.

With steps announced (``toca.generation()`` / ``toca.step(i)``, which is what
``toca_compile.apply`` does for a pipeline) the runtime never reads a device tensor, so a
generation must run without a single host-device synchronisation once every variant is compiled.
Also times the generation against plain ``torch.compile`` (interleaved rounds), since the
per-step sync was what made small calls slower than plain ``torch.compile`` before.

    python benchmarks/sync_check.py --model dit-xl-2 --layers 4 --batch 16 --out benchmarks/results/sync_h200.json

Needs a CUDA device; on a machine without one it says so and exits with status 2.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import DTYPES, build, generation, materialize  # noqa: E402

from toca_compile import ToCa, ToCaConfig  # noqa: E402
from toca_compile.flops.cli import MODELS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="dit-xl-2", choices=sorted(MODELS))
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this check needs a GPU", file=sys.stderr)
        return 2
    device, dtype = torch.device("cuda"), DTYPES[args.dtype]
    factory, template, desc = build(args.model, args.layers)
    torch.manual_seed(0)
    with torch.device(device):
        model = factory().to(dtype).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    call_args, call_kwargs = template(args.batch)
    call_args, call_kwargs = materialize(call_args, device, dtype, gen), materialize(call_kwargs, device, dtype, gen)
    toca = ToCa(ToCaConfig(preset=MODELS[args.model].preset))
    schedule_steps = toca.schedule.num_steps or args.steps
    fast = torch.compile(model, backend=toca.backend, dynamic=False)
    plain = torch.compile(model, dynamic=False)
    result: dict = {"model": desc, "layers": args.layers, "batch": args.batch, "steps": args.steps,
                    "dtype": args.dtype, "device": torch.cuda.get_device_name(device), "torch": torch.__version__}
    with torch.no_grad():
        generation(fast, call_args, call_kwargs, args.steps, toca)  # warm-up: every variant compiled
        generation(plain, call_args, call_kwargs, args.steps)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            generation(fast, call_args, call_kwargs, args.steps, toca)
            result["sync_free_generation"] = True
        except RuntimeError as error:
            result["sync_free_generation"] = False
            result["sync_error"] = str(error)[:2000]
        finally:
            torch.cuda.set_sync_debug_mode(0)
        times: dict[str, list[float]] = {"compiled": [], "toca": []}
        for _ in range(args.rounds):
            for name, fn, owner in (("compiled", plain, None), ("toca", fast, toca)):
                torch.cuda.synchronize()
                start = time.perf_counter()
                generation(fn, call_args, call_kwargs, args.steps, owner)
                torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in times.items()}
    result.update(times_s=times, median_s=median, speedup=median["compiled"] / median["toca"],
                  schedule_steps=schedule_steps, stats=str(toca.stats()).splitlines()[0],
                  command="python benchmarks/sync_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    print(json.dumps({k: v for k, v in result.items() if k != "times_s"}, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0 if result["sync_free_generation"] else 1


if __name__ == "__main__":
    sys.exit(main())
