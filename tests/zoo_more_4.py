"""More diffusers transformers for the test zoo (group 4); each entry registers itself in
diffusers_zoo.ZOO (denoisers) or EXTRA (transformers that are not DiT denoisers)."""
from __future__ import annotations

import torch

from diffusers_zoo import B, ZooEntry, _gen, _model, _randn, _register, _t


def _cogview3plus():
    from diffusers import CogView3PlusTransformer2DModel

    model = _model(
        CogView3PlusTransformer2DModel,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        out_channels=4,
        text_embed_dim=24,
        time_embed_dim=16,
        condition_dim=8,
        pos_embed_max_size=16,
        sample_size=16,
    )
    g = _gen()
    x = _randn(B, 4, 16, 16, g=g)
    size = torch.tensor([[128.0, 128.0]]).repeat(B, 1)
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        timestep=_t("ddpm"),  # CogVideoXDDIM/DPM scheduler: integer t, expanded to the batch
        original_size=size,
        target_size=size,
        crop_coords=torch.zeros(B, 2),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="CogView3PlusTransformer2DModel",
        build=_cogview3plus,
        num_blocks={"joint_attn": 4, "mlp": 4},
        mlp_streams={"image": 2, "text": 2},
        timestep_arg="timestep",
        timestep_convention="ddpm",
        image_tokens=64,
        notes=(
            "MMDiT with one shared Attention (CogVideoX processor, LayerNorm q/k) over "
            "cat(text, image) and two gated residuals per block (gate on the left: x + g * attn). "
            "As in CogVideoX, the feed-forward is ONE GELU-tanh MLP run on cat(norm_text, "
            "norm_image) and its output is sliced back into the two streams, so the two mlp joins of "
            "a block share one anchor and the branch spans text+image rows. The text is projected "
            "inside the patch embedding, which returns cat(text, image) with a 2-D sincos table "
            "added to the image part only; the model then splits it. Conditioning: timestep plus "
            "SDXL-style original/target size and crop coordinates. Timestep is the integer DDPM t."
        ),
    )
)


def _consisid():
    from diffusers import ConsisIDTransformer3DModel
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    model = _model(
        ConsisIDTransformer3DModel,
        num_attention_heads=3,
        attention_head_dim=16,  # inner 48: the face cross-attention reads kv of width 48 * 2 / 3 = 32
        in_channels=8,  # noisy latents + image latents, concatenated on channels by the pipeline
        out_channels=4,
        time_embed_dim=32,
        text_embed_dim=24,
        num_layers=2,
        sample_width=8,
        sample_height=8,
        sample_frames=5,  # -> 2 latent frames
        patch_size=2,
        max_text_seq_length=8,
        use_rotary_positional_embeddings=True,
        is_train_face=True,
        cross_attn_interval=2,
        cross_attn_dim_head=16,
        cross_attn_num_heads=2,
        LFE_id_dim=16,
        LFE_vit_dim=16,
        LFE_depth=2,
        LFE_dim_head=8,
        LFE_num_heads=2,
        LFE_num_id_token=2,
        LFE_num_querie=4,
        LFE_output_dim=32,
        LFE_ff_mult=2,
        LFE_num_scale=2,
    )
    g = _gen()
    x = _randn(B, 2, 8, 8, 8, g=g)  # B, F, C, H, W
    # the pipeline's get_resize_crop_region_for_grid((4, 4), 4, 4) is the whole 4x4 grid
    rope = get_3d_rotary_pos_embed(16, ((0, 0), (4, 4)), grid_size=(4, 4), temporal_size=2)
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        timestep=_t("ddpm"),
        image_rotary_emb=rope,
        # one reference face for the whole CFG batch, as the pipeline passes it (batch 1)
        id_cond=_randn(1, 16, g=g),
        id_vit_hidden=[_randn(1, 6, 16, g=g) for _ in range(2)],
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="ConsisIDTransformer3DModel",
        build=_consisid,
        num_blocks={"joint_attn": 6, "mlp": 6, "cross_attn": 1},
        mlp_streams={"image": 2, "text": 2, "face": 2},
        timestep_arg="timestep",
        timestep_convention="ddpm",
        image_tokens=32,
        notes=(
            "CogVideoX-style blocks (shared attention over cat(text, video), 2 gated joins; ONE "
            "GELU-tanh MLP over cat(text, video) sliced back into both streams, so both mlp joins "
            "share an anchor) plus the identity path of the released checkpoint (is_train_face): a "
            "Perceiver 'local facial extractor' turns the face embedding and 2 ViT feature maps into "
            "4 face tokens (its own attention and MLP residuals run over 4+2 query latents "
            "with keys over cat(face features, latents): found as joint_attn + mlp regions; "
            "their inputs never change over the steps, so caching them is exact), and after "
            "every 2nd block the video stream gets an ungated "
            "face cross-attention x + 1.0 * perceiver(face, x) written with matmul + softmax, no "
            "SDPA. The face inputs have batch 1 against a CFG batch of 2 (broadcast matmul). 3-D "
            "RoPE from the pipeline, in_channels = noisy + image latents. Integer DDPM timestep."
        ),
    )
)


