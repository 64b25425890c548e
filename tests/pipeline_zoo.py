"""Tiny random-weight diffusers pipelines, built the way diffusers' own tests build them.

Each builder returns ``(pipe, call_kwargs)``: a pipeline whose transformer comes from the test zoo's
tiny configs (or an equally small one), a small VAE, a real scheduler and no text encoder
(``prompt_embeds`` are passed instead, so nothing is downloaded), and the keyword arguments of one
generation. Builders are seeded: two calls give identical pipelines.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch

STEPS = 6


def _seeded(cls, seed: int = 0, **config):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(**config).eval()


def _redraw_zero_gates(model: torch.nn.Module) -> torch.nn.Module:
    """Checkpoints fill zero-initialised gates and modulation; random ones at zero would make a
    block the identity and caching tests vacuous."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.numel() and p.abs().max() == 0 and not (name.endswith("bias") and "norm" in name):
                p.normal_(0.0, p.shape[1] ** -0.5 if p.ndim == 2 else 0.5)
    return model


def _vae(latent_channels: int = 4):
    from diffusers import AutoencoderKL

    return _seeded(AutoencoderKL, block_out_channels=(8,), in_channels=3, out_channels=3,
                   down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
                   latent_channels=latent_channels, norm_num_groups=8, layers_per_block=1, sample_size=16,
                   shift_factor=0.0)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def dit(scheduler: str = "ddim"):
    from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel, HeunDiscreteScheduler

    transformer = _redraw_zero_gates(_seeded(
        DiTTransformer2DModel, num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8,
        num_layers=2, sample_size=8, patch_size=2, num_embeds_ada_norm=1000))
    sched = DDIMScheduler() if scheduler == "ddim" else HeunDiscreteScheduler()
    pipe = DiTPipeline(transformer=transformer, vae=_vae(), scheduler=sched)
    return pipe, dict(class_labels=[1, 7], num_inference_steps=STEPS, guidance_scale=4.0, output_type="pt")


def pixart():
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel

    transformer = _redraw_zero_gates(_seeded(
        PixArtTransformer2DModel, num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8,
        num_layers=2, cross_attention_dim=32, caption_channels=24, sample_size=8, patch_size=2,
        use_additional_conditions=False, norm_type="ada_norm_single", num_embeds_ada_norm=1000))
    pipe = PixArtAlphaPipeline(tokenizer=None, text_encoder=None, vae=_vae(), transformer=transformer,
                               scheduler=DPMSolverMultistepScheduler())
    g = _gen(1)
    mask = torch.ones(1, 6)
    return pipe, dict(negative_prompt=None, prompt_embeds=torch.randn(1, 6, 24, generator=g),
                      prompt_attention_mask=mask, negative_prompt_embeds=torch.randn(1, 6, 24, generator=g),
                      negative_prompt_attention_mask=mask, num_inference_steps=STEPS, height=16, width=16,
                      guidance_scale=4.5, output_type="pt", use_resolution_binning=False)


def sd3():
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    transformer = _redraw_zero_gates(_seeded(
        SD3Transformer2DModel, sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=24, caption_projection_dim=32,
        pooled_projection_dim=16, pos_embed_max_size=16))
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
                                    vae=_vae(), text_encoder=None, tokenizer=None, text_encoder_2=None,
                                    tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)
    g = _gen(2)
    return pipe, dict(prompt_embeds=torch.randn(1, 6, 24, generator=g), pooled_prompt_embeds=torch.randn(1, 16, generator=g),
                      negative_prompt_embeds=torch.randn(1, 6, 24, generator=g),
                      negative_pooled_prompt_embeds=torch.randn(1, 16, generator=g),
                      num_inference_steps=STEPS, height=16, width=16, guidance_scale=5.0, output_type="pt")


