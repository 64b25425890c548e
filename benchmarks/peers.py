"""toca-compile against the caching libraries a user would pick instead, on the bundled MNIST DiT.

Every row generates the same digits from the same initial noise with the same sampler
(``zoo.sample``: DDIM, 50 steps, batched CFG), so each image can be compared with its uncached
counterpart. The rows:

* toca-compile: each mode (ToCa, FORA, DuCa, TaylorSeer orders 1 and 2), from ``TOCA_ROWS``
  below (one ``ToCaConfig`` per line; append a line to add a row).
* diffusers' cache hooks (``diffusers.hooks``): TaylorSeer, SeaCache, MagCache (calibrated with
  its own calibration mode on noise no row uses), First-Block Cache, Pyramid Attention Broadcast,
  FasterCache. ``DiTTransformer2DModel`` has no ``enable_cache`` (it is not a ``CacheMixin``), so
  the hooks are applied with the ``apply_*`` functions, and the denoiser wrapper sets the hooks'
  ``CacheContext`` before every call, as a diffusers pipeline does.
* cache-dit (``pip install cache-dit==1.5.3``): DBCache F1B0, with and without its TaylorSeer
  calibrator. Reported as unavailable when cache-dit is not installed.

Settings are chosen for about 2x and 3x fewer FLOPs; where a peer cannot get there (or cannot be
applied at all), the table has a row that says why.

Per row:

* FLOPs per image: ``torch.utils.flop_counter`` (matmuls, convolutions, attention; the CPU
  attention kernel through ``toca_compile.flops.cpu_attention_formula``) over the denoiser calls of whole
  generations; peers: every call of every quality generation (their decisions depend on the
  data); toca-compile: ``toca_compile.flops.counting`` on the rewritten graphs, as in
  quality.py. FLOPs ratio = uncached / row. FFTs (SeaCache's filter, FasterCache) are not
  counted by the counter.
* PSNR / SSIM against the uncached image from the same noise; classifier-FID against the MNIST
  test set with its seed-to-seed spread (``--seeds`` disjoint noise sets; quality.py's machinery).
* Wall clock per generation (``--timing-batch`` images, after warm-up, every variant in turn for
  ``--timing-rounds`` rounds, ratio of medians) as a speed-up over plain ``torch.compile`` of the
  uncached model: peers eager and under ``torch.compile`` (default Inductor; graph breaks and
  frames dynamo gave up on are reported), toca-compile with its Inductor compiler.

    python benchmarks/peers.py --samples 100 --seeds 2 --threads 1      # this 2-core CPU, ~35 min
    python benchmarks/peers.py --rows 'original,ds-fbcache-*,toca-fora-N2' --samples 10 --batch 10 --seeds 1 --no-timing

Needs the bench extra (``pip install -e ".[bench]"``: diffusers, cache-dit, torchmetrics, scipy,
matplotlib, tqdm).
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import dataclasses
import datetime
import fnmatch
import io
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from toca_compile import ToCa, ToCaConfig
from toca_compile.demo import metrics, zoo
from toca_compile.demo.mnist import load_mnist
from toca_compile.flops import cpu_attention_formula
from toca_compile.runtime import ToCaWarning


def _load_quality():
    """benchmarks/quality.py (a plain script beside this one): rows, runner, metrics, seed sets.
    Loaded by path under the name the tests use, without touching sys.path."""
    import importlib.util  # noqa: PLC0415

    name = "bench_quality"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().with_name("quality.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules[name]


quality = _load_quality()

STEPS = quality.STEPS
DEFAULT_OUT = quality.DEFAULT_OUT

# -- toca-compile rows: (name, label, config); append a line to add a row --------------------
# The quality rows run the rewritten graphs with compiler="eager" (what the FLOP counter sees);
# the timing rows run the same config with compiler="inductor".
TOCA_ROWS: list[tuple[str, str, ToCaConfig]] = [
    ("toca-fora-N2", "FORA N=2", ToCaConfig(mode="fora", interval=2)),
    ("toca-fora-N3", "FORA N=3", ToCaConfig(mode="fora", interval=3)),
    ("toca-N3-r0.3", "ToCa N=3 R=30%", ToCaConfig(mode="toca", interval=3, ratio=0.3)),
    ("toca-N4-r0.15", "ToCa N=4 R=15%", ToCaConfig(mode="toca", interval=4, ratio=0.15)),
    ("toca-duca-N3", "DuCa N=3 R=30%", ToCaConfig(mode="duca", interval=3, ratio=0.3, score="kvnorm")),
    ("toca-duca-N4", "DuCa N=4 R=30%", ToCaConfig(mode="duca", interval=4, ratio=0.3, score="kvnorm")),
    ("toca-taylor1-N2", "TaylorSeer O=1 N=2", ToCaConfig(mode="taylorseer", interval=2, taylor_order=1)),
    ("toca-taylor1-N3", "TaylorSeer O=1 N=3", ToCaConfig(mode="taylorseer", interval=3, taylor_order=1)),
    ("toca-taylor2-N3", "TaylorSeer O=2 N=3", ToCaConfig(mode="taylorseer", interval=3, taylor_order=2)),
    ("toca-taylor1-N3-w3", "TaylorSeer O=1 N=3, 3 warm-up",
     ToCaConfig(mode="taylorseer", interval=3, taylor_order=1, warmup=3)),
    # the schedules `toca calibrate` wrote for this model (on noise no row here uses)
    *[(f"toca-calibrated-{r:g}x", f"calibrated {r:g}× (TaylorSeer O=1)", ToCaConfig.from_schedule_file(path))
      for r, path in zoo.mnist_schedule_files().items()],
    # the same schedules with token-wise refresh on top of the forecast (forecast_refresh)
    *[(f"toca-calibrated-{r:g}x-fr{f:g}", f"calibrated {r:g}× + {f:.0%} rows on forecast steps",
       ToCaConfig.from_schedule_file(path, forecast_refresh=f))
      for r, path in zoo.mnist_schedule_files().items() if r >= 3 for f in (0.1, 0.25)],
]


class NotApplicable(Exception):
    """A peer that cannot be applied to this model (the message says why)."""


# -- the denoiser wrapper --------------------------------------------------------------------
class Denoiser:
    """What ``zoo.sample`` calls as its model: sets the peers' per-call state, then calls the
    (hooked, possibly compiled) model. The sampler's math is zoo.sample's own.

    * ``context``: set diffusers' ``CacheContext("cond", step_index, num_inference_steps,
      timestep, sigma)`` on every stateful hook before each call (a pipeline's
      ``cache_context``). One context: the CFG halves are one batched call.
    * ``uncond_first``: FasterCache expects the batch as [uncond, cond]; zoo.sample builds
      [cond, uncond]. The labels are swapped on the way in and the halves of the output on the
      way out (both halves carry the same latents, so every image sees the same inputs).
    * ``count``: add each call's FLOPs (``FlopCounterMode``) to ``flops``.
    """

    def __init__(self, module: torch.nn.Module, fn: Optional[Callable] = None, steps: int = STEPS,
                 context: bool = True, uncond_first: bool = False, reset: Optional[Callable[[], None]] = None) -> None:
        self.module, self.fn = module, fn if fn is not None else module
        self.steps, self.context, self.uncond_first, self._reset = steps, context, uncond_first, reset
        self.config = module.config
        self.count, self.flops, self.calls = False, 0, 0
        self.t = 999  # the timestep of the current call (PAB / FasterCache read it through a callback)
        alphas = zoo.make_scheduler("ddim").alphas_cumprod.double()
        # SeaCache wants a flow-matching sigma in [0, 1]: x_t / (sqrt(a) + sqrt(1 - a)) =
        # (1 - sigma) x0 + sigma eps with sigma = sqrt(1 - a) / (sqrt(a) + sqrt(1 - a)).
        self._sigmas = ((1 - alphas).sqrt() / (alphas.sqrt() + (1 - alphas).sqrt())).tolist()

    def parameters(self):
        return self.module.parameters()

    def start(self) -> None:
        """Before each generation: forget the previous generation's cache state."""
        self.calls = 0
        from diffusers.hooks import HookRegistry  # noqa: PLC0415

        if hasattr(self.module, "_diffusers_hook"):
            HookRegistry.check_if_exists_or_initialize(self.module).reset_stateful_hooks()
        if self._reset is not None:
            self._reset()

    def __call__(self, x, timestep, class_labels, return_dict=False):
        t = int(timestep[0])
        self.t = t
        if self.context:
            from diffusers.hooks.hooks import CacheContext, _set_cache_context  # noqa: PLC0415

            _set_cache_context(self.module, CacheContext("cond", step_index=self.calls, num_inference_steps=self.steps,
                                                         timestep=t, sigma=self._sigmas[t]))
        labels = class_labels
        if self.uncond_first:
            b = x.shape[0] // 2
            labels = torch.cat([class_labels[b:], class_labels[:b]])
        if self.count:
            with cpu_attention_formula(), FlopCounterMode(display=False) as counter:
                out = self.fn(x, timestep=timestep, class_labels=labels, return_dict=False)[0]
            self.flops += counter.get_total_flops()
        else:
            out = self.fn(x, timestep=timestep, class_labels=labels, return_dict=False)[0]
        if self.uncond_first:
            out = torch.cat([out[b:], out[:b]])
        self.calls += 1
        return (out,)


