"""``toca flops``: FLOPs of a whole generation of a full-size DiT, uncached vs cached.

Models are built on the meta device from their published configurations (diffusers
classes, no weights downloaded, no memory used), so DiT-XL/2, PixArt-alpha and FLUX.1-dev
can be counted on a laptop. The counting itself is :func:`toca_compile.flops.generation_flops`.

    toca flops --model dit-xl-2 --preset dit-ddim-50
    toca flops --model flux-dev --preset flux-50-n5 --breakdown
    toca flops --model pixart-alpha-256 --interval 3 --ratio 0.2 --steps 20
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class ModelSpec:
    """A full-size model configuration and the inputs of one call at a given batch."""

    name: str
    description: str
    build: Callable[[], torch.nn.Module]
    inputs: Callable[[int], tuple[tuple, dict]]   # batch -> (args, kwargs), built on the current device
    batch: int                                    # default batch (2 = batched classifier-free guidance)
    preset: str | None                            # the preset written for this model, if any
    steps: int                                    # default number of steps without a preset


# -- DiT-XL/2 (diffusers DiTTransformer2DModel, facebook/DiT-XL-2-256 / -512) ----------------
def _dit(sample_size: int, layers: int = 28, heads: int = 16, head_dim: int = 72) -> Callable[[], torch.nn.Module]:
    """DiT-XL/2's configuration (DiT-B/2: 12 blocks, 12 heads x 64 = width 768)."""
    def build() -> torch.nn.Module:
        from diffusers import DiTTransformer2DModel

        return DiTTransformer2DModel(num_layers=layers, num_attention_heads=heads, attention_head_dim=head_dim,
                                     in_channels=4, out_channels=8, patch_size=2, sample_size=sample_size,
                                     num_embeds_ada_norm=1000, norm_type="ada_norm_zero")
    return build


def _dit_inputs(sample_size: int) -> Callable[[int], tuple[tuple, dict]]:
    def inputs(batch: int) -> tuple[tuple, dict]:
        return (torch.empty(batch, 4, sample_size, sample_size),), dict(
            timestep=torch.empty(batch, dtype=torch.long), class_labels=torch.empty(batch, dtype=torch.long))
    return inputs


# -- PixArt-alpha (diffusers PixArtTransformer2DModel: PixArt-XL-2-1024-MS / -256x256) --------
#: T5 tokens of a PixArt-alpha caption as diffusers' pipeline passes them (padded; masked in attention).
#: The official PixArt code drops the padding before the blocks (``PixArt.py``: ``y.masked_select``),
#: so its cross-attention keys/values cost what the prompt's own tokens cost: ``--text-tokens``.
PIXART_TEXT_TOKENS = 120


def _pixart(sample_size: int) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        from diffusers import PixArtTransformer2DModel

        # 28 blocks, 16 heads x 72 = 1152; captions: 120 T5-XXL tokens of 4096 dims; the 1024
        # model (sample_size 128) also embeds resolution and aspect ratio
        return PixArtTransformer2DModel(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8,
                                        num_layers=28, cross_attention_dim=1152, caption_channels=4096,
                                        sample_size=sample_size, patch_size=2, norm_type="ada_norm_single",
                                        norm_elementwise_affine=False, norm_eps=1e-6, num_embeds_ada_norm=1000,
                                        activation_fn="gelu-approximate", attention_bias=True)
    return build


def _pixart_inputs(sample_size: int) -> Callable[[int], tuple[tuple, dict]]:
    def inputs(batch: int, text_tokens: int = PIXART_TEXT_TOKENS) -> tuple[tuple, dict]:
        added = ({"resolution": torch.empty(batch, 2), "aspect_ratio": torch.empty(batch, 1)} if sample_size == 128
                 else {"resolution": None, "aspect_ratio": None})
        return (torch.empty(batch, 4, sample_size, sample_size),), dict(
            encoder_hidden_states=torch.empty(batch, text_tokens, 4096),
            encoder_attention_mask=torch.empty(batch, text_tokens, dtype=torch.long),
            timestep=torch.empty(batch, dtype=torch.long), added_cond_kwargs=added, return_dict=False)
    return inputs


# -- FLUX.1-dev (diffusers FluxTransformer2DModel) -------------------------------------------
def _flux() -> torch.nn.Module:
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38,
                                  attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
                                  pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56))


def _flux_inputs(batch: int) -> tuple[tuple, dict]:
    # 1024x1024: 128x128 latents packed 2x2 -> 4096 tokens of 64 channels; 512 T5 tokens
    return (), dict(hidden_states=torch.empty(batch, 4096, 64), encoder_hidden_states=torch.empty(batch, 512, 4096),
                    pooled_projections=torch.empty(batch, 768), timestep=torch.empty(batch),
                    img_ids=torch.empty(4096, 3), txt_ids=torch.empty(512, 3), guidance=torch.empty(batch),
                    return_dict=False)


# -- SD3-medium (diffusers SD3Transformer2DModel) --------------------------------------------
def _sd3() -> torch.nn.Module:
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
                                 num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                                 pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192)


