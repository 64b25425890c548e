"""More diffusers transformers for the test zoo (group 5); each entry registers itself in
diffusers_zoo.ZOO (denoisers) or EXTRA (transformers that are not DiT denoisers)."""
from __future__ import annotations

import torch
from diffusers_zoo import B, ZooEntry, _gen, _model, _randn, _register, _t


def _hunyuan_image(refiner: bool):
    def build():
        from diffusers import HunyuanImageTransformer2DModel

        common = dict(
            num_attention_heads=2,
            attention_head_dim=16,
            num_layers=2,
            num_single_layers=2,
            num_refiner_layers=1,
            text_embed_dim=24,
        )
        g = _gen()
        mask = torch.ones(B, 8, dtype=torch.long)
        mask[:, 6:] = 0
        if refiner:
            # HunyuanImage-2.1 refiner: 5-D video-VAE latents (1 frame), noisy latents and the
            # noised image latents concatenated on channels, guidance-distilled, no ByT5 text
            model = _model(
                HunyuanImageTransformer2DModel, in_channels=8, out_channels=4, patch_size=(1, 1, 1),
                rope_axes_dim=(4, 6, 6), guidance_embeds=True, **common,
            )
            x = torch.cat([_randn(B, 4, 1, 8, 8, g=g), _randn(B, 4, 1, 8, 8, g=g)], dim=1)
            kwargs = dict(
                timestep=_t("flow1000"),
                encoder_hidden_states=_randn(B, 8, 24, g=g),
                encoder_attention_mask=mask,
                guidance=torch.full((B,), 3.25 * 1000.0),  # distilled_guidance_scale * 1000
                return_dict=False,
            )
            return model, (x,), kwargs
        model = _model(
            HunyuanImageTransformer2DModel, in_channels=8, out_channels=8, patch_size=(1, 1),
            rope_axes_dim=(8, 8), guidance_embeds=False,
            text_embed_2_dim=16,  # the ByT5 glyph-text projection (its 2048 hidden width is fixed)
            **common,
        )
        x = _randn(B, 8, 8, 8, g=g)  # DC-AE latents [B, C, H, W], 1x1 patches -> 64 tokens
        mask_2 = torch.zeros(B, 6, dtype=torch.long)
        mask_2[:, :3] = 1  # three valid glyph (ByT5) tokens, the rest padding
        kwargs = dict(
            timestep=_t("flow1000"),  # the pipeline passes the scheduler's t (sigma * 1000)
            encoder_hidden_states=_randn(B, 8, 24, g=g),
            encoder_attention_mask=mask,
            encoder_hidden_states_2=_randn(B, 6, 16, g=g),
            encoder_attention_mask_2=mask_2,
            return_dict=False,
        )
        return model, (x,), kwargs

    return build


