"""More diffusers transformers for the test zoo (group 3); each entry registers itself in
diffusers_zoo.ZOO (denoisers) or EXTRA (transformers that are not DiT denoisers)."""
from __future__ import annotations

import torch

from diffusers_zoo import B, ZooEntry, _gen, _grid_ids, _model, _randn, _register, _t


def _bria():
    from diffusers import BriaTransformer2DModel

    model = _model(
        BriaTransformer2DModel,
        patch_size=1,
        in_channels=16,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=24,
        axes_dims_rope=[4, 6, 6],
    )
    g = _gen()
    x = _randn(B, 64, 16, g=g)  # packed 2x2 patches of a 16x16 latent
    text = _randn(B, 8, 24, g=g)
    text[0, 6:] = 0.0  # the pipeline zero-pads prompts (no attention mask)
    kwargs = dict(
        encoder_hidden_states=text,
        timestep=_t("flow1000"),
        img_ids=_grid_ids(8, 8),
        txt_ids=torch.zeros(8, 3),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="BriaTransformer2DModel",
        build=_bria,
        num_blocks={"joint_attn": 4, "mlp": 4, "parallel": 2},
        mlp_streams={"image": 2, "text": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        notes=(
            "Bria 3.2: a FLUX.1 layout without pooled text and without guidance embedding. Each "
            "double block has its own AdaLayerNormZero for both streams; both streams continue (2 "
            "joint_attn + image and text MLPs per block). Single blocks get text and image "
            "separately, concatenate [text, image] at their start (the fork), run attention and a "
            "GELU MLP side by side into proj_out(cat) with one gated add, and split again. The "
            "model does NOT scale the timestep: the pipeline passes the scheduler's t (sigma*1000). "
            "Prompt padding is zeros, no mask."
        ),
    )
)


def _bria_fibo():
    from diffusers import BriaFiboTransformer2DModel

    layers, singles = 2, 2
    model = _model(
        BriaFiboTransformer2DModel,
        patch_size=1,
        in_channels=16,
        num_layers=layers,
        num_single_layers=singles,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=48,  # the pipeline concatenates the last two encoder layers
        axes_dims_rope=[4, 6, 6],
        text_encoder_dim=24,
    )
    g = _gen()
    x = _randn(B, 64, 16, g=g)
    # CFG pair [negative, positive]: the empty negative prompt is 1 token zero-padded to 8.
    valid = torch.ones(B, 8, dtype=torch.bool)
    valid[0, 1:] = False
    text = _randn(B, 8, 48, g=g) * valid[..., None]
    text_layers = [_randn(B, 8, 24, g=g) * valid[..., None] for _ in range(layers + singles)]
    mask = torch.cat([valid, torch.ones(B, 64, dtype=torch.bool)], dim=1)[:, None, None, :]
    kwargs = dict(
        encoder_hidden_states=text,
        text_encoder_layers=text_layers,
        timestep=_t("flow1000"),
        img_ids=_grid_ids(8, 8),
        txt_ids=torch.zeros(8, 3),
        joint_attention_kwargs={"attention_mask": mask},
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="BriaFiboTransformer2DModel",
        build=_bria_fibo,
        num_blocks={"joint_attn": 4, "mlp": 4, "parallel": 2},
        mlp_streams={"image": 2, "text": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        notes=(
            "FIBO: FLUX.1-like double (2 joint_attn + 2 MLPs each) and single blocks (parallel), "
            "no pooled text, timestep passed as sigma*1000 and not rescaled. Before EVERY block the "
            "text stream is rebuilt along channels: its first half is kept, the second half is "
            "replaced by a per-block projection of one text-encoder layer (text_encoder_layers, a "
            "list of one [B, S, text_encoder_dim] tensor per block). Text and image are "
            "concatenated per single block in the model's forward (the fork is the cat) and split "
            "after it. The pipeline's key-padding mask [B, 1, 1, S+N] (the empty negative prompt "
            "is 1 token padded to 8) travels in joint_attention_kwargs to every attention."
        ),
    )
)


