"""More diffusers transformers for the test zoo (group 8); each entry registers itself in
diffusers_zoo.ZOO (denoisers) or EXTRA (transformers that are not DiT denoisers)."""
from __future__ import annotations

import torch

from diffusers_zoo import B, ZooEntry, _gen, _model, _randn, _register, _t


def _nucleus_moe(moe: bool):
    def build():
        from diffusers import NucleusMoEImageTransformer2DModel

        model = _model(
            NucleusMoEImageTransformer2DModel,
            patch_size=2,
            in_channels=16,  # 4 latent channels packed in 2x2 patches
            num_layers=2 if moe else 3,
            attention_head_dim=16,
            num_attention_heads=2,
            num_key_value_heads=1,
            joint_attention_dim=24,
            axes_dims_rope=(4, 6, 6),
            moe_enabled=True,
            # default strategy: blocks 0-2 and the last block dense (all 3 blocks here)
            dense_moe_strategy="all_moe" if moe else "leave_first_three_and_last_block_dense",
            num_experts=4,
            moe_intermediate_dim=32,
            capacity_factors=2.0,  # capacity = ceil(2 * 64 / 4) = 32 tokens per expert
        )
        # The routed experts' packed weights are allocated with torch.empty and never
        # initialised (checkpoints fill them): draw them, seeded.
        g = _gen(1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if ".experts." in name:
                    p.copy_(_randn(*p.shape, g=g) * p.shape[1] ** -0.5)
        g = _gen()
        h = w = 8  # packed latents: a 16x16 latent in 2x2 patches -> 64 tokens of 16 channels
        mask = torch.ones(B, 8, dtype=torch.bool)
        mask[1, 5:] = False  # the second prompt (CFG negative) is shorter
        kwargs = dict(
            img_shapes=[(1, h, w)] * B,
            encoder_hidden_states=_randn(B, 8, 24, g=g),
            encoder_hidden_states_mask=mask,
            timestep=_t("flow1"),  # pipeline: t / num_train_timesteps
            return_dict=False,
        )
        return model, (_randn(B, h * w, 16, g=g),), kwargs

    return build


_register(
    ZooEntry(
        name="NucleusMoEImageTransformer2DModel",
        build=_nucleus_moe(moe=False),
        num_blocks={"joint_attn": 3, "mlp": 3},
        mlp_streams={"image": 3},
        timestep_arg="timestep",
        timestep_convention="flow1",
        image_tokens=64,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "Single-stream: only the 64 image tokens form the residual stream. Each block projects "
            "the RMS-normed text itself (encoder_proj) and attends with image queries over "
            "cat(image keys, text keys) in ONE SDPA (GQA 2 q / 1 kv head, complex RoPE on image "
            "q/k and text k, key mask [ones, text mask]): that is the image output of a joint "
            "attention whose text output is never computed, so one joint_attn per block (it mixes "
            "image tokens; not cross_attn). Scale-only modulation x * (1 + scale), gates "
            "tanh(clamp(g, -2, 2)). With the default dense_moe_strategy the first three and the "
            "last block are dense, so all 3 blocks here have a SwiGLU MLP (the checkpoint's middle "
            "blocks are MoE: see the [moe] entry). Timestep is t/1000 in [0, 1] (x1000 inside)."
        ),
    )
)