_register(
    ZooEntry(
        name="HunyuanImageTransformer2DModel",
        build=_hunyuan_image(refiner=False),
        num_blocks={"attn": 1, "joint_attn": 4, "mlp": 5, "parallel": 2},
        attn_streams={"text": 1},
        mlp_streams={"text": 3, "image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        graphs=9,
        fullgraph_ok=False,
        notes=(
            "HunyuanImage-2.1 base, the HunyuanVideo layout in 2-D: a token refiner over the Qwen "
            "text (1 block: masked text self-attention + SiLU-gated MLP, both gated by a t + "
            "pooled-text embedding), 2 double-stream blocks (2 joint_attn + image/text MLP each) "
            "and 2 single-stream blocks that concatenate [IMAGE, text] on entry, slice the normed "
            "sequence into image and text before the attention call, re-concatenate its outputs "
            "and split again after the one gated proj_out residual (parallel; the token axis is "
            "cut and rebuilt inside the branch, so it is reused whole). The pipeline always passes "
            "ByT5 glyph embeddings (zeros without quoted text); the model merges them with the "
            "text per sample, valid tokens first, by boolean-mask indexing in a Python loop over "
            "the batch: data-dependent sizes, so Dynamo gives up on the rest of forward() and the "
            "blocks are traced frame by frame (both double blocks run ONE block graph; fullgraph "
            "fails on an unbacked-size guard). Attention mask [B,1,1,N_img+N_txt]."
        ),
    )
)

_register(
    ZooEntry(
        name="HunyuanImageTransformer2DModel[refiner]",
        build=_hunyuan_image(refiner=True),
        num_blocks={"attn": 1, "joint_attn": 4, "mlp": 5, "parallel": 2},
        attn_streams={"text": 1},
        mlp_streams={"text": 3, "image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "The refiner configuration (HunyuanImageRefinerPipeline): 5-D input [B, 2C, 1, H, W] "
            "(noisy latents + strength-noised image latents on channels), 3-D RoPE, guidance "
            "embedding (distilled scale * 1000) added to the time embedding, and no ByT5 input, "
            "so the per-sample token reordering is skipped and forward() is one graph. Same "
            "blocks as the base entry."
        ),
    )
)


def _hunyuan_video15():
    from diffusers import HunyuanVideo15Transformer3DModel

    model = _model(
        HunyuanVideo15Transformer3DModel,
        in_channels=9,  # noisy latents (4) + condition latents (4) + condition mask (1)
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        num_refiner_layers=1,
        patch_size=1,
        patch_size_t=1,
        text_embed_dim=24,
        text_embed_2_dim=16,
        image_embed_dim=20,
        rope_axes_dim=(4, 6, 6),
    )
    g = _gen()
    latents = _randn(B, 4, 2, 4, 8, g=g)  # B, C, F, H, W: 2 x 4 x 8 = 64 tokens
    # text-to-video: condition latents and mask are zeros, as prepare_cond_latents_and_mask gives
    x = torch.cat([latents, torch.zeros(B, 5, 2, 4, 8)], dim=1)
    mask = torch.ones(B, 8, dtype=torch.long)
    mask[:, 6:] = 0
    mask_2 = torch.zeros(B, 6, dtype=torch.long)
    mask_2[:, :2] = 1
    kwargs = dict(
        timestep=_t("flow1000"),
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        encoder_attention_mask=mask,
        encoder_hidden_states_2=_randn(B, 6, 16, g=g),
        encoder_attention_mask_2=mask_2,
        image_embeds=torch.zeros(B, 4, 20),  # t2v: the pipeline passes all-zero vision tokens
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="HunyuanVideo15Transformer3DModel",
        build=_hunyuan_video15,
        num_blocks={"attn": 1, "joint_attn": 4, "mlp": 5},
        attn_streams={"text": 1},
        mlp_streams={"text": 3, "image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        graphs=3,
        fullgraph_ok=False,
        notes=(
            "HunyuanVideo 1.5: double-stream blocks only (no single-stream blocks). A token refiner "
            "(1 block, text attn + text mlp gated by t + pooled text) runs on the Qwen text; then "
            "ByT5 glyph tokens and SigLIP image tokens are projected, tagged by a learned "
            "cond_type embedding and merged per sample (valid image, valid ByT5, valid text, then "
            "the padding, zeroed) with boolean-mask indexing in a Python loop. t2v passes all-zero "
            "image_embeds and the model tests torch.all(image_embeds == 0) to mask them out (a "
            "data-dependent branch). Both make Dynamo abandon the rest of forward(): the blocks are "
            "traced frame by frame and the two double blocks share ONE block graph. Every joint "
            "attention rebuilds an N x N boolean mask from the 1-D mask inside the branch. Input = "
            "cat(latents, cond latents, cond mask) on channels."
        ),
    )
)


def _framepack():
    from diffusers import HunyuanVideoFramepackTransformer3DModel

    model = _model(
        HunyuanVideoFramepackTransformer3DModel,
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=1,
        num_single_layers=2,
        num_refiner_layers=1,
        patch_size=2,
        patch_size_t=1,
        text_embed_dim=24,
        pooled_projection_dim=16,
        rope_axes_dim=(4, 6, 6),
        guidance_embeds=True,
        has_image_proj=True,
        image_proj_dim=20,
        has_clean_x_embedder=True,
    )
    g = _gen()
    h, w, window = 4, 8, 3
    # inverted anti-drifting sampling, first section: frame indices
    # [prefix 0 | padding | window | history 1x (1) | 2x (2) | 4x (16)]
    pad = 3
    idx = torch.arange(0, 1 + pad + window + 1 + 2 + 16)
    prefix, _, latents_idx, h1, h2, h4 = idx.split([1, pad, window, 1, 2, 16])
    mask = torch.ones(B, 8, dtype=torch.long)
    mask[:, 6:] = 0
    kwargs = dict(
        timestep=_t("flow1000"),
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        encoder_attention_mask=mask,
        pooled_projections=_randn(B, 16, g=g),
        image_embeds=_randn(B, 4, 20, g=g),  # SigLIP tokens of the start image
        indices_latents=latents_idx,
        guidance=torch.full((B,), 10.0 * 1000.0),  # the pipeline passes guidance_scale * 1000
        latents_clean=_randn(B, 4, 2, h, w, g=g),  # start-image latent + 1x history frame
        indices_latents_clean=torch.cat([prefix, h1]),
        latents_history_2x=_randn(B, 4, 2, h, w, g=g),
        indices_latents_history_2x=h2,
        latents_history_4x=_randn(B, 4, 16, h, w, g=g),
        indices_latents_history_4x=h4,
        return_dict=False,
    )
    x = _randn(B, 4, window, h, w, g=g)
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="HunyuanVideoFramepackTransformer3DModel",
        build=_framepack,
        num_blocks={"attn": 1, "joint_attn": 2, "mlp": 3, "parallel": 2},
        attn_streams={"text": 1},
        mlp_streams={"text": 2, "image": 1},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=46,
        graphs=5,
        fullgraph_ok=True,
        notes=(
            "FramePack on the HunyuanVideo blocks (token refiner 1 block: text attn + text mlp; "
            "1 double-stream block; 2 single-stream blocks over [IMAGE, text] that slice and "
            "re-concatenate the token axis inside the branch: parallel reused whole). The latent "
            "stream is NOT just the noisy window: history latents are patchified by their own "
            "convs and PREPENDED: 4x history (16 frames, 4x8x8 kernel: 4 tokens), 2x history (2 "
            "frames: 2 tokens), clean latents (start image + 1x history: 16 tokens), then the 24 "
            "noisy window tokens (3 frames x 2 x 4), 46 in all; only the last 24 rows are decoded. "
            "RoPE from explicit frame indices. Projected SigLIP image tokens are prepended to the "
            "text; the [B,1,1,N] mask is written per sample with a tensor-valued slice bound "
            "(.item()): with fullgraph=False Dynamo gives up on forward() there and traces each "
            "block as its own frame (5 graphs); fullgraph=True traces it as one graph."
        ),
    )
)


