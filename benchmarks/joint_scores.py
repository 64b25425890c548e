"""Joint-attention token scores against random selection, on the bundled joint-attention MNIST model.

In SD3/FLUX-style blocks the text and image tokens are attended together; toca-compile gives
the MLP regions of such blocks the ToCa "attention received" score read from the joint
attention (the stream's own rows and columns). This script asks whether that score beats a
random selection at the same cost, on ``zoo.load_mnist_joint()`` (an SD3Transformer2DModel,
49 image tokens + 4 label tokens, trained by examples/train_mnist_joint.py):

* rows: the uncached original (DDIM 50 steps, CFG at zoo.sample's default), then ToCa N=3 and
  N=4, R=30%, each with ``score="attention"`` (the joint score) and ``score="random"``;
  ``ToCaConfig(compiler="eager")`` through ``torch.compile(transformer, backend=ToCa(config).backend)``
  (the label table stays outside the compiled transformer).
* every row generates the same digits from the same noise as the original (quality.py's seeds);
  PSNR and SSIM of each image against the original's image from the same noise, and the paired
  difference attention - random per image (same noise, same labels), mean ± its standard error.
* FLOPs per image with toca_compile.flops (quality.py's Runner: one counted batch), so each
  attention row and its random twin can be compared at (nearly) equal FLOPs: the attention score
  costs its own estimate on full steps, random costs nothing.
* the score each region used, read from the rewritten graphs (``attention`` / ``random`` per
  region kind), and the step counts (full / partial) and refreshed tokens per partial call: proof
  that the rows cached and selected as labelled.

    python benchmarks/joint_scores.py --samples 100 --seeds 2 --threads 1     # the README's table
    python benchmarks/joint_scores.py --samples 4 --steps 6 --random-weights  # smoke test

Writes joint_scores.md and joint_scores.json into --out (default benchmarks/results/).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import platform
import sys
import time
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from toca_compile import ToCa, ToCaConfig
from toca_compile.demo import metrics, zoo
from toca_compile.runtime import ToCaWarning


def _load_quality():
    """benchmarks/quality.py (a plain script beside this one), loaded by path as peers.py does."""
    name = "bench_quality"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().with_name("quality.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


quality = _load_quality()
Row = quality.Row
DEFAULT_OUT = quality.DEFAULT_OUT
IMAGE_TOKENS = (zoo.IMAGE_SIZE // zoo.MNIST_JOINT_CONFIG["patch_size"]) ** 2


# Random selection at the ratio whose FLOPs match the attention row's (the attention score costs an
# estimate on every full step, random selection costs nothing): measured on this model, DDIM 50,
# one refreshed token of 49 adds ~1.5-2% of a partial step.
MATCHED_RATIO = {3: 0.36, 4: 0.34}


def rows(steps: int, intervals: tuple[int, ...] = (3, 4), matched: dict | None = None) -> list:
    matched = MATCHED_RATIO if matched is None else matched

    def cfg(interval: int, ratio: float, score: str) -> ToCaConfig:
        return ToCaConfig(mode="toca", interval=interval, ratio=ratio, score=score, compiler="eager")

    out = [Row("original", "original", f"original, {steps} steps", steps=steps)]
    for n in intervals:
        for score in ("attention", "random"):
            out.append(Row(f"toca-N{n}-r0.3-{score}", "ToCa", f"ToCa N={n} R=30%, {score}", steps=steps,
                           config=cfg(n, 0.3, score)))
        if n in matched:
            r = matched[n]
            out.append(Row(f"toca-N{n}-r{r:g}-random", "ToCa", f"ToCa N={n} R={r * 100:g}%, random (FLOPs-matched)",
                           steps=steps, config=cfg(n, r, "random")))
    return out


class JointRunner(quality.Runner):
    """quality.Runner, but compiling only the transformer of a :class:`zoo.JointMNIST`."""

    def __init__(self, model: zoo.JointMNIST, row, batch: int, guidance: float) -> None:
        super().__init__(model, replace(row, config=None), batch, guidance)
        self.row = row
        if row.config is not None:
            torch._dynamo.reset()
            self.toca = ToCa(row.config)
            compiled = torch.compile(model.transformer, backend=self.toca.backend, fullgraph=True, dynamic=False)
            self.fn = zoo.JointMNIST(compiled, model.conditioning)

    def scores_used(self) -> dict:
        """``{region kind: {score kind: regions}}`` over the token-wise regions of the rewritten graphs."""
        out: dict[str, Counter] = {}
        for entry in self.toca.graphs:
            for spec in entry.specs.values():
                analysis = getattr(spec, "analysis", None)
                for plan in (analysis.plans if analysis is not None else ()):
                    if plan.partial and plan.score is not None:
                        out.setdefault(plan.region.kind, Counter())[plan.score.kind] += 1
        return {k: dict(v) for k, v in sorted(out.items())}


def inspect_scores(model: zoo.JointMNIST) -> dict:
    """``toca_compile.inspect`` on the transformer: region kind -> score kind -> regions (the
    default config, i.e. the attention score), with the joint stream offsets of the MLPs."""
    import toca_compile  # noqa: PLC0415

    labels = torch.tensor([1, zoo.NULL_LABEL])
    context, pooled = model.conditioning(labels)
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = toca_compile.inspect(model.transformer, hidden_states=torch.zeros(2, 1, 28, 28),
                                      encoder_hidden_states=context, pooled_projections=pooled,
                                      timestep=torch.full((2,), 500), return_dict=False)
    kinds: dict[str, Counter] = {}
    mlps = []
    for graph in report.graphs:
        for plan in graph.plans:
            if plan.partial and plan.score is not None:
                kinds.setdefault(plan.region.kind, Counter())[plan.score.kind] += 1
                if plan.region.kind == "mlp":
                    mlps.append({"region": plan.region.label, "tokens": plan.region.tokens, "score": plan.score.kind,
                                 "offset": plan.score.offset, "span": plan.score.span})
    return {"kinds": {k: dict(v) for k, v in sorted(kinds.items())}, "mlp_regions": mlps}


def _paired(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a - b).double()
    n = d.numel()
    std = float(d.std()) if n > 1 else 0.0
    return {"mean": float(d.mean()), "std": std, "sem": std / math.sqrt(n) if n else math.nan,
            "wins": int((d > 0).sum()), "n": n}


def _fmt(mean: float, std: float, digits: int) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(table: list[dict], pairs: list[dict], meta: dict) -> str:
    lines = [
        f"Joint-attention score vs random selection on {meta['model']}: DDIM {meta['steps']} steps, CFG "
        f"{meta['guidance']}, {meta['samples']} images × {meta['seeds']} seed set(s) = {meta['images']} images per row, "
        "each compared with the uncached image from the same noise.",
        "",
        "| method | score used by the MLP regions | GFLOPs / image | FLOPs ratio | PSNR vs original (dB) | "
        "SSIM vs original | accuracy | steps full / partial | refreshed / partial call (image MLP) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        base = r["name"] == "original"
        used = "—" if base else ", ".join(f"{k} ×{v}" for k, v in r["scores_used"].get("mlp", {}).items())
        psnr = "—" if base else _fmt(r["psnr_mean"], r["psnr_std"], 2)
        ssim = "—" if base else _fmt(r["ssim_mean"], r["ssim_std"], 4)
        steps = "—" if base else f"{r['full_steps']} / {r['partial_steps']}"
        refreshed = "—" if base else f"{r['image_mlp_refreshed']:.1f} of {r['image_tokens']}"
        lines.append(f"| {r['label']} | {used} | {r['flops_per_image'] / 1e9:.4f} | {r['flops_ratio']:.3f}× | {psnr} | "
                     f"{ssim} | {r['accuracy'] * 100:.1f}% | {steps} | {refreshed} |")
    lines += ["", "Paired difference attention − random (same noise, same labels; mean ± standard error over the "
              "images, and the per-image std):", "",
              "| setting | FLOPs attention / random | ΔPSNR (dB) | per-image std (dB) | attention better | ΔSSIM |",
              "|---|---|---|---|---|---|"]
    for p in pairs:
        lines.append(f"| {p['setting']} | {p['flops_ratio']:.4f} | {p['psnr']['mean']:+.3f} ± {p['psnr']['sem']:.3f} | "
                     f"{p['psnr']['std']:.3f} | {p['psnr']['wins']} / {p['psnr']['n']} | "
                     f"{p['ssim']['mean']:+.4f} ± {p['ssim']['sem']:.4f} |")
    lines += ["", f"Command: `{meta['command']}` ({meta['wall_minutes']:.1f} min on {meta['machine']}, "
              f"torch {meta['torch']}).",
              "`toca_compile.inspect` on the transformer (default config): region kind → score → regions: "
              f"{json.dumps(meta['inspect']['kinds'])}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100, help="images per seed set (balanced labels 0..9)")
    parser.add_argument("--seeds", type=int, default=2, help="disjoint seed sets (noise), quality.py's seeds")
    parser.add_argument("--batch", type=int, default=50, help="images per model call (twice that with CFG)")
    parser.add_argument("--steps", type=int, default=quality.STEPS, help="DDIM steps of every row")
    parser.add_argument("--intervals", default="3,4", help="ToCa intervals N, one attention/random pair each")
    parser.add_argument("--no-matched", action="store_true",
                        help="leave out the FLOPs-matched random rows (random at MATCHED_RATIO)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--guidance", type=float, default=None, help="CFG scale (default: zoo.sample's)")
    parser.add_argument("--weights", type=Path, default=None, help="joint model weights (default: the bundled asset)")
    parser.add_argument("--random-weights", action="store_true", help="untrained model (a smoke test of the script)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for joint_scores.md / .json")
    args = parser.parse_args(argv)
    if args.samples < 1 or args.seeds < 1 or args.batch < 1 or args.steps < 1:
        parser.error("--samples, --seeds, --batch and --steps must be >= 1")
    try:
        intervals = tuple(int(v) for v in args.intervals.split(",") if v.strip())
    except ValueError:
        parser.error(f"--intervals must be comma-separated integers, got {args.intervals!r}")
    if not intervals or min(intervals) < 2:
        parser.error("--intervals needs intervals >= 2")
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", ToCaWarning)
    guidance = zoo.GUIDANCE if args.guidance is None else args.guidance
    t_start = time.perf_counter()
    if args.random_weights:
        torch.manual_seed(0)
        model = zoo.make_mnist_joint().eval().requires_grad_(False)
        source = "random weights"
    else:
        model = zoo.load_mnist_joint(path=args.weights)
        source = str(args.weights or f"toca_compile/demo/assets/{zoo.JOINT_ASSET}")
    n_params = sum(p.numel() for p in model.parameters())
    classifier = zoo.load_mnist_classifier()
    labels = torch.arange(args.samples) % zoo.NUM_CLASSES
    cmd = "python benchmarks/joint_scores.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {"model": f"diffusers SD3Transformer2DModel (joint attention), {n_params / 1e6:.2f}M parameters, "
                     f"49 image + {zoo.JOINT_CONTEXT_TOKENS} label tokens, {source}",
            "samples": args.samples, "seeds": args.seeds, "images": args.samples * args.seeds, "steps": args.steps,
            "guidance": guidance, "batch": args.batch, "threads": args.threads, "command": cmd.strip(),
            "machine": f"{platform.machine()} CPU, {args.threads} thread{'s' if args.threads != 1 else ''}",
            "torch": torch.__version__, "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "noise_seed": "zoo.sample(seed=100003 * seed_set + batch_index)"}
    meta["inspect"] = inspect_scores(model)

    references: dict[int, torch.Tensor] = {}
    per_image: dict[str, dict[str, torch.Tensor]] = {}
    table: list[dict] = []
    matched = {} if args.no_matched else MATCHED_RATIO
    for row in rows(args.steps, intervals, matched):
        runner = JointRunner(model, row, args.batch, guidance)
        images, psnr, ssim, seconds = [], [], [], 0.0
        for seed_set in range(args.seeds):
            gen = runner.generate(labels, seed_set, f"[{row.name}]")
            seconds += gen.seconds
            images.append(gen.images)
            if row.config is None:
                references[seed_set] = gen.images
            else:
                p = metrics.psnr(gen.images, references[seed_set])
                psnr.append(torch.where(torch.isfinite(p), p, torch.full_like(p, 100.0)))  # identical: cap at 100 dB
                ssim.append(metrics.ssim(gen.images, references[seed_set]))
        all_images = torch.cat(images)
        rec = {"name": row.name, "label": row.label, **row.describe(), "flops_per_image": runner.flops_per_image,
               "seconds": round(seconds, 1),
               "accuracy": metrics.class_accuracy(all_images, labels.repeat(args.seeds), classifier)}
        if row.config is not None:
            p, s = torch.cat(psnr), torch.cat(ssim)
            per_image[row.name] = {"psnr": p, "ssim": s}
            stats = runner.toca.stats()
            image_mlps = [r for r in stats.regions if r.kind == "mlp" and r.mode == "rows" and r.tokens == IMAGE_TOKENS]
            rec.update(psnr_mean=float(p.mean()), psnr_std=float(p.std()) if p.numel() > 1 else 0.0,
                       ssim_mean=float(s.mean()), ssim_std=float(s.std()) if s.numel() > 1 else 0.0,
                       scores_used=runner.scores_used(), full_steps=stats.full_steps,
                       partial_steps=stats.partial_steps, fallbacks=list(runner.toca.fallbacks),
                       image_tokens=IMAGE_TOKENS,
                       image_mlp_refreshed=(sum(r.tokens_refreshed for r in image_mlps)
                                            / max(1, sum(r.partial_calls for r in image_mlps))
                                            / (2 * args.batch)),  # per image row (the CFG batch is 2 x batch)
                       per_image_psnr=[round(float(v), 3) for v in p])
        table.append(rec)
        print(f"{row.name}: {runner.flops_per_image / 1e9:.4f} GFLOPs/image"
              + ("" if row.config is None else f", PSNR {rec['psnr_mean']:.2f} dB, SSIM {rec['ssim_mean']:.4f}, "
                 f"scores {rec['scores_used']}, full/partial {rec['full_steps']}/{rec['partial_steps']}")
              + f" ({seconds:.0f} s)", file=sys.stderr, flush=True)
    base = table[0]["flops_per_image"]
    for rec in table:
        rec["flops_ratio"] = base / rec["flops_per_image"]
    by_name = {r["name"]: r for r in table}
    pairs = []
    for n in intervals:
        att = f"toca-N{n}-r0.3-attention"
        twins = [(f"N={n}, R=30% both", f"toca-N{n}-r0.3-random")]
        if n in matched:
            twins.append((f"N={n}, attention R=30% vs random R={matched[n] * 100:g}% (FLOPs-matched)",
                          f"toca-N{n}-r{matched[n]:g}-random"))
        for setting, rnd in twins:
            pairs.append({"setting": setting,
                          "flops_ratio": by_name[att]["flops_per_image"] / by_name[rnd]["flops_per_image"],
                          "psnr": _paired(per_image[att]["psnr"], per_image[rnd]["psnr"]),
                          "ssim": _paired(per_image[att]["ssim"], per_image[rnd]["ssim"])})
    meta["wall_minutes"] = (time.perf_counter() - t_start) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(table, pairs, meta)
    (args.out / "joint_scores.md").write_text(text + "\n", encoding="utf-8")
    (args.out / "joint_scores.json").write_text(
        quality.compact_json({"meta": meta, "rows": table, "pairs": pairs}), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