# -- the peers ----------------------------------------------------------------------------
ATTN_FF = (r"transformer_blocks\.\d+\.attn1", r"transformer_blocks\.\d+\.ff")


@dataclass
class Applied:
    """How to drive a model a peer was applied to."""

    context: bool = True
    uncond_first: bool = False
    reset: Optional[Callable[[], None]] = None
    hooks: str = ""  # which modules the peer hooks (filled from diffusers' registries when empty)


def _diffusers_hooks(model: torch.nn.Module) -> str:
    """The modules carrying diffusers hooks, block indices folded: 'transformer_blocks.*.ff
    <taylorseer_cache> x6'."""
    groups: dict[tuple[str, str], int] = {}
    for name, mod in model.named_modules():
        registry = getattr(mod, "_diffusers_hook", None)
        if registry is None or not registry.hooks:
            continue
        key = (re.sub(r"\.\d+(?=\.|$)", ".*", name) or "(model)", ", ".join(registry.hooks))
        groups[key] = groups.get(key, 0) + 1
    return "; ".join(f"{n} <{h}>{f' x{c}' if c > 1 else ''}" for (n, h), c in groups.items())


def ds_taylorseer(interval: int, order: int = 1, warmup: int = 3, identifiers=ATTN_FF, lite: bool = False):
    def apply(model, clock, ctx) -> Applied:
        from diffusers.hooks import TaylorSeerCacheConfig, apply_taylorseer_cache  # noqa: PLC0415

        if lite and not any(n == "proj_out" for n, _ in model.named_modules()):
            raise NotApplicable("lite mode caches `proj_out` and zeroes every block on predicted steps; "
                                "DiTTransformer2DModel's output layers are proj_out_1 / proj_out_2, so nothing would "
                                "be forecast and the blocks would return zeros")
        apply_taylorseer_cache(model, TaylorSeerCacheConfig(
            cache_interval=interval, disable_cache_before_step=warmup, max_order=order,
            taylor_factors_dtype=torch.float32, cache_identifiers=list(identifiers) if identifiers else None,
            use_lite_mode=lite))
        if not _diffusers_hooks(model):
            raise NotApplicable("the default cache_identifiers (^transformer_blocks.*attn, matched with re.fullmatch) "
                                "hook no module: DiT's attention modules are attn1 / attn2; the ds-taylorseer rows "
                                "pass identifiers for attn1 and ff")
        return Applied()
    return apply


def ds_seacache(threshold: float, max_consecutive: int = 2):
    def apply(model, clock, ctx) -> Applied:
        from diffusers.hooks import SeaCacheConfig, apply_sea_cache  # noqa: PLC0415

        def raw_vision(module, args, kwargs):  # the latents as (C, T=1, H, W), one per sample
            x = args[0] if args else kwargs["hidden_states"]
            return [xi.unsqueeze(1) for xi in x]

        apply_sea_cache(model, SeaCacheConfig(threshold=threshold, max_consecutive_cached=max_consecutive,
                                              raw_vision_callback=raw_vision))
        return Applied()
    return apply


_MAG_RATIOS: dict[tuple, list[float]] = {}


