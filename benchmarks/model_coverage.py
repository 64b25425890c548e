"""Markdown table of the regions toca-compile finds in every diffusers model of the test zoo,
or (``--research-layouts``) in the research-code layouts of tests/test_research_layouts.py.

    python benchmarks/model_coverage.py
    python benchmarks/model_coverage.py --research-layouts
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import toca_compile  # noqa: E402
from architectures import ArchSpec, TinyDiT, make_inputs, timesteps  # noqa: E402
from diffusers_zoo import ZOO  # noqa: E402

_CROSS = dict(cross_attn=True)
#: (label, ArchSpec fields): the layouts tests/test_research_layouts.py pins, two blocks and 12
#: image tokens unless a layout says otherwise
RESEARCH_LAYOUTS: list[tuple[str, dict]] = [
    ("DiT block (SDPA, adaLN)", {}),
    ("DiT block, manual `softmax(QKᵀ)V`", dict(attention="manual")),
    ("cross-attention block (PixArt-like)", _CROSS),
    ("joint block (SD3 / FLUX double-stream-like)", dict(joint=True)),
    ("joint block with one MLP over `cat(text, image)` sliced back into the streams (CogVideoX-like)",
     dict(joint=True, shared_mlp=True)),
    ("parallel block (FLUX single-stream-like)", dict(parallel=True)),
    ("`nn.MultiheadAttention` self-attention", dict(attention="mha")),
    ("`nn.MultiheadAttention` cross-attention", dict(attention="mha", **_CROSS)),
    ("sequence-first stream `[N, B, C]`", dict(seq_first=True)),
    ("sequence-first stream with cross-attention", dict(seq_first=True, **_CROSS)),
    ("timestep read from a precomputed sin/cos table", dict(time_table=True)),
    ("adaLN gate inside a norm (cross-attention)", dict(gate_in_norm=True, **_CROSS)),
    ("post-norm without adaLN (cross-attention)", dict(post_norm=True, adaln=False, **_CROSS)),
    ("qk-norm (RMS over the head dim)", dict(qk_norm=True)),
    ("RoPE with cross-attention", dict(rope=True, **_CROSS)),
    ("RoPE with joint blocks", dict(rope=True, joint=True)),
    ("RoPE with parallel blocks", dict(rope=True, parallel=True)),
    ("grouped-query attention (1 kv head for 4 query heads, cross-attention)",
     dict(heads=4, kv_heads=1, **_CROSS)),
    ("bool key padding mask with SDPA (cross-attention)", dict(key_mask="bool", **_CROSS)),
    ("additive key padding mask with manual attention (cross-attention)",
     dict(key_mask="additive", attention="manual", **_CROSS)),
    ("4 register tokens in front of the image tokens", dict(registers=4)),
    ("two self-attention residuals per block", dict(two_attn=True)),
    ("one block module called twice (3 block calls)", dict(shared_block=True)),
    ("blocks returning a dict (cross-attention)", dict(block_output="dict", **_CROSS)),
    ("conv patch embedding, image in and out (16 tokens)", dict(wrapper=True, tokens=16, **_CROSS)),
    ("every research option at once", dict(heads=4, kv_heads=2, seq_first=True, time_table=True, gate_in_norm=True,
                                           qk_norm=True, rope=True, registers=1, block_output="dict", wrapper=True,
                                           **_CROSS)),
    ("graph break between blocks (cross-attention)", dict(graph_break="between", **_CROSS)),
    ("graph break inside each block (cross-attention, adaLN; one graph serves both blocks)",
     dict(graph_break="inside", tokens=6, **_CROSS)),
    ("graph break inside the block, sequence-first, adaLN (1 block)",
     dict(graph_break="inside", seq_first=True, depth=1, tokens=6)),
    ("graph break inside the block, no adaLN (1 block; the MLP's token axis cannot be told)",
     dict(graph_break="inside", adaln=False, depth=1, tokens=6)),
]


def _row(name: str, report) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(report.kinds().items())) or "none"
    # a graph after a graph break can serve several blocks: count its regions per call
    rows = sum(max(g.calls, 1) for g in report.graphs for p in g.plans if p.partial)
    reuse = sum(max(g.calls, 1) for g in report.graphs for p in g.plans if not p.partial)
    return f"| {name} | {len(report.graphs)} | {kinds} | {rows} | {reuse} |"


def diffusers_models():
    for name, entry in ZOO.items():
        model, args, kwargs = entry.build()
        yield name, model, args, kwargs


def research_layouts():
    for label, fields in RESEARCH_LAYOUTS:
        spec = ArchSpec(**{"tokens": 12, **fields})
        x, text = make_inputs(spec)
        yield label, TinyDiT(spec), (x, timesteps(spec, 1)[0], text), {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--research-layouts", action="store_true",
                        help="the research-code layouts of tests/test_research_layouts.py instead of diffusers' models")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    first = "layout" if args.research_layouts else "model"
    print(f"| {first} | graphs | regions found | refreshed per token | reused whole |")
    print("|---|---|---|---|---|")
    for name, model, margs, kwargs in (research_layouts() if args.research_layouts else diffusers_models()):
        torch._dynamo.reset()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = toca_compile.inspect(model, *margs, **kwargs)
        print(_row(name, report), flush=True)


if __name__ == "__main__":
    main()