def flux():
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    transformer = _redraw_zero_gates(_seeded(
        FluxTransformer2DModel, patch_size=1, in_channels=16, num_layers=1, num_single_layers=2,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=24, pooled_projection_dim=16,
        guidance_embeds=True, axes_dims_rope=(4, 6, 6)))
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=_vae(4), text_encoder=None, tokenizer=None,
                        text_encoder_2=None, tokenizer_2=None, transformer=transformer)
    g = _gen(3)
    # true CFG: two transformer calls per step, each under its own cache_context
    return pipe, dict(prompt_embeds=torch.randn(1, 6, 24, generator=g), pooled_prompt_embeds=torch.randn(1, 16, generator=g),
                      negative_prompt_embeds=torch.randn(1, 6, 24, generator=g),
                      negative_pooled_prompt_embeds=torch.randn(1, 16, generator=g), true_cfg_scale=2.0,
                      num_inference_steps=STEPS, height=32, width=32, guidance_scale=3.5, output_type="pt")


def lumina2():
    from diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel

    transformer = _redraw_zero_gates(_seeded(
        Lumina2Transformer2DModel, sample_size=8, patch_size=2, in_channels=4, hidden_size=32, num_layers=2,
        num_refiner_layers=1, num_attention_heads=2, num_kv_heads=1, multiple_of=16, axes_dim_rope=(4, 6, 6),
        axes_lens=(32, 32, 32), cap_feat_dim=24))
    pipe = Lumina2Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=_vae(),
                           text_encoder=None, tokenizer=None)
    g = _gen(4)
    mask = torch.ones(1, 6, dtype=torch.bool)
    return pipe, dict(prompt_embeds=torch.randn(1, 6, 24, generator=g), prompt_attention_mask=mask,
                      negative_prompt_embeds=torch.randn(1, 6, 24, generator=g), negative_prompt_attention_mask=mask,
                      num_inference_steps=STEPS, height=16, width=16, guidance_scale=4.0, output_type="pt")


def wan():
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    transformer = _redraw_zero_gates(_seeded(
        WanTransformer3DModel, patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4,
        out_channels=4, text_dim=24, freq_dim=32, ffn_dim=64, num_layers=2, rope_max_seq_len=32))
    vae = _seeded(AutoencoderKLWan, base_dim=3, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                  temperal_downsample=[False, True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    pipe = WanPipeline(tokenizer=None, text_encoder=None, transformer=transformer, vae=vae,
                       scheduler=UniPCMultistepScheduler(flow_shift=3.0, prediction_type="flow_prediction",
                                                         use_flow_sigmas=True))
    g = _gen(5)
    return pipe, dict(prompt_embeds=torch.randn(1, 6, 24, generator=g),
                      negative_prompt_embeds=torch.randn(1, 6, 24, generator=g), num_inference_steps=STEPS,
                      height=32, width=32, num_frames=5, guidance_scale=5.0, output_type="pt")


@dataclass(frozen=True)
class PipelineCase:
    name: str
    build: Callable[[], tuple[Any, dict]]
    sequential_cfg: bool = False   # two transformer calls per step (cond, uncond)
    rising: bool = False           # the model receives increasing timesteps


PIPELINES = {case.name: case for case in [
    PipelineCase("dit", dit),
    PipelineCase("dit-heun", lambda: dit("heun")),
    PipelineCase("pixart-alpha", pixart),
    PipelineCase("sd3", sd3),
    PipelineCase("flux-true-cfg", flux, sequential_cfg=True),
    PipelineCase("lumina2", lumina2, rising=True),
    PipelineCase("wan", wan, sequential_cfg=True),
]}


def images(out: Any) -> torch.Tensor:
    """The generated images (or video frames) of a pipeline output, as one float tensor."""
    value = out.images if hasattr(out, "images") else out.frames if hasattr(out, "frames") else out[0]
    return torch.as_tensor(value).float()


def generate(pipe: Any, kwargs: dict, seed: int = 0) -> torch.Tensor:
    with torch.no_grad():
        return images(pipe(**kwargs, generator=_gen(100 + seed)))