def _mag_calibration(ctx: "Context") -> list[float]:
    """diffusers' MagCache calibration mode: one uncached generation with ``calibrate=True``
    prints the per-step magnitude ratios (read back from its output). Run on noise no row uses."""
    key = (ctx.steps, ctx.guidance, ctx.calibration_images)
    if key not in _MAG_RATIOS:
        from diffusers.hooks import MagCacheConfig, apply_mag_cache  # noqa: PLC0415

        model = ctx.fresh_model()
        apply_mag_cache(model, MagCacheConfig(calibrate=True, num_inference_steps=ctx.steps))
        den = Denoiser(model, steps=ctx.steps)
        den.start()
        labels = torch.arange(ctx.calibration_images) % zoo.NUM_CLASSES
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            zoo.sample(den, labels, steps=ctx.steps, guidance=ctx.guidance, seed=CALIBRATION_SEED, progress=False)
        lists = [line for line in printed.getvalue().splitlines() if line.startswith("[") and line.endswith("]")
                 and not line.startswith("[MagCache]")]
        if not lists:
            raise RuntimeError("MagCache calibration printed no ratios")
        _MAG_RATIOS[key] = [float(v) for v in ast.literal_eval(lists[-1])]
    return _MAG_RATIOS[key]


CALIBRATION_SEED = 987_654_321  # not a noise_seed(seed_set, batch) of any row


def ds_magcache(threshold: float, max_skip: int = 3, retention: float = 0.1):
    def apply(model, clock, ctx) -> Applied:
        from diffusers.hooks import MagCacheConfig, apply_mag_cache  # noqa: PLC0415

        ratios = _mag_calibration(ctx)
        apply_mag_cache(model, MagCacheConfig(threshold=threshold, max_skip_steps=max_skip, retention_ratio=retention,
                                              num_inference_steps=ctx.steps, mag_ratios=ratios))
        return Applied()
    return apply


def ds_fbcache(threshold: float):
    def apply(model, clock, ctx) -> Applied:
        from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache  # noqa: PLC0415

        apply_first_block_cache(model, FirstBlockCacheConfig(threshold=threshold))
        return Applied()
    return apply


def ds_pab(skip: int, timesteps: tuple[int, int] = (100, 800)):
    def apply(model, clock, ctx) -> Applied:
        from diffusers.hooks import PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast  # noqa: PLC0415

        apply_pyramid_attention_broadcast(model, PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=skip, spatial_attention_timestep_skip_range=timesteps,
            current_timestep_callback=lambda: clock.t))
        return Applied(context=False)
    return apply


def ds_pab_bound(target: float):
    def apply(model, clock, ctx) -> Applied:
        share = ctx.attention_share()
        raise NotApplicable(f"PAB caches self-attention only ({share * 100:.0f}% of the FLOPs here; it has no MLP "
                            f"caching), so even skipping every attention call gives at most {1 / (1 - share):.2f}x, "
                            f"not {target:g}x")
    return apply


def ds_fastercache(uncond_skip: int = 5, uncond_range: tuple[int, int] = (-1, 641), attn_skip: int = 2,
                   attn_range: tuple[int, int] = (-1, 681)):
    def apply(model, clock, ctx) -> Applied:
        from diffusers.hooks import FasterCacheConfig, apply_faster_cache  # noqa: PLC0415

        # BCHW output; class_labels must be split with the CFG halves too (not in the default list)
        with _quiet_diffusers():
            apply_faster_cache(model, FasterCacheConfig(
                spatial_attention_block_skip_range=attn_skip, spatial_attention_timestep_skip_range=attn_range,
                unconditional_batch_skip_range=uncond_skip, unconditional_batch_timestep_skip_range=uncond_range,
                tensor_format="BCHW", current_timestep_callback=lambda: clock.t,
                attention_weight_callback=lambda _: 0.5,
                _unconditional_conditional_input_kwargs_identifiers=["hidden_states", "timestep", "class_labels"]))
        return Applied(context=False, uncond_first=True)
    return apply


def cachedit_dbcache(threshold: float, taylorseer: bool = False, fn: int = 1, bn: int = 0, warmup: int = 8):
    def apply(model, clock, ctx) -> Applied:
        os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "warning")
        try:
            import cache_dit  # noqa: PLC0415
        except ImportError as exc:
            raise NotApplicable(f"cache-dit is not installed ({exc.__class__.__name__}); "
                                "pip install cache-dit==1.5.3 (the bench extra)") from None
        calibrator = cache_dit.TaylorSeerCalibratorConfig(taylorseer_order=1) if taylorseer else None
        cache_dit.enable_cache(model, cache_config=cache_dit.DBCacheConfig(
            Fn_compute_blocks=fn, Bn_compute_blocks=bn, residual_diff_threshold=threshold, max_warmup_steps=warmup,
            num_inference_steps=ctx.steps), calibrator_config=calibrator)
        return Applied(context=False, reset=lambda: cache_dit.refresh_context(model, num_inference_steps=ctx.steps),
                       hooks=f"transformer_blocks (the 6 blocks as one cached unit: F{fn} always computed, B{bn}; "
                             "forward replaced by cache-dit's DiTPatchFunctor)")
    return apply


@contextlib.contextmanager
def _quiet_diffusers():
    from diffusers.utils import logging as dlog  # noqa: PLC0415

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(level)


# -- the rows ------------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    library: str  # "" (the original), "toca-compile", "diffusers", "cache-dit"
    label: str
    settings: str = ""
    config: Optional[ToCaConfig] = None  # toca-compile rows
    apply: Optional[Callable] = None  # peer rows: apply(model, clock, ctx) -> Applied
    steps: int = STEPS

    @property
    def family(self) -> str:
        return self.library or "original"

    def describe(self) -> dict:
        return {"steps": self.steps, "library": self.library, "settings": self.settings}


def _toca_settings(c: ToCaConfig) -> str:
    base = ToCaConfig()
    diff = [f"{f.name}={getattr(c, f.name)!r}" for f in dataclasses.fields(c)
            if f.name != "compiler" and getattr(c, f.name) != getattr(base, f.name)]
    return "ToCaConfig(" + ", ".join(diff) + ")"


