"""A zoo of diffusers transformers at tiny, random-weight configurations.

Every entry builds a seeded float32 CPU model (at most 3 blocks of each kind, width at most 64,
at most 64 image tokens) together with example inputs shaped like the ones a diffusers pipeline
passes in one denoising step, and records what the region detector should find in its Dynamo
graph.

Region kinds (`ZooEntry.num_blocks`), each counted as one residual join
``x = x + [gate *] branch(...)`` whose branch holds an attention or an MLP activation:

- ``attn``: self-attention over one token stream (image/video tokens; temporal attention over
  frames is counted here too and called out in the notes).
- ``joint_attn``: one output stream of a joint text+image attention (MMDiT). A double-stream
  block whose text stream continues has two; a block whose text output is dropped has one.
- ``cross_attn``: image queries attending to text (or other conditioning) keys.
- ``mlp``: feed-forward residuals, image and text streams together; ``mlp_streams`` splits the
  count by stream.
- ``parallel``: FLUX-style single-stream blocks, where attention and MLP run side by side and
  meet in one ``proj_out(cat(attn, mlp))`` with one residual add.

``mlp_streams`` / ``attn_streams`` split the ``mlp`` / ``attn`` counts by the token stream the
region runs over: ``image`` (image/video tokens), ``text`` (text-only refiner blocks),
``joint`` (one stream holding text and image tokens concatenated), ``temporal`` (attention over
frames with the spatial positions folded into the batch axis). Empty means all ``image``.

``decoys`` counts residual structures with an anchor that are NOT token regions (they live
in the conditioning path, e.g. a residual MLP over modulation vectors): a detector must not
report them.

``ZOO`` holds the denoisers; ``EXTRA`` holds modules that are not (no timestep) but are
useful to detector tests. Every ZOO entry passes its timestep by keyword (``timestep_arg``).

``graphs`` is how many graphs Dynamo hands a backend with ``fullgraph=False``; ``fullgraph_ok``
says whether ``fullgraph=True`` traces. Run this file to check all of that:

    python tests/diffusers_zoo.py [--strict] [name ...]

(--strict also traces fullgraph=True where one graph with no break already implies it.)
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

__all__ = [
    "ZooEntry",
    "ZOO",
    "EXTRA",
    "TIMESTEP_CONVENTIONS",
    "timestep_schedule",
    "timestep_of",
    "steps_of",
    "expects_reuse",
    "call",
    "first_tensor",
    "CountingBackend",
    "trace_count",
]


@dataclass
class ZooEntry:
    """One model of the zoo.

    name: the ZOO key: the diffusers class name, with a [variant] suffix for extra configs.
    build: () -> (model in eval mode, args, kwargs); seeded, so every call gives the same
        weights and inputs. Most entries pass hidden_states positionally and the rest as
        keyword arguments, the way the pipelines call the model (return_dict=False).
    num_blocks: region kind -> how many residual regions the detector should find.
    timestep_arg: name of the forward argument carrying the timestep ("" if there is none).
    timestep_convention: one of TIMESTEP_CONVENTIONS: the range and direction of the values a
        sampler feeds; timestep_schedule(convention, n) gives a whole schedule.
    graphs: graphs a backend receives with fullgraph=False (torch 2.13, CPU).
    fullgraph_ok: whether torch.compile(..., fullgraph=True) traces.
    image_tokens: number of image/video/audio latent tokens (after patching).
    mlp_streams, attn_streams, decoys: see the module docstring.
    reused_kinds: token-wise region kinds that the model source makes token-mixing or hides the
        token axis of (a depthwise convolution in the MLP, a stream's tokens split into pieces
        that are computed apart), so that a partial step must reuse them whole; every
        other MLP, cross-attention and parallel region is refreshed per token. Self- and joint
        attention are always reused whole.
    reused_labels: the same for single regions, as ``fnmatch`` patterns of region labels
        (``"text_conv_layer.*.mlp"``), where one kind has both (see :func:`expects_reuse`).
    notes: how the blocks are wired, and what is unusual about them.
    """

    name: str
    build: Callable[[], tuple[nn.Module, tuple, dict]]
    num_blocks: dict[str, int]
    timestep_arg: str
    timestep_convention: str = ""
    graphs: int = 1
    fullgraph_ok: bool = True
    image_tokens: int = 0
    mlp_streams: dict[str, int] = field(default_factory=dict)
    attn_streams: dict[str, int] = field(default_factory=dict)
    decoys: dict[str, int] = field(default_factory=dict)
    reused_kinds: tuple[str, ...] = ()
    reused_labels: tuple[str, ...] = ()
    notes: str = ""

    @property
    def total_regions(self) -> int:
        return sum(self.num_blocks.values())


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, g: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float32)


def _model(cls, seed: int = 0, **config) -> nn.Module:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = cls(**config)
    _redraw_zeros(model)
    return model.eval()


@torch.no_grad()
def _redraw_zeros(model: nn.Module) -> None:
    """Re-draw parameters that the constructor sets to exactly zero.

    Some models zero-initialize modulation, gates or learned position tables (checkpoints fill
    them in). Left at zero, a branch can contribute nothing (PRX's zeroed modulation makes every
    block the identity; LuminaNext's zero cross-attention gate kills cross-attention; Mochi's
    zero RoPE frequencies make RoPE a no-op), which would make caching tests vacuous. Norm
    biases stay zero. Runs right after the seeded constructor, so it is deterministic too.
    """
    for name, p in model.named_parameters():
        if p.numel() == 0 or p.abs().max() != 0:
            continue
        if name.endswith("bias") and "norm" in name:
            continue
        if p.ndim == 2 and name.endswith("weight"):
            p.normal_(0.0, p.shape[1] ** -0.5)
        else:
            p.normal_(0.0, 0.5)


B = 2  # batch: one CFG pair


# Timestep conventions: what a pipeline feeds the model at each step of a real sampler.
#   ddpm        long, 999 -> 0 (DDPM/DDIM/DPM-Solver integer timesteps)
#   ddpm_float  the same values as float (pipelines that cast t to the latent dtype)
#   flow1000    float sigma * 1000, 1000 -> ~0 (flow matching, FlowMatchEuler's t)
#   flow1       float sigma in (0, 1], decreasing (pipelines that pass t / 1000)
#   flow1_rev   float 1 - sigma, INCREASING 0 -> ~1 (Lumina, Z-Image: t = 1 is the clean image)
#   flow1000_rev float (1 - sigma) * 1000, INCREASING (Mochi: inverted sigmas)
#   edm         float c_noise = log(sigma) / 4, sigma 80 -> 0.002 (Cosmos-1.0, EDM)
#   atan        float atan(sigma) * 2 / pi, sigma 500 -> 0.03 (Stable Audio, CosineDPMSolver)
#   ""          no timestep input
TIMESTEP_CONVENTIONS = (
    "ddpm", "ddpm_float", "flow1000", "flow1", "flow1_rev", "flow1000_rev", "edm", "atan", "",
)

EXAMPLE_STEP, EXAMPLE_STEPS = 3, 10  # build() uses step 3 of a 10-step schedule


def timestep_schedule(
    convention: str, num_steps: int = EXAMPLE_STEPS, batch: int | None = None
) -> list[torch.Tensor | None]:
    """The per-step timestep tensors ([batch] each) a sampler would pass, first step first."""
    batch = B if batch is None else batch
    n = num_steps
    if convention == "":
        return [None] * n
    if convention in ("ddpm", "ddpm_float"):
        t = torch.linspace(999, 0, n).round()
        t = t.long() if convention == "ddpm" else t
    elif convention in ("flow1000", "flow1", "flow1_rev", "flow1000_rev"):
        sigma = torch.linspace(1.0, 1.0 / n, n)
        t = {"flow1000": sigma * 1000, "flow1": sigma, "flow1_rev": 1 - sigma,
             "flow1000_rev": (1 - sigma) * 1000}[convention]
    elif convention == "edm":
        t = 0.25 * torch.logspace(math.log10(80.0), math.log10(0.002), n).log()
    elif convention == "atan":
        t = torch.logspace(math.log10(500.0), math.log10(0.03), n).atan() * 2 / math.pi
    else:
        raise ValueError(convention)
    return [v.expand(batch).contiguous() for v in t]


def _t(convention: str) -> torch.Tensor:
    return timestep_schedule(convention)[EXAMPLE_STEP]


# --------------------------------------------------------------------------------------------
# entries
# --------------------------------------------------------------------------------------------

ZOO: dict[str, ZooEntry] = {}
# Entries that are not diffusion-transformer denoisers (no timestep), kept for detector tests.
EXTRA: dict[str, ZooEntry] = {}


def _register(entry: ZooEntry, extra: bool = False) -> ZooEntry:
    assert entry.name not in ZOO and entry.name not in EXTRA, entry.name
    (EXTRA if extra else ZOO)[entry.name] = entry
    return entry


def _dit():
    from diffusers import DiTTransformer2DModel

    model = _model(
        DiTTransformer2DModel,
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        sample_size=16,
        patch_size=2,
        num_embeds_ada_norm=10,
    )
    g = _gen()
    x = _randn(B, 4, 16, 16, g=g)
    kwargs = dict(timestep=_t("ddpm"), class_labels=torch.tensor([3, 10][:B]), return_dict=False)
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="DiTTransformer2DModel",
        build=_dit,
        num_blocks={"attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="ddpm",
        image_tokens=64,
        notes=(
            "BasicTransformerBlock with ada_norm_zero; class label 10 is the null (CFG) class. "
            "Each block embeds timestep+class itself (norm1.emb), so the modulation MLP is "
            "inside every block, not shared. Both residuals gated: x = gate * branch + x."
        ),
    )
)


def _pixart():
    from diffusers import PixArtTransformer2DModel

    model = _model(
        PixArtTransformer2DModel,
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        cross_attention_dim=32,
        caption_channels=24,
        sample_size=16,
        patch_size=2,
        use_additional_conditions=False,
    )
    g = _gen()
    x = _randn(B, 4, 16, 16, g=g)
    text = _randn(B, 8, 24, g=g)
    mask = torch.ones(B, 8, dtype=torch.long)
    mask[:, 6:] = 0  # padded prompt tokens, as the T5 tokenizer mask gives
    kwargs = dict(
        encoder_hidden_states=text,
        encoder_attention_mask=mask,
        timestep=_t("ddpm"),
        added_cond_kwargs={"resolution": None, "aspect_ratio": None},
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="PixArtTransformer2DModel",
        build=_pixart,
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="ddpm",
        image_tokens=64,
        notes=(
            "ada_norm_single: one shared t-embedding (adaln_single) reshaped per block against "
            "scale_shift_table. Cross-attention has no norm and no gate: x = attn2(x, text) + x. "
            "Text mask passed as encoder_attention_mask [B, S] (turned into a -10000 bias)."
        ),
    )
)


def _sd3(dual: bool):
    from diffusers import SD3Transformer2DModel

    def build():
        model = _model(
            SD3Transformer2DModel,
            sample_size=16,
            patch_size=2,
            in_channels=4,
            out_channels=4,
            num_layers=3,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=24,
            caption_projection_dim=32,
            pooled_projection_dim=16,
            pos_embed_max_size=16,
            dual_attention_layers=(0, 1) if dual else (),
            qk_norm="rms_norm" if dual else None,
        )
        g = _gen()
        x = _randn(B, 4, 16, 16, g=g)
        kwargs = dict(
            encoder_hidden_states=_randn(B, 8, 24, g=g),
            pooled_projections=_randn(B, 16, g=g),
            timestep=_t("flow1000"),
            return_dict=False,
        )
        return model, (x,), kwargs

    return build


_register(
    ZooEntry(
        name="SD3Transformer2DModel",
        build=_sd3(dual=False),
        num_blocks={"joint_attn": 5, "mlp": 5},
        mlp_streams={"image": 3, "text": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        notes=(
            "3 JointTransformerBlocks; the last has context_pre_only=True: its text stream only "
            "feeds K/V (no to_add_out, no text residual, no ff_context), so joint_attn = 2+2+1 and "
            "text MLPs = 2. Timestep is sigma*1000 (float)."
        ),
    )
)

_register(
    ZooEntry(
        name="SD3Transformer2DModel[sd35-dual]",
        build=_sd3(dual=True),
        num_blocks={"joint_attn": 5, "attn": 2, "mlp": 5},
        mlp_streams={"image": 3, "text": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        notes=(
            "SD3.5-style: qk_norm=rms_norm and dual_attention_layers=(0, 1): blocks 0 and 1 add an "
            "image-only self-attention (attn2) with its own gate, read from the SAME norm1 call "
            "(SD35AdaLayerNormZeroX gives both normed inputs up front), so the attn2 branch input "
            "is computed from x before the joint-attention residual, while its residual add comes "
            "after it: x = (x + g1*jattn(n1(x))) + g2*attn2(n2(x))."
        ),
    )
)


def _grid_ids(h: int, w: int, n_axes: int = 3, h_axis: int = 1) -> torch.Tensor:
    """FLUX-style position ids [h*w, n_axes]: zeros except (row, col) on axes h_axis, h_axis+1."""
    ids = torch.zeros(h, w, n_axes)
    ids[..., h_axis] = torch.arange(h)[:, None]
    ids[..., h_axis + 1] = torch.arange(w)[None, :]
    return ids.reshape(h * w, n_axes)


def _flux():
    from diffusers import FluxTransformer2DModel

    model = _model(
        FluxTransformer2DModel,
        patch_size=1,
        in_channels=16,
        num_layers=2,
        num_single_layers=3,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=24,
        pooled_projection_dim=16,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    g = _gen()
    h = w = 8  # packed latents: (16x16 latent, 2x2 patches) -> 64 tokens of 4*4 channels
    x = _randn(B, h * w, 16, g=g)
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        pooled_projections=_randn(B, 16, g=g),
        timestep=_t("flow1"),
        img_ids=_grid_ids(h, w),
        txt_ids=torch.zeros(8, 3),
        guidance=torch.full((B,), 3.5),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="FluxTransformer2DModel",
        build=_flux,
        num_blocks={"joint_attn": 4, "mlp": 4, "parallel": 3},
        mlp_streams={"image": 2, "text": 2},
        timestep_arg="timestep",
        timestep_convention="flow1",
        image_tokens=64,
        notes=(
            "FLUX.1-dev style (guidance_embeds=True, guidance=3.5). Timestep in [0, 1] (the model "
            "multiplies by 1000). 2 double-stream blocks (both streams continue: 2 joint_attn + 2 "
            "mlp each), 3 single-stream blocks: each concatenates [text, image] tokens at its "
            "start and splits them at its end, so the parallel region's token axis is text+image "
            "(8+64) and image rows start at offset 8."
        ),
    )
)


def _latte():
    from diffusers import LatteTransformer3DModel

    model = _model(
        LatteTransformer3DModel,
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        cross_attention_dim=32,
        caption_channels=24,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=1000,
        video_length=4,
    )
    g = _gen()
    x = _randn(B, 4, 4, 8, 8, g=g)  # B, C, F, H, W
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        timestep=_t("ddpm"),
        enable_temporal_attentions=True,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="LatteTransformer3DModel",
        build=_latte,
        num_blocks={"attn": 4, "cross_attn": 2, "mlp": 4},
        mlp_streams={"image": 2, "temporal": 2},
        attn_streams={"image": 2, "temporal": 2},
        timestep_arg="timestep",
        timestep_convention="ddpm",
        image_tokens=64,
        notes=(
            "2 spatial + 2 temporal BasicTransformerBlocks (ada_norm_single). attn = 2 spatial + "
            "2 TEMPORAL: the temporal block attends over the 4 frames with (B*16 patches) folded "
            "into the batch axis, so its 'token' axis is frames, not pixels; mlp = 2 spatial + 2 "
            "temporal. Cross-attention only in spatial blocks (ungated, no norm). "
            "temp_pos_embed is added between spatial block 0 and temporal block 0 (outside blocks)."
        ),
    )
)


def _cogvideox():
    from diffusers import CogVideoXTransformer3DModel

    model = _model(
        CogVideoXTransformer3DModel,
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        time_embed_dim=32,
        text_embed_dim=24,
        num_layers=2,
        sample_width=8,
        sample_height=8,
        sample_frames=5,  # -> 2 latent frames
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=8,
    )
    g = _gen()
    x = _randn(B, 2, 4, 8, 8, g=g)  # B, F, C, H, W
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        timestep=_t("ddpm"),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="CogVideoXTransformer3DModel",
        build=_cogvideox,
        num_blocks={"joint_attn": 4, "mlp": 4},
        mlp_streams={"image": 2, "text": 2},
        timestep_arg="timestep",
        timestep_convention="ddpm",
        image_tokens=32,
        notes=(
            "Expert-AdaLN MMDiT: one Attention over cat(text, video) with 2 gated residuals per "
            "block. The MLP is ONE shared FeedForward run on cat(norm_text, norm_video); its output "
            "is sliced and joined into both streams, so the 2 mlp joins per block share one GELU "
            "anchor. Video tokens: 2 latent frames x 4x4 patches."
        ),
    )
)


def _hunyuan_dit(num_layers: int):
    def build():
        from diffusers import HunyuanDiT2DModel
        from diffusers.models.embeddings import get_2d_rotary_pos_embed

        model = _model(
            HunyuanDiT2DModel,
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=4,
            patch_size=2,
            sample_size=16,
            hidden_size=32,
            num_layers=num_layers,
            cross_attention_dim=16,
            cross_attention_dim_t5=24,  # pooled by an 8-head attention pool
            pooled_projection_dim=16,
            text_len=6,
            text_len_t5=8,
        )
        g = _gen()
        x = _randn(B, 4, 16, 16, g=g)
        grid = (8, 8)
        # the pipeline's get_resize_crop_region_for_grid((8, 8), base_size=8) is the whole grid
        rope = get_2d_rotary_pos_embed(16, ((0, 0), grid), grid, output_type="pt")
        mask = torch.ones(B, 6, dtype=torch.long)
        mask[:, 4:] = 0
        mask_t5 = torch.ones(B, 8, dtype=torch.long)
        mask_t5[:, 5:] = 0
        kwargs = dict(
            timestep=_t("ddpm_float"),  # the pipeline casts t to the latent dtype
            encoder_hidden_states=_randn(B, 6, 16, g=g),
            text_embedding_mask=mask,
            encoder_hidden_states_t5=_randn(B, 8, 24, g=g),
            text_embedding_mask_t5=mask_t5,
            image_meta_size=torch.tensor([[128.0, 128.0, 128.0, 128.0, 0.0, 0.0]]).repeat(B, 1),
            style=torch.zeros(B, dtype=torch.long),
            image_rotary_emb=rope,
            return_dict=False,
        )
        return model, (x,), kwargs

    return build


_register(
    ZooEntry(
        name="HunyuanDiT2DModel",
        build=_hunyuan_dit(2),
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="ddpm_float",
        image_tokens=64,
        notes=(
            "No gates at all: x = x + attn1(norm1(x, temb)) (AdaLayerNormShift: LN + shift only), "
            "x = x + attn2(norm2(x), text), x = x + ff(norm3(x)). Text = CLIP(6) + T5(8) tokens "
            "concatenated, padded positions replaced by a learned padding embedding. RoPE passed "
            "in as an input tuple. With 2 layers there are no long skips."
        ),
    )
)

_register(
    ZooEntry(
        name="HunyuanDiT2DModel[skip4]",
        build=_hunyuan_dit(4),
        num_blocks={"attn": 4, "cross_attn": 4, "mlp": 4},
        mlp_streams={"image": 4},
        timestep_arg="timestep",
        timestep_convention="ddpm_float",
        image_tokens=64,
        notes=(
            "4 blocks on purpose (the U-Net-style long skip needs >= 4): block 3 starts with "
            "x = skip_linear(skip_norm(cat(x, skip_from_block_0))), which REPLACES the residual "
            "stream (no add), so the fork of block 3's first region is after that linear. The "
            "skip tensor (output of block 0) stays live across blocks 1-2."
        ),
    )
)


def _auraflow():
    from diffusers import AuraFlowTransformer2DModel

    model = _model(
        AuraFlowTransformer2DModel,
        sample_size=16,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_mmdit_layers=1,
        num_single_dit_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=24,
        caption_projection_dim=32,
        pos_embed_max_size=64,
    )
    g = _gen()
    x = _randn(B, 4, 16, 16, g=g)
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        timestep=_t("flow1"),  # pipeline: t / 1000
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="AuraFlowTransformer2DModel",
        build=_auraflow,
        num_blocks={"joint_attn": 2, "attn": 2, "mlp": 4},
        mlp_streams={"image": 1, "text": 1, "joint": 2},
        attn_streams={"joint": 2},
        timestep_arg="timestep",
        timestep_convention="flow1",
        image_tokens=64,
        notes=(
            "UNUSUAL residuals: in every block the attention sum is not carried on. "
            "h = norm2(x + g_msa*attn(norm1(x))); x_out = x + g_mlp*ff(mod(h)). So the 'attn' add "
            "(x + g*attn) only feeds a LayerNorm, and the MLP residual joins the BLOCK INPUT x, "
            "with the attention nested inside the MLP branch (a dominator-based detector may see "
            "one region per stream holding both SDPA and SiLU). Counts here are the literal adds. "
            "1 MMDiT block (2 streams), 2 single blocks over cat(8 register + 8 text, 64 image) "
            "concatenated ONCE before the single blocks. SwiGLU MLP (silu(l1(x)) * l2(x)), no biases."
        ),
    )
)


def _lumina2():
    from diffusers import Lumina2Transformer2DModel

    model = _model(
        Lumina2Transformer2DModel,
        sample_size=16,
        patch_size=2,
        in_channels=4,
        hidden_size=32,
        num_layers=2,
        num_refiner_layers=1,
        num_attention_heads=2,
        num_kv_heads=1,
        multiple_of=16,
        axes_dim_rope=(4, 6, 6),
        axes_lens=(32, 32, 32),
        cap_feat_dim=24,
    )
    g = _gen()
    x = _randn(B, 4, 16, 16, g=g)
    mask = torch.ones(B, 8, dtype=torch.bool)
    mask[:, 6:] = False
    kwargs = dict(
        timestep=_t("flow1_rev"),  # pipeline: 1 - t/1000 (t=0 is noise for Lumina)
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        encoder_attention_mask=mask,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="Lumina2Transformer2DModel",
        build=_lumina2,
        num_blocks={"attn": 4, "mlp": 4},
        attn_streams={"text": 1, "image": 1, "joint": 2},
        mlp_streams={"text": 1, "image": 1, "joint": 2},
        timestep_arg="timestep",
        timestep_convention="flow1_rev",
        image_tokens=64,
        graphs=4,
        fullgraph_ok=False,
        notes=(
            "1 context_refiner block (text only, no modulation: x + norm2(attn), x + ffn_norm2(ff); "
            "it sees neither t nor the latents, so its output is the same at every step), "
            "1 noise_refiner block (image only) and 2 main blocks over the per-sample packed "
            "[valid caption tokens, image tokens] sequence. Sandwich norms: the branch output is "
            "RMS-normed AFTER attention/MLP and gated by tanh(gate): x + tanh(g)*norm2(attn(..)). "
            "Graph breaks: mask.sum().tolist() and per-sample Python loops build RoPE ids and the "
            "packed sequence (data-dependent lengths). Image tokens start at offset 6 (valid caption "
            "length). Timestep in [0, 1] with 1 = clean image. GQA (2 q heads, 1 kv head). SwiGLU."
        ),
    )
)


def _lumina_next():
    from diffusers import LuminaNextDiT2DModel
    from diffusers.models.embeddings import get_2d_rotary_pos_embed_lumina

    model = _model(
        LuminaNextDiT2DModel,
        sample_size=16,
        patch_size=2,
        in_channels=4,
        hidden_size=32,
        num_layers=2,
        num_attention_heads=2,
        num_kv_heads=2,
        multiple_of=16,
        learn_sigma=True,
        qk_norm=True,
        cross_attention_dim=24,
    )
    g = _gen()
    x = _randn(B, 4, 16, 16, g=g)
    mask = torch.ones(B, 8, dtype=torch.long)
    mask[:, 6:] = 0
    kwargs = dict(
        timestep=_t("flow1_rev"),
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        encoder_mask=mask,
        image_rotary_emb=get_2d_rotary_pos_embed_lumina(16, 32, 32),
        cross_attention_kwargs={},  # None crashes (`**None` in the block)
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="LuminaNextDiT2DModel",
        build=_lumina_next,
        num_blocks={"attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1_rev",
        image_tokens=64,
        notes=(
            "Self- and cross-attention run IN PARALLEL on the same normed input and are summed "
            "(cross scaled by a learned per-head tanh(gate)) before one shared to_out linear and "
            "ONE residual add: x + tanh(g_msa)*norm2(to_out(self_attn + gate*cross_attn)). So "
            "there is no separate cross_attn region; the single attn region holds 2 SDPAs (one "
            "with text keys). Sandwich norm after the branch. RoPE is a complex tensor input "
            "(freqs_cis, 32x32 grid) sliced inside the model."
        ),
    )
)


def _sana():
    from diffusers import SanaTransformer2DModel

    model = _model(
        SanaTransformer2DModel,
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=16,
        cross_attention_dim=32,
        caption_channels=24,
        sample_size=8,
        patch_size=1,
    )
    g = _gen()
    x = _randn(B, 4, 8, 8, g=g)
    mask = torch.ones(B, 8, dtype=torch.long)
    mask[:, 6:] = 0
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        encoder_attention_mask=mask,
        timestep=_t("flow1000"),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="SanaTransformer2DModel",
        reused_kinds=("mlp",),
        build=_sana,
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        notes=(
            "Self-attention is LINEAR attention (SanaLinearAttnProcessor2_0): relu(q), relu(k), "
            "matmul(pad(v), k) then matmul(., q): no softmax and no SDPA; its anchor looks like a "
            "ReLU MLP activation. The MLP (GLUMBConv) is NOT token-wise: 1x1 conv, SiLU, 3x3 "
            "depthwise conv over the (H, W) token grid, gated SiLU, 1x1 conv; tokens are unflattened "
            "to [B, C, H, W] inside the region. Cross-attention is ungated and has no norm "
            "(attn2(x, text) + x). Timestep is a flow-matching t in [0, 1000]."
        ),
    )
)


def _ltx():
    from diffusers import LTXVideoTransformer3DModel

    model = _model(
        LTXVideoTransformer3DModel,
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=16,
        cross_attention_dim=32,
        num_layers=2,
        caption_channels=24,
    )
    g = _gen()
    f, h, w = 2, 4, 8
    x = _randn(B, f * h * w, 8, g=g)  # packed latents [B, F*H*W, C]
    mask = torch.ones(B, 8, dtype=torch.long)
    mask[:, 6:] = 0
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        timestep=_t("flow1000"),
        encoder_attention_mask=mask,
        num_frames=f,
        height=h,
        width=w,
        rope_interpolation_scale=(8 / 25, 32, 32),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="LTXVideoTransformer3DModel",
        build=_ltx,
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        notes=(
            "PixArt-like: gated self-attention, ungated cross-attention WITHOUT a norm "
            "(attn2(x, text) + x), gated MLP; the gate multiplies on the right (branch * gate). "
            "temb is [B, 1, 6*D] (per-token timestep capable). Video tokens 2x4x8, packed [B, N, C]."
        ),
    )
)


def _wan(i2v: bool):
    def build():
        from diffusers import WanTransformer3DModel

        model = _model(
            WanTransformer3DModel,
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=4,
            out_channels=4,
            text_dim=24,
            freq_dim=32,
            ffn_dim=64,
            num_layers=2,
            image_dim=20 if i2v else None,
            added_kv_proj_dim=32 if i2v else None,
            rope_max_seq_len=32,
        )
        g = _gen()
        x = _randn(B, 4, 2, 8, 8, g=g)  # B, C, F, H, W
        # The I2V attention splits image from text context at a hard-coded text length of 512.
        kwargs = dict(
            timestep=_t("flow1000"),
            encoder_hidden_states=_randn(B, 512 if i2v else 8, 24, g=g),
            return_dict=False,
        )
        if i2v:
            kwargs["encoder_hidden_states_image"] = _randn(B, 6, 20, g=g)
        return model, (x,), kwargs

    return build


_register(
    ZooEntry(
        name="WanTransformer3DModel",
        build=_wan(i2v=False),
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=32,
        notes=(
            "Gated self-attention and MLP (gate on the right, in float32: "
            "(x.float() + branch * gate).type_as(x)), ungated cross-attention with LayerNorm "
            "(cross_attn_norm=True). Residual adds are wrapped in .float()/.type_as() (no-ops in "
            "fp32, but nodes in the graph). RoPE is applied by writing into torch.empty_like(q) "
            "through strided slices (out[..., 0::2] = ...): in-place setitem nodes inside the "
            "attention branch. Video tokens: 2 frames x 4x4 patches. (Wan 2.2 TI2V passes a "
            "per-token timestep [B, N] instead; not used here.)"
        ),
    )
)

_register(
    ZooEntry(
        name="WanTransformer3DModel[i2v]",
        build=_wan(i2v=True),
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=32,
        notes=(
            "Wan 2.1 I2V style: image_dim set, so the model prepends projected CLIP image tokens (6 "
            "here) to the text, and each cross-attention runs TWO SDPAs (text keys, image keys via "
            "add_k/add_v) whose outputs are summed before to_out: one cross_attn region, 2 anchors. "
            "The processor splits the context at a HARD-CODED text length of 512, so the text input "
            "must have exactly 512 tokens (it does here); with fewer, the image context is silently "
            "empty."
        ),
    )
)


def _mochi():
    from diffusers import MochiTransformer3DModel

    model = _model(
        MochiTransformer3DModel,
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        pooled_projection_dim=16,
        in_channels=4,
        text_embed_dim=24,
        time_embed_dim=16,
        max_sequence_length=8,
    )
    g = _gen()
    x = _randn(B, 4, 2, 8, 8, g=g)  # B, C, F, H, W
    mask = torch.ones(B, 8, dtype=torch.long)
    mask[1, 5:] = 0  # rows with different prompt lengths, as real prompts have
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        timestep=_t("flow1000_rev"),
        encoder_attention_mask=mask,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="MochiTransformer3DModel",
        build=_mochi,
        num_blocks={"joint_attn": 3, "mlp": 3},
        mlp_streams={"image": 2, "text": 1},
        timestep_arg="timestep",
        timestep_convention="flow1000_rev",
        image_tokens=32,
        graphs=11,
        fullgraph_ok=True,
        notes=(
            "Timestep INCREASES during sampling (inverted sigmas: t = (1 - sigma) * 1000; the "
            "pipeline reports 1000 - t as the current timestep). Asymmetric MMDiT (text width 16, "
            "video width 32). Gate applied through a post-branch "
            "modulated RMSNorm: x + rmsnorm(attn) * tanh(g). Last block is context_pre_only (text "
            "output dropped, no text MLP). The attention processor loops over the batch and gathers "
            "the valid prompt tokens with torch.nonzero (data-dependent shape), one SDPA per sample "
            "(the rows here have different prompt lengths). With fullgraph=False Dynamo breaks at "
            "each nonzero (11 graphs); with fullgraph=True torch 2.13 traces nonzero with unbacked "
            "symbolic sizes and gives ONE graph whose SDPA shapes are data-dependent. SwiGLU MLPs."
        ),
    )
)


def _cogview4():
    from diffusers import CogView4Transformer2DModel

    model = _model(
        CogView4Transformer2DModel,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        text_embed_dim=24,
        time_embed_dim=16,
        condition_dim=8,
        pos_embed_max_size=16,
        sample_size=16,
        rope_axes_dim=(16, 16),
    )
    g = _gen()
    x = _randn(B, 4, 16, 16, g=g)
    size = torch.tensor([[128.0, 128.0]]).repeat(B, 1)
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        timestep=_t("flow1000"),
        original_size=size,
        target_size=size,
        crop_coords=torch.zeros(B, 2),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="CogView4Transformer2DModel",
        build=_cogview4,
        num_blocks={"joint_attn": 4, "mlp": 4},
        mlp_streams={"image": 2, "text": 2},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=64,
        notes=(
            "MMDiT where the text and image MLPs share ONE FeedForward module (self.ff called twice), "
            "so two mlp regions per block have the same weights (and the same nn_module_stack "
            "path). Gates on the right: x + branch * gate."
        ),
    )
)


def _hunyuan_video():
    from diffusers import HunyuanVideoTransformer3DModel

    model = _model(
        HunyuanVideoTransformer3DModel,
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
    )
    g = _gen()
    x = _randn(B, 4, 2, 8, 8, g=g)  # B, C, F, H, W
    mask = torch.ones(B, 8, dtype=torch.long)
    mask[:, 6:] = 0
    kwargs = dict(
        timestep=_t("flow1000"),
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        encoder_attention_mask=mask,
        pooled_projections=_randn(B, 16, g=g),
        guidance=torch.full((B,), 6.0 * 1000.0),  # the pipeline passes guidance_scale * 1000
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="HunyuanVideoTransformer3DModel",
        build=_hunyuan_video,
        num_blocks={"attn": 1, "joint_attn": 2, "mlp": 3, "parallel": 2},
        attn_streams={"text": 1},
        mlp_streams={"text": 2, "image": 1},
        timestep_arg="timestep",
        timestep_convention="flow1000",
        image_tokens=32,
        notes=(
            "The text goes through a token refiner first (1 block: masked text self-attention + "
            "SiLU MLP, gated by a t+pooled-text embedding), then 1 double-stream block (2 joint_attn, "
            "image+text MLP) and 2 single-stream parallel blocks that concatenate [IMAGE, text] "
            "(image first, unlike FLUX) and split at the end. Attention mask [B,1,1,N] built from the "
            "prompt mask; guidance embedded like FLUX but passed pre-multiplied by 1000."
        ),
    )
)


def _allegro():
    from diffusers import AllegroTransformer3DModel
    from diffusers.models.embeddings import get_3d_rotary_pos_embed_allegro

    model = _model(
        AllegroTransformer3DModel,
        patch_size=2,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=24,  # 3D RoPE splits the head dim in 3 even parts
        in_channels=4,
        out_channels=4,
        num_layers=2,
        cross_attention_dim=48,
        sample_height=8,
        sample_width=8,
        sample_frames=2,
        caption_channels=24,
    )
    g = _gen()
    x = _randn(B, 4, 2, 8, 8, g=g)  # B, C, F, H, W
    freqs_t, freqs_h, freqs_w, grid_t, grid_h, grid_w = get_3d_rotary_pos_embed_allegro(
        embed_dim=24, crops_coords=((0, 0), (4, 4)), grid_size=(4, 4), temporal_size=2,
        interpolation_scale=(2.2, 2.0, 2.0),
    )
    pos = torch.cartesian_prod(grid_t.long(), grid_h.long(), grid_w.long())
    pos = pos.reshape(-1, 3).transpose(0, 1).reshape(3, 1, -1).contiguous()
    mask = torch.ones(B, 8, dtype=torch.long)
    mask[:, 6:] = 0
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        encoder_attention_mask=mask,
        timestep=_t("ddpm"),
        image_rotary_emb=((freqs_t, freqs_h, freqs_w), tuple(pos)),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="AllegroTransformer3DModel",
        build=_allegro,
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="ddpm",
        image_tokens=32,
        notes=(
            "PixArt-style blocks (ada_norm_single, ungated norm-free cross-attention) with full 3D "
            "self-attention over 2 frames x 4x4 patches and 3D RoPE passed in as freqs + grid ids."
        ),
    )
)


def _stable_audio():
    from diffusers import StableAudioDiTModel
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    model = _model(
        StableAudioDiTModel,
        sample_size=32,
        in_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        num_key_value_attention_heads=1,
        out_channels=4,
        cross_attention_dim=24,
        time_proj_dim=16,
        global_states_input_dim=20,
        cross_attention_input_dim=24,
    )
    g = _gen()
    x = _randn(B, 4, 32, g=g)  # B, C, T audio latents
    kwargs = dict(
        timestep=_t("atan"),  # CosineDPMSolver preconditioning
        encoder_hidden_states=_randn(B, 10, 24, g=g),
        global_hidden_states=_randn(B, 1, 20, g=g),
        rotary_embedding=get_1d_rotary_pos_embed(8, 32 + 1, use_real=True, repeat_interleave_real=False),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="StableAudioDiTModel",
        build=_stable_audio,
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="atan",
        image_tokens=32,
        notes=(
            "Audio (1D) DiT with NO adaLN: the timestep + global condition become one token "
            "PREPENDED to the 32 latent tokens (token 0 is not a latent), plain pre-LN ungated "
            "residuals. GQA self-attention with partial RoPE (half the head dim), SwiGLU MLP. "
            "Conv1d residuals outside the blocks (preprocess_conv(x) + x, postprocess_conv(x) + x) "
            "have no attention/activation and are not regions. The pipeline passes timestep with "
            "shape [1]; here [B]."
        ),
    )
)


def _prx():
    from diffusers import PRXTransformer2DModel

    model = _model(
        PRXTransformer2DModel,
        in_channels=4,
        patch_size=2,
        context_in_dim=24,
        hidden_size=32,
        mlp_ratio=2.0,
        num_heads=2,
        depth=2,
        axes_dim=[8, 8],
    )
    g = _gen()
    x = _randn(B, 4, 16, 16, g=g)
    mask = torch.ones(B, 8, dtype=torch.bool)
    mask[:, 6:] = False
    kwargs = dict(
        timestep=_t("flow1"),  # pipeline: t / 1000
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        attention_mask=mask,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="PRXTransformer2DModel",
        build=_prx,
        num_blocks={"joint_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1",
        image_tokens=64,
        notes=(
            "Image-only queries attend to cat(text keys, image keys) in ONE SDPA; the text stream is "
            "never updated (no text residual, no text MLP), so each block has ONE joint_attn output "
            "stream: half self-, half cross-attention. SwiGLU MLP written inline (no FeedForward "
            "module). Gate on the left."
        ),
    )
)


def _qwen_image():
    from diffusers import QwenImageTransformer2DModel

    model = _model(
        QwenImageTransformer2DModel,
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=24,
        axes_dims_rope=(4, 6, 6),
    )
    g = _gen()
    x = _randn(B, 64, 16, g=g)  # packed 16x16x4 latents, 2x2 patches
    mask = torch.ones(B, 8, dtype=torch.long)
    mask[:, 6:] = 0
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        encoder_hidden_states_mask=mask,
        timestep=_t("flow1"),  # pipeline: t / 1000
        img_shapes=[[(1, 8, 8)]] * B,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="QwenImageTransformer2DModel",
        build=_qwen_image,
        num_blocks={"joint_attn": 4, "mlp": 4},
        mlp_streams={"image": 2, "text": 2},
        timestep_arg="timestep",
        timestep_convention="flow1",
        image_tokens=64,
        notes=(
            "Plain MMDiT (both streams continue in every block, also the last). Each block has its "
            "own img_mod/txt_mod Linear(SiLU(temb)). Text mask turned into a joint attention mask; "
            "RoPE built from the Python img_shapes list (a static input)."
        ),
    )
)


def _flux2():
    from diffusers import Flux2Transformer2DModel

    model = _model(
        Flux2Transformer2DModel,
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=24,
        timestep_guidance_channels=16,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=True,
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
        guidance=torch.full((B,), 4.0),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="Flux2Transformer2DModel",
        build=_flux2,
        num_blocks={"joint_attn": 2, "mlp": 2, "parallel": 2},
        mlp_streams={"image": 1, "text": 1},
        timestep_arg="timestep",
        timestep_convention="flow1",
        image_tokens=64,
        notes=(
            "FLUX.2: modulation computed ONCE outside the blocks (double_stream_modulation_img/txt, "
            "single_stream_modulation) and shared by all blocks; blocks hold no adaLN weights. "
            "Text and image are concatenated once before the single blocks (not per block) and "
            "the text rows dropped after the last one. Single block: ONE fused linear "
            "(to_qkv_mlp_proj) is split into QKV and SwiGLU-MLP inputs, attention and MLP meet "
            "in to_out(cat(attn, mlp)) inside the attention module; no biases in the blocks. 4-axis "
            "RoPE ids (t, h, w, l)."
        ),
    )
)


def _chroma():
    from diffusers import ChromaTransformer2DModel

    model = _model(
        ChromaTransformer2DModel,
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=24,
        axes_dims_rope=(4, 6, 6),
        approximator_num_channels=16,
        approximator_hidden_dim=32,
        approximator_layers=1,
    )
    g = _gen()
    x = _randn(B, 64, 16, g=g)
    mask = torch.ones(B, 8 + 64, dtype=torch.bool)
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        timestep=_t("flow1"),
        img_ids=_grid_ids(8, 8),
        txt_ids=torch.zeros(8, 3),
        attention_mask=mask,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="ChromaTransformer2DModel",
        build=_chroma,
        num_blocks={"joint_attn": 2, "mlp": 2, "parallel": 2},
        mlp_streams={"image": 1, "text": 1},
        decoys={"mlp": 1},
        timestep_arg="timestep",
        timestep_convention="flow1",
        image_tokens=64,
        notes=(
            "DECOY: the approximator is a stack of residual SiLU MLPs, x = x + mlp(rmsnorm(x)), over "
            "a [B, 18, 32] tensor of modulation slots that depends only on t (1 layer here): it "
            "looks like an mlp region but has no image tokens. "
            "FLUX.1-schnell derivative without per-block adaLN weights: one 'distilled guidance' "
            "MLP (approximator) maps t to all modulation vectors at once and each block gets a "
            "slice of it. Text+image concatenated once before the single blocks. attention_mask "
            "over the joint (8 text + 64 image) sequence."
        ),
    )
)


def _z_image():
    from diffusers import ZImageTransformer2DModel

    model = _model(
        ZImageTransformer2DModel,
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=4,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        cap_feat_dim=24,
        axes_dims=[4, 6, 6],
        axes_lens=[64, 32, 32],
    )
    g = _gen()
    xs = [_randn(4, 1, 16, 16, g=g) for _ in range(B)]  # a list of [C, F, H, W] latents
    caps = [_randn(8, 24, g=g) for _ in range(B)]
    t = _t("flow1_rev")  # pipeline: (1000 - t) / 1000, 1 = clean
    # The RoPE table is built lazily on the first call under `with torch.device("cpu")`, which
    # Dynamo cannot trace (a graph break on the first compiled call only): warm it up eagerly.
    with torch.no_grad():
        model(xs, t=t, cap_feats=caps, return_dict=False)
    return model, (xs,), dict(t=t, cap_feats=caps, return_dict=False)


_register(
    ZooEntry(
        name="ZImageTransformer2DModel",
        build=_z_image,
        num_blocks={"attn": 4, "mlp": 4},
        attn_streams={"image": 1, "text": 1, "joint": 2},
        mlp_streams={"image": 1, "text": 1, "joint": 2},
        timestep_arg="t",
        timestep_convention="flow1_rev",
        image_tokens=64,
        graphs=1,
        fullgraph_ok=True,
        notes=(
            "The context refiner is unmodulated and sees only the caption: constant over all steps. "
            "Inputs are LISTS of per-sample tensors (x: [C,1,H,W] each, cap_feats: [L,D] each); "
            "the timestep argument is `t` (second positional; passed by keyword here), in [0, 1]. Single-stream S3-DiT: 1 noise "
            "refiner (image, modulated), 1 context refiner (text, unmodulated), then 2 main blocks "
            "over [image, caption] packed per sample (image first); each part is padded to a "
            "multiple of 32 with a learned pad token (here 64 image + 8 caption + 24 pad = 96). "
            "Sandwich norms (RMSNorm on the branch output) and tanh gates; scale-only modulation "
            "(no shift). SwiGLU MLP. build() runs one eager forward: the lazily built RoPE table "
            "(under `with torch.device('cpu')`) breaks the graph on a cold model's first call."
        ),
    )
)


def _cosmos():
    from diffusers import CosmosTransformer3DModel

    model = _model(
        CosmosTransformer3DModel,
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        mlp_ratio=2.0,
        text_embed_dim=24,
        adaln_lora_dim=8,
        max_size=(4, 16, 16),
        patch_size=(1, 2, 2),
        concat_padding_mask=False,  # True needs torchvision (resizes the padding mask)
    )
    g = _gen()
    x = _randn(B, 4, 2, 8, 8, g=g)  # B, C, T, H, W
    kwargs = dict(
        timestep=_t("edm"),  # EDM c_noise = log(sigma) / 4
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        fps=24,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="CosmosTransformer3DModel",
        build=_cosmos,
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="edm",
        image_tokens=32,
        notes=(
            "Cosmos-1.0 video DiT: all three branches gated (adaLN-LoRA: a shared t-embedding plus a "
            "per-norm low-rank term). extra_pos_emb (learned 3D positions) is ADDED to the stream "
            "at the start of EVERY block (x = x + pos): the same tensor joins twice, so the add in "
            "block 1 looks like a residual whose 'branch' is all of block 0 (fork = pos). Not a "
            "region. Timestep is the "
            "EDM c_noise = log(sigma)/4 (can be negative). concat_padding_mask=False here: the "
            "padding-mask channel path needs torchvision, which is not installed."
        ),
    )
)


def _hidream():
    from diffusers import HiDreamImageTransformer2DModel

    model = _model(
        HiDreamImageTransformer2DModel,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        caption_channels=[24, 20],  # [T5 width, Llama width]
        text_emb_dim=16,
        num_routed_experts=2,
        num_activated_experts=1,
        axes_dims_rope=(8, 4, 4),
        max_resolution=(16, 16),
        llama_layers=[0, 1],
    )
    g = _gen()
    x = _randn(B, 4, 16, 16, g=g)
    kwargs = dict(
        timesteps=_t("flow1000"),
        encoder_hidden_states_t5=_randn(B, 8, 24, g=g),
        encoder_hidden_states_llama3=_randn(2, B, 6, 20, g=g),  # [llama layers, B, L, D]
        pooled_embeds=_randn(B, 16, g=g),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="HiDreamImageTransformer2DModel",
        build=_hidream,
        num_blocks={"joint_attn": 2, "attn": 1, "mlp": 3},
        attn_streams={"joint": 1},
        mlp_streams={"image": 1, "text": 1, "joint": 1},
        timestep_arg="timesteps",
        timestep_convention="flow1000",
        image_tokens=64,
        graphs=20,
        fullgraph_ok=False,
        notes=(
            "Timestep argument is `timesteps` (plural). Image MLPs are MoE (shared SwiGLU expert + "
            "2 routed experts, top-1 MoEGate): moe_infer uses bincount().cpu().numpy() and a Python "
            "loop over experts with data-dependent token counts, then scatter_reduce_, so the "
            "graph breaks inside every image MLP. Each block gets FRESH Llama-layer tokens "
            "appended to the text stream, and the text output is truncated back after the "
            "double block (the Llama part of the text residual stream is dropped every block). "
            "The single block runs over cat(image, t5+llama, new llama) tokens; its MLP is MoE too. "
            "MoEGate has a softmax over experts (not attention). unpatchify reads img_sizes with "
            ".item() (another break)."
        ),
    )
)


def _transformer2d():
    from diffusers import Transformer2DModel

    model = _model(
        Transformer2DModel,
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=32,
        num_layers=2,
        norm_num_groups=8,
        cross_attention_dim=24,
        use_linear_projection=True,
        activation_fn="geglu",
    )
    g = _gen()
    x = _randn(B, 32, 8, 8, g=g)  # a U-Net feature map: [B, C, H, W]
    kwargs = dict(encoder_hidden_states=_randn(B, 8, 24, g=g), return_dict=False)
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="Transformer2DModel[sd-unet-block]",
        build=_transformer2d,
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        decoys={"outer_residual": 1},
        timestep_arg="",
        timestep_convention="",
        image_tokens=64,
        notes=(
            "The Stable Diffusion U-Net spatial transformer (continuous input, GroupNorm + "
            "proj_in linear, LayerNorm blocks, GEGLU MLP: gelu(gate) * h, no timestep input at all: "
            "timestep_arg is empty). DECOY: the whole module is itself a residual, "
            "out = proj_out(blocks(proj_in(norm(x)))) + x, whose branch contains every block's "
            "attention and MLP; it is not a token region (the fork is the [B, C, H, W] map). "
            "In EXTRA, not ZOO: it has no timestep, so step-caching tests do not apply."
        ),
    ),
    extra=True,
)


# The rest of the transformer classes diffusers ships, one module per family group; each module
# imports the helpers above and registers its entries (so this import comes after them).
import zoo_more_1, zoo_more_2, zoo_more_3, zoo_more_4, zoo_more_5, zoo_more_6, zoo_more_7, zoo_more_8  # noqa: E402,F401,I001


def expects_reuse(entry: ZooEntry, kind: str, label: str) -> bool:
    """Whether the model source makes a region of ``kind`` labelled ``label`` reused whole on
    partial steps (self- and joint attention always; token-wise kinds as the entry records)."""
    import fnmatch

    return (kind in ("attn", "joint_attn") or kind in entry.reused_kinds
            or any(fnmatch.fnmatchcase(label, pattern) for pattern in entry.reused_labels))


def transformer_classes() -> list[str]:
    """Every model class ``diffusers.models.transformers`` exports (what the zoo must cover)."""
    import inspect

    import diffusers.models.transformers as transformers
    from diffusers.models import ModelMixin

    return sorted(name for name in dir(transformers) if not name.startswith("_")
                  and inspect.isclass(getattr(transformers, name))
                  and issubclass(getattr(transformers, name), ModelMixin))


# --------------------------------------------------------------------------------------------
# checking
# --------------------------------------------------------------------------------------------


class CountingBackend:
    """A Dynamo backend that records the graphs it receives and runs them as they are."""

    def __init__(self) -> None:
        self.graphs: list[torch.fx.GraphModule] = []

    def __call__(self, gm: torch.fx.GraphModule, example_inputs):
        self.graphs.append(gm)
        return gm.forward

    @property
    def count(self) -> int:
        return len(self.graphs)


def first_tensor(out: Any) -> torch.Tensor:
    """The sample tensor of a model output (tuple, output dataclass, or list of per-sample outputs)."""
    while not isinstance(out, torch.Tensor):
        if isinstance(out, (tuple, list)):
            out = out[0]
        elif hasattr(out, "sample"):
            out = out.sample
        elif isinstance(out, dict):
            out = next(iter(out.values()))
        else:
            raise TypeError(type(out))
    return out


def call(entry: ZooEntry | str) -> torch.Tensor:
    """Build the entry and run one eager forward; returns the first output tensor."""
    if isinstance(entry, str):
        entry = ZOO[entry] if entry in ZOO else EXTRA[entry]
    model, args, kwargs = entry.build()
    with torch.no_grad():
        return first_tensor(model(*args, **kwargs))


def timestep_of(entry: ZooEntry, model: nn.Module, args: tuple, kwargs: dict) -> Any:
    """The timestep value among (args, kwargs), positional or keyword; None if there is none."""
    import inspect

    if not entry.timestep_arg:
        return None
    if entry.timestep_arg in kwargs:
        return kwargs[entry.timestep_arg]
    bound = inspect.signature(model.forward).bind_partial(*args, **kwargs)
    return bound.arguments.get(entry.timestep_arg)


def steps_of(entry: ZooEntry, model: nn.Module, args: tuple, kwargs: dict, steps: int):
    """``steps`` calls of one generation: the entry's inputs with a later timestep each step (the
    value halved, so the sequence falls), passed where the zoo put it (positional or keyword)."""
    import inspect

    name = entry.timestep_arg
    params = list(inspect.signature(model.forward).parameters)
    position = params.index(name) if name not in kwargs else None
    t = kwargs[name] if position is None else args[position]
    for _ in range(steps):
        if position is None:
            yield args, {**kwargs, name: t}
        else:
            yield (*args[:position], t, *args[position + 1:]), kwargs
        t = t // 2 if not t.is_floating_point() else t * 0.5


def trace_count(model: nn.Module, args: tuple, kwargs: dict, fullgraph: bool) -> tuple[int, int]:
    """Compile with a CountingBackend, run once; returns (graphs, graph_breaks)."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    backend = CountingBackend()
    compiled = torch.compile(model, backend=backend, fullgraph=fullgraph)
    with torch.no_grad():
        compiled(*args, **kwargs)
    breaks = sum(torch._dynamo.utils.counters["graph_break"].values())
    return backend.count, breaks