_register(
    ZooEntry(
        name="NucleusMoEImageTransformer2DModel[moe]",
        build=_nucleus_moe(moe=True),
        num_blocks={"joint_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        reused_kinds=("mlp",),
        timestep_arg="timestep",
        timestep_convention="flow1",
        image_tokens=64,
        graphs=10,
        fullgraph_ok=True,
        notes=(
            "The MoE blocks (all_moe, 2 blocks): each MLP is a shared SwiGLU expert plus 4 routed "
            "experts with EXPERT-CHOICE routing: every expert takes the top-32 tokens over the "
            "SEQUENCE axis (topk on scores transposed to [B, E, S]; router input cat(temb, "
            "unmodulated x)), gathers them, runs, and scatter_adds back; so whether a token is "
            "routed depends on the other tokens: the MLP is token-mixing, reused whole. The "
            "default per-expert loop (use_grouped_mm=False) calls num_tokens_per_expert.tolist(): "
            "a graph break in every MoE MLP (10 graphs: the block frame is compiled on its own, up "
            "to the MoE call, and serves both blocks; fullgraph=True does trace). "
            "use_grouped_mm=True (F.grouped_mm) runs eagerly on CPU but not in float32 under "
            "Dynamo (its meta kernel demands bfloat16)."
        ),
    )
)


def _omnigen():
    from diffusers import OmniGenTransformer2DModel
    from diffusers.pipelines.omnigen.processor_omnigen import OmniGenCollator

    head_dim = 16
    model = _model(
        OmniGenTransformer2DModel,
        in_channels=4,
        patch_size=2,
        hidden_size=32,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        num_layers=2,
        pad_token_id=0,
        vocab_size=64,
        rope_scaling={"short_factor": [1.0] * (head_dim // 2), "long_factor": [2.0] * (head_dim // 2)},
        pos_embed_max_size=16,
        time_step_dim=32,
    )
    g = _gen()
    x = _randn(B, 4, 16, 16, g=g)
    # A CFG pair [prompt, negative prompt]: the negative prompt is shorter, so it is left-padded.
    text = torch.tensor([[5, 9, 11, 3, 7, 2], [0, 0, 5, 8, 4, 2]])
    text_mask = (text != 0).long()
    image_tokens = 64
    collator = OmniGenCollator(pad_token_id=0, hidden_size=32)
    position_ids = collator.create_position(text_mask, [image_tokens] * B)
    attention_mask, _ = collator.create_mask(text_mask, [image_tokens] * B)
    kwargs = dict(
        timestep=_t("flow1_rev"),  # scheduler: invert_sigmas=True, num_train_timesteps=1
        input_ids=text,
        input_img_latents=[],
        input_image_sizes={},
        attention_mask=attention_mask,
        position_ids=position_ids,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="OmniGenTransformer2DModel",
        build=_omnigen,
        num_blocks={"attn": 2, "mlp": 2},
        attn_streams={"joint": 2},
        mlp_streams={"joint": 2},
        timestep_arg="timestep",
        timestep_convention="flow1_rev",
        image_tokens=64,
        graphs=4,
        fullgraph_ok=False,
        notes=(
            "A Phi-3-style decoder-only LLM used as a DiT: one stream cat(embedded prompt ids, one "
            "time token, 64 image tokens) (6 + 1 + 64 = 71), image rows start at offset 7. Blocks are "
            "plain pre-norm LLM layers with NO timestep modulation and no gates: x + attn(rms(x)), "
            "x + mlp(rms(x)); the timestep enters only as the time token and in the final AdaLayerNorm. "
            "The attention is called as cross-attention with encoder_hidden_states = its own normed "
            "input (self-attention). The [B, S, S] mask from OmniGenCollator is causal over the "
            "prompt, bidirectional over the image, padding keys masked (left-padded negative prompt). "
            "SwiGLU MLP (up * silu(gate)). SU-scaled RoPE from position ids. No input images here "
            "(input_img_latents=[]). The checkpoint's FlowMatchEuler scheduler has invert_sigmas=True and "
            "num_train_timesteps=1, so t = 1 - sigma rises from 0 (noise) to ~1. Graph break: the "
            "RoPE module branches on a tensor (max(position_ids) + 1 > original_max_position_"
            "embeddings), so 4 graphs; all blocks are in the last one."
        ),
    )
)


def _prior_shap_e():
    from diffusers import PriorTransformer

    model = _model(
        PriorTransformer,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        embedding_dim=32,
        num_embeddings=64,
        additional_embeddings=0,
        time_embed_act_fn="gelu",
        norm_in_type="layer",
        encoder_hid_proj_type=None,
        added_emb_type=None,
        time_embed_dim=64,
        embedding_proj_dim=24,
        clip_embed_dim=64,
    )
    g = _gen()
    x = _randn(B, 64, 32, g=g)  # Shap-E latents: [B, num_embeddings, embedding_dim]
    proj = _randn(B, 24, g=g)
    proj[0] = 0.0  # CFG: cat([zeros_like(embeds), embeds]), the unconditional row first
    kwargs = dict(timestep=_t("ddpm_float"), proj_embedding=proj, return_dict=False)
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="PriorTransformer",
        build=_prior_shap_e,
        num_blocks={"attn": 2, "mlp": 2},
        attn_streams={"joint": 2},
        mlp_streams={"joint": 2},
        timestep_arg="timestep",
        timestep_convention="ddpm_float",
        image_tokens=64,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "Shap-E text-to-3D configuration (ShapEPipeline): the latent is a sequence of "
            "num_embeddings tokens (the implicit-function parameters; 64 here, 1024 in the "
            "checkpoint), so there is a "
            "per-token latent stream: in ZOO. The stream is cat(projected CLIP embedding, time "
            "token, latents) (1 + 1 + 64); latent rows start at offset 2 and only they are read "
            "out. Plain BasicTransformerBlocks (LayerNorm, no modulation, no gates, GELU MLP); no "
            "attention mask in Shap-E, so attention is bidirectional. The timestep enters only as "
            "a token. HeunDiscreteScheduler with Karras sigmas feeds fractional timesteps, so the "
            "convention is ddpm_float. The output is [B, 64, 2 * embedding_dim] (mean, variance)."
        ),
    )
)