def build_rows() -> list[Row]:
    rows = [Row("original", "", "original (uncached)", "50 DDIM steps")]
    rows += [Row(name, "toca-compile", label, _toca_settings(cfg), config=cfg) for name, label, cfg in TOCA_ROWS]
    ds = "diffusers"
    rows += [
        Row("ds-taylorseer-i3", ds, "TaylorSeer N=3 O=1", "TaylorSeerCacheConfig(cache_interval=3, max_order=1, "
            "disable_cache_before_step=3, fp32 factors, cache_identifiers=attn1+ff)", apply=ds_taylorseer(3)),
        Row("ds-taylorseer-i4", ds, "TaylorSeer N=4 O=1", "as above, cache_interval=4", apply=ds_taylorseer(4)),
        Row("ds-taylorseer-default", ds, "TaylorSeer, default identifiers", "TaylorSeerCacheConfig(cache_interval=3)",
            apply=ds_taylorseer(3, identifiers=None)),
        Row("ds-taylorseer-lite", ds, "TaylorSeer lite", "TaylorSeerCacheConfig(use_lite_mode=True)",
            apply=ds_taylorseer(3, identifiers=None, lite=True)),
        Row("ds-seacache-0.1", ds, "SeaCache 0.1", "SeaCacheConfig(threshold=0.1, raw_vision_callback=latents)",
            apply=ds_seacache(0.1)),
        Row("ds-seacache-0.6", ds, "SeaCache 0.6 (3 in a row)", "SeaCacheConfig(threshold=0.6, "
            "max_consecutive_cached=3, raw_vision_callback=latents)", apply=ds_seacache(0.6, 3)),
        Row("ds-magcache-0.12", ds, "MagCache 0.12 (calibrated)", "MagCacheConfig(threshold=0.12, max_skip_steps=3, "
            "retention_ratio=0.1, mag_ratios=calibrated)", apply=ds_magcache(0.12)),
        Row("ds-magcache-0.3", ds, "MagCache 0.3 (calibrated)", "as above, threshold=0.3", apply=ds_magcache(0.3)),
        Row("ds-fbcache-0.08", ds, "FirstBlockCache 0.08", "FirstBlockCacheConfig(threshold=0.08)",
            apply=ds_fbcache(0.08)),
        Row("ds-fbcache-0.17", ds, "FirstBlockCache 0.17", "FirstBlockCacheConfig(threshold=0.17)",
            apply=ds_fbcache(0.17)),
        Row("ds-pab-2", ds, "PAB N=2", "PyramidAttentionBroadcastConfig(spatial_attention_block_skip_range=2, "
            "timestep range (100, 800))", apply=ds_pab(2)),
        Row("ds-pab-4", ds, "PAB N=4, all steps", "spatial_attention_block_skip_range=4, timestep range (-1, 1000)",
            apply=ds_pab(4, (-1, 1000))),
        Row("ds-pab-2x", ds, "PAB at 2x", "any", apply=ds_pab_bound(2)),
        Row("ds-fastercache", ds, "FasterCache (defaults)", "FasterCacheConfig() + tensor_format='BCHW', class_labels "
            "split, attention weight 0.5", apply=ds_fastercache()),
        Row("ds-fastercache-2x", ds, "FasterCache, uncond every 5th step", "unconditional_batch_skip_range=5 and "
            "attention skip 4 over all timesteps", apply=ds_fastercache(5, (-1, 1000), 4, (-1, 1000))),
    ]
    cd = "cache-dit"
    rows += [
        Row("cd-dbcache-0.10", cd, "DBCache F1B0 0.10", "DBCacheConfig(Fn=1, Bn=0, residual_diff_threshold=0.10, "
            "max_warmup_steps=8)", apply=cachedit_dbcache(0.10)),
        Row("cd-dbcache-0.35", cd, "DBCache F1B0 0.35", "as above, residual_diff_threshold=0.35",
            apply=cachedit_dbcache(0.35)),
        Row("cd-dbcache-ts-0.10", cd, "DBCache F1B0 0.10 + TaylorSeer", "as cd-dbcache-0.10 + "
            "TaylorSeerCalibratorConfig(taylorseer_order=1)", apply=cachedit_dbcache(0.10, taylorseer=True)),
        Row("cd-dbcache-ts-0.35", cd, "DBCache F1B0 0.35 + TaylorSeer", "as cd-dbcache-0.35 + TaylorSeer O=1",
            apply=cachedit_dbcache(0.35, taylorseer=True)),
    ]
    return rows


ROWS = build_rows()


# -- shared state of a run -------------------------------------------------------------------
@dataclass
class Context:
    model: torch.nn.Module  # the uncached model (toca rows and the original use it)
    fresh_model: Callable[[], torch.nn.Module]  # an identical copy, for a peer to hook
    steps: int
    guidance: float
    calibration_images: int
    _attention_share: Optional[float] = None

    def attention_share(self) -> float:
        """Fraction of one uncached call's FLOPs spent in the self-attention modules."""
        if self._attention_share is None:
            x = torch.zeros(2, 1, zoo.IMAGE_SIZE, zoo.IMAGE_SIZE)
            with cpu_attention_formula(), FlopCounterMode(display=False) as counter, torch.no_grad():
                self.model(x, timestep=torch.full((2,), 500), class_labels=torch.tensor([1, zoo.NULL_LABEL]),
                           return_dict=False)
            per_module = counter.get_flop_counts()
            attn = sum(sum(ops.values()) for name, ops in per_module.items()
                       if re.search(r"transformer_blocks\.\d+\.attn1$", name))
            self._attention_share = attn / counter.get_total_flops()
        return self._attention_share


class PeerRunner:
    """Generates a peer row's images (eager hooks), counting the FLOPs of every call."""

    def __init__(self, row: Row, ctx: Context, batch: int) -> None:
        self.row, self.ctx, self.batch = row, ctx, batch
        self.model = ctx.fresh_model()
        self.denoiser = Denoiser(self.model, steps=row.steps)
        applied: Applied = row.apply(self.model, self.denoiser, ctx)
        self.denoiser.context, self.denoiser.uncond_first = applied.context, applied.uncond_first
        self.denoiser._reset = applied.reset
        self.hooks = applied.hooks or _diffusers_hooks(self.model)
        self.flops_per_image: Optional[float] = None

    def generate(self, labels: torch.Tensor, seed_set: int, position: str) -> quality.Generation:
        spans = quality._batches(labels.numel(), self.batch)
        bar = tqdm(total=len(spans) * self.row.steps, desc=f"{position} {self.row.name:<18}", unit="step",
                   leave=False, dynamic_ncols=True)
        den = self.denoiser
        den.count, den.flops = True, 0
        images = []
        start = time.perf_counter()
        for j, (a, b) in enumerate(spans):
            den.start()
            images.append(zoo.sample(den, labels[a:b], steps=self.row.steps, guidance=self.ctx.guidance,
                                     seed=quality.noise_seed(seed_set, j), progress=False,
                                     callback=lambda i, t, x: bar.update(1)))
        seconds = time.perf_counter() - start
        den.count = False
        bar.close()
        self.flops_per_image = den.flops / labels.numel()
        return quality.Generation(torch.cat(images), seconds)


# -- timing --------------------------------------------------------------------------------
@dataclass
class Variant:
    row: str
    kind: str  # "eager", "compiled", "toca"
    run: Callable[[], torch.Tensor]
    times: list[float] = field(default_factory=list)
    warmup_s: float = 0.0
    dynamo: dict = field(default_factory=dict)
    output: Optional[torch.Tensor] = None