def _check(entry: ZooEntry, strict: bool = False) -> dict:
    model, args, kwargs = entry.build()
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        ref = first_tensor(model(*args, **kwargs))
    assert torch.isfinite(ref).all(), f"{entry.name}: non-finite output"
    t = timestep_of(entry, model, args, kwargs)
    want = _t(entry.timestep_convention)
    if t is not None and want is not None and t.dim() > 1:  # per-frame / per-token timesteps [B, ...]
        t = t.reshape(t.shape[0], -1)[:, 0]
    assert (t is None and want is None) or torch.equal(t, want), f"{entry.name}: timestep {t} != {want}"
    t0 = time.perf_counter()
    graphs, breaks = trace_count(model, args, kwargs, fullgraph=False)
    dt = time.perf_counter() - t0
    full_ok, err = True, ""
    # One graph and no recorded break means fullgraph=True traces too; check it otherwise
    # (fullgraph=True can succeed where fullgraph=False splits: see MochiTransformer3DModel).
    if strict or graphs != 1 or breaks:
        try:
            trace_count(model, args, kwargs, fullgraph=True)
        except Exception as e:  # noqa: BLE001 - any Dynamo failure means "not one graph"
            full_ok = False
            err = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}"
    return dict(params=params, graphs=graphs, breaks=breaks, fullgraph_ok=full_ok, trace_s=dt, err=err)