def _glm_image():
    from diffusers import GlmImageTransformer2DModel

    model = _model(
        GlmImageTransformer2DModel,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        text_embed_dim=24,
        time_embed_dim=16,
        condition_dim=8,
        prior_vq_quantizer_codebook_size=64,
    )
    g = _gen()
    x = _randn(B, 4, 16, 16, g=g)
    # the AR stage's VQ tokens, upsampled to one id per image token
    prior = torch.randint(0, 64, (B, 64), generator=g)
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),  # glyph (ByT5) embeddings
        prior_token_id=prior,
        prior_token_drop=torch.zeros(B, 64, dtype=torch.bool),  # conditional pass: nothing dropped
        timestep=_t("flow1000"),
        target_size=torch.tensor([[128.0, 128.0]]).repeat(B, 1),
        crop_coords=torch.zeros(B, 2),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="GlmImageTransformer2DModel",
        build=_glm_image,
        num_blocks={"joint_attn": 4, "mlp": 4},
        mlp_streams={"image": 2, "text": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        graphs=2,
        notes=(
            "CogView4-like MMDiT: one attention over cat(glyph text, image) (LayerNorm q/k, 2-D RoPE "
            "written into the image rows of q and k by slice assignment), two gated joins (gate on "
            "the right), and ONE FeedForward module called separately on each stream (shared weights, "
            "token-wise). Before the blocks, the image tokens get the AR prior added: embedding of a "
            "VQ id per image token, rows selected by prior_token_drop zeroed in place "
            "(prior_embedding[mask] *= 0: a boolean-mask index, aten.nonzero, so Dynamo breaks the "
            "graph there; all blocks sit in the second graph, and fullgraph=True still traces), then "
            "a SiLU-gated projector. The pipeline runs cond and "
            "uncond as two calls (uncond drops all prior rows) and passes t - 1 with t the "
            "FlowMatchEuler sigma * 1000; the zoo feeds the flow1000 value itself. The optional "
            "image-edit KV cache (kv_caches) is not used."
        ),
    )
)


def _easyanimate():
    from diffusers import EasyAnimateTransformer3DModel

    model = _model(
        EasyAnimateTransformer3DModel,
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        patch_size=2,
        num_layers=2,
        mmdit_layers=1,  # block 0 MMDiT (own text weights), block 1 shared weights
        time_embed_dim=32,
        text_embed_dim=24,
    )
    g = _gen()
    x = _randn(B, 4, 2, 8, 8, g=g)  # B, C, F, H, W
    kwargs = dict(
        timestep=_t("flow1000"),  # FlowMatchEuler t, cast to the latent dtype
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="EasyAnimateTransformer3DModel",
        build=_easyanimate,
        num_blocks={"joint_attn": 4, "mlp": 4},
        mlp_streams={"image": 2, "text": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=32,
        notes=(
            "Two block flavours (mmdit_layers=1 of 2): block 0 is an MMDiT block (text has its own "
            "q/k/v, output projection and txt_ff, joined into one SDPA by concatenating q/k/v on "
            "the sequence axis); block 1 runs the concatenated cat(text, video) stream through the "
            "video projections and sends the raw SDPA text rows back without an output projection, "
            "and calls the video ff on both streams. Every block: 2 gated attention joins and 2 gated "
            "MLP joins (gate on the left), text and video modulated by one shared FP32 LayerNorm. "
            "3-D RoPE is computed inside forward (base grid hard-coded to 90x60 / patch) and written "
            "into the video rows of q/k by slice assignment. The pipeline passes the timestep "
            "positionally; here by keyword."
        ),
    )
)