def _dynamo_summary() -> dict:
    """Graphs, graph breaks and frames dynamo gave up on since the last counters.clear()."""
    from torch._dynamo.utils import counters  # noqa: PLC0415

    def short(msg: str) -> str:
        fn = re.search(r"<function ([\w.<>]+) at", msg)
        head = msg.strip().splitlines()[0][:90]
        return f"{head}: {fn.group(1)}" if fn else head

    breaks: dict[str, int] = {}
    for msg, n in counters["graph_break"].items():
        breaks[short(msg)] = breaks.get(short(msg), 0) + n
    skipped = sorted({f"{m.group(1)} ({os.path.basename(m.group(2))}:{m.group(3)})"
                      for msg in counters["unimplemented"]
                      for m in re.finditer(r"frame skipped: (\S+) \((\S+) line (\d+)\)", msg)})
    return {"graphs": int(counters["stats"]["unique_graphs"]), "graph_breaks": int(sum(breaks.values())),
            "break_reasons": breaks, "frames_skipped": skipped}


def own_code(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` as an instance of a one-off subclass whose ``forward`` is a copy with its own
    code object (same behaviour, whatever ``forward`` is at this point, a peer's patch included).

    Dynamo keeps its per-code state on the code object: the cache entries, the recompile limit,
    and "gave up: run this frame eagerly from now on". Every DiT in this process shares
    ``DiTTransformer2DModel.forward``, so once a peer's hooks made Dynamo give up on it (diffusers'
    TaylorSeer does), every compiled variant timed after it ran its top-level forward eagerly and
    compiled the blocks one by one, the plain baseline included (seen in the all-rows run of
    2026-11-29: each toca-compile row recompiled per block in its first timed round). With a code
    object per variant each compiled variant keeps the graph it was warmed up with."""
    cls = type(module)
    fn = cls.forward
    forward = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    forward.__kwdefaults__ = fn.__kwdefaults__
    forward.__qualname__ = fn.__qualname__
    forward.__dict__.update(fn.__dict__)
    module.__class__ = type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__})
    return module


def timing(rows: list[Row], ctx: Context, peers: dict[str, PeerRunner], labels: torch.Tensor, rounds: int,
           backend: str) -> tuple[dict, list[Variant]]:
    """Warm up every variant (compiles), then ``rounds`` interleaved rounds of one generation each."""
    from torch._dynamo.utils import counters  # noqa: PLC0415

    seed = CALIBRATION_SEED + 1
    model = ctx.model
    variants: list[Variant] = []
    failures: dict[str, str] = {}

    def sampler(fn, before=None):
        def run():
            if before is not None:
                before()
            return zoo.sample(fn, labels, steps=ctx.steps, guidance=ctx.guidance, seed=seed, progress=False)
        return run

    compile_kw = {} if backend == "inductor" else {"backend": "eager"}
    for row in rows:
        if row.name == "original":
            variants.append(Variant(row.name, "eager", sampler(model)))
            plain = own_code(copy.copy(model))  # the same weights, a forward of its own (see own_code)
            variants.append(Variant(row.name, "compiled", sampler(torch.compile(plain, **compile_kw))))
        elif row.config is not None:
            toca = ToCa(dataclasses.replace(row.config, compiler="inductor" if backend == "inductor" else "eager"))
            fn = torch.compile(own_code(copy.copy(model)), backend=toca.backend, fullgraph=True, dynamic=False)
            variants.append(Variant(row.name, "toca", sampler(fn, toca.reset)))
        elif row.name in peers:
            runner = peers[row.name]
            den = runner.denoiser
            compiled = Denoiser(runner.model, torch.compile(own_code(runner.model), **compile_kw), steps=row.steps,
                                context=den.context, uncond_first=den.uncond_first, reset=den._reset)
            # PAB's and FasterCache's timestep callbacks read the denoiser they were applied with
            compiled = _SharedClock(compiled, den)
            variants.append(Variant(row.name, "eager", sampler(den, den.start)))
            variants.append(Variant(row.name, "compiled", sampler(compiled, compiled.start)))

    live = []
    for v in tqdm(variants, desc="timing warm-up (compiles)", leave=False, dynamic_ncols=True):
        counters.clear()
        start = time.perf_counter()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                v.output = v.run()
                v.run()  # a second generation: some peers' state only settles (recompiles) here
        except Exception as exc:  # noqa: BLE001  (reported in the table)
            failures[f"{v.row}/{v.kind}"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            tqdm.write(f"{v.row} {v.kind}: failed ({failures[f'{v.row}/{v.kind}']})", file=sys.stderr)
            continue
        v.warmup_s = time.perf_counter() - start
        if v.kind != "eager":
            v.dynamo = _dynamo_summary()
        live.append(v)
    bar = tqdm(total=rounds * len(live), desc="timing rounds", leave=False, dynamic_ncols=True)
    with torch.no_grad():
        for _ in range(rounds):
            for v in live:
                start = time.perf_counter()
                v.run()
                v.times.append(time.perf_counter() - start)
                bar.update(1)
    bar.close()
    base = next((v for v in live if v.row == "original" and v.kind == "compiled"), None)
    base_s = statistics.median(base.times) if base is not None and base.times else math.nan
    by_row: dict[str, dict] = {}
    eager_out = {v.row: v.output for v in live if v.kind == "eager"}
    for v in live:
        med = statistics.median(v.times)
        entry = {"median_s": med, "speedup": base_s / med, "times_s": v.times, "warmup_s": v.warmup_s, **v.dynamo}
        if v.kind == "compiled" and v.row in eager_out:
            entry["max_abs_diff_vs_eager"] = float((v.output - eager_out[v.row]).abs().max())
        by_row.setdefault(v.row, {})[v.kind] = entry
    for key, msg in failures.items():
        name, kind = key.split("/")
        by_row.setdefault(name, {})[kind] = {"failed": msg}
    return by_row, live


class _SharedClock:
    """A compiled Denoiser whose timestep is also written to the eager one (PAB's and
    FasterCache's callbacks were bound to that one when the hooks were applied)."""

    def __init__(self, inner: Denoiser, clock: Denoiser) -> None:
        self.inner, self.clock = inner, clock
        self.config = inner.config

    def parameters(self):
        return self.inner.parameters()

    def start(self) -> None:
        self.inner.start()

    def __call__(self, x, timestep, class_labels, return_dict=False):
        self.clock.t = int(timestep[0])
        return self.inner(x, timestep=timestep, class_labels=class_labels, return_dict=return_dict)


# -- output ------------------------------------------------------------------------------
MARKERS = {"original": ("*", "black"), "toca-compile": ("D", "tab:blue"), "diffusers": ("o", "tab:orange"),
           "cache-dit": ("s", "tab:green")}


def _fmt_speed(entry: Optional[dict]) -> str:
    if not entry:
        return "—"
    if "failed" in entry:
        return "failed"
    return f"{entry['speedup']:.2f}×"


def markdown(results: list[dict], spread: dict, meta: dict, unavailable: list[dict]) -> str:
    n_seeds = len(spread["fid"])
    timed = any(r.get("timing") for r in results)
    lines = [
        f"Bundled MNIST DiT ({meta['model']}); {meta['samples']} images per row and seed set, {n_seeds} seed "
        f"set{'s' if n_seeds != 1 else ''}, the same noise and sampler for every row (DDIM {meta['steps']} steps, "
        f"batched CFG {meta['guidance']}).",
        "",
        "| method | library | FLOPs ratio | PSNR vs uncached (dB) | SSIM | classifier-FID | ΔFID | speed-up eager | "
        "speed-up compiled | graph breaks (compiled) | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        is_base = r["name"] == "original"
        t = r.get("timing") or {}
        eager = t.get("eager")
        comp = t.get("toca") if r["library"] == "toca-compile" else t.get("compiled")
        breaks = "—"
        notes = []
        if comp and "failed" not in comp and r["library"] != "toca-compile":
            breaks = str(comp.get("graph_breaks", "—"))
            if comp.get("shared_with"):
                breaks += " (shared)" if comp["shared_with"] != "an earlier row" else " (frames reused)"
            if comp.get("frames_skipped"):
                skipped = comp["frames_skipped"]
                notes.append("dynamo gave up on " + ", ".join(skipped[:2])
                             + (f" and {len(skipped) - 2} more" if len(skipped) > 2 else ""))
        if comp and "failed" in comp:
            notes.append(f"compile failed: {comp['failed']}")
        psnr = "—" if is_base else f"{r['psnr_mean']:.2f} ± {r['psnr_std']:.2f}"
        ssim = "—" if is_base else f"{r['ssim_mean']:.4f}"
        fid = f"{r['fid']:.2f} ± {r['fid_std']:.2f}" if n_seeds > 1 else f"{r['fid']:.2f}"
        dfid = "—" if is_base else f"{r['fid_delta']:+.2f} ± {r['fid_delta_err']:.2f}"
        lines.append(f"| {r['label']} | {r['library'] or '—'} | {r['flops_ratio']:.2f}× | {psnr} | {ssim} | {fid} | "
                     f"{dfid} | {_fmt_speed(eager) if timed else '—'} | {_fmt_speed(comp) if timed else '—'} | "
                     f"{breaks} | {'; '.join(notes)} |")
    for u in unavailable:
        lines.append(f"| {u['label']} | {u['library']} | — | — | — | — | — | — | — | — | not applied: {u['reason']} |")
    lines += ["", "Which modules each peer hooks (module paths, block indices folded to `*`, <hook names>):", ""]
    for r in results:
        if r.get("hooks"):
            lines.append(f"- {r['label']} (`{r['name']}`, {r['settings']}): {r['hooks']}")
    fids = ", ".join(f"{v:.2f}" for v in spread["fid"])
    lines += [
        "",
        f"FLOPs: `torch.utils.flop_counter` over the denoiser calls of whole generations (matmuls, attention, "
        f"convolutions; FFTs are not counted), ratio = uncached / row. Peers: every call of every generation, their "
        f"hooks running eagerly; toca-compile: the rewritten graphs (`compiler=\"eager\"`, as in quality.py). "
        f"PSNR/SSIM: mean ± std over all images against the uncached image from the same noise. classifier-FID: "
        f"mean ± std over the seed sets (the uncached row: {fids}); ΔFID: row minus uncached on the same noise"
        + (", ± its std over the seed sets." if n_seeds > 1 else ", ± paired bootstrap std."),
    ]
    if timed:
        backend = "default Inductor" if meta["timing_backend"] == "inductor" else "the eager backend: a smoke test"
        lines.append(
            f"\nSpeed-up: median wall clock of a {meta['timing_batch']}-image generation of plain `torch.compile` "
            f"({backend}) of the uncached model divided by the row's; {meta['timing_rounds']} rounds, every variant in "
            f"turn after warm-up, in one process ({meta['machine']}; the machine is shared: read the ratios). "
            f"'eager': the peer's hooks on the eager model; 'compiled': `torch.compile(hooked model)` ({backend}, "
            "fullgraph=False); toca-compile rows: `torch.compile(model, backend=ToCa(config).backend)` with its "
            f"{backend} compiler. Graph breaks: counted by dynamo while compiling the peer; the copies of the model "
            "share dynamo's compiled frames, so a row compiled after another row of the same peer gets that row's count "
            "('shared'); 'frames reused': all its frames had been compiled for an earlier row. 'dynamo gave up on': frames "
            "it skipped after a graph break inside a loop, which then run eagerly (only the hooked submodules they "
            "call get compiled).")
    lines.append(f"\nCommand: `{meta['command']}` ({meta['wall_minutes']:.1f} min, torch {meta['torch']}, diffusers "
                 f"{meta['diffusers']}, cache-dit {meta['cache_dit']}).")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for ax, xkey in zip(axes, ("flops", "speed")):
        seen = set()
        for r in results:
            if r["name"] == "original" or not math.isfinite(r.get("psnr_mean", math.nan)):
                continue
            marker, color = MARKERS[r["family"]]
            t = r.get("timing") or {}
            if xkey == "flops":
                points = [(r["flops_ratio"], True)]
            else:
                comp = t.get("toca") if r["library"] == "toca-compile" else t.get("compiled")
                points = [(e["speedup"], filled) for e, filled in ((comp, True), (t.get("eager"), False))
                          if e and "speedup" in e]
            for i, (x, filled) in enumerate(points):
                label = r["family"] if r["family"] not in seen else None
                seen.add(r["family"])
                ax.scatter(x, r["psnr_mean"], marker=marker, s=55, zorder=3, label=label,
                           facecolors=color if filled else "none", edgecolors=color)
                if i == 0:
                    ax.annotate(r["label"].replace("TaylorSeer", "TS"), (x, r["psnr_mean"]), textcoords="offset points",
                                xytext=(4, 3), fontsize=6.5)
            if xkey == "speed" and len(points) == 2:
                ax.plot([p[0] for p in points], [r["psnr_mean"]] * 2, color=color, lw=0.6, alpha=0.5, zorder=2)
        ax.axvline(1.0, color="black", lw=0.8, ls=":")
        ax.set_ylabel("PSNR vs uncached (dB, higher is better)")
        ax.set_xlabel("FLOPs ratio (uncached / method, x)" if xkey == "flops" else
                      "speed-up over plain torch.compile (x); filled: compiled, hollow: peer eager")
        ax.grid(alpha=0.3)
        if seen:
            ax.legend(fontsize=8)
        elif xkey == "speed":
            ax.text(0.5, 0.5, "not timed (--no-timing)", transform=ax.transAxes, ha="center")
    fig.suptitle("Bundled MNIST DiT: toca-compile vs diffusers cache hooks and cache-dit (same noise, same sampler)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _attribute_shared_frames(results: list[dict], rows: list[Row]) -> None:
    """Copies of one model class share dynamo's compiled frames: a peer row compiled after another
    row of the same peer finds its frames compiled already (0 new graphs). Give it that row's
    graph breaks, marked as shared."""
    key_of = {r.name: r.apply.__qualname__.split(".")[0] for r in rows if r.apply is not None}
    first: dict[str, dict] = {}
    for r in results:
        comp = (r.get("timing") or {}).get("compiled")
        key = key_of.get(r["name"])
        if key is None or not comp or "graphs" not in comp:
            continue
        if comp["graphs"] > 0:
            first.setdefault(key, r)
        elif key in first and "shared_with" not in comp:
            src = first[key]["timing"]["compiled"]
            comp.update(new_graph_breaks=comp["graph_breaks"], graph_breaks=src["graph_breaks"],
                        frames_skipped=src["frames_skipped"], shared_with=first[key]["name"])
        elif "shared_with" not in comp:
            comp["shared_with"] = "an earlier row"


def _finish(records, rows, unavailable, timing_rows, meta, out: Path, final: bool, hooks: dict) -> tuple[list, str]:
    results, spread = quality.summarize(records, rows)
    by_name = {}
    for rec in records:
        by_name.setdefault(rec["name"], []).append(rec["flops_per_image"])
    base = statistics.fmean(by_name["original"]) if "original" in by_name else math.nan
    for r in results:  # dynamic peers: the mean over every seed set
        r["flops_per_image"] = statistics.fmean(by_name[r["name"]])
        r["flops_ratio"] = base / r["flops_per_image"]
        r["hooks"] = hooks.get(r["name"], "")
        if r["name"] in timing_rows:
            r["timing"] = timing_rows[r["name"]]
    _attribute_shared_frames(results, rows)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "fid_spread": spread, "rows": results, "not_applied": unavailable, "records": records}
    try:
        text = quality.compact_json(payload)
    except ValueError:  # a bracket inside a string defeats its one-line-lists regex
        text = json.dumps(payload, indent=1) + "\n"
    (out / "peers.json").write_text(text, encoding="utf-8")
    if not final:
        return results, ""
    table = markdown(results, spread, meta, unavailable)
    (out / "peers.md").write_text(table + "\n", encoding="utf-8")
    plot(results, out / "peers.png")
    return results, table


