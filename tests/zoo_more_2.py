"""More diffusers transformers for the test zoo (group 2); each entry registers itself in
diffusers_zoo.ZOO (denoisers) or EXTRA (transformers that are not DiT denoisers).

Group 2 is the Wan-derived video family: AnyFlow (bidirectional and FAR causal), ChronoEdit,
SkyReels-V2, Wan-Animate, Wan-Animate-2 and Wan-VACE."""
from __future__ import annotations

import torch

from diffusers_zoo import B, ZooEntry, _gen, _model, _randn, _register, _t, timestep_schedule, EXAMPLE_STEP


def _next_t(convention: str) -> torch.Tensor:
    """The timestep of the step after the example step (a flow-map model's target time r)."""
    return timestep_schedule(convention)[EXAMPLE_STEP + 1]


# --------------------------------------------------------------------------------------------
# AnyFlow (bidirectional flow-map Wan 2.1)
# --------------------------------------------------------------------------------------------


def _anyflow():
    from diffusers import AnyFlowTransformer3DModel

    model = _model(
        AnyFlowTransformer3DModel,
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        text_dim=24,
        freq_dim=32,
        ffn_dim=64,
        num_layers=2,
        rope_max_seq_len=32,
    )
    g = _gen()
    frames = 2
    x = _randn(B, frames, 4, 8, 8, g=g)  # B, F, C, H, W (frames before channels)
    # The pipeline repeats t (and the target time r) over the latent frames: [B, F].
    t = _t("flow1000")[:, None].repeat(1, frames)
    r = _next_t("flow1000")[:, None].repeat(1, frames)
    kwargs = dict(
        timestep=t,
        r_timestep=r,
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="AnyFlowTransformer3DModel",
        build=_anyflow,
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=32,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "Wan 2.1 blocks (gated self-attention and MLP in float32, ungated cross-attention with "
            "LayerNorm) conditioned on TWO times: the source t and the flow-map target r, each "
            "sinusoid-embedded and mixed as 0.75*emb(t) + 0.25*emb(r). Both are PER-FRAME [B, F] "
            "tensors (the pipeline repeats t over the latent frames; conditioning frames get t=0), "
            "so the modulation is per token: [B, N, 6, D] after repeat_interleave over the tokens "
            "of each frame. Latents come in as [B, F, C, H, W]. RoPE is a complex128 table built "
            "inside forward (view_as_complex on float64 q/k). timestep is [B, F] here, not [B]."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# AnyFlow-FAR (chunk-causal autoregressive AnyFlow with a KV cache)
# --------------------------------------------------------------------------------------------


def _anyflow_far():
    import copy

    from diffusers import AnyFlowFARTransformer3DModel

    heads, head_dim, layers = 2, 16, 2
    model = _model(
        AnyFlowFARTransformer3DModel,
        patch_size=(1, 2, 2),
        compressed_patch_size=(1, 4, 4),
        full_chunk_limit=2,
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=4,
        out_channels=4,
        text_dim=24,
        freq_dim=32,
        ffn_dim=64,
        num_layers=layers,
        rope_max_seq_len=32,
        chunk_partition=(1, 2, 2),
    )
    g = _gen()
    partition = [1, 2, 2]
    h = w = 8
    full_tpf, comp_tpf = (h // 2) * (w // 2), (h // 4) * (w // 4)
    text = _randn(B, 8, 24, g=g)
    clean = _randn(B, sum(partition), 4, h, w, g=g)  # already generated chunks 0 and 1
    # KV cache sized the way the pipeline allocates it, then filled by the pipeline's cache
    # steps (t = r = 0) for chunks 0 and 1, so that chunk 2 is denoised against real K/V.
    limit = model.config.full_chunk_limit
    kv_cache = {
        i: {
            "full_cache": torch.zeros(2, B, heads, limit * max(partition) * full_tpf, head_dim),
            "compressed_cache": torch.zeros(
                2, B, heads, (len(partition) - limit + 1) * max(partition) * comp_tpf, head_dim),
        }
        for i in range(layers)
    }
    flag = {"num_cached_chunks": 0, "is_cache_step": False}
    with torch.no_grad():
        for chunk in range(2):
            flag["is_cache_step"] = True
            sub = partition[: chunk + 1]
            latents = clean[:, : sum(sub)]
            zero = torch.zeros(B, latents.shape[1])
            mask = model.build_attention_mask(chunk_partition=sub, height=h, width=w, mode="cache")
            _, kv_cache = model(
                hidden_states=latents, chunk_partition=sub, timestep=zero, r_timestep=zero,
                encoder_hidden_states=text, attention_mask=mask, return_dict=False,
                kv_cache=kv_cache, kv_cache_flag=copy.deepcopy(flag),
            )
            flag["num_cached_chunks"] += 1
            flag["is_cache_step"] = False
    frames = partition[-1]
    x = _randn(B, frames, 4, h, w, g=g)  # the noisy chunk 2
    kwargs = dict(
        timestep=_t("flow1000")[:, None].repeat(1, frames),
        r_timestep=_next_t("flow1000")[:, None].repeat(1, frames),
        encoder_hidden_states=text,
        chunk_partition=partition,
        kv_cache=kv_cache,
        kv_cache_flag=flag,
        return_dict=False,
    )
    # The read path adds keys to kv_cache_flag on its first call, which makes Dynamo recompile
    # on the second one (the runtime then computes that step in full: a new graph has no
    # caches). One eager call here puts the dict in the state every later call sees.
    with torch.no_grad():
        model(x, **kwargs)
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="AnyFlowFARTransformer3DModel",
        build=_anyflow_far,
        num_blocks={"joint_attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=32,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "The AnyFlow blocks with a chunk-causal self-attention processor that only runs on the "
            "flex backend. The denoising step is the KV-cache READ path (kv_cache given, "
            "is_cache_step False): the 2-frame chunk 2 (32 query tokens) attends to "
            "cat(compressed K/V of chunk 0 (4x4 patches, 4 tokens), full K/V of chunk 1 (32), its "
            "own K/V (32)), so it is a joint_attn region (keys beyond its own tokens); build() fills the cache with the pipeline's two cache steps (t = r = "
            "0). Inside the attention branch q/k/v are zero-padded on the token axis to a multiple "
            "of 128 and sliced back after flex_attention (no block mask on this path, so the "
            "padded zero keys take part in the softmax). The kv_cache_flag dict is written inside "
            "forward. Per-frame [B, F] t and r as in AnyFlowTransformer3DModel."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# ChronoEdit (Wan 2.1 I2V for image editing, 2 latent frames)
# --------------------------------------------------------------------------------------------


def _chronoedit():
    from diffusers import ChronoEditTransformer3DModel

    model = _model(
        ChronoEditTransformer3DModel,
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=12,  # noisy latents (4) + condition (4 mask + 4 image latents)
        out_channels=4,
        text_dim=24,
        freq_dim=32,
        ffn_dim=64,
        num_layers=2,
        image_dim=20,
        added_kv_proj_dim=32,
        rope_max_seq_len=32,
        rope_temporal_skip_len=8,
    )
    g = _gen()
    # num_frames=5 without temporal reasoning -> 2 latent frames (input image, edited image)
    x = _randn(B, 12, 2, 8, 8, g=g)
    kwargs = dict(
        timestep=_t("flow1000"),
        encoder_hidden_states=_randn(B, 512, 24, g=g),  # the processor splits at 512 text tokens
        encoder_hidden_states_image=_randn(B, 6, 20, g=g),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="ChronoEditTransformer3DModel",
        build=_chronoedit,
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=32,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "A copy of the Wan 2.1 I2V transformer (gated self-attn and MLP, ungated LayerNorm "
            "cross-attention with a second SDPA over CLIP image keys via add_k/add_v summed before "
            "to_out: one cross_attn region, 2 anchors). The edit pipeline runs 2 latent frames "
            "(input image, edited image) with hidden_states = cat(noisy latents, mask + image "
            "latents) on channels; with exactly 2 frames the RoPE temporal positions are 0 and "
            "temporal_skip_len-1 (7), not 0 and 1. The text context must be exactly 512 tokens "
            "(hard-coded split between image and text context)."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# SkyReels-V2 (Wan 2.1 variant; T2V pipeline step)
# --------------------------------------------------------------------------------------------


def _skyreels_v2():
    from diffusers import SkyReelsV2Transformer3DModel

    model = _model(
        SkyReelsV2Transformer3DModel,
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        text_dim=24,
        freq_dim=32,
        ffn_dim=64,
        num_layers=2,
        rope_max_seq_len=32,
    )
    g = _gen()
    x = _randn(B, 4, 2, 8, 8, g=g)  # B, C, F, H, W
    kwargs = dict(
        timestep=_t("flow1000"),
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="SkyReelsV2Transformer3DModel",
        build=_skyreels_v2,
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=32,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "Wan 2.1 block layout (gated self-attn and MLP in float32, ungated LayerNorm "
            "cross-attention); the timestep sinusoid comes from get_1d_sincos_pos_embed_from_grid. "
            "This is the plain T2V pipeline step ([B] timestep, num_frame_per_block=1, so no causal "
            "mask). The diffusion-forcing pipelines instead pass a per-frame [B, F] timestep with "
            "enable_diffusion_forcing=True (per-token modulation) and, with causal_block_size > 1, "
            "a block-causal boolean mask over frames; not used here. UniPC hands the pipeline int64 "
            "timesteps (sigma*1000 truncated); float here, as for Wan."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# Wan-VACE (Wan 2.1 + a control branch of VACE blocks injecting hints)
# --------------------------------------------------------------------------------------------


def _wan_vace():
    from diffusers import WanVACETransformer3DModel

    model = _model(
        WanVACETransformer3DModel,
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        text_dim=24,
        freq_dim=32,
        ffn_dim=64,
        num_layers=3,
        rope_max_seq_len=32,
        vace_layers=[0, 2],
        vace_in_channels=24,  # inactive + reactive latents (2*4) + a 16-channel pixel mask
    )
    g = _gen()
    x = _randn(B, 4, 2, 8, 8, g=g)
    kwargs = dict(
        timestep=_t("flow1000"),
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        control_hidden_states=_randn(B, 24, 2, 8, 8, g=g),
        control_hidden_states_scale=torch.tensor([1.0, 0.8]),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="WanVACETransformer3DModel",
        build=_wan_vace,
        num_blocks={"attn": 5, "cross_attn": 5, "mlp": 5},
        mlp_streams={"image": 5},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=32,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "3 Wan blocks plus 2 VACE blocks (vace_layers=[0, 2]) that ALL run first, over a "
            "separate control stream of the same 32 video tokens: c = proj_in(patchify(control)) "
            "+ x (block 0 only, a residual with no anchor), then the usual gated self-attn, "
            "LayerNorm cross-attn and gated MLP residuals on c, and a hint proj_out(c) per VACE "
            "block. The main blocks then run, and after main block i in vace_layers x = x + "
            "hint_i * scale_i: an add whose other side is the control stream (forked from the "
            "patch embedding), not a branch of x; not a region. Regions: 3 main + 2 VACE blocks "
            "of (attn, cross_attn, mlp). Control latents with fewer tokens would be zero-padded."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# Wan-Animate (Wan 2.1 I2V + pose latents + face adapter cross-attention)
# --------------------------------------------------------------------------------------------


def _wan_animate():
    from diffusers import WanAnimateTransformer3DModel

    model = _model(
        WanAnimateTransformer3DModel,
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=12,  # 2 * latent_channels + 4
        latent_channels=4,
        out_channels=4,
        text_dim=24,
        freq_dim=32,
        ffn_dim=64,
        num_layers=2,
        image_dim=20,
        added_kv_proj_dim=32,
        rope_max_seq_len=32,
        motion_encoder_channel_sizes={"8": 16, "4": 16},
        motion_encoder_size=8,
        motion_style_dim=16,
        motion_dim=8,
        motion_encoder_dim=16,
        face_encoder_hidden_dim=16,
        face_encoder_num_heads=2,
        inject_face_latents_blocks=2,
        motion_encoder_batch_size=8,
    )
    g = _gen()
    # a 5-frame segment: 2 latent frames + the reference frame = 3 latent frames of 4x4 patches
    x = _randn(B, 12, 3, 8, 8, g=g)
    kwargs = dict(
        timestep=_t("flow1000"),
        encoder_hidden_states=_randn(B, 512, 24, g=g),  # the processor splits at 512 text tokens
        encoder_hidden_states_image=_randn(B, 6, 20, g=g),
        pose_hidden_states=_randn(B, 4, 2, 8, 8, g=g),
        face_pixel_values=_randn(B, 3, 5, 8, 8, g=g).clamp(-1, 1),  # 5 face crops, 8x8 pixels
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="WanAnimateTransformer3DModel",
        build=_wan_animate,
        reused_labels=("face_adapter.*.cross_attn",),
        num_blocks={"attn": 2, "cross_attn": 3, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=48,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "Wan 2.1 I2V blocks (cross_attn with CLIP-image add_k/add_v, text split at 512) plus a "
            "face adapter after every inject_face_latents_blocks-th block (here block 0): "
            "x = face_attn(x, motion) + x, ungated, LayerNorm on q and kv inside the branch. Its "
            "query tokens are regrouped per latent frame (unflatten of the token axis to [B*T, "
            "S/T]) and each frame attends only to its own motion tokens (2 face-encoder heads + a "
            "learned padding token), so it is a cross_attn region (3 = 2 text + 1 face), reused "
            "whole on partial steps (its token axis is regrouped inside the branch). The "
            "motion vector is computed inside forward from face PIXELS: a StyleGAN-like conv "
            "encoder (residual conv blocks with leaky ReLU, no token axis), a QR of the motion "
            "basis (torch.linalg.qr) and a causal Conv1d face encoder over time. Pose latents are "
            "added into frames 1: of the patch embedding by a slice assignment."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# Wan-Animate-2 (in-context reference K/V cache, flex block mask)
# --------------------------------------------------------------------------------------------


def _wan_animate_2():
    from diffusers import WanAnimate2Transformer3DModel
    from diffusers.models.transformers.transformer_wan_animate_2 import WanAnimate2KVCache

    layers = 2
    model = _model(
        WanAnimate2Transformer3DModel,
        patch_size=(1, 2, 2),
        text_len=8,
        in_dim=12,  # noisy latents (4) + conditioning (4-channel mask + 4 latents)
        dim=32,
        ffn_dim=64,
        freq_dim=32,
        text_dim=24,
        out_dim=4,
        num_heads=2,
        num_layers=layers,
    )
    g = _gen()
    segment = 5  # pixel frames per segment -> 2 latent frames; +1 reference-image frame
    fs, h, w = (segment - 1) // 4 + 1, 8, 8
    # one grid row per sample: the reference RoPE loops over the rows (the pipeline runs batch 1)
    grid_ref = torch.tensor([[fs, h // 2, w // 2]] * B, dtype=torch.long)
    text = [_randn(6, 24, g=g) for _ in range(B)]
    clip = _randn(B, 4, 1280, g=g)  # the image projection is hard-wired to 1280 CLIP channels
    # reference pass (kv_cache_mode="extract"): the driving video fills every layer's K/V cache
    cache = WanAnimate2KVCache(layers)
    with torch.no_grad():
        model(
            [_randn(4, fs, h, w, g=g) for _ in range(B)],
            timestep=_t("flow1000"),
            encoder_hidden_states=text,
            encoder_hidden_states_image=clip,
            condition_latents=[_randn(8, fs, h, w, g=g) for _ in range(B)],
            kv_cache=cache,
            kv_cache_mode="extract",
            seq_len=fs * h * w // 4,
            offset_grid_sizes=grid_ref,
        )
    xs = [_randn(4, fs + 1, h, w, g=g) for _ in range(B)]
    kwargs = dict(
        timestep=_t("flow1000"),
        encoder_hidden_states=text,
        condition_latents=[_randn(8, fs + 1, h, w, g=g) for _ in range(B)],
        kv_cache=cache,
        kv_cache_mode="cached",
        seq_len=(fs + 1) * h * w // 4,
        encoder_hidden_states_image=clip,
        reference_grid_sizes=grid_ref,
        origin_len=segment,
        origin_area=[h * 8, w * 8],
        return_dict=False,
    )
    # The first "cached" call builds the flex BlockMask (create_block_mask) and caches it on
    # the model; build it eagerly so a compiled call finds it.
    with torch.no_grad():
        model(xs, **kwargs)
    return model, (xs,), kwargs


_register(
    ZooEntry(
        name="WanAnimate2Transformer3DModel",
        build=_wan_animate_2,
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=48,
        graphs=16,
        fullgraph_ok=False,
        notes=(
            "Original-Wan-style code (not the diffusers Wan blocks): inputs are LISTS of per-sample "
            "[C, F, H, W] latents and conditioning latents (concatenated on channels), text is a "
            "list padded to text_len. Denoising step = kv_cache_mode 'cached': every layer's "
            "self-attention scatters q/k/v of the 48 generation tokens (3 frames) into a "
            "128-aligned buffer followed by the cached, re-RoPE'd reference K/V of the driving "
            "video (filled by an 'extract' pass in build()), and runs flex_attention with a "
            "BlockMask (each frame sees all generation tokens + the reference frame of the same "
            "index), then slices the rows back. RoPE is applied per sample in a Python loop over "
            "grid_sizes.tolist() with complex128. Cross-attention: text SDPA + CLIP-image SDPA "
            "summed, ungated; gated self-attn and GELU MLP. build() runs the reference pass and one "
            "eager 'cached' call (it creates and caches the BlockMask). Graph breaks: .item() of "
            "the reference grid in forward and grid_sizes.tolist() in every RoPE call (3 per "
            "self-attention: q, k, cached reference k). reference_grid_sizes needs one row per "
            "sample (the reference RoPE loops over its rows); the pipeline itself runs batch 1."
        ),
    )
)