def _prior_kandinsky():
    from diffusers import PriorTransformer

    model = _model(
        PriorTransformer,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        embedding_dim=24,
        num_embeddings=8,
        additional_embeddings=4,
    )
    g = _gen()
    text_mask = torch.ones(B, 8, dtype=torch.bool)
    text_mask[1, 3:] = False  # the negative prompt is shorter
    kwargs = dict(
        timestep=_t("ddpm"),
        proj_embedding=_randn(B, 24, g=g),
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        attention_mask=text_mask,
        return_dict=False,
    )
    return model, (_randn(B, 24, g=g),), kwargs


_register(
    ZooEntry(
        name="PriorTransformer[kandinsky-prior]",
        build=_prior_kandinsky,
        num_blocks={"attn": 2, "mlp": 2},
        attn_streams={"joint": 2},
        mlp_streams={"joint": 2},
        timestep_arg="",
        timestep_convention="",
        image_tokens=1,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "unCLIP / Kandinsky prior configuration: denoises ONE CLIP image embedding. The stream is "
            "cat(8 text tokens, CLIP text embedding, time token, noisy image embedding, learned prd "
            "token) (8 + 4); the prediction is read from the last (prd) token only. Attention has a "
            "causal mask (plus the text padding mask), so the text rows never see the timestep or "
            "the latent. In EXTRA, not ZOO: there is no per-token latent stream to cache (one "
            "latent token; the pipeline does pass an integer DDPM timestep, not recorded here). "
            "Same plain BasicTransformerBlocks as the Shap-E entry (attn + GELU MLP, ungated)."
        ),
    ),
    extra=True,
)