def _joyimage_edit():
    from diffusers import JoyImageEditTransformer3DModel

    model = _model(
        JoyImageEditTransformer3DModel,
        patch_size=[1, 2, 2],
        in_channels=4,
        hidden_size=32,
        num_attention_heads=2,
        text_dim=24,
        num_layers=2,
        rope_dim_list=[4, 6, 6],
    )
    g = _gen()
    # multi-item input [B, items, C, T, H, W]: the reference image latent, then the noisy target
    x = _randn(B, 2, 4, 1, 8, 8, g=g)
    kwargs = dict(
        timestep=_t("flow1000"),
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="JoyImageEditTransformer3DModel",
        build=_joyimage_edit,
        num_blocks={"joint_attn": 4, "mlp": 4},
        mlp_streams={"image": 2, "text": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=32,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "Plain double-stream MMDiT (both streams continue in every block) with Wan-style "
            "modulation: a learned per-block table plus one shared time projection; gates on the "
            "right (x + branch * gate), FP32 LayerNorms. Fused QKV per stream, joint SDPA over "
            "[image, text] with no mask. Editing input is 6-D [B, items, C, T, H, W]: the noisy "
            "target is rotated to the front and the items folded onto the frame axis, so the image "
            "stream holds target (16) then reference (16) tokens; the reference rows are "
            "overwritten by the pipeline every step. RoPE on image tokens only (rope_type 'rope')."
        ),
    )
)


