"""Quality against FLOPs on the bundled MNIST DiT: caching methods vs. fewer sampling steps.

The comparison of the ToCa paper, run on our small model: the original sampler (50 DDIM steps,
uncached), the same sampler with fewer steps, FORA, ToCa at several (interval N, ratio r),
DuCa and TaylorSeer (orders 1 and 2). Every row generates the same digits from the same
initial noise (same seeds, balanced labels 0..9, classifier-free guidance at zoo.sample's
default), so that each image can be compared with its uncached 50-step counterpart:

* FLOPs per image: ``torch.utils.flop_counter`` on the graphs each row runs (cached rows:
  toca_compile.flops.counting on one batch after a warm-up batch; uncached rows: one model
  call times the step count); the ratio is original / row.
* PSNR and SSIM of each image against the uncached 50-step image from the same noise
  (mean ± std over images).
* classifier-FID: Fréchet distance between the features (``MNISTClassifier.features``) of the
  generated images and of the 10,000 MNIST test images; class accuracy: the classifier's
  argmax against the requested label.
* FID spread: the original is also run with ``--seeds`` - 1 further seed sets; the spread of
  its FID over the seed sets is the yardstick for the FID differences between rows.

Cached rows use ``ToCaConfig(compiler="eager")``: the rewritten FX graphs run as they are,
which builds quickly on a CPU and is what the FLOP counter sees (Inductor executes the same
graphs; its outputs agree with the eager executor's to ~1e-5).

    python benchmarks/quality.py                          # full run, results in benchmarks/results/
    python benchmarks/quality.py --samples 100 --seeds 2  # quicker, noisier
    python benchmarks/quality.py --rows original,toca-N3-r0.3 --samples 20 --batch 10   # smoke test

Needs torchmetrics, scipy and matplotlib (and the demo dependencies: diffusers, safetensors, tqdm).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from tqdm.auto import tqdm

from toca_compile import ToCa, ToCaConfig, metrics, zoo
from toca_compile.flops import count_flops, counting
from toca_compile.mnist import load_mnist
from toca_compile.runtime import ToCaWarning

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mnist"
DEFAULT_OUT = REPO / "benchmarks" / "results"
STEPS = 50


# -- the rows ------------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    family: str
    label: str
    steps: int = STEPS
    config: Optional[ToCaConfig] = None  # None: the plain model, uncached

    def describe(self) -> dict:
        out: dict = {"steps": self.steps}
        if self.config is not None:
            c = self.config
            out.update(mode=c.mode, interval=c.interval, ratio=c.ratio, score=c.score)
            if c.mode == "taylorseer":
                out["taylor_order"] = c.taylor_order
        return out


def _cfg(**kw) -> ToCaConfig:
    return ToCaConfig(compiler="eager", **kw)


ROWS: list[Row] = [
    Row("original", "original", "original, 50 steps"),
    Row("steps-25", "fewer steps", "25 steps", steps=25),
    Row("steps-20", "fewer steps", "20 steps", steps=20),
    Row("steps-17", "fewer steps", "17 steps", steps=17),
    Row("steps-13", "fewer steps", "13 steps", steps=13),
    Row("steps-10", "fewer steps", "10 steps", steps=10),
    Row("fora-N2", "FORA", "FORA N=2", config=_cfg(mode="fora", interval=2)),
    Row("fora-N3", "FORA", "FORA N=3", config=_cfg(mode="fora", interval=3)),
    Row("toca-N2-r0.3", "ToCa", "ToCa N=2 R=30%", config=_cfg(mode="toca", interval=2, ratio=0.3)),
    Row("toca-N3-r0.15", "ToCa", "ToCa N=3 R=15%", config=_cfg(mode="toca", interval=3, ratio=0.15)),
    Row("toca-N3-r0.3", "ToCa", "ToCa N=3 R=30%", config=_cfg(mode="toca", interval=3, ratio=0.3)),
    Row("toca-N4-r0.3", "ToCa", "ToCa N=4 R=30%", config=_cfg(mode="toca", interval=4, ratio=0.3)),
    # DuCa: ToCa steps alternating with aggressive (no block) steps, V-norm token scores
    Row("duca-N3", "DuCa", "DuCa N=3 R=30%", config=_cfg(mode="duca", interval=3, ratio=0.3, score="kvnorm")),
    Row("duca-N4", "DuCa", "DuCa N=4 R=30%", config=_cfg(mode="duca", interval=4, ratio=0.3, score="kvnorm")),
    Row("taylor1-N3", "TaylorSeer", "TaylorSeer O=1 N=3", config=_cfg(mode="taylorseer", interval=3, taylor_order=1)),
    Row("taylor1-N4", "TaylorSeer", "TaylorSeer O=1 N=4", config=_cfg(mode="taylorseer", interval=4, taylor_order=1)),
    Row("taylor2-N3", "TaylorSeer", "TaylorSeer O=2 N=3", config=_cfg(mode="taylorseer", interval=3, taylor_order=2)),
    Row("taylor2-N4", "TaylorSeer", "TaylorSeer O=2 N=4", config=_cfg(mode="taylorseer", interval=4, taylor_order=2)),
]

MARKERS = {"original": ("*", "black"), "fewer steps": ("o", "tab:gray"), "FORA": ("s", "tab:orange"),
           "ToCa": ("D", "tab:blue"), "DuCa": ("^", "tab:green"), "TaylorSeer": ("v", "tab:purple")}


# -- FLOP counting of the CPU attention kernel -------------------------------------------
def count_cpu_attention() -> None:
    """Attention on CPU tensors is counted by toca_compile.flops (importing it registers the formula)."""
    import toca_compile.flops  # noqa: F401, PLC0415


# -- generation --------------------------------------------------------------------------
@dataclass
class Generation:
    images: torch.Tensor
    flops_per_image: float
    seconds: float
    stats: dict = field(default_factory=dict)


def _batches(samples: int, batch: int) -> list[tuple[int, int]]:
    return [(i, min(i + batch, samples)) for i in range(0, samples, batch)]


def noise_seed(seed_set: int, batch_index: int) -> int:
    return 100_003 * seed_set + batch_index


def generate(model, row: Row, labels: torch.Tensor, batch: int, seed_set: int, guidance: float,
             position: str) -> Generation:
    """All images of one row for one seed set, plus its FLOPs per image."""
    spans = _batches(labels.numel(), batch)
    bar = tqdm(total=len(spans) * row.steps, desc=f"{position} {row.name:<14}", unit="step", leave=False,
               dynamic_ncols=True)
    step_cb = lambda i, t, x: bar.update(1)  # noqa: E731
    images: list[torch.Tensor] = []
    start = time.perf_counter()

    if row.config is None:  # uncached: the plain eager model
        fn = model
        for j, (a, b) in enumerate(spans):
            images.append(zoo.sample(fn, labels[a:b], steps=row.steps, guidance=guidance,
                                     seed=noise_seed(seed_set, j), progress=False, callback=step_cb))
        seconds = time.perf_counter() - start
        flops = _uncached_flops_per_image(model, labels[: spans[0][1]], guidance) * row.steps
        bar.close()
        return Generation(torch.cat(images), flops, seconds)

    torch._dynamo.reset()
    toca = ToCa(row.config)
    fast = torch.compile(model, backend=toca.backend, fullgraph=True, dynamic=False)
    counted: Optional[float] = None
    for j, (a, b) in enumerate(spans):
        toca.reset()
        if j == 1 and b - a == spans[0][1] - spans[0][0]:
            # the first batch compiled every variant; count this one (the counter cannot trace)
            with counting(toca) as sink:
                out = zoo.sample(fast, labels[a:b], steps=row.steps, guidance=guidance,
                                 seed=noise_seed(seed_set, j), progress=False, callback=step_cb)
            counted = sum(sink) / (b - a)
        else:
            out = zoo.sample(fast, labels[a:b], steps=row.steps, guidance=guidance,
                             seed=noise_seed(seed_set, j), progress=False, callback=step_cb)
        images.append(out)
    seconds = time.perf_counter() - start
    if counted is None:  # a single batch: count it again (same noise, same images)
        a, b = spans[0]
        toca.reset()
        with counting(toca) as sink:
            zoo.sample(fast, labels[a:b], steps=row.steps, guidance=guidance, seed=noise_seed(seed_set, 0),
                       progress=False)
        counted = sum(sink) / (b - a)
    stats = toca.stats()
    info = {"fallbacks": list(toca.fallbacks), "full_steps": stats.full_steps, "partial_steps": stats.partial_steps,
            "generations": stats.generations}
    bar.close()
    return Generation(torch.cat(images), counted, seconds, info)


def _uncached_flops_per_image(model, labels: torch.Tensor, guidance: float) -> float:
    """FLOPs of one denoising step per image (the same every step when nothing is cached)."""
    b = labels.numel()
    n = 2 * b if guidance > 1.0 else b
    x = torch.zeros(n, 1, zoo.IMAGE_SIZE, zoo.IMAGE_SIZE)
    y = torch.cat([labels, torch.full_like(labels, zoo.NULL_LABEL)]) if guidance > 1.0 else labels
    with torch.no_grad():
        return count_flops(lambda: model(x, timestep=torch.full((n,), 500), class_labels=y, return_dict=False)) / b


# -- metrics -----------------------------------------------------------------------------
class PairedFid:
    """Classifier-FID against a fixed reference set, fast enough to bootstrap.

    With the reference covariance R² fixed, tr((Σ R²)^½) = Σ sqrt(eig(R Σ R)) (a symmetric
    eigenproblem), so each resample costs one covariance and one eigvalsh. Agrees with
    :func:`toca_compile.metrics.frechet_distance` (scipy.linalg.sqrtm) to rounding.
    """

    def __init__(self, reference: torch.Tensor) -> None:
        ref = reference.double()
        self.mu = ref.mean(0)
        cov = torch.cov(ref.T)
        w, v = torch.linalg.eigh(cov)
        self.root = (v * w.clamp_min(0).sqrt()) @ v.T
        self.trace_ref = float(cov.trace())

    def fid(self, feats: torch.Tensor) -> float:
        feats = feats.double()
        mu, cov = feats.mean(0), torch.cov(feats.T)
        m = self.root @ cov @ self.root
        ev = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0)
        return float(((mu - self.mu) ** 2).sum() + cov.trace() + self.trace_ref - 2 * ev.sqrt().sum())

    def bootstrap_delta(self, feats: torch.Tensor, base: torch.Tensor, reps: int, seed: int = 0) -> list[float]:
        """FID(feats) - FID(base) over ``reps`` resamples of the image indices, the same indices for
        both (the rows share their noise, so image i of one row pairs with image i of the other)."""
        g = torch.Generator().manual_seed(seed)
        n = feats.shape[0]
        out = []
        for _ in range(reps):
            idx = torch.randint(n, (n,), generator=g)
            out.append(self.fid(feats[idx]) - self.fid(base[idx]))
        return out


def _mean_std(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    return float(values.mean()), float(values.std()) if values.numel() > 1 else 0.0


def evaluate(images: torch.Tensor, labels: torch.Tensor, reference: Optional[torch.Tensor],
             ref_features: torch.Tensor, classifier) -> dict:
    feats = metrics.classifier_features(images, classifier)
    out = {"fid": metrics.frechet_distance(feats, ref_features),
           "accuracy": metrics.class_accuracy(images, labels, classifier), "_features": feats}
    if reference is not None:
        p, s = metrics.psnr(images, reference), metrics.ssim(images, reference)
        finite = p[torch.isfinite(p)]
        out.update(psnr_mean=_mean_std(finite)[0] if finite.numel() else math.inf,
                   psnr_std=_mean_std(finite)[1] if finite.numel() else 0.0,
                   psnr_identical=int((~torch.isfinite(p)).sum()),
                   ssim_mean=_mean_std(s)[0], ssim_std=_mean_std(s)[1],
                   psnr=[round(float(v), 4) if math.isfinite(float(v)) else None for v in p], ssim=[round(float(v), 6) for v in s])
    return out


# -- output ------------------------------------------------------------------------------
def _fmt_pm(mean: float, std: float, digits: int) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(results: list[dict], spread: dict, meta: dict) -> str:
    base = next(r for r in results if r["name"] == "original")
    yard = spread["fid_range"]
    lines = [
        f"Bundled MNIST DiT ({meta['model']}); {meta['samples']} images per row "
        f"(labels 0-9 balanced, the same initial noise in every row), DDIM, CFG {meta['guidance']}. "
        "A small model: these numbers say how the methods behave on it, not on DiT-XL/2.",
        "",
        "| method | steps | GFLOPs / image | FLOPs ratio | PSNR vs original (dB) | SSIM vs original | "
        "classifier-FID | ΔFID vs original | accuracy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        is_base = r["name"] == "original"
        psnr = "—" if is_base else _fmt_pm(r["psnr_mean"], r["psnr_std"], 2)
        ssim = "—" if is_base else _fmt_pm(r["ssim_mean"], r["ssim_std"], 4)
        if not is_base:
            delta, sd = r["fid_delta"], r["fid_delta_boot_std"]
            mark = ("*" if abs(delta) > yard else "") + ("†" if abs(delta) > 2 * sd else "")
            delta_s = f"{delta:+.2f} ± {sd:.2f}{' ' + mark if mark else ''}"
        lines.append(
            f"| {r['label']} | {r['steps']} | {r['flops_per_image'] / 1e9:.3f} | {r['flops_ratio']:.2f}× | {psnr} | "
            f"{ssim} | {r['fid']:.2f} | {'—' if is_base else delta_s} | {r['accuracy'] * 100:.1f}% |")
    fids = ", ".join(f"{v:.2f}" for v in spread["fid"])
    accs = ", ".join(f"{v * 100:.1f}%" for v in spread["accuracy"])
    lines += [
        "",
        f"Seed-to-seed spread of the original (50 steps, uncached) over {len(spread['fid'])} disjoint seed sets of "
        f"{meta['samples']} images: classifier-FID {fids} (mean {spread['fid_mean']:.2f}, std {spread['fid_std']:.2f}, "
        f"range {spread['fid_range']:.2f}); accuracy {accs}. `*` marks an FID difference larger than that range. "
        f"The rows share their noise, so the difference between a row and the original is much less noisy than "
        f"this unpaired spread: ± is the standard deviation of the difference over {spread['bootstrap_reps']} paired "
        "bootstrap resamples of the images (the same image indices in both rows), and `†` marks a difference larger "
        "than twice it. FID also carries a finite-sample bias that is the same for every row (equal image counts).",
        "",
        f"PSNR and SSIM: mean ± standard deviation over the {meta['samples']} images (the standard error of a "
        f"mean is that std / √{meta['samples']}); the original row is the reference (identical images).",
        "",
        f"FLOPs: `torch.utils.flop_counter` (matmuls, convolutions, attention; CPU fused attention counted with the "
        f"formula torch uses for the CUDA kernels) per image for one whole generation with CFG (two model inputs per "
        f"image per step), including toca-compile's token scoring. FLOPs ratio = original / row. Cached rows run "
        f"the rewritten graphs with `ToCaConfig(compiler=\"eager\")` (quick to build on a CPU and visible to the "
        f"FLOP counter; Inductor runs the same graphs, outputs agree to ~1e-5). DuCa uses the V-norm score "
        f"(`score=\"kvnorm\"`); ToCa the attention score; TaylorSeer forecasts every branch on partial steps.",
        "",
        f"Command: `{meta['command']}` ({meta['threads']} thread{'s' if meta['threads'] != 1 else ''}, {meta['wall_minutes']:.1f} min wall clock on "
        f"{meta['machine']}, torch {meta['torch']}).",
    ]
    return "\n".join(lines)


def plot(results: list[dict], spread: dict, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    panels = [("fid", "classifier-FID vs MNIST test (lower is better; bars: paired bootstrap std of ΔFID)"),
              ("psnr_mean", "PSNR vs original, dB (higher is better)")]
    for ax, (key, title) in zip(axes, panels):
        seen = set()
        for r in results:
            if key == "psnr_mean" and r["name"] == "original":
                continue
            marker, color = MARKERS[r["family"]]
            label = r["family"] if r["family"] not in seen else None
            seen.add(r["family"])
            ax.scatter(r["flops_ratio"], r[key], marker=marker, color=color, s=70 if marker != "*" else 160,
                       label=label, zorder=3)
            if key == "fid" and "fid_delta_boot_std" in r:  # paired bootstrap std of the difference
                ax.errorbar(r["flops_ratio"], r[key], yerr=r["fid_delta_boot_std"], color=color, lw=1, capsize=2,
                            zorder=2)
            short = r["label"].replace("TaylorSeer ", "TS ").replace("original, 50 steps", "original")
            ax.annotate(short, (r["flops_ratio"], r[key]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if key == "fid":
            lo, hi = min(spread["fid"]), max(spread["fid"])
            ax.axhspan(lo, hi, color="black", alpha=0.08, label=f"original, {len(spread['fid'])} seed sets")
        for fam in ("fewer steps",):  # connect the fewer-steps baseline
            pts = sorted((r["flops_ratio"], r[key]) for r in results
                         if (r["family"] == fam or (r["name"] == "original" and key == "fid")) and key in r)
            if pts:
                ax.plot(*zip(*pts), color=MARKERS[fam][1], lw=1, ls="--", zorder=2)
        ax.set_xlabel("FLOPs ratio (original / method, ×)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Bundled MNIST DiT (0.59M parameters, 49 tokens): quality vs FLOPs", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def compact_json(obj) -> str:
    """Indented JSON with every innermost list (the per-image values) on one line."""
    import re  # noqa: PLC0415

    text = json.dumps(obj, indent=1)
    return re.sub(r"\[[^\[\]{}]*\]", lambda m: json.dumps(json.loads(m.group(0))), text) + "\n"


# -- main --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=500, help="images per row (a multiple of 10: balanced labels)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="seed sets for the FID spread of the original (every other row uses seed set 0)")
    parser.add_argument("--batch", type=int, default=100,
                        help="images per model call (the call's batch is twice this with CFG)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for quality.md / .json / .png")
    parser.add_argument("--guidance", type=float, default=None, help="CFG scale (default: zoo.sample's)")
    parser.add_argument("--rows", default=None, help=f"comma-separated subset of: {', '.join(r.name for r in ROWS)}")
    parser.add_argument("--dit", type=Path, default=None, help="DiT weights (default: the bundled asset)")
    parser.add_argument("--random-weights", action="store_true", help="untrained DiT (a smoke test of the script)")
    parser.add_argument("--bootstrap", type=int, default=200,
                        help="paired bootstrap resamples for the uncertainty of each FID difference")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="rebuild quality.md and quality.png from an earlier quality.json (no sampling)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MNIST folder (idx.gz files + SHA256SUMS)")
    args = parser.parse_args(argv)
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        table = markdown(saved["rows"], saved["fid_spread"], saved["meta"])
        print(table)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "quality.md").write_text(table + "\n", encoding="utf-8")
        plot(saved["rows"], saved["fid_spread"], args.out / "quality.png")
        return 0
    if args.samples < 10 or args.samples % 10:
        parser.error("--samples must be a positive multiple of 10 (balanced labels)")
    if args.seeds < 1 or args.batch < 1:
        parser.error("--seeds and --batch must be >= 1")
    rows = ROWS
    if args.rows:
        wanted = [n.strip() for n in args.rows.split(",") if n.strip()]
        unknown = sorted(set(wanted) - {r.name for r in ROWS})
        if unknown:
            parser.error(f"unknown rows {unknown}")
        rows = [r for r in ROWS if r.name in wanted or r.name == "original"]  # the original is the reference

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", ToCaWarning)
    count_cpu_attention()
    guidance = args.guidance
    if guidance is None:
        import inspect  # noqa: PLC0415

        guidance = float(inspect.signature(zoo.sample).parameters["guidance"].default)
    t_start = time.perf_counter()

    if args.random_weights:
        from diffusers import DiTTransformer2DModel  # noqa: PLC0415

        torch.manual_seed(0)
        model = DiTTransformer2DModel(**zoo.MNIST_DIT_CONFIG).eval().requires_grad_(False)
        model_desc = "random weights"
    else:
        model = zoo.load_mnist_dit(path=args.dit)
        model_desc = f"{args.dit or 'toca_compile/assets/' + zoo.DIT_ASSET}"
    n_params = sum(p.numel() for p in model.parameters())
    model_desc = f"diffusers DiTTransformer2DModel, {n_params / 1e6:.2f}M parameters, 7x7 = 49 tokens, {model_desc}"
    classifier = zoo.load_mnist_classifier()
    test_images, _ = load_mnist(args.data, "test")
    ref_features = metrics.classifier_features(test_images, classifier)
    labels = torch.arange(args.samples) % zoo.NUM_CLASSES

    paired = PairedFid(ref_features)
    results: list[dict] = []
    reference: Optional[torch.Tensor] = None
    base_features: Optional[torch.Tensor] = None
    total = len(rows) + args.seeds - 1
    for i, row in enumerate(rows):
        gen = generate(model, row, labels, args.batch, 0, guidance, f"[{i + 1}/{total}]")
        if row.name == "original":
            reference = gen.images
        scores = evaluate(gen.images, labels, None if row.name == "original" else reference, ref_features, classifier)
        feats = scores.pop("_features")
        if row.name == "original":
            base_features = feats
        else:
            deltas = torch.tensor(paired.bootstrap_delta(feats, base_features, args.bootstrap), dtype=torch.float64)
            scores.update(fid_delta=scores["fid"] - results[0]["fid"], fid_delta_boot_std=float(deltas.std()),
                          fid_delta_boot_ci95=[float(deltas.quantile(0.025)), float(deltas.quantile(0.975))])
        results.append({"name": row.name, "family": row.family, "label": row.label, **row.describe(),
                        "flops_per_image": gen.flops_per_image, "seconds": gen.seconds, **gen.stats, **scores})
        r = results[-1]
        extra = "" if row.name == "original" else (f", PSNR {r['psnr_mean']:.2f} dB, SSIM {r['ssim_mean']:.4f}, "
                                                   f"dFID {r['fid_delta']:+.2f} ± {r['fid_delta_boot_std']:.2f}")
        tqdm.write(f"{row.name}: {gen.flops_per_image / 1e9:.3f} GFLOPs/image, FID {r['fid']:.2f}, "
                   f"accuracy {r['accuracy'] * 100:.1f}%{extra} ({gen.seconds:.0f} s, "
                   f"{(time.perf_counter() - t_start) / 60:.1f} min so far)", file=sys.stderr)
    base_flops = results[0]["flops_per_image"]
    for r in results:
        r["flops_ratio"] = base_flops / r["flops_per_image"]

    spread_fid = [results[0]["fid"]]
    spread_acc = [results[0]["accuracy"]]
    for s in range(1, args.seeds):
        gen = generate(model, rows[0], labels, args.batch, s, guidance, f"[{len(rows) + s}/{total}]")
        scores = evaluate(gen.images, labels, None, ref_features, classifier)
        spread_fid.append(scores["fid"])
        spread_acc.append(scores["accuracy"])
        tqdm.write(f"original, seed set {s}: FID {scores['fid']:.2f}, accuracy {scores['accuracy'] * 100:.1f}%",
                   file=sys.stderr)
    fid_t = torch.tensor(spread_fid, dtype=torch.float64)
    spread = {"fid": spread_fid, "accuracy": spread_acc, "fid_mean": float(fid_t.mean()),
              "fid_std": float(fid_t.std()) if len(spread_fid) > 1 else 0.0,
              "fid_range": float(fid_t.max() - fid_t.min()), "bootstrap_reps": args.bootstrap}

    wall = time.perf_counter() - t_start
    cmd = "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {"model": model_desc, "samples": args.samples, "batch": args.batch, "guidance": guidance,
            "seeds": args.seeds, "threads": args.threads, "wall_minutes": wall / 60, "command": cmd.strip(),
            "machine": f"{platform.machine()} CPU", "torch": torch.__version__, "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "noise_seed": "zoo.sample(seed=100003 * seed_set + batch_index)", "reference": "MNIST test, 10000 images"}
    table = markdown(results, spread, meta)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.md").write_text(table + "\n", encoding="utf-8")
    (args.out / "quality.json").write_text(compact_json({"meta": meta, "fid_spread": spread, "rows": results}),
                                           encoding="utf-8")
    plot(results, spread, args.out / "quality.png")
    print(f"\nwrote {args.out / 'quality.md'}, quality.json, quality.png ({wall / 60:.1f} min)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
