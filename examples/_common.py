"""What the real-weight examples share: options, loading without surprise downloads, the timed
comparison of plain ``torch.compile`` against ``toca_compile.apply``, PSNR and the side-by-side
picture.

Each example script (dit_xl_2.py, pixart.py, sd3.py, flux.py, video.py) builds its parser with
:func:`parser`, loads its pipeline with :func:`load` and hands one generation's keyword arguments
to :func:`compare`. Weights come from a local directory or the Hugging Face cache only, unless
``--allow-download`` is given.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python examples/<name>.py` from a checkout
    sys.path.insert(0, str(REPO))

import toca_compile
from toca_compile import ToCaConfig
from toca_compile.presets import PRESETS, get_preset

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class MissingWeights(RuntimeError):
    """The model is neither a local directory nor in the Hugging Face cache, and downloading
    was not allowed."""


def parser(description: str, *, model: str, size: str, steps: int, preset: str | None,
           prompt: str | None = "a red fox in the snow, photograph", gated: bool = False) -> argparse.ArgumentParser:
    """The options every example takes; ``model`` is the default repo id, ``size`` its download
    size in words (for the error message), ``preset`` the default toca preset (None: the
    ``ToCaConfig`` defaults, ``--interval`` / ``--ratio``)."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.set_defaults(default_model=model, download_size=size, gated=gated)
    p.add_argument("--model", default=model,
                   help="a local pipeline directory or a Hugging Face repo id (read from the local cache)")
    p.add_argument("--allow-download", action="store_true",
                   help="let diffusers download the weights when they are not cached (off: nothing is downloaded)")
    if prompt is not None:
        p.add_argument("--prompt", default=prompt)
    p.add_argument("--steps", type=int, default=steps, help="denoising steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                   help="weights' dtype (default: bfloat16 on a GPU, float32 on the CPU)")
    p.add_argument("--out", default=None, help="the side-by-side PNG (default: <script name>_toca.png)")
    p.add_argument("--compiler", choices=["inductor", "eager"], default="inductor",
                   help="backend of both runs: inductor (the real comparison) or eager (quick checks)")
    p.add_argument("--warmup-runs", type=int, default=1,
                   help="untimed generations before the timed ones (compilation happens there)")
    p.add_argument("--runs", type=int, default=1, help="timed generations of each kind; the median is reported")
    toca = p.add_argument_group("toca-compile settings")
    toca.add_argument("--preset", default=preset or "none", choices=sorted(PRESETS) + ["none"],
                      help="an official schedule, re-timed to --steps when that differs; 'none': --interval/--ratio")
    toca.add_argument("--schedule-file", default=None, help="a schedule written by `toca calibrate` (replaces --preset)")
    toca.add_argument("--interval", type=int, default=3, help="with --preset none: every N-th step is full")
    toca.add_argument("--ratio", type=float, default=0.15, help="with --preset none: fraction of tokens refreshed")
    return p


def parse(p: argparse.ArgumentParser, argv: Sequence[str] | None, script: str) -> argparse.Namespace:
    args = p.parse_args(argv)
    if args.dtype is None:
        args.dtype = "bfloat16" if str(args.device).startswith("cuda") else "float32"
    if args.out is None:
        args.out = f"{Path(script).stem}_toca.png"
    return args


def torch_dtype(args: argparse.Namespace) -> torch.dtype:
    return DTYPES[args.dtype]


# -- loading -------------------------------------------------------------------------------
def _looks_like_path(model: str) -> bool:
    """A directory (existing, or written like one); repo ids are ``name`` or ``owner/name``."""
    return Path(model).expanduser().exists() or model.startswith((".", "/", "~")) or model.count("/") > 1 \
        or "\\" in model


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def missing_message(args: argparse.Namespace, detail: str = "") -> str:
    model = args.model
    if _looks_like_path(model) and not Path(model).expanduser().exists():
        lines = [f"error: the model directory {model!r} does not exist.",
                 f"Pass --model with a saved diffusers pipeline or a Hugging Face repo id (default: {args.default_model})."]
    else:
        lines = [f"error: the weights of {model!r} are neither a local directory nor in the Hugging Face cache "
                 f"({_hub_cache()}), "
                 "and nothing was downloaded.",
                 "Either download them once:",
                 f"    hf download {model}" + (f"    (about {args.download_size}; older huggingface_hub: "
                                               f"huggingface-cli download {model})"
                                               if model == args.default_model else ""),
                 "or rerun this script with --allow-download, or pass --model /path/to/a/local/copy."]
        if args.gated:
            lines.append(f"{model} is a gated repository: accept its licence on huggingface.co and run "
                         "`hf auth login` (older: `huggingface-cli login`) before downloading.")
    if detail:
        lines.append(f"(diffusers said: {detail.strip().splitlines()[0][:300]})")
    return "\n".join(lines)


@contextlib.contextmanager
def _offline(args: argparse.Namespace) -> Iterator[None]:
    """Without --allow-download, huggingface_hub's offline mode as well as ``local_files_only``:
    besides downloads, huggingface_hub may contact the Hub for other things (its user-agent
    registry), which offline mode stops too."""
    if args.allow_download:
        yield
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def pipeline_class_from_index(args: argparse.Namespace, allowed: Sequence[str]) -> Any:
    """The diffusers pipeline class named in the model's ``model_index.json`` (local directory or
    cache only unless --allow-download), which must be one of ``allowed``."""
    import diffusers
    from huggingface_hub import hf_hub_download

    local = Path(args.model).expanduser()
    if _looks_like_path(args.model) and not local.exists():
        raise MissingWeights(missing_message(args))
    try:
        with _offline(args):
            index = local / "model_index.json" if local.is_dir() else Path(hf_hub_download(
                args.model, "model_index.json", local_files_only=not args.allow_download))
        name = json.loads(index.read_text())["_class_name"]
    except (OSError, ValueError, KeyError) as error:
        if local.exists():
            raise SystemExit(f"error: {args.model} is not a diffusers pipeline directory ({error})") from error
        raise MissingWeights(missing_message(args, str(error))) from error
    if name not in allowed:
        raise SystemExit(f"error: {args.model} holds a {name}; this example runs {' or '.join(allowed)}")
    return getattr(diffusers, name)


def load(pipeline_class: Any, args: argparse.Namespace, **kwargs: Any) -> Any:
    """``pipeline_class.from_pretrained(args.model)`` from local files only unless
    ``--allow-download``; :class:`MissingWeights` (with what to do) when they are absent."""
    model = args.model
    local = Path(model).expanduser()
    if _looks_like_path(model) and not local.exists():
        raise MissingWeights(missing_message(args))
    try:
        with _offline(args):
            pipe = pipeline_class.from_pretrained(str(local) if local.exists() else model,
                                                  dtype=torch_dtype(args),
                                                  local_files_only=not args.allow_download, **kwargs)
    except (OSError, ValueError) as error:  # huggingface_hub's "not in the cache" errors are OSErrors
        if local.exists():
            raise
        raise MissingWeights(missing_message(args, str(error))) from error
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(args.device)


# -- the comparison ------------------------------------------------------------------------
def toca_config(args: argparse.Namespace) -> ToCaConfig:
    if args.schedule_file:
        return ToCaConfig.from_schedule_file(args.schedule_file, compiler=args.compiler)
    if args.preset != "none":
        return ToCaConfig(preset=args.preset, compiler=args.compiler)
    return ToCaConfig(interval=args.interval, ratio=args.ratio, compiler=args.compiler)


@dataclass
class Result:
    baseline: np.ndarray     # [N, H, W, C] in [0, 1]: images, or the frames of one video
    cached: np.ndarray
    baseline_s: float
    cached_s: float
    psnr: float
    partial_steps: int
    steps: int


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _frames(output: Any) -> np.ndarray:
    """The pipeline output (``output_type="np"``) as [N, H, W, C] floats in [0, 1]."""
    value = output.images if hasattr(output, "images") else output.frames
    array = np.asarray(value, dtype=np.float32)
    if array.ndim == 5:       # videos [B, F, H, W, C]: all frames of all videos
        array = array.reshape(-1, *array.shape[2:])
    return np.clip(array, 0.0, 1.0)


def _timed(pipe: Any, call: dict, args: argparse.Namespace) -> tuple[np.ndarray, float]:
    """The output of the last timed generation and the median time of ``--runs`` of them, after
    ``--warmup-runs`` untimed ones; every generation starts from the same seed."""
    generator = lambda: torch.Generator("cpu").manual_seed(args.seed)
    times = []
    with torch.no_grad():
        for _ in range(args.warmup_runs):
            pipe(**call, generator=generator(), output_type="np")
        for _ in range(max(1, args.runs)):
            _sync(args.device)
            start = time.perf_counter()
            out = pipe(**call, generator=generator(), output_type="np")
            _sync(args.device)
            times.append(time.perf_counter() - start)
    return _frames(out), float(np.median(times))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def compare(pipe: Any, call: dict, args: argparse.Namespace, row: str = "image", max_rows: int | None = None) -> Result:
    """Time one generation with plain ``torch.compile`` and one with ``toca_compile.apply``
    (each after ``--warmup-runs`` untimed ones, same seed), print the speed-up, PSNR and the
    toca summary, and save both side by side."""
    transformers = toca_compile.pipelines.transformers_of(pipe)
    print(f"model: {args.model}  ({', '.join(f'{name}: {type(m).__name__}' for name, m in transformers.items())}, "
          f"{args.steps} steps, {args.device}, {args.dtype}, compiler {args.compiler})")

    # 1. uncached: plain torch.compile on every transformer, then undone
    for module in transformers.values():
        module.compile(backend=args.compiler)
    try:
        baseline, baseline_s = _timed(pipe, call, args)
    finally:
        for module in transformers.values():
            module._compiled_call_impl = None
    torch._dynamo.reset()

    # 2. toca-compile through apply(), the preset re-timed to the step count
    config = toca_config(args)
    toca_compile.apply(pipe, config)
    try:
        if config.preset is not None and get_preset(config.preset).num_steps not in (None, args.steps):
            for toca in toca_compile.applied(pipe).values():
                toca.schedule = get_preset(config.preset, num_steps=args.steps)
            print(f"preset {config.preset} re-timed from {get_preset(config.preset).num_steps} to {args.steps} steps")
        cached, cached_s = _timed(pipe, call, args)
        stats = [toca.stats() for toca in toca_compile.applied(pipe).values()]
        print(toca_compile.summary(pipe))
    finally:
        toca_compile.remove(pipe)
        torch._dynamo.reset()

    result = Result(baseline, cached, baseline_s, cached_s, psnr(baseline, cached),
                    sum(s.partial_steps for s in stats), sum(s.steps for s in stats))
    what = ("preset " + config.preset if config.preset else
            "schedule file " + str(config.schedule_file) if config.schedule_file else
            f"interval {config.interval}, ratio {config.ratio}")
    print(f"torch.compile (uncached): {baseline_s:8.3f} s")
    print(f"toca-compile ({what}): {cached_s:8.3f} s")
    print(f"speed-up: {baseline_s / cached_s:.2f}x")
    print(f"PSNR toca vs uncached: {result.psnr:.2f} dB")
    print(f"partial steps: {result.partial_steps} of {result.steps} (warm-up and timed toca generations)")
    shown = np.arange(len(baseline))
    if max_rows is not None and len(shown) > max_rows:  # evenly spaced frames, first and last included
        shown = np.unique(np.linspace(0, len(baseline) - 1, max_rows).round().astype(int))
    path = save_side_by_side(baseline[shown], cached[shown], args.out)
    print(f"saved {path} (left: torch.compile, right: toca-compile; one row per {row})")
    return result


def save_side_by_side(left: np.ndarray, right: np.ndarray, path: str) -> Path:
    """Rows of [left | right] pairs (one per image or frame) as one PNG."""
    from PIL import Image

    rows = np.concatenate([np.concatenate([a, b], axis=1) for a, b in zip(left, right)], axis=0)
    pixels = (rows * 255.0).round().astype(np.uint8)
    if pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(out)
    return out


def run(main_body: Any, argv: Sequence[str] | None, p: argparse.ArgumentParser, script: str) -> int:
    """Parse, run ``main_body(args)``, and turn missing weights into a message and exit code 2."""
    args = parse(p, argv, script)
    try:
        main_body(args)
    except MissingWeights as missing:
        print(missing, file=sys.stderr)
        return 2
    return 0
