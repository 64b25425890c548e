"""FLOPs of a whole generation per preset, uncached vs cached, as a Markdown table for the README.

Every model is built on the meta device from its published configuration (no weights, no
memory), traced by Dynamo once, and counted with ``toca_compile.flops.GenerationCounter``:
uncached = the traced graphs as they are; cached = the variants toca-compile runs (eager
executor, so every matmul / attention is seen by ``torch.utils.flop_counter``), including its
own token scoring and selection.

    python benchmarks/flops_table.py                    # all rows, table on stdout
    python benchmarks/flops_table.py --out flops.md     # also write the table to a file
    python benchmarks/flops_table.py --only flux-dev    # the rows of one model
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch

from toca_compile import ToCaConfig
from toca_compile.flops import GenerationCounter
from toca_compile.flops.cli import MODELS, same_inputs
from toca_compile.runtime import ToCaWarning

# (preset, model): the settings of the official ToCa code on the model each was written for,
# plus FORA on the same models for reference (on DiT as the official DiT code runs it)
ROWS: list[tuple[str, str]] = [
    ("dit-ddim-50", "dit-xl-2"),
    ("dit-ddpm-250", "dit-xl-2"),
    ("dit-fora-50", "dit-xl-2"),
    ("pixart-dpm-20", "pixart-alpha-256"),
    ("pixart-dpm-20", "pixart-alpha"),
    ("flux-50-n4", "flux-dev"),
    ("flux-50-n5", "flux-dev"),
    ("flux-50-n6", "flux-dev"),
    ("fora", "flux-dev"),
]

# The authors' published figures per row: (cached TFLOPs or None, FLOPs ratio or None, source).
# FLUX.1-dev: the FLOPs column of the FLUX table in the README of Shenyi-Z/ToCa at commit
# e84096ffd85af4540a6a1f64e3334e428e1b7377 (uncached 3719.50 TFLOPs there). PixArt-alpha: the
# paper's abstract (arXiv 2410.05317), "1.93x acceleration" (it does not say FLOPs or latency).
# Rows without an entry: no published figure found in the sources this project could read.
PUBLISHED: dict[tuple[str, str], tuple[float | None, float | None, str]] = {
    ("pixart-dpm-20", "pixart-alpha-256"): (None, 1.93, "1.93× (arXiv abstract)"),
    ("flux-50-n4", "flux-dev"): (1263.22, 2.94, "1263.22 (2.94×), ToCa4-01"),
    ("flux-50-n5", "flux-dev"): (1126.76, 3.30, "1126.76 (3.30×), ToCa5-01"),
    ("flux-50-n6", "flux-dev"): (990.30, 3.76, "990.30 (3.76×), ToCa6-01"),
    ("fora", "flux-dev"): (1320.07, 2.82, "1320.07 (2.82×), FORA3"),
}

# Rows whose published figure comes from code that runs the attention's output projection again
# on every token of every reused step (the authors' FLUX code, DoubleStreamBlock): counted also
# with ToCaConfig(attention_projection="recompute"), which does the same, beside our default.
AUTHORS_PROJECTION = {("flux-50-n4", "flux-dev"), ("flux-50-n5", "flux-dev"), ("flux-50-n6", "flux-dev"),
                      ("fora", "flux-dev")}

NOT_MEASURED = {
    "opensora-rflow-30": "OpenSora 1.2 (STDiT3) is not a diffusers model; not measured",
}

MODEL_LABELS = {
    "dit-xl-2": "DiT-XL/2 256² (256 tokens), batch 2 (CFG)",
    "pixart-alpha-256": "PixArt-α 256² (256 tokens + 120 text), batch 2 (CFG)",
    "pixart-alpha": "PixArt-α 1024² (4096 tokens + 120 text), batch 2 (CFG)",
    "flux-dev": "FLUX.1-dev 1024² (4096 + 512 tokens), batch 1",
}


def _published(preset: str, model: str, report, authors=None) -> str:
    """The published figure and our difference: cached FLOPs where published, else the ratio;
    with ``authors`` (the count with the authors' projection) its difference in parentheses."""
    if (preset, model) not in PUBLISHED:
        return "not found | —"
    tflops, ratio, label = PUBLISHED[(preset, model)]
    if tflops is not None:
        also = f" ({100 * (authors.cached / 1e12 / tflops - 1):+.1f}%)" if authors is not None else ""
        return f"{label} | {100 * (report.cached / 1e12 / tflops - 1):+.1f}%{also} FLOPs"
    return f"{label} | {100 * (report.ratio / ratio - 1):+.1f}% ratio"


def _command(preset: str, model: str, authors: bool = False) -> str:
    command = f"`toca flops --model {model} --preset {preset}`"
    return command + (" (`--recompute-attention-projection`)" if authors else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="also write the Markdown table to this file")
    parser.add_argument("--only", choices=sorted({m for _, m in ROWS}), help="rows of one model only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (meta tensors need none)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", ToCaWarning)

    lines = ["| preset | model | steps | uncached TFLOPs | cached TFLOPs | ratio | full / partial steps | "
             "variants | published cached TFLOPs | ours vs published | command |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    timings: list[str] = []
    models = [m for m in dict.fromkeys(m for _, m in ROWS) if args.only in (None, m)]
    for model in models:
        spec = MODELS[model]
        start = time.perf_counter()
        # the same input tensors at every step, as `toca flops` and a pipeline pass them (so the
        # text keys/values cached per generation count as they run: ToCaConfig.constant_kv)
        counter = GenerationCounter(spec.build, same_inputs(spec, spec.batch))
        for preset, row_model in ROWS:
            if row_model != model:
                continue
            t0 = time.perf_counter()
            report = counter.report(preset)
            authors = None
            cached, ratio = f"{report.cached / 1e12:.2f}", f"{report.ratio:.2f}×"
            if (preset, model) in AUTHORS_PROJECTION:
                authors = counter.report(ToCaConfig(preset=preset, compiler="eager",
                                                    attention_projection="recompute"))
                cached += f" ({authors.cached / 1e12:.2f} with the authors' projection)"
                ratio += f" ({authors.ratio:.2f}×)"
            elapsed = time.perf_counter() - t0
            lines.append(f"| {preset} | {MODEL_LABELS.get(model, model)} | {report.steps} | "
                         f"{report.uncached / 1e12:.2f} | {cached} | {ratio} | "
                         f"{len(report.full_steps)} / {len(report.partial_steps)} | {report.variants} | "
                         f"{_published(preset, model, report, authors)} | "
                         f"{_command(preset, model, authors is not None)} |")
            timings.append(f"{preset} on {model}: {elapsed:.0f} s (trace {report.seconds['trace']:.0f} s, "
                           f"uncached {report.seconds['uncached']:.0f} s, cached {report.seconds['cached']:.0f} s)")
            if report.fallbacks:
                timings.append(f"  uncached graphs: {report.fallbacks}")
            print(lines[-1], file=sys.stderr, flush=True)
        timings.append(f"{model} total: {time.perf_counter() - start:.0f} s")
    if args.only is None:
        for preset, why in NOT_MEASURED.items():
            lines.append(f"| {preset} | {why} | | | | | | | | | |")
    table = "\n".join(lines)
    print(table)
    print("\n" + "\n".join(timings), file=sys.stderr)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
