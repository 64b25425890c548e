"""More diffusers transformers for the test zoo (group 7); each entry registers itself in
diffusers_zoo.ZOO (denoisers) or EXTRA (transformers that are not DiT denoisers)."""
from __future__ import annotations

import torch

from diffusers_zoo import B, ZooEntry, _gen, _model, _randn, _register, _t


# --------------------------------------------------------------------------------------------
# LTX-2 (audio + video)
# --------------------------------------------------------------------------------------------


def _ltx2():
    from diffusers import LTX2VideoTransformer3DModel

    model = _model(
        LTX2VideoTransformer3DModel,
        in_channels=8,
        out_channels=8,
        num_attention_heads=2,
        attention_head_dim=16,
        cross_attention_dim=32,
        audio_in_channels=8,  # packed audio latents: channels * mel bins per frame
        audio_out_channels=8,
        audio_num_attention_heads=2,
        audio_attention_head_dim=16,
        audio_cross_attention_dim=32,  # = audio inner dim (a2v/v2a attention width and its RoPE)
        num_layers=2,
        caption_channels=24,
    )
    g = _gen()
    f, h, w, frames_a = 2, 4, 8, 8
    x = _randn(B, f * h * w, 8, g=g)  # packed video latents [B, F*H*W, C]
    mask = torch.ones(B, 8, dtype=torch.long)
    mask[:, 6:] = 0
    kwargs = dict(
        audio_hidden_states=_randn(B, frames_a, 8, g=g),  # packed audio latents [B, L, C*M]
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        audio_encoder_hidden_states=_randn(B, 8, 24, g=g),
        timestep=_t("flow1000"),  # pipeline: t.expand(B) from FlowMatchEuler, sigma * 1000
        encoder_attention_mask=mask,
        audio_encoder_attention_mask=mask,
        num_frames=f,
        height=h,
        width=w,
        fps=24.0,
        audio_num_frames=frames_a,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="LTX2VideoTransformer3DModel",
        build=_ltx2,
        num_blocks={"attn": 4, "cross_attn": 8, "mlp": 4},
        attn_streams={"image": 4},
        mlp_streams={"image": 4},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64 + 8,
        notes=(
            "Dual-stream audio+video: every block carries a video stream (2x4x8 = 64 tokens) and an "
            "audio stream (8 latent frames) side by side and returns both; the video output comes "
            "first. Per block and per stream: gated self-attention (RMSNorm + shift/scale, "
            "branch * gate), ungated text cross-attention (norm2, no modulation with the default "
            "cross_attn_mod=False), one gated cross-modal attention (audio-to-video: video queries, "
            "audio keys; video-to-audio: audio queries, video keys; both read the other stream as "
            "it was BEFORE either cross-modal add, gate on the left), then a gated GELU MLP. So 2 "
            "attn + 4 cross_attn + 2 mlp per block, half on each stream (audio counted as image "
            "stream). Interleaved RoPE on self-attention and a 1-D temporal RoPE on the cross-modal "
            "attentions. Six AdaLN-single embedders read the timestep (per stream: block modulation, "
            "cross-modal scale/shift, cross-modal gate). Timestep is the FlowMatchEuler t in [0, 1000]."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# SANA-WM stage-2 refiner (LTX-2 blocks, video stream only, sliding-window KV cache)
# --------------------------------------------------------------------------------------------


def _sana_wm_refiner():
    from diffusers import SanaWMLTX2RefinerTransformer3DModel
    from diffusers.models.transformers.transformer_sana_wm_refiner import SanaWMRefinerKVCache

    layers = 2
    model = _model(
        SanaWMLTX2RefinerTransformer3DModel,
        in_channels=8,
        out_channels=8,
        num_attention_heads=2,
        attention_head_dim=16,
        cross_attention_dim=32,
        audio_in_channels=8,  # the audio half of the LTX-2 block is built but never run
        audio_out_channels=8,
        audio_num_attention_heads=2,
        audio_attention_head_dim=16,
        audio_cross_attention_dim=32,
        num_layers=layers,
        caption_channels=24,
    )
    g = _gen()
    h, w, fps = 4, 8, 24.0
    stage1 = _randn(B, 8, 5, h, w, g=g)  # stage-1 latents: sink frame 0, block frames 1-2, active 3-4
    text = _randn(B, 8, 24, g=g)
    mask = torch.ones(B, 8, dtype=torch.long)
    mask[:, :2] = 0  # the refiner's tokenizer pads on the left

    def pack(z):  # [B, C, F, H, W] -> [B, F*H*W, C] (patch size 1)
        return z.permute(0, 2, 3, 4, 1).flatten(1, 3)

    def rope(frames):
        return model.build_rotary_emb_for_absolute_positions(B, frames, h, w, torch.device("cpu"), fps)

    # What the refiner pipeline does before a denoising step of the second AR block: capture the
    # pre-RoPE sink K/V at t = 0, refine block 1 and capture its post-RoPE K/V as history.
    cache = SanaWMRefinerKVCache(layers)
    with torch.no_grad():
        zeros = torch.zeros(B, h * w)
        model(pack(stage1[:, :, :1]), text, zeros, rope([0]), mask, kv_cache=cache,
              kv_cache_mode="capture_pre_rope", return_dict=False)
        for i in range(layers):
            cache.get(i).store_sink(*cache.get(i).get_captured_pre_rope())
        cache.sink_pe = rope([0])
        model(pack(stage1[:, :, 1:3]), text, torch.zeros(B, 2 * h * w), rope([1, 2]), mask, kv_cache=cache,
              kv_cache_mode="inject_and_capture_post_rope", return_dict=False)
        for i in range(layers):
            cache.get(i).store_history(*cache.get(i).get_captured_post_rope())
        cache.sink_pe = rope([0])  # sink RoPE offset = block start 3 - 2 history frames - 1 sink frame
    kwargs = dict(
        encoder_hidden_states=text,
        # The pipeline passes sigma * 1000 expanded per token ([B, N], one value); the model embeds
        # timestep.flatten() and views it back per sample, so the [B] form gives the same output.
        timestep=_t("flow1000"),
        video_rotary_emb=rope([3, 4]),
        encoder_attention_mask=mask,
        kv_cache=cache,
        kv_cache_mode="inject",
        return_dict=False,
    )
    return model, (pack(stage1[:, :, 3:5]),), kwargs


_register(
    ZooEntry(
        name="SanaWMLTX2RefinerTransformer3DModel",
        build=_sana_wm_refiner,
        num_blocks={"joint_attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        notes=(
            "SANA-WM's stage-2 refiner: LTX-2 blocks (the audio, audio-text and cross-modal "
            "sub-modules exist for checkpoint loading but forward never calls them) run on the video "
            "stream only: gated self-attention (branch * gate), ungated text cross-attention after "
            "norm2, gated GELU MLP. The denoising step is the KV-cache 'inject' path of chunk-causal "
            "AR refinement: the active block (2 frames x 4x8 = 64 queries) attends to cat(sink K "
            "re-RoPE'd at a sliding offset (32), post-RoPE history K/V of the refined previous block "
            "(64), its own K/V (64)) = 160 keys, all inside the self-attention branch (a joint_attn "
            "region: keys beyond its own tokens); build() fills "
            "the cache with the pipeline's two capture passes at t = 0. The cache object is a plain "
            "Python input that is read, not written, on this path. Text mask left-padded. The "
            "pipeline's per-token timestep [B, N] holds one value per sample; [B] is passed here."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# Sana-Video
# --------------------------------------------------------------------------------------------


def _sana_video():
    from diffusers import SanaVideoTransformer3DModel

    model = _model(
        SanaVideoTransformer3DModel,
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=16,
        cross_attention_dim=32,
        caption_channels=24,
        mlp_ratio=2.0,
        sample_size=8,
        patch_size=(1, 2, 2),
        rope_max_seq_len=32,
    )
    g = _gen()
    x = _randn(B, 4, 4, 8, 8, g=g)  # B, C, F, H, W -> 4 frames x 4x4 patches
    mask = torch.ones(B, 8, dtype=torch.long)
    mask[:, 6:] = 0
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        encoder_attention_mask=mask,
        timestep=_t("flow1000"),  # pipeline: t.expand(B) from the flow DPM-Solver, in [0, 1000]
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="SanaVideoTransformer3DModel",
        reused_kinds=("mlp",),
        build=_sana_video,
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        notes=(
            "Sana blocks for video. Self-attention is ReLU linear attention (no softmax, no SDPA) "
            "with Wan-style 3-axis RoPE on the numerator only: normaliser z from unrotated relu(k), "
            "relu(q); RoPE written through strided setitems into empty_like. Cross-attention takes "
            "the raw residual stream as queries (no norm, no gate): attn2(x, text) + x; norm2 belongs "
            "to the MLP. The MLP (GLUMBTempConv) is NOT token-wise: tokens are unflattened to "
            "[B, F, H, W, C], then 1x1 conv, SiLU, 3x3 depthwise conv over each frame, gated SiLU, "
            "1x1 conv, and a residual (3, 1) convolution over the frame axis: token-mixing in space "
            "and time. Gates on the left (gate * branch). 4 frames x 4x4 patches."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# SANA-WM (camera-controlled world model, stage 1)
# --------------------------------------------------------------------------------------------


def _sana_wm():
    import numpy as np
    from diffusers import SanaWMTransformer3DModel
    from diffusers.pipelines.sana_wm.cam_utils import action_string_to_c2w, prepare_camera

    model = _model(
        SanaWMTransformer3DModel,
        in_channels=8,
        num_layers=2,
        hidden_size=32,
        num_attention_heads=2,  # cross-attention heads
        linear_head_dim=16,  # self-attention heads = 32 // 16
        softmax_every_n=2,  # block 0: gated-delta-net attention, block 1: softmax attention
        caption_channels=24,
        mlp_ratio=2.0,
        chunk_plucker_post_attn_blocks=-1,
    )
    g = _gen()
    frames, h, w = 2, 4, 8
    # The pipeline's camera inputs for 9 pixel frames (2 latent frames at VAE stride 8) moving
    # forward while turning right, intrinsics in pixels of the 128x256 canvas.
    cam = prepare_camera(
        action_string_to_c2w("wl-8"),
        np.tile(np.array([[200.0, 200.0, 128.0, 64.0]], dtype=np.float32), (9, 1)),
        target_size=(h * 32, w * 32),
        vae_stride=(8, 32, 32),
    )
    # Per-frame timestep [B, 1, T] (the pipeline's timestep[:, :1, :, 0, 0]). The pipeline pins the
    # first latent frame (the image anchor) to 0; here every frame carries the step's t, so that the
    # first value is the schedule's (the zoo's reading of per-frame timesteps).
    t = _t("flow1000")[:, None, None].repeat(1, 1, frames)
    mask = torch.ones(B, 8, dtype=torch.long)
    mask[:, 6:] = 0
    kwargs = dict(
        encoder_hidden_states=_randn(B, 1, 8, 24, g=g),  # [B, 1, L, D] as the pipeline passes it
        mask=mask,
        camera_conditions=cam["raymap"][None].repeat(B, 1, 1),  # [B, T, 20]
        chunk_plucker=cam["chunk_plucker"][None].repeat(B, 1, 1, 1, 1),  # [B, 48, T, H, W]
        return_dict=False,
    )
    return model, (_randn(B, 8, frames, h, w, g=g), t), kwargs


_register(
    ZooEntry(
        name="SanaWMTransformer3DModel",
        reused_kinds=("mlp",),
        build=_sana_wm,
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        notes=(
            "Camera-controlled Sana video DiT. Each block: x + gate*attn, x + plucker_proj(plucker "
            "embedding) (a linear residual of a camera input, no anchor), x + cross_attn(x, text) "
            "(no norm, no gate, boolean text mask), x + gate*mlp. Gates and shift/scale are PER "
            "FRAME ([B, T, 1, D]; tokens reshaped to [B, T, S, C] around them). Self-attention has a "
            "main and a camera (UCPE ray-transform) branch summed before a shared "
            "silu(output_gate(x)) gate and proj: block 0 is a bidirectional gated delta net (ReLU "
            "kernels, temporal short convs on K, per-frame decay/beta, a Python scan over frames, "
            "run forwards and on the flipped sequence), block 1 (softmax_every_n=2) uses softmax "
            "SDPA in bf16. MLP GLUMBConvTemp: 1x1 conv, 3x3 depthwise conv per frame, gated SiLU, "
            "1x1 conv, residual (3, 1) temporal conv: token-mixing. The timestep is per frame "
            "[B, 1, T] (the pipeline pins frame 0, the image anchor, to 0; not done here) and is "
            "truncated with .long() inside the model; a [B] timestep cannot be passed (the blocks "
            "read t.shape[2])."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# MiniMax-H3 (joint video + audio, one packed sequence)
# --------------------------------------------------------------------------------------------


def _minimax_h3():
    from diffusers import MiniMaxH3Transformer3DModel
    from diffusers.modular_pipelines.minimax_h3.before_denoise import (
        MiniMaxH3PrepareLayoutStep,
        patchify_video_latents,
    )

    model = _model(
        MiniMaxH3Transformer3DModel,
        num_attention_heads=2,
        attention_head_dim=16,
        hidden_size=32,
        num_layers=2,
        num_refiner_layers=1,
        ffn_dim=64,
        in_channels=4,
        audio_in_channels=8,
        patch_size=(1, 2, 2),
        text_dim=24,
        freq_dim=32,
        time_embed_hidden_dim=32,
        time_embed_dim=32,
        rope_freq_dim=2,  # 2 * 3 * 2 = 12 of the 16 head channels rotated
    )
    g = _gen()
    frames, h, w, audio_latents, audio_channels, text_len = 2, 8, 8, 8, 2, 8
    # The t2va layout of the modular pipeline: [text | audio (channel-major) | video].
    position_ids, token_tags, video_idx, audio_idx, text_idx, _, _ = MiniMaxH3PrepareLayoutStep.build_packed_sequence(
        torch.ones(text_len, dtype=torch.long), frames, h, w, audio_latents, (1, 2, 2), audio_channels,
        audio_tag=2, video_tag=0,
    )
    video = patchify_video_latents(_randn(B, 4, frames, h, w, g=g), (1, 2, 2)).view(B, -1, 16)
    # Two noise levels: index 0 for the video (and text) rows, index 1 for the audio rows. The
    # pipeline's video and audio schedules use different shifts; at this step of the zoo's
    # unshifted schedule they coincide.
    t = _t("flow1_rev")  # pipeline: 1 - sigma, rising to 1 (clean)
    timestep_indices = torch.zeros(position_ids.shape[0], dtype=torch.long)
    timestep_indices[audio_idx] = 1
    kwargs = dict(
        audio_hidden_states=_randn(B, audio_idx.numel(), 8, g=g),
        encoder_hidden_states=_randn(B, text_len, 24, g=g),
        timestep=t,
        timestep_indices=timestep_indices,
        token_tags=token_tags,
        position_ids=position_ids,
        video_indices=video_idx,
        audio_indices=audio_idx,
        text_indices=text_idx,
        return_dict=False,
    )
    return model, (video,), kwargs


_register(
    ZooEntry(
        name="MiniMaxH3Transformer3DModel",
        build=_minimax_h3,
        num_blocks={"attn": 3, "mlp": 3},
        attn_streams={"text": 1, "joint": 2},
        mlp_streams={"text": 1, "joint": 2},
        timestep_arg="timestep",
        timestep_convention="flow1_rev",
        image_tokens=32 + 16,
        notes=(
            "One packed sequence per sample: [8 text rows | 16 audio rows (8 latents x 2 channels, "
            "channel-major) | 32 video rows (2 frames x 4x4 patches)], scattered into a zero buffer "
            "with index_copy; both output heads run over every row and index_select their rows. "
            "1 token-refiner block over the text only (plain pre-norm, no modulation: constant over "
            "steps), then 2 single-stream blocks over the whole packed sequence: gated self-attention "
            "(per-head RMSNorm q/k, rotate-half RoPE on 12 of 16 channels from (t, h, w) positions "
            "built in float64) and "
            "gated SwiGLU MLP. The AdaLN table has one row per (timestep, modality) and is gathered "
            "PER TOKEN with index_select(adaln_indices), so shift/scale/gate are [N, D] tensors "
            "shared by the batch (the batch is a replication axis). `timestep` lists the distinct "
            "noise levels, not one per sample: entry 0 serves video and text rows, entry 1 the audio "
            "rows; values in [0, 1] rising to 1 = clean."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# Motif-Video
# --------------------------------------------------------------------------------------------


def _motif_video():
    from diffusers import MotifVideoTransformer3DModel

    model = _model(
        MotifVideoTransformer3DModel,
        in_channels=9,  # noisy latents (4) + condition latents (4) + condition mask (1)
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        num_single_layers=2,
        mlp_ratio=2.0,
        patch_size=2,
        patch_size_t=1,
        text_embed_dim=24,
        rope_axes_dim=(4, 6, 6),
    )
    g = _gen()
    latents = _randn(B, 4, 2, 8, 16, g=g)  # 2 frames x 4x8 patches
    # Text-to-video: the pipeline concatenates zero condition latents and a zero mask.
    x = torch.cat([latents, torch.zeros(B, 4, 2, 8, 16), torch.zeros(B, 1, 2, 8, 16)], dim=1)
    mask = torch.ones(B, 8, dtype=torch.long)
    mask[:, 6:] = 0
    kwargs = dict(
        timestep=_t("flow1000"),  # pipeline: t.expand(B) from FlowMatchEuler
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        encoder_attention_mask=mask,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="MotifVideoTransformer3DModel",
        build=_motif_video,
        num_blocks={"joint_attn": 4, "mlp": 4, "parallel": 2},
        mlp_streams={"image": 2, "text": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        notes=(
            "HunyuanVideo-like MMDiT with the class defaults for the optional parts (no text "
            "cross-attention, no decoder single blocks). 2 double-stream blocks: joint attention "
            "(add_q/k/v projections for text, RoPE on the video part only), both streams continue "
            "(2 joint_attn + 2 mlp each); attention gates on the right (branch * gate), MLP gates on "
            "the left. 2 single-stream blocks: "
            "cat([video, text]) BEFORE the residual (video first: image rows at offset 0, 64 + 8 "
            "tokens), one gated proj_out(cat(attn, gelu(proj_mlp))) join, split after it. Inside that "
            "branch the attention processor slices the normed sequence back into video and text, "
            "re-concatenates it, applies RoPE to the video slice only and splits the output again: "
            "the token axis is cut and re-joined inside the region. Text mask padded with True for "
            "the video keys (boolean SDPA mask over joint keys). in_channels 2*4 + 1 as the pipeline "
            "builds it (text-to-video: zero condition and mask)."
        ),
    )
)