# -- main --------------------------------------------------------------------------------
def select(rows: list[Row], spec: Optional[str]) -> list[Row]:
    if not spec:
        return rows
    patterns = [p.strip() for p in spec.split(",") if p.strip()]
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(r.name, p) for r in rows)]
    if unknown:
        raise SystemExit(f"--rows: no row matches {unknown}; rows: {', '.join(r.name for r in rows)}")
    return [r for r in rows if r.name == "original" or any(fnmatch.fnmatchcase(r.name, p) for p in patterns)]


def _merge(runs: list[dict]) -> dict:
    """One saved run from several of the same settings; later files replace earlier rows."""
    first = runs[0]
    for run in runs[1:]:
        for key in ("samples", "seeds"):
            if run["meta"].get(key) != first["meta"].get(key):
                raise SystemExit(f"cannot merge runs with different {key}: {first['meta'].get(key)} vs "
                                 f"{run['meta'].get(key)}")
    records: dict[tuple, dict] = {}
    rows: dict[str, dict] = {}
    not_applied: dict[str, object] = {}
    for run in runs:
        replaced = {rec["name"] for rec in run["records"]} - {"original"}
        records = {k: v for k, v in records.items() if k[0] not in replaced}
        for rec in run["records"]:
            records.setdefault((rec["name"], rec["seed_set"]), rec)
        rows.update({r["name"]: r for r in run["rows"]})
        entries = run["not_applied"]
        items = entries.items() if isinstance(entries, dict) else [(e["name"] if isinstance(e, dict) else e[0], e)
                                                                 for e in entries]
        not_applied.update(items)
    merged_na = (not_applied if isinstance(first["not_applied"], dict) else list(not_applied.values()))
    meta = dict(first["meta"])
    meta["command"] = " + ".join(run["meta"].get("command", "") for run in runs)
    return {"records": list(records.values()), "rows": list(rows.values()), "not_applied": merged_na, "meta": meta}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200,
                        help="images per row and seed set (a multiple of 10: balanced labels)")
    parser.add_argument("--seeds", type=int, default=2, help="disjoint noise sets; every row runs on each")
    parser.add_argument("--batch", type=int, default=100, help="images per generation (the model batch is twice this)")
    parser.add_argument("--rows", default=None,
                        help="comma-separated row names or shell patterns (the original always runs), e.g. "
                             f"'toca-*,ds-fbcache-*'; rows: {', '.join(r.name for r in ROWS)}")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--timing-rounds", type=int, default=3, help="timed generations per variant, interleaved")
    parser.add_argument("--timing-batch", type=int, default=20, help="images per timed generation")
    parser.add_argument("--timing-backend", default="inductor", choices=["inductor", "eager"],
                        help="compiler of the timed compiled variants (eager: a quick smoke test of the script)")
    parser.add_argument("--no-timing", action="store_true", help="skip the wall-clock part")
    parser.add_argument("--bootstrap", type=int, default=None,
                        help="paired bootstrap resamples for ΔFID (default: 200 with one seed set, else 0)")
    parser.add_argument("--data", type=Path, default=quality.DEFAULT_DATA, help="MNIST folder (for the FID reference)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for peers.md / .json / .png")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None,
                        help="rebuild peers.md and peers.png (into --out) from earlier peers.json files (runs of "
                             "the same --samples/--seeds merge; a row in several files is taken from the last)")
    args = parser.parse_args(argv)
    if args.from_json is not None:
        saved = _merge([json.loads(path.read_text(encoding="utf-8")) for path in args.from_json])
        names = {rec["name"] for rec in saved["records"]}
        timing_rows = {r["name"]: r["timing"] for r in saved["rows"] if r.get("timing")}
        hooks = {r["name"]: r.get("hooks", "") for r in saved["rows"]}
        _, table = _finish(saved["records"], [r for r in ROWS if r.name in names], saved["not_applied"], timing_rows,
                           saved["meta"], args.out, True, hooks)
        print(table)
        return 0
    if args.samples < 10 or args.samples % 10:
        parser.error("--samples must be a positive multiple of 10 (balanced labels)")
    if args.seeds < 1 or args.batch < 1 or args.timing_rounds < 1 or args.timing_batch < 1:
        parser.error("--seeds, --batch, --timing-rounds and --timing-batch must be >= 1")
    if args.bootstrap is None:
        args.bootstrap = 200 if args.seeds == 1 else 0
    rows = select(ROWS, args.rows)
    args.command = ("python benchmarks/peers.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", ToCaWarning)
    warnings.filterwarnings("ignore", message=r"torch\.meshgrid")  # FasterCache's frequency split
    # ~20 hooked copies of the same model classes share this process: their cache entries add up
    # on the same code objects, which the default recompile limit (8) is not sized for.
    limits = {"recompile_limit": max(torch._dynamo.config.recompile_limit, 64),
              "accumulated_recompile_limit": max(torch._dynamo.config.accumulated_recompile_limit, 4096)}
    with torch._dynamo.config.patch(**limits):
        return _run(args, rows)


