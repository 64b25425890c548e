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
* FID spread: every row runs on ``--seeds`` disjoint seed sets. The spread of the original's
  FID over the seed sets is the yardstick for the FID differences between rows; each row's
  ΔFID is taken against the original on the same seed set (same noise) and averaged.

Cached rows use ``ToCaConfig(compiler="eager")``: the rewritten FX graphs run as they are,
which builds quickly and is what the FLOP counter sees (Inductor executes the same graphs; its
outputs agree with the eager executor's to ~1e-5). ``quality.json`` is rewritten after every
(row, seed set), so a run stopped part-way keeps what it finished; ``--from-json`` rebuilds the
table and plot from one or more such files (runs of the same settings merge).

    python benchmarks/quality.py --device cuda --samples 10000 --batch 5000 --seeds 3   # the README's table
    python benchmarks/quality.py --samples 500 --seeds 3        # CPU: much slower, and too noisy to rank
    python benchmarks/quality.py --seeds 1 --first-seed-set 1 --out q1   # one process per seed set; merge
                                                                          # with --from-json q0/... q1/...
    python benchmarks/quality.py --rows original,toca-N3-r0.3 --samples 20 --batch 10 --seeds 1   # smoke test

``--model mnist-p2`` runs the same rows on the second bundled DiT (patch 2: 196 tokens instead of
49) and writes quality_p2.md / .json / .png; the calibrated rows are left out there (their schedules
were calibrated on the 49-token model).

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

from toca_compile import ToCa, ToCaConfig
from toca_compile.demo import metrics, zoo
from toca_compile.demo.mnist import load_mnist
from toca_compile.flops import count_flops, counting
from toca_compile.runtime import ToCaWarning

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mnist"
DEFAULT_OUT = REPO / "benchmarks" / "results"
STEPS = 50
# --model: the bundled DiT variant (zoo.DIT_VARIANTS) and the stem of the result files
MODELS: dict[str, tuple[str, str]] = {"mnist": ("p4", "quality"), "mnist-p2": ("p2", "quality_p2")}


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
            if c.warmup > 1:
                out["warmup"] = c.warmup
            if c.schedule_file is not None:
                out["schedule_file"] = Path(c.schedule_file).name
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
    Row("taylor1-N3-w3", "TaylorSeer", "TaylorSeer O=1 N=3, 3 warm-up",
        config=_cfg(mode="taylorseer", interval=3, taylor_order=1, warmup=3)),
    # schedules from `toca calibrate` shipped with the model (calibrated on other noise than these rows')
    *[Row(f"calibrated-{r:g}x", "calibrated", f"calibrated {r:g}×",
          config=ToCaConfig.from_schedule_file(path, compiler="eager"))
      for r, path in zoo.mnist_schedule_files().items()],
]

MARKERS = {"original": ("*", "black"), "fewer steps": ("o", "tab:gray"), "FORA": ("s", "tab:orange"),
           "ToCa": ("D", "tab:blue"), "DuCa": ("^", "tab:green"), "TaylorSeer": ("v", "tab:purple"), "calibrated": ("P", "tab:red")}


# -- generation --------------------------------------------------------------------------
@dataclass
class Generation:
    images: torch.Tensor
    seconds: float
    stats: dict = field(default_factory=dict)


def _batches(samples: int, batch: int) -> list[tuple[int, int]]:
    return [(i, min(i + batch, samples)) for i in range(0, samples, batch)]


def noise_seed(seed_set: int, batch_index: int) -> int:
    return 100_003 * seed_set + batch_index