def _sd3_inputs(batch: int) -> tuple[tuple, dict]:
    # 1024x1024: 128x128 latents, patch 2 -> 4096 tokens; 77 CLIP + 256 T5 tokens
    return (), dict(hidden_states=torch.empty(batch, 16, 128, 128), encoder_hidden_states=torch.empty(batch, 333, 4096),
                    pooled_projections=torch.empty(batch, 2048), timestep=torch.empty(batch), return_dict=False)


MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("dit-xl-2", "DiT-XL/2 256x256 (32x32 latents, 256 tokens), class-conditional",
              _dit(32), _dit_inputs(32), 2, "dit-ddim-50", 50),
    ModelSpec("dit-b-2", "DiT-B/2 256x256 (32x32 latents, 256 tokens; 12 blocks, width 768), class-conditional, "
              "random weights", _dit(32, layers=12, heads=12, head_dim=64), _dit_inputs(32), 2, "dit-ddim-50", 50),
    ModelSpec("dit-xl-2-512", "DiT-XL/2 512x512 (64x64 latents, 1024 tokens), class-conditional",
              _dit(64), _dit_inputs(64), 2, "dit-ddim-50", 50),
    ModelSpec("pixart-alpha", "PixArt-alpha XL-2 1024-MS (128x128 latents, 4096 tokens; 120 T5 tokens)",
              _pixart(128), _pixart_inputs(128), 2, "pixart-dpm-20", 20),
    ModelSpec("pixart-alpha-256", "PixArt-alpha XL-2 256x256 (32x32 latents, 256 tokens; 120 T5 tokens), "
              "the resolution of ToCa's PixArt experiments", _pixart(32), _pixart_inputs(32), 2, "pixart-dpm-20", 20),
    ModelSpec("flux-dev", "FLUX.1-dev 1024x1024 (4096 image + 512 text tokens), guidance-distilled: batch 1",
              _flux, _flux_inputs, 1, "flux-50-n5", 50),
    ModelSpec("sd3-medium", "SD3-medium 1024x1024 (4096 image + 333 text tokens); no preset",
              _sd3, _sd3_inputs, 2, None, 28),
)}