def _bria_fibo2():
    from diffusers import BriaFibo2Transformer2DModel

    model = _model(
        BriaFibo2Transformer2DModel,
        in_channels=4,
        patch_size=2,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        cap_feat_dim=24,
        injection_layer_ids=(1,),
        perceiver_num_layers=1,
        min_num_gist_tokens=4,
        max_num_gist_tokens=8,
        gist_step=4,
        gist_min_text_len=4,
        gist_max_text_len=16,
        axes_dims=(4, 6, 6),
        axes_lens=(16, 8, 8),
    )
    g = _gen()
    x = _randn(B, 4, 16, 16, g=g)
    # [B, 1 + len(injection_layer_ids), S, cap_feat_dim]: the Perceiver's bundle, then one per
    # injection block. Nothing padded -> the pipeline passes no mask.
    text = _randn(B, 2, 8, 24, g=g)
    t = _t("flow1")  # pipeline: t / 1000, 1 = noise; the model multiplies by t_scale=1000
    # The RoPE table is built lazily under `with torch.device("cpu")` on the first call: warm it.
    with torch.no_grad():
        model(x, timestep=t, encoder_hidden_states=text, return_dict=False)
    return model, (x,), dict(timestep=t, encoder_hidden_states=text, return_dict=False)


_register(
    ZooEntry(
        name="BriaFibo2Transformer2DModel",
        build=_bria_fibo2,
        num_blocks={"attn": 4, "cross_attn": 2, "mlp": 4},
        attn_streams={"image": 1, "text": 1, "joint": 2},
        mlp_streams={"image": 1, "text": 1, "joint": 2},
        timestep_arg="timestep",
        timestep_convention="flow1",
        image_tokens=64,
        notes=(
            "FIBO 2: Z-Image-style single stream. 1 noise refiner block over the image tokens (tanh "
            "gates, scale-only modulation, sandwich RMSNorms on the branch outputs, SwiGLU). A "
            "Perceiver resampler (1 layer, ungated: cross-attention of learned gist queries to the "
            "text, gist self-attention, SwiGLU MLP) turns the first text bundle into gist tokens; "
            "it never sees t or the latents, so it is constant over the steps. 8 gist tokens "
            "(computed from the text length) go FIRST, then the 64 image tokens (image rows at "
            "offset 8), through 2 main blocks; block 1 is an injection block with an extra "
            "cross-attention to its own text bundle, gated by tanh of a learned scalar and "
            "sandwich-normed. Modulation is PER TOKEN in the main blocks: torch.where(noise_mask, "
            "mod(t), mod(0)) gives gist rows the t=0 modulation. build() runs one eager forward "
            "(lazy RoPE table)."
        ),
    )
)


def _flux3():
    from diffusers import Flux3Transformer2DModel

    model = _model(
        Flux3Transformer2DModel,
        in_channels=16,
        cond_in_channels=16,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=24,
        timestep_channels=32,
        axes_dims_rope=(4, 4, 4, 4),
    )
    g = _gen()
    x = _randn(B, 64, 16, g=g)
    txt_ids = torch.zeros(8, 4)
    txt_ids[:, 3] = torch.arange(8)
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        timestep=_t("flow1"),
        img_ids=_grid_ids(8, 8, n_axes=4, h_axis=1),
        txt_ids=txt_ids,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="Flux3Transformer2DModel",
        build=_flux3,
        num_blocks={"parallel": 6},
        timestep_arg="timestep",
        timestep_convention="flow1",
        image_tokens=64,
        notes=(
            "FLUX.3 (no pipeline in diffusers yet; timestep in [0, 1], scaled by 1000 inside). Every "
            "block is parallel: attention and a SwiGLU MLP read the same modulated LayerNorm output "
            "and are SUMMED, x + gate * (attn + ff) (no proj_out(cat)). First per-mode blocks: 1 "
            "text-only block (modulated by the embedding of t=0, so it never changes over the "
            "steps) and 1 image-only block (the image_cond mode blocks stay unused without reference "
            "images). Then 2 joint blocks: the normed text and image are concatenated INSIDE the "
            "branch, one attention + MLP runs over [text, image], and the output is split into two "
            "gated residual adds (text stream, image stream): 2 parallel regions per joint block, "
            "whose branch concatenates the token axis and splits it back (torch.split): each stream's "
            "rows are refreshed at their offset of the joint axis, the joint attention output cached. "
            "Modulation is per token ([B, N, 3C], expanded). 4-axis RoPE ids (t, h, w, l)."
        ),
    )
)