class Runner:
    """Generates one row's images; a cached row is traced and rewritten once and reused for every
    seed set (``toca.reset()`` between generations). FLOPs per image are counted on the first
    generation: on its second batch when it has one of full size (the first compiled every
    variant), else by generating the first batch again."""

    def __init__(self, model, row: Row, batch: int, guidance: float) -> None:
        self.model, self.row, self.batch, self.guidance = model, row, batch, guidance
        self.flops_per_image: Optional[float] = None
        self.toca: Optional[ToCa] = None
        self.fn = model
        if row.config is not None:
            torch._dynamo.reset()
            self.toca = ToCa(row.config)
            self.fn = torch.compile(model, backend=self.toca.backend, fullgraph=True, dynamic=False)

    def _sample(self, labels: torch.Tensor, seed: int, callback=None) -> torch.Tensor:
        if self.toca is not None:
            self.toca.reset()
        return zoo.sample(self.fn, labels, steps=self.row.steps, guidance=self.guidance, seed=seed, progress=False,
                          callback=callback)

    def _counted(self, labels: torch.Tensor, seed: int, callback=None) -> tuple[torch.Tensor, float]:
        if self.toca is None:
            out = self._sample(labels, seed, callback)
            return out, _uncached_flops_per_image(self.model, labels, self.guidance) * self.row.steps
        with counting(self.toca) as sink:
            out = self._sample(labels, seed, callback)
        return out, sum(sink) / labels.numel()

    def generate(self, labels: torch.Tensor, seed_set: int, position: str) -> Generation:
        spans = _batches(labels.numel(), self.batch)
        bar = tqdm(total=len(spans) * self.row.steps, desc=f"{position} {self.row.name:<14}", unit="step",
                   leave=False, dynamic_ncols=True)
        step_cb = lambda i, t, x: bar.update(1)  # noqa: E731
        images: list[torch.Tensor] = []
        start = time.perf_counter()
        for j, (a, b) in enumerate(spans):
            seed = noise_seed(seed_set, j)
            if self.flops_per_image is None and j == 1 and b - a == spans[0][1] - spans[0][0]:
                out, self.flops_per_image = self._counted(labels[a:b], seed, step_cb)
            else:
                out = self._sample(labels[a:b], seed, step_cb)
            images.append(out)
        seconds = time.perf_counter() - start
        if self.flops_per_image is None:  # a single batch: count it again (same noise, same images)
            a, b = spans[0]
            _, self.flops_per_image = self._counted(labels[a:b], noise_seed(seed_set, 0))
        bar.close()
        info = {}
        if self.toca is not None:
            stats = self.toca.stats()
            info = {"fallbacks": list(self.toca.fallbacks), "full_steps": stats.full_steps,
                    "partial_steps": stats.partial_steps}
        return Generation(torch.cat(images), seconds, info)


def _uncached_flops_per_image(model, labels: torch.Tensor, guidance: float) -> float:
    """FLOPs of one denoising step per image (the same every step when nothing is cached)."""
    b = labels.numel()
    n = 2 * b if guidance > 1.0 else b
    device = next(model.parameters()).device
    x = torch.zeros(n, 1, zoo.IMAGE_SIZE, zoo.IMAGE_SIZE, device=device)  # both bundled DiTs: 28x28 pixels
    y = torch.cat([labels, torch.full_like(labels, zoo.NULL_LABEL)]) if guidance > 1.0 else labels
    t = torch.full((n,), 500, device=device)
    with torch.no_grad():
        return count_flops(lambda: model(x, timestep=t, class_labels=y.to(device), return_dict=False)) / b


