"""Where the time of one model call goes: a full and a partial toca-compile call against a plain
``torch.compile`` call, kernel by kernel.

Both variants are compiled with Inductor's kernel profiling on (``cpp.enable_kernel_profile``, so
each generated C++ kernel shows up by name), warmed up, then ``--generations`` generations of each
run under ``torch.profiler`` with the chosen steps marked. For each marked call the table gives
the self time per call of every op, extern call and generated kernel under it, largest first
(the profiler adds a few microseconds per op; read the shares, not the sums). It also times the
runtime's own per-call work (``Specialization._prepare``: placing the call, deciding, picking
the variant) over the whole profiled run.

    python benchmarks/profile_calls.py                      # bundled MNIST DiT config, batch 40
    python benchmarks/profile_calls.py --full-step 3 --partial-step 1 --top 25
"""
from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import build, generation, materialize  # noqa: E402

from toca_compile import ToCa, ToCaConfig, runtime  # noqa: E402
from toca_compile.runtime import ToCaWarning  # noqa: E402


def _self_times(events, label: str) -> tuple[int, float, collections.Counter]:
    """(calls, mean total µs, self µs per call by name) of the events under ``label``."""
    acc: collections.Counter = collections.Counter()
    marked = [e for e in events if e.name == label]

    def walk(event) -> None:
        for child in event.cpu_children:
            acc[child.name] += child.self_cpu_time_total
            walk(child)
    for event in marked:
        acc["(Python around the call)"] += event.self_cpu_time_total
        walk(event)
    n = max(1, len(marked))
    return len(marked), sum(e.cpu_time_total for e in marked) / n, collections.Counter({k: v / n for k, v in acc.items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generations", type=int, default=5, help="profiled generations per variant")
    parser.add_argument("--full-step", type=int, default=3, help="a step the ToCa defaults compute in full")
    parser.add_argument("--partial-step", type=int, default=1, help="a partial step")
    parser.add_argument("--top", type=int, default=20, help="rows per table")
    args = parser.parse_args(argv)
    for name in ("full_step", "partial_step"):
        if not 0 <= getattr(args, name) < args.steps:
            parser.error(f"--{name.replace('_', '-')} must be in [0, {args.steps})")
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", ToCaWarning)
    import torch._inductor.config as inductor_config

    inductor_config.cpp.enable_kernel_profile = True
    factory, inputs, description = build("mnist", None)
    model = factory().eval()
    gen = torch.Generator().manual_seed(0)
    call_args, call_kwargs = (materialize(t, torch.device("cpu"), torch.float32, gen) for t in inputs(args.batch))
    toca = ToCa(ToCaConfig())
    if toca.schedule.is_full(args.partial_step) or not toca.schedule.is_full(args.full_step):
        parser.error(f"with the ToCa defaults step {args.full_step} must be full and step {args.partial_step} partial")
    variants = {"plain": (torch.compile(model, dynamic=False), None),
                "toca": (torch.compile(model, backend=toca.backend, dynamic=False), toca)}
    prepare_s: list[float] = []
    original = runtime.Specialization._prepare

    def timed_prepare(self, *a):
        start = time.perf_counter()
        try:
            return original(self, *a)
        finally:
            prepare_s.append(time.perf_counter() - start)

    with torch.no_grad():
        for fn, owner in variants.values():  # warm-up: every graph and variant compiled
            for _ in range(2):
                generation(fn, call_args, call_kwargs, args.steps, owner)
        runtime.Specialization._prepare = timed_prepare
        try:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(args.generations):
                    for name, (fn, owner) in variants.items():
                        generation(fn, call_args, call_kwargs, args.steps, owner,
                                   marks={args.full_step: f"{name} full", args.partial_step: f"{name} partial"})
        finally:
            runtime.Specialization._prepare = original
    events = prof.events()
    print(f"{description}, batch {args.batch}, {args.steps} steps, {args.threads} threads, torch {torch.__version__}; "
          f"self time per call (µs) under each marked call, {args.generations} generations")
    for label in ("plain full", "toca full", "toca partial"):
        n, total, table = _self_times(events, label)
        print(f"\n{label} (step {args.full_step if 'full' in label else args.partial_step}): {n} calls, "
              f"{total:.0f} µs per call")
        for name, us in table.most_common(args.top):
            print(f"  {us:9.1f}  {name[:110]}")
    print(f"\nruntime per call (Specialization._prepare, {len(prepare_s)} calls): median "
          f"{statistics.median(prepare_s) * 1e6:.0f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