def _helios():
    from diffusers import HeliosTransformer3DModel

    model = _model(
        HeliosTransformer3DModel,
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        text_dim=24,
        freq_dim=32,
        ffn_dim=64,
        num_layers=2,
        rope_dim=(4, 6, 6),
    )
    g = _gen()
    # pipeline layout with keep_first_frame: [prefix, long, mid, 1x, chunk] frame indices, here
    # history_sizes (4, 2, 1) and a 2-frame chunk; short history = prefix + 1x frames
    prefix, long, mid, short1, chunk = torch.arange(10).split([1, 4, 2, 1, 2])
    x = _randn(B, 4, 2, 8, 8, g=g)  # the chunk being denoised: B, C, F, H, W
    kwargs = dict(
        timestep=_t("flow1000"),
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        indices_hidden_states=chunk[None],
        indices_latents_history_short=torch.cat([prefix, short1])[None],
        indices_latents_history_mid=mid[None],
        indices_latents_history_long=long[None],
        latents_history_short=_randn(B, 4, 2, 8, 8, g=g),
        latents_history_mid=_randn(B, 4, 2, 8, 8, g=g),
        latents_history_long=_randn(B, 4, 4, 8, 8, g=g),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="HeliosTransformer3DModel",
        build=_helios,
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=32,
        notes=(
            "Wan-like autoregressive video DiT. The stream is cat(long, mid, short history, chunk): "
            "history latents patchified by three convs (1x, 2x, 4x coarser: 1 + 4 + 32 tokens) in "
            "front of the 32 tokens of the 2-frame chunk. Modulation is PER TOKEN: history rows use "
            "the t=0 embedding, chunk rows the real t ([B, N, 6, C] table). Self-attention over the "
            "whole stream (gated, fp32 residual, interleaved 3-D RoPE written via strided slices); "
            "cross-attention (guidance_cross_attn) splits the history off, runs ungated "
            "x + attn2(norm2(x), text) on the chunk rows only and concatenates the history back; "
            "gated GELU-tanh MLP over the whole stream. Only the last 32 rows reach the output."
        ),
    )
)


def _cosmos3_omni():
    from diffusers import Cosmos3OmniTransformer

    model = _model(
        Cosmos3OmniTransformer,
        head_dim=16,
        hidden_size=32,
        intermediate_size=64,
        latent_channel=4,
        latent_patch_size=2,
        num_attention_heads=2,
        num_hidden_layers=2,
        num_key_value_heads=1,
        patch_latent_dim=16,  # 4 channels * 2 * 2
        vocab_size=64,
        rope_axes_dim=(4, 2, 2),  # sums to head_dim / 2
    )
    g = _gen()
    und, t_frames, h, w = 8, 2, 4, 4  # 8 text tokens, 2 latent frames of 4x4 patches
    n_vis = t_frames * h * w
    text_pos = torch.arange(und, dtype=torch.float32).expand(3, -1)
    ti = (torch.arange(t_frames, dtype=torch.float32) + und + 15000).repeat_interleave(h * w)
    hi = torch.arange(h, dtype=torch.float32).repeat_interleave(w).repeat(t_frames)
    wi = torch.arange(w, dtype=torch.float32).repeat(t_frames * h)
    vis = torch.arange(und, und + n_vis)
    kwargs = dict(
        input_ids=torch.randint(0, 64, (und,), generator=g),
        text_indexes=torch.arange(und),
        position_ids=torch.cat([text_pos, torch.stack([ti, hi, wi])], dim=1),
        und_len=und,
        sequence_length=und + n_vis,
        vision_tokens=[_randn(1, 4, t_frames, 2 * h, 2 * w, g=g)],
        vision_token_shapes=[(t_frames, h, w)],
        vision_sequence_indexes=vis,
        vision_mse_loss_indexes=vis,
        vision_timesteps=torch.full((n_vis,), 700.0),  # one value per noisy vision token
        vision_noisy_frame_indexes=[torch.arange(t_frames)],
        return_dict=False,
    )
    return model, (), kwargs


_register(
    ZooEntry(
        name="Cosmos3OmniTransformer",
        build=_cosmos3_omni,
        num_blocks={"joint_attn": 4, "mlp": 4},
        mlp_streams={"text": 2, "image": 2},
        timestep_arg="",
        timestep_convention="",
        image_tokens=32,
        notes=(
            "A flow denoiser, but not one the zoo's timestep contract can describe: it runs ONE "
            "packed sample per call (no batch axis: [sequence, hidden] tensors; cond and uncond are "
            "separate calls with different text lengths) and its timestep is a per-token vector "
            "(vision_timesteps, one value per noisy vision token, times 0.001 inside), which is "
            "embedded and scatter-added into the vision tokens instead of modulating the blocks. "
            "Qwen3-style mixture-of-transformers layers: an understanding (text) stream and a "
            "generation (vision) stream with their own weights; one attention module runs a causal "
            "SDPA over the text and a full SDPA of vision queries over text+vision keys (GQA, "
            "interleaved mRoPE); ungated pre-norm residuals (x + attn, x + SwiGLU MLP) on both "
            "streams. Inputs are packing metadata (index tensors, Python lists of shapes)."
        ),
    ),
    extra=True,
)