def _joyimage_edit_plus():
    from diffusers import JoyImageEditPlusTransformer3DModel

    model = _model(
        JoyImageEditPlusTransformer3DModel,
        patch_size=[1, 2, 2],
        in_channels=4,
        hidden_size=32,
        num_attention_heads=2,
        text_dim=24,
        num_layers=2,
        rope_dim_list=[4, 6, 6],
    )
    g = _gen()
    # pre-patchified [B, patches, C, pt, ph, pw]: target 4x4 patches, then a 4x6 reference
    shapes = [(1, 4, 4), (1, 4, 6)]
    x = _randn(B, 16 + 24, 4, 1, 2, 2, g=g)
    mask = torch.ones(B, 8, dtype=torch.long)
    mask[0, 6:] = 0  # negative and positive prompts padded to one length
    kwargs = dict(
        timestep=_t("flow1000"),
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        encoder_hidden_states_mask=mask,
        shape_list=[list(shapes) for _ in range(B)],
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="JoyImageEditPlusTransformer3DModel",
        build=_joyimage_edit_plus,
        num_blocks={"joint_attn": 4, "mlp": 4},
        mlp_streams={"image": 2, "text": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=40,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "Same double-stream blocks as JoyImageEdit, but the latents come in pre-patchified as "
            "a padded patch list [B, N, C, 1, 2, 2] (target patches first, then each reference "
            "image at its own resolution) with a Python shape_list; each patch goes through the "
            "Conv3d on its own. Per-sample RoPE [B, N, D] is built in Python loops over shape_list "
            "(frame offset per item), and a [B,1,1,N+L] boolean mask covers padded patches and "
            "the text mask. CFG batch = [negative, positive] in one call."
        ),
    )
)


def _dreamlite(self_attention: bool):
    def build():
        from diffusers import DreamLiteTransformer2DModel
        from diffusers.models.attention_processor import Attention
        from diffusers.models.unets.unet_dreamlite import DreamLiteAttnProcessor2_0

        model = _model(
            DreamLiteTransformer2DModel,
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=32,
            num_layers=2,
            norm_num_groups=8,
            cross_attention_dim=24,
            qk_norm="rms_norm",  # the DreamLite U-Net defaults: RMS qk-norm, one KV head, ff x6
            num_kv_heads=1,
            ff_mult=6,
            use_self_attention=self_attention,
        )
        # the U-Net installs its GQA-aware processor on every attention (the stock one cannot
        # reshape 1 KV head)
        for module in model.modules():
            if isinstance(module, Attention):
                module.set_processor(DreamLiteAttnProcessor2_0())
        g = _gen()
        x = _randn(B, 32, 8, 8, g=g)  # a U-Net feature map: [B, C, H, W]
        kwargs = dict(encoder_hidden_states=_randn(B, 8, 24, g=g), return_dict=False)
        return model, (x,), kwargs

    return build


_register(
    ZooEntry(
        name="DreamLiteTransformer2DModel",
        build=_dreamlite(True),
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        decoys={"outer_residual": 1},
        timestep_arg="",
        timestep_convention="",
        image_tokens=64,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "The spatial transformer inside the DreamLite U-Net (GroupNorm + 1x1 conv proj_in, "
            "LayerNorm blocks: ungated self-attention, cross-attention and GEGLU MLP residuals). "
            "GQA with one KV head (K/V repeat_interleave'd to the query heads) and RMS qk-norm. "
            "DECOY: the module is itself a residual, proj_out(blocks(...)) + x over the [B, C, H, W] "
            "map. EXTRA, not ZOO: its blocks use norm_type layer_norm and never see the timestep "
            "(the U-Net's resnets do), so step-caching tests do not apply."
        ),
    ),
    extra=True,
)

_register(
    ZooEntry(
        name="DreamLiteTransformer2DModel[no-self-attn]",
        build=_dreamlite(False),
        num_blocks={"cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        decoys={"outer_residual": 1},
        timestep_arg="",
        timestep_convention="",
        image_tokens=64,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "use_self_attention=False, as the DreamLite U-Net's NoSelfAttn down/up blocks build it: "
            "attn1 is not created and norm1's output REPLACES the residual stream (x = norm1(x), no "
            "add), then the cross-attention and MLP residuals follow. So each block has only "
            "cross_attn and mlp regions, and the fork of the cross-attention is the LayerNorm "
            "output. EXTRA for the same reason as the default config (no timestep)."
        ),
    ),
    extra=True,
)