def _run(args, rows: list[Row]) -> int:
    import diffusers  # noqa: PLC0415

    guidance = zoo.GUIDANCE
    t_start = time.perf_counter()
    model = zoo.load_mnist_dit()
    ctx = Context(model=model, fresh_model=zoo.load_mnist_dit, steps=STEPS, guidance=guidance,
                  calibration_images=min(args.batch, args.samples))
    classifier = zoo.load_mnist_classifier()
    test_images, _ = load_mnist(args.data, "test")
    ref_features = metrics.classifier_features(test_images, classifier)
    labels = torch.arange(args.samples) % zoo.NUM_CLASSES
    paired = quality.PairedFid(ref_features)
    try:
        from importlib.metadata import version  # noqa: PLC0415

        cache_dit_version = version("cache-dit")
    except Exception:  # noqa: BLE001
        cache_dit_version = "not installed"
    n_params = sum(p.numel() for p in model.parameters())
    meta = {"model": f"diffusers DiTTransformer2DModel, {n_params / 1e6:.2f}M parameters, 49 tokens",
            "samples": args.samples, "batch": args.batch, "seeds": args.seeds, "steps": STEPS, "guidance": guidance,
            "threads": args.threads, "timing_rounds": args.timing_rounds, "timing_batch": args.timing_batch,
            "timing_backend": args.timing_backend, "timing": not args.no_timing, "device": "cpu",
            "machine": f"{platform.machine()} CPU, {args.threads} thread{'s' if args.threads != 1 else ''}",
            "command": args.command,
            "torch": torch.__version__, "diffusers": diffusers.__version__, "cache_dit": cache_dit_version,
            "python": platform.python_version(), "wall_minutes": 0.0,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "noise_seed": "zoo.sample(seed=100003 * seed_set + batch_index)",
            "magcache_calibration": f"{ctx.calibration_images} images, seed {CALIBRATION_SEED}"}

    records: list[dict] = []
    unavailable: list[dict] = []
    hooks: dict[str, str] = {}
    peers: dict[str, PeerRunner] = {}
    references: dict[int, tuple] = {}
    done_rows: list[Row] = []
    total = len(rows) * args.seeds
    done = 0
    for row in rows:
        is_base = row.name == "original"
        try:
            if row.apply is not None:
                runner = PeerRunner(row, ctx, args.batch)
                peers[row.name] = runner
                hooks[row.name] = runner.hooks
            else:
                runner = quality.Runner(model, row, args.batch, guidance)
                if row.config is not None:
                    hooks[row.name] = "the whole model, traced and rewritten by the toca-compile backend"
        except NotApplicable as exc:
            unavailable.append({"name": row.name, "label": row.label, "library": row.library,
                                "settings": row.settings, "reason": str(exc)})
            tqdm.write(f"{row.name}: not applied: {exc}", file=sys.stderr)
            done += args.seeds
            continue
        done_rows.append(row)
        for seed_set in range(args.seeds):
            done += 1
            try:
                gen = runner.generate(labels, seed_set, f"[{done}/{total}]")
            except Exception as exc:  # noqa: BLE001  (a row with the reason, not a crash)
                if is_base:
                    raise
                unavailable.append({"name": row.name, "label": row.label, "library": row.library,
                                    "settings": row.settings, "reason": f"failed: {type(exc).__name__}: {exc}"})
                done_rows.remove(row)
                peers.pop(row.name, None)
                records = [r for r in records if r["name"] != row.name]
                done += args.seeds - seed_set - 1
                break
            rec, ref_fid = quality.score_seed_set(row.name, seed_set, gen, runner.flops_per_image, labels, references,
                                                  ref_features, classifier, paired, args.bootstrap)
            records.append(rec)
            meta["wall_minutes"] = (time.perf_counter() - t_start) / 60
            _finish(records, done_rows, unavailable, {}, meta, args.out, False, hooks)
            extra = "" if is_base else (f", dFID {rec['fid'] - ref_fid:+.2f}, "
                                        f"PSNR {quality._pooled([rec['psnr']])[0]:.2f} dB")
            tqdm.write(f"{row.name} seed set {seed_set}: {runner.flops_per_image / 1e9:.3f} GFLOPs/image, "
                       f"FID {rec['fid']:.2f}{extra} ({gen.seconds:.1f} s, {meta['wall_minutes']:.1f} min so far)",
                       file=sys.stderr)

    timing_rows: dict = {}
    if not args.no_timing:
        timing_labels = torch.arange(args.timing_batch) % zoo.NUM_CLASSES
        timing_rows, _ = timing(done_rows, ctx, peers, timing_labels, args.timing_rounds, args.timing_backend)
    meta["wall_minutes"] = (time.perf_counter() - t_start) / 60
    _, table = _finish(records, done_rows, unavailable, timing_rows, meta, args.out, True, hooks)
    print(table)
    print(f"\nwrote {args.out / 'peers.md'}, peers.json, peers.png ({meta['wall_minutes']:.1f} min)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