# -- metrics -----------------------------------------------------------------------------
class PairedFid:
    """Classifier-FID against a fixed reference set, fast enough to bootstrap.

    With the reference covariance R² fixed, tr((Σ R²)^½) = Σ sqrt(eig(R Σ R)) (a symmetric
    eigenproblem), so each resample costs one covariance and one eigvalsh. Agrees with
    :func:`toca_compile.demo.metrics.frechet_distance` (scipy.linalg.sqrtm) to rounding.
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


def _moments(values: torch.Tensor) -> dict:
    """Count, sum and sum of squares: per-seed-set records pool exactly into a mean and std."""
    v = values.double()
    return {"n": int(v.numel()), "sum": float(v.sum()), "sumsq": float((v * v).sum())}


def _pooled(parts: list[dict]) -> tuple[float, float]:
    n = sum(p["n"] for p in parts)
    if n == 0:
        return math.inf, 0.0
    mean = sum(p["sum"] for p in parts) / n
    var = max(sum(p["sumsq"] for p in parts) / n - mean * mean, 0.0) * n / max(n - 1, 1)
    return mean, math.sqrt(var)


def evaluate(images: torch.Tensor, labels: torch.Tensor, reference: Optional[torch.Tensor],
             ref_features: torch.Tensor, classifier) -> dict:
    """Scores of one row on one seed set; PSNR/SSIM as moments so seed sets pool exactly."""
    feats = metrics.classifier_features(images, classifier)
    out = {"fid": metrics.frechet_distance(feats, ref_features),
           "accuracy": metrics.class_accuracy(images, labels, classifier), "_features": feats}
    if reference is not None:
        p, s = metrics.psnr(images, reference), metrics.ssim(images, reference)
        finite = torch.isfinite(p)
        out.update(psnr=_moments(p[finite]), psnr_identical=int((~finite).sum()), ssim=_moments(s))
    return out


def score_seed_set(name: str, seed_set: int, gen: Generation, flops_per_image: float, labels: torch.Tensor,
                   references: dict, ref_features: torch.Tensor, classifier, paired: "PairedFid",
                   bootstrap: int) -> tuple[dict, float]:
    """The record of one row on one seed set, and the original's FID on that seed set. The
    original (``name == "original"``) is stored in ``references`` for the rows after it."""
    is_base = name == "original"
    ref_images, ref_feats, ref_fid = references.get(seed_set, (None, None, math.nan))
    scores = evaluate(gen.images, labels, None if is_base else ref_images, ref_features, classifier)
    feats = scores.pop("_features")
    rec = {"name": name, "seed_set": seed_set, "flops_per_image": flops_per_image, "seconds": gen.seconds,
           **gen.stats, **scores}
    if is_base:
        references[seed_set] = (gen.images, feats, scores["fid"])
    elif bootstrap > 0:
        deltas = torch.tensor(paired.bootstrap_delta(feats, ref_feats, bootstrap), dtype=torch.float64)
        rec["fid_delta_boot_std"] = float(deltas.std())
    return rec, ref_fid


def summarize(records: list[dict], rows: list[Row]) -> tuple[list[dict], dict]:
    """Per-row table entries and the seed-to-seed spread, from per-(row, seed set) records.

    A partial run (stopped part-way) summarizes the seed sets it finished for each row.
    """
    by_row: dict[str, dict[int, dict]] = {}
    for rec in records:
        by_row.setdefault(rec["name"], {})[rec["seed_set"]] = rec
    base = by_row.get("original", {})
    results = []
    for row in rows:
        recs = by_row.get(row.name)
        if not recs:
            continue
        seeds = sorted(recs)
        fids = torch.tensor([recs[k]["fid"] for k in seeds], dtype=torch.float64)
        first = recs[seeds[0]]
        r = {"name": row.name, "family": row.family, "label": row.label, **row.describe(),
             "flops_per_image": first["flops_per_image"], "seed_sets": seeds, "fid_per_seed": fids.tolist(),
             "fid": float(fids.mean()), "fid_std": float(fids.std()) if len(seeds) > 1 else 0.0,
             "accuracy": float(sum(recs[k]["accuracy"] for k in seeds) / len(seeds)),
             "accuracy_per_seed": [recs[k]["accuracy"] for k in seeds],
             "seconds": float(sum(recs[k]["seconds"] for k in seeds))}
        for key in ("fallbacks", "full_steps", "partial_steps"):
            if key in first:
                r[key] = first[key]
        if row.name != "original":
            paired = [k for k in seeds if k in base]
            deltas = torch.tensor([recs[k]["fid"] - base[k]["fid"] for k in paired], dtype=torch.float64)
            r.update(
                fid_delta_per_seed=deltas.tolist(), fid_delta=float(deltas.mean()) if paired else math.nan,
                fid_delta_seed_std=float(deltas.std()) if len(paired) > 1 else 0.0,
                fid_delta_boot_std=float(sum(recs[k].get("fid_delta_boot_std", math.nan) for k in paired)
                                         / max(len(paired), 1)))
            # the uncertainty shown for ΔFID: its spread over seed sets, or the bootstrap with one seed set
            r["fid_delta_err"] = r["fid_delta_seed_std"] if len(paired) > 1 else r["fid_delta_boot_std"]
            r["psnr_mean"], r["psnr_std"] = _pooled([recs[k]["psnr"] for k in seeds])
            r["ssim_mean"], r["ssim_std"] = _pooled([recs[k]["ssim"] for k in seeds])
            r["psnr_identical"] = sum(recs[k]["psnr_identical"] for k in seeds)
        results.append(r)
    if results and results[0]["name"] == "original":
        base_flops = results[0]["flops_per_image"]
        for r in results:
            r["flops_ratio"] = base_flops / r["flops_per_image"]
    orig = results[0] if results and results[0]["name"] == "original" else None
    fid_t = torch.tensor(orig["fid_per_seed"] if orig else [math.nan], dtype=torch.float64)
    spread = {"fid": fid_t.tolist(), "accuracy": orig["accuracy_per_seed"] if orig else [],
              "fid_mean": float(fid_t.mean()), "fid_std": float(fid_t.std()) if fid_t.numel() > 1 else 0.0,
              "fid_range": float(fid_t.max() - fid_t.min())}
    return results, spread


# -- output ------------------------------------------------------------------------------
def _fmt_pm(mean: float, std: float, digits: int) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(results: list[dict], spread: dict, meta: dict) -> str:
    yard = spread["fid_range"]
    n_seeds = len(spread["fid"])
    lines = [
        f"{_model_title(meta)} ({meta['model']}); {meta['samples']} images per row and seed set, {n_seeds} seed "
        f"set{'s' if n_seeds != 1 else ''} (labels 0-9 balanced; within a seed set every row starts from the same "
        f"noise), DDIM, CFG {meta['guidance']}. A small model: these numbers say how the methods behave on it, "
        "not on DiT-XL/2.",
        "",
        "| method | steps | GFLOPs / image | FLOPs ratio | PSNR vs original (dB) | SSIM vs original | "
        "classifier-FID | ΔFID vs original | accuracy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        is_base = r["name"] == "original"
        psnr = "—" if is_base else _fmt_pm(r["psnr_mean"], r["psnr_std"], 2)
        ssim = "—" if is_base else _fmt_pm(r["ssim_mean"], r["ssim_std"], 4)
        fid = _fmt_pm(r["fid"], r["fid_std"], 2) if len(r["fid_per_seed"]) > 1 else f"{r['fid']:.2f}"
        delta_s = "—"
        if not is_base:
            delta = r["fid_delta"]
            mark = "*" if abs(delta) > yard else ""
            delta_s = f"{delta:+.2f} ± {r['fid_delta_err']:.2f}{' ' + mark if mark else ''}"
        lines.append(
            f"| {r['label']} | {r['steps']} | {r['flops_per_image'] / 1e9:.3f} | {r['flops_ratio']:.2f}× | {psnr} | "
            f"{ssim} | {fid} | {delta_s} | {r['accuracy'] * 100:.1f}% |")
    fids = ", ".join(f"{v:.2f}" for v in spread["fid"])
    accs = ", ".join(f"{v * 100:.1f}%" for v in spread["accuracy"])
    n_marked = sum(1 for r in results if r["name"] != "original" and abs(r["fid_delta"]) > yard)
    lines += [
        "",
        f"**Seed-to-seed spread.** The original (50 steps, uncached) over {n_seeds} disjoint seed sets of "
        f"{meta['samples']} images: classifier-FID {fids} (std {spread['fid_std']:.2f}, range {spread['fid_range']:.2f}); "
        f"accuracy {accs}. `*` marks a ΔFID larger than that range: {n_marked} of {len(results) - 1} rows. "
        "classifier-FID is the mean ± std over the seed sets; ΔFID is the row's FID minus the original's on the same "
        "seed set (same noise), mean ± std over the seed sets"
        + (f" (one seed set: ± is the std over {meta['bootstrap']} paired bootstrap resamples of the images)."
           if n_seeds == 1 else "."),
        "",
        f"PSNR and SSIM: mean ± standard deviation over all {meta['samples'] * n_seeds} images, each against the "
        "original's image from the same noise (the standard error of a mean is that std / √count).",
        "",
        "FLOPs: `torch.utils.flop_counter` (matmuls, convolutions, attention) per image for one whole generation "
        "with CFG (two model inputs per image per step), including toca-compile's token scoring. FLOPs ratio = "
        "original / row. Cached rows run the rewritten graphs with `ToCaConfig(compiler=\"eager\")` (quick to "
        "build and visible to the FLOP counter; Inductor runs the same graphs, outputs agree to ~1e-5). DuCa uses "
        "the V-norm score (`score=\"kvnorm\"`); ToCa the attention score; TaylorSeer forecasts every branch on "
        "partial steps.",
        "",
        f"Command: `{meta['command']}` ({meta['wall_minutes']:.1f} min "
        + (f"summed over the {meta['merged_runs']} merged runs" if meta.get("merged_runs", 1) > 1 else "wall clock")
        + f" on {meta['machine']}, torch {meta['torch']}).",
    ]
    return "\n".join(lines)


def _model_title(meta: dict) -> str:
    return "Bundled MNIST DiT" if meta.get("model_name", "mnist") == "mnist" else "Bundled MNIST DiT, patch 2"


def plot(results: list[dict], spread: dict, path: Path, model_title: str) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    panels = [("fid", "classifier-FID vs MNIST test (lower is better; bars: std of ΔFID over seed sets)"),
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
            if key == "fid" and "fid_delta" in r:  # uncertainty of the paired difference
                ax.errorbar(r["flops_ratio"], r[key], yerr=r["fid_delta_err"], color=color, lw=1, capsize=2,
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
    fig.suptitle(f"{model_title}: quality vs FLOPs", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def compact_json(obj) -> str:
    """Indented JSON with every innermost list (the per-image values) on one line."""
    import re  # noqa: PLC0415

    text = json.dumps(obj, indent=1)
    return re.sub(r"\[[^\[\]{}]*\]", lambda m: json.dumps(json.loads(m.group(0))), text) + "\n"


# -- main --------------------------------------------------------------------------------
def result_stem(meta: dict) -> str:
    """The result files' name without suffix: quality (49-token DiT) or quality_p2 (196 tokens)."""
    return MODELS[meta.get("model_name", "mnist")][1]  # runs from before --model: the 49-token DiT