def _rfd4_proteina():
    from diffusers import RFD4ProteinaTransformer

    model = _model(
        RFD4ProteinaTransformer,
        nlayers=3,
        token_dim=32,
        nheads=2,
        dim_cond=16,
        pair_repr_dim=8,
        latent_dim=8,
        token_type_emb_dim=8,
        cath_emb_dim=4,
        t_emb_dim=16,
        seq_sep_dim=8,
        xt_pair_dist_dim=8,
        feats_seq=("xt_bb_ca", "xt_local_latents", "token_type", "chain_centroid_xyz"),
        feats_cond_seq=("time_emb_bb_ca", "time_emb_local_latents"),
        feats_pair_repr=("xt_bb_ca_pair_dists", "molecule_idx_pair", "token_bond_path_length"),
        feats_pair_cond=("time_emb_bb_ca", "time_emb_local_latents"),
        update_pair_repr_every_n=2,
        tri_mult_c=8,
        num_sequence_classes=16,
    )
    g = _gen()
    n = 16  # residues / tokens
    padding_mask = torch.ones(B, n, dtype=torch.bool)
    padding_mask[1, 13:] = False  # the second design is shorter
    in_context = torch.zeros(B, n, dtype=torch.bool)
    in_context[:, :2] = True  # two motif tokens given as conditioning
    t = _t("flow1_rev")
    kwargs = dict(
        local_latents=_randn(B, n, 8, g=g),
        bb_ca_time=t,
        local_latents_time=t.clone(),  # a distinct tensor: steps_of replaces bb_ca_time only
        padding_mask=padding_mask,
        token_type=torch.zeros(B, n, dtype=torch.long),
        conditioning={
            "is_in_context_conditioning": in_context,
            "supports_local_latent": torch.ones(B, n, dtype=torch.bool),
            "molecule_iid": torch.zeros(B, n, dtype=torch.long),
            "token_bond_path_length": (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs()
            .expand(B, n, n).contiguous(),
        },
        recycle_depth=1,
        return_dict=False,
    )
    return model, (_randn(B, n, 3, g=g),), kwargs


_register(
    ZooEntry(
        name="RFD4ProteinaTransformer",
        build=_rfd4_proteina,
        num_blocks={"attn": 3, "mlp": 3},
        timestep_arg="bb_ca_time",
        timestep_convention="flow1_rev",
        image_tokens=16,
        decoys={"pair_update": 3},
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "Protein structure denoiser (not images): a timestep-conditioned transformer over residue "
            "tokens whose per-token inputs are the noisy CA coordinates (bb_ca, first argument) and local "
            "latents, so it is in ZOO. Two times (bb_ca_time, local_latents_time), both in [0, 1] with "
            "1 = clean (velocity prediction, x1 = x + (1 - t) v): flow1_rev; the zoo passes the same "
            "value to both and steps_of varies bb_ca_time only. 3 trunk layers, each "
            "(x + mhba(x)) * mask and (x + transition(x)) * mask: adaLN (sigmoid gamma, beta from a "
            "PER-TOKEN condition, the time embedding broadcast over tokens), attention with a bias "
            "from the pair representation [B, N, N, C] whose output is multiplied by sigmoid(to_g(x)) "
            "(AlphaFold-style per-head gating of ONE SDPA, no MLP beside it: attn, not parallel), SwiGLU "
            "transition; each branch output is scaled by sigmoid(linear(condition)) * mask and the "
            "join is followed by * mask. After layer 0 a pair update rewrites the pair stream "
            "[B, N, N, C] from the tokens: an outer-product add, two triangle multiplications "
            "(sigmoid-gated, matmul over the token axis) and a ReLU pair transition; the last three "
            "are anchored residuals over the pair grid, not token regions: DECOYS. "
            "Reduced feature set (the default one needs hbond/pistack/... annotations). "
            "recycle_depth=1 (one trunk pass; the released schedule uses 6 passes early, 1 late)."
        ),
    )
)


def _temporal():
    from diffusers import TransformerTemporalModel

    model = _model(
        TransformerTemporalModel,
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=32,
        num_layers=2,
        norm_num_groups=8,
        cross_attention_dim=24,  # ignored: double_self_attention makes attn2 self-attention
    )
    g = _gen()
    frames = 4
    x = _randn(B * frames, 32, 4, 4, g=g)  # U-Net feature maps, frames folded into the batch
    return model, (x,), dict(num_frames=frames, return_dict=False)


_register(
    ZooEntry(
        name="TransformerTemporalModel",
        build=_temporal,
        num_blocks={"attn": 4, "mlp": 2},
        attn_streams={"temporal": 4},
        mlp_streams={"temporal": 2},
        decoys={"outer_residual": 1},
        timestep_arg="",
        timestep_convention="",
        image_tokens=64,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "The temporal transformer of the text-to-video U-Nets (UNet3DConditionModel, I2VGenXL): "
            "input [B*F, C, H, W]; GroupNorm over (C, F, H, W), then tokens regrouped to "
            "[B*H*W, F, C]: attention runs over the 4 frames of each of the 16 positions. "
            "BasicTransformerBlocks with double_self_attention=True: attn1 and attn2 are BOTH "
            "self-attention over frames (U-Nets pass no encoder_hidden_states; cross_attention_dim "
            "is ignored), then a GEGLU MLP, all ungated LayerNorm residuals. U-Nets use num_layers=1 "
            "(2 here). Its `timestep` argument only feeds ada-norm variants the U-Nets never build, "
            "so it has no timestep: in EXTRA. DECOY: proj_out(blocks(...)) + input over the "
            "[B*F, C, H, W] map."
        ),
    ),
    extra=True,
)