def main(argv: list[str]) -> int:
    strict = "--strict" in argv
    names = [a for a in argv if not a.startswith("--")]
    torch.set_num_threads(1)
    import logging

    logging.getLogger("diffusers").setLevel(logging.ERROR)
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)  # graph-break hints
    warnings.filterwarnings("ignore", message=".*[Aa]utocast.*")  # Mochi's fp32 CPU autocast
    everything = {**ZOO, **EXTRA}
    entries = [everything[n] for n in names] if names else list(everything.values())
    header = (
        f"{'name':36} {'params':>7} {'tokens':>6} {'graphs':>6} {'breaks':>6} {'fullgraph':>9} "
        f"{'trace_s':>7}  expected regions"
    )
    print(header)
    print("-" * len(header))
    bad = 0
    t_all = time.perf_counter()
    for e in entries:
        try:
            r = _check(e, strict)
        except Exception as ex:  # noqa: BLE001
            bad += 1
            print(f"{e.name:36} FAILED {type(ex).__name__}: {(str(ex).splitlines() or [''])[0][:150]}")
            continue
        mismatch = []
        if r["graphs"] != e.graphs:
            mismatch.append(f"graphs {r['graphs']} != recorded {e.graphs}")
        if r["fullgraph_ok"] != e.fullgraph_ok:
            mismatch.append(f"fullgraph_ok {r['fullgraph_ok']} != recorded {e.fullgraph_ok}")
        kinds = " ".join(f"{k}={v}" for k, v in e.num_blocks.items())
        print(
            f"{e.name:36} {r['params']:>7} {e.image_tokens:>6} {r['graphs']:>6} {r['breaks']:>6} "
            f"{str(r['fullgraph_ok']):>9} {r['trace_s']:>7.2f}  {kinds}"
        )
        if r["err"]:
            print(f"{'':36}   fullgraph error: {r['err']}")
        if mismatch:
            bad += 1
            print(f"{'':36}   MISMATCH: {'; '.join(mismatch)}")
    print(f"{len(entries)} entries, {bad} problems, {time.perf_counter() - t_all:.1f}s")
    return 1 if bad else 0


if __name__ == "__main__":
    import sys

    import diffusers_zoo  # the module (not this __main__ copy) that zoo_more_* register into

    sys.exit(diffusers_zoo.main(sys.argv[1:]))
