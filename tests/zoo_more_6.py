"""More diffusers transformers for the test zoo (group 6); each entry registers itself in
diffusers_zoo.ZOO (denoisers) or EXTRA (transformers that are not DiT denoisers)."""
from __future__ import annotations

import torch
from diffusers_zoo import B, ZooEntry, _gen, _model, _randn, _register, _t

# --------------------------------------------------------------------------------------------
# Kandinsky 5
# --------------------------------------------------------------------------------------------


def _kandinsky5():
    from diffusers import Kandinsky5Transformer3DModel

    model = _model(
        Kandinsky5Transformer3DModel,
        in_visual_dim=4,
        out_visual_dim=4,
        in_text_dim=24,
        in_text_dim2=16,
        time_dim=32,
        patch_size=(1, 2, 2),
        model_dim=32,
        ff_dim=64,
        num_text_blocks=1,
        num_visual_blocks=2,
        axes_dims=(4, 6, 6),
        visual_cond=True,
    )
    g = _gen()
    f, h, w = 2, 8, 8  # latent frames / height / width: 2 x 4 x 4 = 32 tokens after (1, 2, 2) patches
    latents = _randn(B, f, h, w, 4, g=g)  # channels-last [B, F, H, W, C]
    # T2V pipeline with visual_cond: [noisy latents, zero conditioning latents, zero mask] on the channel axis
    x = torch.cat([latents, torch.zeros_like(latents), torch.zeros(B, f, h, w, 1)], dim=-1)
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        timestep=_t("flow1000"),
        pooled_projections=_randn(B, 16, g=g),
        visual_rope_pos=[torch.arange(f), torch.arange(h // 2), torch.arange(w // 2)],
        text_rope_pos=torch.arange(8),
        scale_factor=(1.0, 1.0, 1.0),
        sparse_params=None,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="Kandinsky5Transformer3DModel",
        build=_kandinsky5,
        num_blocks={"attn": 3, "cross_attn": 2, "mlp": 3},
        attn_streams={"text": 1, "image": 2},
        mlp_streams={"text": 1, "image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=32,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "Encoder/decoder layout: 1 text block (self-attention + GELU MLP over the 8 text tokens "
            "only, modulated by time+pooled-CLIP embedding, so it changes with t), then 2 visual "
            "blocks (self-attention with 3-D RoPE, ungated-norm cross-attention to the final text "
            "tokens, GELU MLP). Every residual is gated and done in float32: "
            "(x.float() + gate * branch.float()).type_as(x); LayerNorms without affine, "
            "scale+1/shift modulation. Latents are channels-last [B, F, H, W, C]; with "
            "visual_cond the pipeline appends zero conditioning latents and a mask channel "
            "(9 channels). Tokens are flattened [B, F*H*W, D] after patching. QUIRK: the RoPE "
            "helper casts q/k to bfloat16 and back, so q/k lose precision even in a float32 model. "
            "sparse_params=None (regular attention, no NABLA flex masks)."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# Kandinsky 6 (video + audio) and its video super-resolution transformer
# --------------------------------------------------------------------------------------------


def _kandinsky6():
    from diffusers import Kandinsky6Transformer3DModel

    model = _model(
        Kandinsky6Transformer3DModel,
        in_visual_dim=4,
        out_visual_dim=4,
        in_text_dim=24,
        in_text_dim2=16,
        time_dim=32,
        patch_size=(1, 2, 2),
        model_dim=32,
        ff_dim=64,
        num_text_blocks=1,
        num_visual_blocks=2,
        axes_dims=(4, 6, 6),
        visual_cond=True,
        in_audio_dim=8,
        out_audio_dim=8,
        # the flags the released checkpoints set
        text_token_padding=True,
        ca_rope=True,
        cross_gates=True,
        fix_modulation=True,
    )
    g = _gen()
    f, h, w = 2, 8, 8  # 2 x 4 x 4 = 32 video tokens
    latents = _randn(B, f, h, w, 4, g=g)
    x = torch.cat([latents, torch.zeros_like(latents), torch.zeros(B, f, h, w, 1)], dim=-1)
    # pipeline: audio_length = ceil(((F - 1) * 4 + 1) / 24 fps * 44100 / 1024) = 9 for F = 2
    audio = _randn(B, 9, 8, g=g)
    mask = torch.ones(B, 8, dtype=torch.bool)
    mask[1, 6:] = False
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        pooled_projections=_randn(B, 16, g=g),
        timestep=_t("flow1000"),
        audio_hidden_states=audio,
        encoder_attention_mask=mask,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="Kandinsky6Transformer3DModel",
        build=_kandinsky6,
        num_blocks={"attn": 6, "cross_attn": 8, "mlp": 6},
        attn_streams={"text": 2, "image": 2, "audio": 2},
        mlp_streams={"text": 2, "image": 2, "audio": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=32,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "Video+audio model (TI2VA pipeline, sample_audio=True): 32 video tokens and 9 audio "
            "latent tokens ([B, 9, 8]). The text goes through TWO separate text branches (one "
            "modulated encoder block each, attention + GELU MLP, text-only), one feeding the video "
            "stream and one the audio stream. Each of the 2 fused blocks has, per modality, gated "
            "self-attention, a gated cross-attention to its text branch, a gated cross-modal "
            "attention (video queries -> audio keys, audio queries -> video keys) and a gated MLP: "
            "per block 2 attn + 4 cross_attn + 2 mlp. Order quirk: the video text cross-attention "
            "is computed first but its residual is added only after the audio stream's own "
            "self/cross-attention. The cross-modal keys are the OTHER stream's normed "
            "pre-cross-attention input (aud_pre_ca / vis_pre_ca), so video tokens feed the audio "
            "branch's keys and vice versa. ca_rope: RoPE on both sides of the cross-modal "
            "attention. cross_gates/fix_modulation as in the released checkpoints. All residuals "
            "in float32 (x.float() + gate * out.float()). Bool text padding mask (sample 1 has "
            "6 valid of 8). Output is a tuple (video, audio)."
        ),
    )
)


def _kandinsky6_sr():
    from diffusers import Kandinsky6SRTransformer3DModel

    model = _model(
        Kandinsky6SRTransformer3DModel,
        in_visual_dim=4,
        out_visual_dim=4,
        time_dim=32,
        patch_size=(1, 1, 1),
        model_dim=32,
        ff_dim=64,
        num_visual_blocks=2,
        axes_dims=(4, 6, 6),
    )
    g = _gen()
    f, h, w = 1, 8, 8  # the token grid must be divisible by 8 (NABLA tiles): 1 x 8 x 8 = 64 tokens
    latents = _randn(B, f, h, w, 4, g=g)
    anchor = _randn(B, f, h, w, 4, g=g)
    # pipeline: [noisy latent, anchor latent, anchor mask] on the channel axis
    x = torch.cat([latents, anchor, torch.ones(B, f, h, w, 1)], dim=-1)
    return model, (x,), dict(timestep=_t("flow1000"), return_dict=False)


_register(
    ZooEntry(
        name="Kandinsky6SRTransformer3DModel",
        build=_kandinsky6_sr,
        num_blocks={"attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "Text-free video super-resolution DiT: timestep only (plus a learned pooled_bias in "
            "place of the pooled text embedding). Each block: gated self-attention + gated GELU MLP, "
            "residuals in float32. Self-attention is NABLA sparse attention that ALWAYS runs "
            "flex_attention (backend forced to FLEX) with a BlockMask built inside every attention "
            "call from pooled q/k statistics (64-token blocks: mean, softmax, sort, cumsum, "
            "argsort) OR a static sliding-tile prior; no SDPA at all. Tokens are re-ordered into "
            "8x8 tiles (local_patch) before the blocks and back after them, so token row order is "
            "tile order, not raster order. Input channels: noisy latent + anchor latent + anchor "
            "mask (2*4+1)."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# Ideogram 4
# --------------------------------------------------------------------------------------------


def _ideogram4():
    from diffusers import Ideogram4Transformer2DModel

    model = _model(
        Ideogram4Transformer2DModel,
        in_channels=16,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        intermediate_size=64,
        adaln_dim=32,
        llm_features_dim=24,
        mrope_section=(4, 2, 2),
    )
    g = _gen()
    max_text, gh, gw = 8, 8, 8
    n_img = gh * gw
    text_lengths = [6, 8]
    # the pipeline's packed layout: [left padding][text][image], image positions offset by 65536
    hh = torch.arange(gh).view(-1, 1).expand(gh, gw).reshape(-1)
    ww = torch.arange(gw).view(1, -1).expand(gh, gw).reshape(-1)
    image_pos = torch.stack([torch.zeros_like(hh), hh, ww], dim=1) + 65536
    position_ids = torch.zeros(B, max_text + n_img, 3, dtype=torch.long)
    segment_ids = torch.full((B, max_text + n_img), -1, dtype=torch.long)
    indicator = torch.zeros(B, max_text + n_img, dtype=torch.long)
    text = torch.zeros(B, max_text + n_img, 24)
    for b, n in enumerate(text_lengths):
        o = max_text - n
        position_ids[b, o:max_text] = torch.arange(n)[:, None].expand(n, 3)
        position_ids[b, max_text:] = image_pos
        indicator[b, o:max_text] = 3  # LLM token
        indicator[b, max_text:] = 2  # output image
        segment_ids[b, o:] = 1
        text[b, o:max_text] = _randn(n, 24, g=g)
    latents = _randn(B, n_img, 16, g=g)
    x = torch.cat([torch.zeros(B, max_text, 16), latents], dim=1)  # text slots hold zeros
    kwargs = dict(
        timestep=_t("flow1_rev"),  # pipeline: 1 - t / 1000 (0 = noise, 1 = clean)
        encoder_hidden_states=text,
        position_ids=position_ids,
        segment_ids=segment_ids,
        indicator=indicator,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="Ideogram4Transformer2DModel",
        build=_ideogram4,
        num_blocks={"attn": 2, "mlp": 2},
        attn_streams={"joint": 2},
        mlp_streams={"joint": 2},
        timestep_arg="timestep",
        timestep_convention="flow1_rev",
        image_tokens=64,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "Single-stream DiT over ONE packed sequence built by the pipeline: [left padding][text]"
            "[image] (8 text slots + 64 image tokens); hidden_states and encoder_hidden_states both "
            "span the whole sequence and are masked by a per-token indicator (3 = text, 2 = image, "
            "0 = padding) before being summed, plus a learned image-indicator embedding. Image rows "
            "start at offset 8. A block-diagonal mask from segment_ids (padding forms its own "
            "segment). 3-axis interleaved MRoPE, image positions offset by 65536. Block: "
            "scale-only modulation (no shift), sandwich RMSNorms (the branch output is normed "
            "again) and tanh gates: x + tanh(g) * norm2(branch(norm1(x) * (1 + s))); SwiGLU MLP. "
            "The adaLN input is the same for all blocks (computed once). Timestep in [0, 1] with "
            "1 = clean (the pipeline passes 1 - t/1000); the CFG-negative pass uses a separate "
            "model call with image tokens only."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# ERNIE-Image
# --------------------------------------------------------------------------------------------


def _ernie_image():
    from diffusers import ErnieImageTransformer2DModel

    model = _model(
        ErnieImageTransformer2DModel,
        hidden_size=32,
        num_attention_heads=2,
        num_layers=2,
        ffn_hidden_size=64,
        in_channels=16,
        out_channels=16,
        patch_size=1,
        text_in_dim=24,
        rope_axes_dim=(4, 6, 6),
    )
    g = _gen()
    x = _randn(B, 16, 8, 8, g=g)
    text = _randn(B, 8, 24, g=g)
    text[0, 6:] = 0.0  # the pipeline zero-pads shorter prompts
    kwargs = dict(
        timestep=_t("flow1000"),
        text_bth=text,
        text_lens=torch.tensor([6, 8]),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="ErnieImageTransformer2DModel",
        build=_ernie_image,
        num_blocks={"attn": 2, "mlp": 2},
        attn_streams={"joint": 2},
        mlp_streams={"joint": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "Single-stream DiT over cat([image, text]) (image FIRST: 64 image + 8 text tokens, image "
            "rows at offset 0) in SEQUENCE-FIRST layout [S, B, D]: the token axis is dim 0 between "
            "blocks; each attention branch permutes to [B, S, D] and back. Modulation is shared: one "
            "adaLN_modulation(temb) outside the blocks, expanded to [S, B, D] (.contiguous()) and "
            "passed to every block. Residuals: x + (gate.float() * branch.float()).to(dtype), "
            "RMSNorm + (1 + scale) / shift. MLP: linear_fc2(up(x) * gelu(gate(x))). Text padding "
            "is a key mask from text_lens; text position ids run along axis 0 only, image ids "
            "carry text_len on axis 0."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# Qwen-Image 2.1
# --------------------------------------------------------------------------------------------


def _qwen_image21():
    from diffusers import QwenImage21Transformer2DModel

    model = _model(
        QwenImage21Transformer2DModel,
        patch_size=1,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        context_in_dim=24,
        mlp_ratio=2,
        axes_dims_rope=(4, 6, 6),
    )
    g = _gen()
    x = _randn(B, 64, 16, g=g)  # 8x8 latents, unpatched (2.1 uses patch_size 1)
    # text-to-image: 8 text positions, then one slot per 2x2 group of target latents (16 slots)
    img_mask = torch.cat([torch.zeros(B, 8, dtype=torch.bool), torch.ones(B, 16, dtype=torch.bool)], dim=1)
    mask = torch.ones(B, 8, dtype=torch.bool)
    mask[0, 6:] = False
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        timestep=_t("flow1"),  # pipeline: t / 1000
        img_shapes=[[(1, 8, 8)]] * B,
        img_mask=img_mask,
        encoder_hidden_states_mask=mask,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="QwenImage21Transformer2DModel",
        build=_qwen_image21,
        num_blocks={"attn": 2, "mlp": 2},
        attn_streams={"joint": 2},
        mlp_streams={"joint": 2},
        timestep_arg="timestep",
        timestep_convention="flow1",
        image_tokens=64,
        graphs=11,
        fullgraph_ok=False,
        notes=(
            "Single-stream blocks over one joint sequence [text (8), target image (64)]: image slots "
            "of img_mask are expanded 4x (repeat_interleave) and the latents written into them "
            "(joint[:, mask] = latents). Image rows at offset 8. One shared modulation "
            "Linear(SiLU(temb)) for all blocks, scale+gate only, tanh gates, LayerNorms without "
            "affine, SwiGLU MLP, no biases anywhere. causal_condition=True: the timestep gets an "
            "extra t=0 row and text tokens read their modulation from it (torch.where over the "
            "token axis), so text rows are modulated independently of t. Attention is BLOCK-CAUSAL: "
            "the default (non-flex) processor runs one SDPA per prefix segment (text causal via a "
            "tril mask, padded text keys dropped) plus one for the target image over all keys, and "
            "concatenates the outputs along the token axis inside the attention branch. Segments "
            "come from .tolist()/nonzero on the masks (host reads). Graph breaks (10, all before the blocks): "
            "repeat_interleave with tensor repeats, bool-mask indexing/nonzero (dynamic shapes), "
            "bool .tolist() in the RoPE builder, int(mask.sum()) and the segment .tolist(); all "
            "blocks land in the last graph. Called without a KV cache "
            "(use_kv_cache=False: the whole sequence every step); with the pipeline's default cache, "
            "steps after the first see only the 64 target tokens plus cached prefix K/V."
        ),
    )
)