def _krea2():
    from diffusers import Krea2Transformer2DModel

    model = _model(
        Krea2Transformer2DModel,
        in_channels=16,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        timestep_embed_dim=32,
        text_hidden_dim=24,
        num_text_layers=3,
        text_num_attention_heads=2,
        text_num_key_value_heads=2,
        text_intermediate_size=48,
        num_layerwise_text_blocks=1,
        num_refiner_text_blocks=1,
        axes_dims_rope=(4, 6, 6),
    )
    g = _gen()
    x = _randn(B, 64, 16, g=g)
    # [prefix-stripped prompt | PAD | suffix]: the pipeline pads in the middle of its template.
    mask = torch.ones(B, 8, dtype=torch.bool)
    mask[:, 5:7] = False
    ids = torch.cat([torch.zeros(8, 3), _grid_ids(8, 8)], dim=0)
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 3, 24, g=g),  # [B, S, tapped layers, text dim]
        timestep=_t("flow1"),
        position_ids=ids,
        encoder_attention_mask=mask,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="Krea2Transformer2DModel",
        build=_krea2,
        num_blocks={"attn": 4, "mlp": 4},
        attn_streams={"text": 2, "joint": 2},
        mlp_streams={"text": 2, "joint": 2},
        timestep_arg="timestep",
        timestep_convention="flow1",
        image_tokens=64,
        notes=(
            "Text fusion first (no t, no latents: constant over the steps), two kinds of ungated "
            "pre-norm blocks (attention + SwiGLU): 1 layerwise block whose attention runs over the "
            "3 tapped text-encoder layers of each token (tokens folded into the batch: [B*S, 3, D]), "
            "a Linear over the layer axis, then 1 refiner block over the text tokens with the "
            "key-padding mask. Then 2 single-stream blocks over [text, image] (image rows at offset "
            "8): one shared t modulation plus a per-block learned table, gated residuals. Attention "
            "has a sigmoid output gate (attn * sigmoid(to_gate(x))) and GQA done by "
            "repeat_interleave of K/V; RMSNorm scale is 1 + weight. Timestep t/1000 in [0, 1]."
        ),
    )
)


def _longcat_image():
    from diffusers import LongCatImageTransformer2DModel

    model = _model(
        LongCatImageTransformer2DModel,
        patch_size=1,
        in_channels=16,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=24,
        pooled_projection_dim=24,
        axes_dims_rope=[4, 6, 6],
    )
    g = _gen()
    x = _randn(B, 64, 16, g=g)
    # Pipeline position ids: text (0, i, i); image (1, S + row, S + col) with S the text budget.
    txt_ids = torch.zeros(8, 3)
    txt_ids[:, 1] = txt_ids[:, 2] = torch.arange(8.0)
    img_ids = _grid_ids(8, 8) + torch.tensor([1.0, 8.0, 8.0])
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        timestep=_t("flow1"),
        img_ids=img_ids,
        txt_ids=txt_ids,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="LongCatImageTransformer2DModel",
        build=_longcat_image,
        num_blocks={"joint_attn": 4, "mlp": 4, "parallel": 2},
        mlp_streams={"image": 2, "text": 2},
        timestep_arg="timestep",
        timestep_convention="flow1",
        image_tokens=64,
        notes=(
            "LongCat-Image: FLUX.1 blocks without pooled text or guidance (the guidance argument is "
            "ignored). 2 double blocks (both streams continue), 2 single blocks that concatenate "
            "[text, image] at their start and split at their end (image rows at offset 8). The "
            "pipeline passes t/1000 (the model multiplies by 1000) and runs the negative prompt as "
            "a separate call. Text RoPE ids (0, i, i), image ids (1, S+h, S+w)."
        ),
    )
)


def _ovis_image():
    from diffusers import OvisImageTransformer2DModel

    model = _model(
        OvisImageTransformer2DModel,
        patch_size=1,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=24,
        axes_dims_rope=(4, 6, 6),
    )
    g = _gen()
    x = _randn(B, 64, 16, g=g)
    txt_ids = torch.zeros(8, 3)
    txt_ids[:, 1] = txt_ids[:, 2] = torch.arange(8.0)
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        timestep=_t("flow1"),
        img_ids=_grid_ids(8, 8),
        txt_ids=txt_ids,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="OvisImageTransformer2DModel",
        build=_ovis_image,
        num_blocks={"joint_attn": 4, "mlp": 4, "parallel": 2},
        mlp_streams={"image": 2, "text": 2},
        timestep_arg="timestep",
        timestep_convention="flow1",
        image_tokens=64,
        notes=(
            "Ovis-Image: FLUX.1 layout with SwiGLU MLPs everywhere (double blocks: FeedForward "
            "'swiglu'; single blocks: proj_mlp to 2x width, silu(gate) * value, then "
            "proj_out(cat(attn, mlp))). The text passes an RMSNorm before context_embedder. 2 double "
            "blocks, 2 single blocks concatenating [text, image] (image rows at offset 8). Pipeline "
            "passes t/1000; text ids (0, i, i), image ids (0, h, w)."
        ),
    )
)