# -- the command -----------------------------------------------------------------------------
def add_flops_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``flops`` on the ``toca`` sub-command parsers."""
    from ..presets import PRESETS

    p = sub.add_parser("flops", help="FLOPs of a whole generation of a full-size model, uncached vs cached "
                                     "(meta device: no weights, no memory)",
                       description="Count the FLOPs of one generation of a full-size model configuration on the "
                                   "meta device, without caching and with a ToCa preset or interval/ratio.",
                       epilog="models:\n" + "\n".join(f"  {name}: {spec.description}"
                                                     + (f" [preset {spec.preset}]" if spec.preset else "")
                                                     for name, spec in MODELS.items()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=sorted(MODELS), help="model configuration")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="ToCa schedule (default: the model's own preset, if it has one)")
    p.add_argument("--interval", type=int, default=None, help="full step every N steps (instead of a preset)")
    p.add_argument("--ratio", type=float, default=None, help="fraction of tokens refreshed (instead of a preset)")
    p.add_argument("--mode", choices=["toca", "fora"], default="toca", help="fora: reuse every branch (ratio 0)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's)")
    p.add_argument("--current-step-threshold", action="store_true",
                   help="DiT / PixArt presets: the earlier reading, threshold computed at the step itself "
                        "(lagged_threshold=False) instead of the official code's")
    p.add_argument("--no-first-block-alone", action="store_true",
                   help="DiT / PixArt presets: a step on which only block 0 is due stays partial in every block "
                        "(first_block_alone=False) instead of computing block 0 as the official code does")
    p.add_argument("--round-up", action="store_true",
                   help="presets: refresh ceil(r N) tokens per region (token_rounding='ceil') instead of the "
                        "official code's int(r N)")
    p.add_argument("--exact-step-factors", action="store_true",
                   help="presets: the exact step factor of every step (step_levels=None), as the official code "
                        "takes it, instead of the presets' 4 levels (one compiled variant each)")
    p.add_argument("--batch", type=int, default=None, help="batch per call (default: 2 = batched CFG; FLUX 1)")
    p.add_argument("--text-tokens", type=int, default=None,
                   help="PixArt models: caption tokens the blocks see (default 120, padded as diffusers passes them; "
                        "the official PixArt code drops padding, so a prompt's own length compares with its counts)")
    p.add_argument("--no-constant-kv", action="store_true",
                   help="recompute cross-attention's text keys/values every step (ToCaConfig.constant_kv=False)")
    p.add_argument("--recompute-attention-projection", action="store_true",
                   help="reused attention branches run their output projection again on every token, as the "
                        "authors' FLUX and FORA code does (ToCaConfig.attention_projection='recompute'; same "
                        "outputs, more FLOPs: how their published figures count)")
    p.add_argument("--breakdown", action="store_true", help="also print FLOPs per region kind and per block")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def build_request(args: argparse.Namespace):
    """(spec, config, schedule, steps, batch) from parsed arguments; ValueError on bad input."""
    from ..config import ToCaConfig

    spec = MODELS[args.model]
    manual = args.interval is not None or args.ratio is not None
    if manual and args.preset is not None:
        raise ValueError("give either --preset or --interval/--ratio, not both")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.batch is not None and args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    preset = None if manual else (args.preset or spec.preset)
    common = dict(mode=args.mode, compiler="eager", constant_kv=not getattr(args, "no_constant_kv", False),
                  attention_projection="recompute" if getattr(args, "recompute_attention_projection", False)
                  else "reuse")
    if preset is not None:
        config = ToCaConfig(preset=preset, **common)
    else:
        defaults = ToCaConfig()
        config = ToCaConfig(interval=args.interval if args.interval is not None else defaults.interval,
                            ratio=args.ratio if args.ratio is not None else defaults.ratio, **common)
    schedule = config.schedule()
    if getattr(args, "current_step_threshold", False):
        if preset is None or getattr(schedule, "full_rule", None) != "threshold":
            raise ValueError("--current-step-threshold applies to the threshold-rule presets "
                             "(dit-ddim-50, dit-ddpm-250, pixart-dpm-20)")
        schedule = schedule.replace(lagged_threshold=False)
    readings = {"--no-first-block-alone": (getattr(args, "no_first_block_alone", False), "first_block_alone", False),
                "--round-up": (getattr(args, "round_up", False), "token_rounding", "ceil"),
                "--exact-step-factors": (getattr(args, "exact_step_factors", False), "step_levels", None)}
    for flag, (asked, field, value) in readings.items():
        if asked:
            if preset is None or not hasattr(schedule, field):
                raise ValueError(f"{flag} applies to the presets' schedules; give --preset")
            schedule = schedule.replace(**{field: value})
    if preset is None:
        steps = args.steps or spec.steps
    else:
        steps = args.steps or schedule.num_steps
        if steps != schedule.num_steps:
            schedule = schedule.replace(num_steps=steps)  # re-time the preset's step-dependent rules
    text_tokens = getattr(args, "text_tokens", None)
    if text_tokens is not None:
        if not spec.name.startswith("pixart"):
            raise ValueError(f"--text-tokens applies to the PixArt models, not {spec.name}")
        if not 1 <= text_tokens <= PIXART_TEXT_TOKENS:
            raise ValueError(f"--text-tokens must be in [1, {PIXART_TEXT_TOKENS}], got {text_tokens}")
        spec = dataclasses.replace(spec, inputs=functools.partial(spec.inputs, text_tokens=text_tokens),
                                   description=spec.description.replace(
                                       f"{PIXART_TEXT_TOKENS} T5 tokens", f"{text_tokens} T5 tokens, no padding"))
    return spec, config, schedule, steps, args.batch or spec.batch


def same_inputs(spec: ModelSpec, batch: int) -> Callable[[int], tuple[tuple, dict]]:
    """The inputs of every step: built once (on the counter's device), then the same tensors at
    every step, as a pipeline passes its prompt embeddings, so the text keys/values cached per
    generation (``ToCaConfig.constant_kv``) are read as they would be in a real generation."""
    built: list = []

    def inputs(step: int) -> tuple[tuple, dict]:
        if not built:
            built.append(spec.inputs(batch))
        return built[0]
    return inputs


def run_flops(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> None:
    """Run ``toca flops`` for parsed ``args``; input errors go to ``parser.error``."""
    import warnings

    from ..runtime import ToCaWarning
    from .generation import generation_flops

    try:
        spec, config, schedule, steps, batch = build_request(args)
    except ValueError as error:
        if parser is None:
            raise
        parser.error(str(error))
    print(f"model: {spec.name}: {spec.description}; batch {batch}, {steps} steps, meta device")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ToCaWarning)  # fallbacks are listed in the report
        report = generation_flops(spec.build, same_inputs(spec, batch), steps, config, schedule=schedule,
                                  breakdown=args.breakdown, progress=not args.no_progress)
    if config.preset is not None:
        from ..presets import PRESETS

        report.schedule = f"preset {config.preset}" + (f", mode {config.mode}" if config.mode != "toca" else "")
        if steps != PRESETS[config.preset].num_steps:
            report.schedule += f", re-timed from {PRESETS[config.preset].num_steps} to {steps} steps"
    print(report)
    seconds = report.seconds
    print(f"  time: trace {seconds['trace']:.0f} s, uncached count {seconds['uncached']:.0f} s, "
          f"cached count {seconds['cached']:.0f} s")
    if report.breakdown is not None:
        print("\nper region kind (<kind>: the region's branch; <kind> (rest): its modules' work off the branch, "
              "e.g. adaLN modulation, text K/V of cross-attention, run in full every step; other: the rest of "
              "a block; toca: token scores and selection; -: outside the blocks):")
        print(report.breakdown.table("kind"))
        print("\nper block:")
        print(report.breakdown.table("block"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="toca")
    sub = parser.add_subparsers(dest="command", required=True)
    add_flops_parser(sub)
    args = parser.parse_args(argv)
    run_flops(args, parser)


if __name__ == "__main__":
    main()