def _write(out: Path, records: list[dict], rows: list[Row], meta: dict, final: bool) -> str:
    """<stem>.json always (so a stopped run keeps what it finished); .md and .png at the end."""
    results, spread = summarize(records, rows)
    out.mkdir(parents=True, exist_ok=True)
    stem = result_stem(meta)
    payload = {"meta": meta, "fid_spread": spread, "rows": results, "records": records}
    (out / f"{stem}.json").write_text(compact_json(payload), encoding="utf-8")
    if not final:
        return ""
    table = markdown(results, spread, meta)
    (out / f"{stem}.md").write_text(table + "\n", encoding="utf-8")
    short = meta["model"].split(", ")
    plot(results, spread, out / f"{stem}.png", f"{_model_title(meta)} ({', '.join(short[1:3])})")
    return table


def merge_runs(runs: list[dict]) -> tuple[list[dict], dict]:
    """Records of several runs with the same settings (e.g. a run stopped part-way and one of the
    rows it missed), one record per (row, seed set). Each run carries its own original row; the
    originals must agree, else the PSNR/SSIM of the runs are against different references."""
    keys = ("samples", "guidance", "model", "model_name", "device")
    first = runs[0]["meta"]
    records: dict[tuple[str, int], dict] = {}
    for run in runs:
        if any(run["meta"].get(k) != first.get(k) for k in keys):
            raise SystemExit(f"--from-json: runs differ in {[k for k in keys if run['meta'].get(k) != first.get(k)]}")
        for rec in run["records"]:
            key = (rec["name"], rec["seed_set"])
            if key in records:
                if key[0] == "original" and abs(records[key]["fid"] - rec["fid"]) > 1e-6:
                    raise SystemExit(f"--from-json: the original of seed set {key[1]} differs between runs "
                                     f"(FID {records[key]['fid']:.6f} vs {rec['fid']:.6f})")
                continue
            records[key] = rec
    meta = dict(first)
    if len(runs) > 1:
        meta["command"] = " && ".join(r["meta"]["command"] for r in runs)
        meta["wall_minutes"] = sum(r["meta"]["wall_minutes"] for r in runs)
        meta["merged_runs"] = len(runs)  # they may have run at the same time: the minutes are a sum
    return list(records.values()), meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=500,
                        help="images per row and seed set (a multiple of 10: balanced labels)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="disjoint seed sets; every row runs on each (the FID spread is measured over them)")
    parser.add_argument("--first-seed-set", type=int, default=0,
                        help="index of the first seed set (its noise seeds); with --from-json, runs that took "
                             "different seed sets merge, so each process can take its own without a second original")
    parser.add_argument("--batch", type=int, default=100,
                        help="images per model call (the call's batch is twice this with CFG)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--device", default="cpu", help="torch device for the models (cpu, cuda, ...)")
    parser.add_argument("--model", choices=sorted(MODELS), default="mnist",
                        help="bundled DiT: mnist (patch 4, 49 tokens; writes quality.*) or mnist-p2 (patch 2, "
                             "196 tokens; writes quality_p2.*)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder for quality.md / .json / .png (quality_p2.* with --model mnist-p2)")
    parser.add_argument("--guidance", type=float, default=None, help="CFG scale (default: zoo.sample's)")
    parser.add_argument("--rows", default=None, help=f"comma-separated subset of: {', '.join(r.name for r in ROWS)}")
    parser.add_argument("--dit", type=Path, default=None, help="DiT weights (default: the bundled asset)")
    parser.add_argument("--random-weights", action="store_true", help="untrained DiT (a smoke test of the script)")
    parser.add_argument("--bootstrap", type=int, default=None,
                        help="paired bootstrap resamples for the uncertainty of each FID difference "
                             "(default: 200 with one seed set, else 0: the seed sets give the uncertainty)")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None,
                        help="rebuild quality.md and quality.png from earlier (possibly partial) quality.json files; "
                             "several runs of the same settings merge (each needs the original row)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MNIST folder (idx.gz files + SHA256SUMS)")
    args = parser.parse_args(argv)
    if args.from_json:
        records, meta = merge_runs([json.loads(path.read_text(encoding="utf-8")) for path in args.from_json])
        names = {rec["name"] for rec in records}
        print(_write(args.out, records, [r for r in ROWS if r.name in names], meta, final=True))
        return 0
    if args.samples < 10 or args.samples % 10:
        parser.error("--samples must be a positive multiple of 10 (balanced labels)")
    if args.seeds < 1 or args.batch < 1:
        parser.error("--seeds and --batch must be >= 1")
    if args.first_seed_set < 0:
        parser.error("--first-seed-set must be >= 0")
    if args.bootstrap is None:
        args.bootstrap = 200 if args.seeds == 1 else 0
    variant = zoo.dit_variant(MODELS[args.model][0])
    # the shipped schedules were calibrated on the 49-token DiT: no calibrated rows for another model
    available = [r for r in ROWS if args.model == "mnist" or r.family != "calibrated"]
    rows = available
    if args.rows:
        wanted = [n.strip() for n in args.rows.split(",") if n.strip()]
        unknown = sorted(set(wanted) - {r.name for r in available})
        if unknown:
            parser.error(f"unknown rows {unknown}" + ("" if args.model == "mnist" else
                         f" (--model {args.model} has no calibrated rows: their schedules are the 49-token DiT's)"))
        rows = [r for r in available if r.name in wanted or r.name == "original"]  # the original is the reference
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device is available")
        # full fp32 on the GPU too: TF32 would add its own error to every row's PSNR
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", ToCaWarning)
    guidance = zoo.GUIDANCE if args.guidance is None else args.guidance
    t_start = time.perf_counter()

    if args.random_weights:
        from diffusers import DiTTransformer2DModel  # noqa: PLC0415

        torch.manual_seed(0)
        model = DiTTransformer2DModel(**variant.config).eval().requires_grad_(False).to(device)
        model_desc = "random weights"
    else:
        model = zoo.load_mnist_dit(path=args.dit, device=device, variant=variant.name)
        model_desc = f"{args.dit or 'toca_compile/demo/assets/' + variant.asset}"
    n_params = sum(p.numel() for p in model.parameters())
    side = zoo.IMAGE_SIZE // variant.config["patch_size"]
    model_desc = (f"diffusers DiTTransformer2DModel, {n_params / 1e6:.2f}M parameters, "
                  f"{side}x{side} = {variant.tokens} tokens, {model_desc}")
    classifier = zoo.load_mnist_classifier(device=device)
    test_images, _ = load_mnist(args.data, "test")
    ref_features = metrics.classifier_features(test_images, classifier)
    labels = torch.arange(args.samples) % zoo.NUM_CLASSES
    paired = PairedFid(ref_features)

    cmd = "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = (f"{torch.cuda.get_device_name(device)}" if device.type == "cuda"
               else f"{platform.machine()} CPU, {args.threads} thread{'s' if args.threads != 1 else ''}")
    meta = {"model": model_desc, "model_name": args.model, "samples": args.samples, "batch": args.batch,
            "guidance": guidance, "seeds": args.seeds, "threads": args.threads, "device": str(device), "wall_minutes": 0.0,
            "command": cmd.strip(), "machine": machine, "torch": torch.__version__,
            "python": platform.python_version(), "bootstrap": args.bootstrap,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "noise_seed": "zoo.sample(seed=100003 * seed_set + batch_index)", "reference": "MNIST test, 10000 images"}

    records: list[dict] = []
    references: dict[int, tuple[torch.Tensor, torch.Tensor, float]] = {}  # seed set -> original's images, features, FID
    total = len(rows) * args.seeds
    done = 0
    for row in rows:  # rows outermost: each is traced and rewritten once, then runs every seed set
        is_base = row.name == "original"
        runner = Runner(model, row, args.batch, guidance)
        for seed_set in range(args.first_seed_set, args.first_seed_set + args.seeds):
            done += 1
            gen = runner.generate(labels, seed_set, f"[{done}/{total}]")
            rec, ref_fid = score_seed_set(row.name, seed_set, gen, runner.flops_per_image, labels, references,
                                          ref_features, classifier, paired, args.bootstrap)
            records.append(rec)
            meta["wall_minutes"] = (time.perf_counter() - t_start) / 60
            _write(args.out, records, rows, meta, final=False)
            extra = "" if is_base else (
                f", dFID {rec['fid'] - ref_fid:+.2f}, "
                f"PSNR {_pooled([rec['psnr']])[0]:.2f} dB, SSIM {_pooled([rec['ssim']])[0]:.4f}")
            tqdm.write(f"{row.name} seed set {seed_set}: {runner.flops_per_image / 1e9:.3f} GFLOPs/image, "
                       f"FID {rec['fid']:.2f}, accuracy {rec['accuracy'] * 100:.1f}%{extra} "
                       f"({gen.seconds:.1f} s, {meta['wall_minutes']:.1f} min so far)", file=sys.stderr)

    meta["wall_minutes"] = (time.perf_counter() - t_start) / 60
    table = _write(args.out, records, rows, meta, final=True)
    print(table)
    stem = result_stem(meta)
    print(f"\nwrote {args.out / stem}.md, {stem}.json, {stem}.png ({meta['wall_minutes']:.1f} min)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
