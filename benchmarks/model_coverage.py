"""Markdown table of the regions toca-compile finds in every diffusers model of the test zoo.

    python benchmarks/model_coverage.py
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import toca_compile  # noqa: E402
from diffusers_zoo import ZOO  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    print("| model | graphs | regions found | refreshed per token | reused whole |")
    print("|---|---|---|---|---|")
    for name, entry in ZOO.items():
        torch._dynamo.reset()
        model, args, kwargs = entry.build()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = toca_compile.inspect(model, *args, **kwargs)
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(report.kinds().items())) or "none"
        # a graph after a graph break can serve several blocks: count its regions per call
        rows = sum(max(g.calls, 1) for g in report.graphs for p in g.plans if p.partial)
        reuse = sum(max(g.calls, 1) for g in report.graphs for p in g.plans if not p.partial)
        print(f"| {name} | {len(report.graphs)} | {kinds} | {rows} | {reuse} |", flush=True)


if __name__ == "__main__":
    main()
