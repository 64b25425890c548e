"""More diffusers transformers for the test zoo (group 1); each entry registers itself in
diffusers_zoo.ZOO (denoisers) or EXTRA (transformers that are not DiT denoisers)."""
from __future__ import annotations

import torch

from diffusers_zoo import B, ZooEntry, _gen, _model, _randn, _register, _t


# --------------------------------------------------------------------------------------------
# ACE-Step 1.5 (music)


def _ace_step():
    from diffusers import AceStepTransformer1DModel

    model = _model(
        AceStepTransformer1DModel,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        in_channels=24,  # context (src latents 8 + chunk mask 8) + noisy latents 8
        audio_acoustic_hidden_dim=8,
        patch_size=2,
        sliding_window=8,
        encoder_hidden_size=24,
    )
    g = _gen()
    frames = 128  # latent frames; patch_size 2 -> 64 tokens
    x = _randn(B, frames, 8, g=g)
    src = _randn(B, frames, 8, g=g)
    chunk_mask = torch.ones(B, frames, 8)
    t = _t("flow1")  # pipeline: sigma in [0, 1], 1 = noise (the model scales it by 1000)
    kwargs = dict(
        timestep=t,
        timestep_r=t.clone(),  # the pipeline passes r = t (mean-flow reference time)
        encoder_hidden_states=_randn(B, 10, 24, g=g),
        context_latents=torch.cat([src, chunk_mask], dim=-1),
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="AceStepTransformer1DModel",
        build=_ace_step,
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1",
        image_tokens=64,
        notes=(
            "1D music DiT. The noisy latents are concatenated on channels with the context latents "
            "(source latents + chunk mask) and patchified by a stride-2 Conv1d (128 frames -> 64 "
            "tokens). Each block: AdaLN self-attention (RMSNorm, gated: x + attn * gate), an "
            "UNGATED, unmodulated cross-attention on the projected condition tokens "
            "(x + xattn(rmsnorm(x), text)), then an AdaLN SwiGLU MLP (gated). Modulation is one "
            "shared [B, 6, D] projection of two timestep embeddings (t and t - r) plus a per-block "
            "table. GQA (2 q heads, 1 kv head) with RMS QK-norm and RoPE; layers alternate sliding-"
            "window (banded additive mask, window 8 here) and full attention. timestep_r is kept "
            "at the example value while the tests vary timestep, so t - r is then non-zero."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# LongCat-AudioDiT (text to speech/audio)


def _longcat_audio():
    from diffusers import LongCatAudioDiTTransformer

    model = _model(
        LongCatAudioDiTTransformer,
        dit_dim=32,
        dit_depth=2,
        dit_heads=2,
        dit_text_dim=24,
        latent_dim=8,
        ff_mult=2.0,
    )
    g = _gen()
    frames = 64
    text_mask = torch.ones(B, 8, dtype=torch.bool)
    text_mask[:, 6:] = False  # padded prompt tokens
    kwargs = dict(
        encoder_hidden_states=_randn(B, 8, 24, g=g),
        encoder_attention_mask=text_mask,
        timestep=_t("flow1_rev"),  # inverted sigmas / 1000: 0 = noise, 1 = clean
        attention_mask=torch.ones(B, frames, dtype=torch.bool),
        latent_cond=torch.zeros(B, frames, 8),  # what the pipeline passes without a prompt audio
        return_dict=False,
    )
    return model, (_randn(B, frames, 8, g=g),), kwargs


_register(
    ZooEntry(
        name="LongCatAudioDiTTransformer",
        build=_longcat_audio,
        reused_labels=("text_conv_layer.*.mlp",),
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 6},
        mlp_streams={"image": 2, "text": 4},
        decoys={"outer_residual": 1},
        timestep_arg="timestep",
        timestep_convention="flow1_rev",
        image_tokens=64,
        notes=(
            "Audio DiT over [B, T, C] latents (64 frames, no patching). Block: LayerNorm + AdaLN "
            "self-attention gated on the left (x + gate * attn), UNGATED cross-attention with no "
            "norm (cross_attn_norm=False gives nn.Identity), AdaLN GELU(tanh) MLP gated on the left. "
            "Modulation is global: one adaln MLP over (t-embedding + mean of the valid text tokens) "
            "plus a per-block vector. RoPE on self-attention q/k, and on cross-attention q (latent "
            "positions) and k (text positions); RMS QK-norm over the whole inner dim. The latent "
            "mask multiplies the attention outputs row-wise (all valid here). TEXT path: 4 "
            "ConvNeXt-V2 residual blocks (a fixed count in the source, text_conv=True as in the "
            "checkpoint) run over the 8 text tokens before the DiT blocks: x + pw2(grn(silu(pw1("
            "ln(dwconv7(x)))))), counted as text-stream mlp regions (constant over the steps: they "
            "see neither t nor the latents). They are TOKEN-MIXING (depthwise conv along the text "
            "axis; GRN takes an L2 norm over the token axis) and must be reused whole (reused_labels), while "
            "the 2 image MLPs are token-wise. DECOY: long_skip adds a clone of "
            "the pre-block hidden state after the last block, a residual whose branch is the whole "
            "block stack. Timestep is 1 - sigma (inverted sigmas)."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# Stable Audio 3


def _stable_audio3():
    from diffusers import StableAudio3DiTModel

    model = _model(
        StableAudio3DiTModel,
        io_channels=8,
        patch_size=1,
        embed_dim=32,
        depth=2,
        num_heads=2,
        cond_token_dim=24,
        global_cond_dim=24,
        local_add_cond_dim=9,
        timestep_features_dim=16,
        ff_mult=2.0,
        num_memory_tokens=4,
        use_differential_attention=True,
    )
    g = _gen()
    x = _randn(B, 8, 32, g=g)  # B, C, T audio latents
    duration = _randn(B, 24, g=g)  # the duration embedder's output
    # The pipeline appends the duration embedding to the text as one more context token.
    context = torch.cat([_randn(B, 8, 24, g=g), duration[:, None]], dim=1)
    mask = torch.ones(B, 9, dtype=torch.long)
    mask[:, 6:8] = 0
    kwargs = dict(
        timestep=_t("flow1"),  # the scheduler's sigma in [0, 1] (num_train_timesteps = 1)
        encoder_hidden_states=context,
        global_hidden_states=duration,
        encoder_attention_mask=mask,
        return_dict=False,
    )
    return model, (x,), kwargs


_register(
    ZooEntry(
        name="StableAudio3DiTModel",
        build=_stable_audio3,
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1",
        image_tokens=32,
        notes=(
            "Audio DiT: 4 learned memory tokens are PREPENDED to the 32 latent tokens (latent rows "
            "start at offset 4) and dropped before proj_out. Self- and cross-attention are "
            "DIFFERENTIAL: two SDPAs with separate q/k (shared v) subtracted, attn(q1,k1,v) - "
            "attn(q2,k2,v), so each region holds 2 anchors. RMS QK-norm, partial RoPE (half the head "
            "dim) on self-attention only. AdaLN self-attention and SwiGLU MLP gated by "
            "sigmoid(1 - gate); cross-attention is unmodulated, ungated (x + xattn(rms(x), ctx)). "
            "The text mask only swaps padded text rows for a learned pad embedding before the "
            "context projection; attention itself is unmasked. Zero-init 1x1 conv residuals around "
            "the transformer (no anchor) are not regions; the per-block inpainting projection is "
            "unused without local_add_cond."
        ),
    )
)


# --------------------------------------------------------------------------------------------
# MiniMax Music 3


def _minimax_music3():
    from diffusers import MiniMaxMusic3Transformer1DModel

    model = _model(
        MiniMaxMusic3Transformer1DModel,
        in_channels=8,
        condition_dim=24,
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=16,
        ff_inner_dim=64,
        rotary_dim=8,
        fourier_embedding_dim=16,
    )
    g = _gen()
    frames = 32
    kwargs = dict(
        timestep=_t("flow1_rev"),  # flow time: 0 = noise, 1 = data (inverted sigmas)
        encoder_hidden_states=_randn(B, frames, 24, g=g),  # frame-aligned LM conditioning
        return_dict=False,
    )
    return model, (_randn(B, 8, frames, g=g),), kwargs


_register(
    ZooEntry(
        name="MiniMaxMusic3Transformer1DModel",
        build=_minimax_music3,
        num_blocks={"attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="timestep",
        timestep_convention="flow1_rev",
        image_tokens=32,
        notes=(
            "No adaLN and no cross-attention: the conditioning is frame-aligned and concatenated on "
            "CHANNELS with the latents (and a zero block), the timestep embedding becomes one token "
            "PREPENDED to the 32 latent tokens (latent rows start at offset 1) and sliced off after "
            "the blocks. Plain pre-LayerNorm, ungated residuals: x + attn(ln(x)), x + swiglu(ln(x)). "
            "Partial RoPE (first 8 of 16 head dims), no QK-norm. The 1x1 Conv1d residuals before "
            "and after the transformer have no anchor and are not regions. Modular pipeline: the "
            "scheduler timestep (1 - sigma) is passed directly."
        ),
    )
)


def _minimax_rvq_depth():
    from diffusers import MiniMaxMusic3RVQDepthDecoder

    model = _model(
        MiniMaxMusic3RVQDepthDecoder,
        hidden_size=32,
        num_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        audio_vocab_size=16,
        num_codebooks=8,
        max_position_embeddings=8,
    )
    g = _gen()
    # the global LM state followed by the 7 residual codes of one frame, projected
    return model, (_randn(B, 8, 32, g=g),), {}


_register(
    ZooEntry(
        name="MiniMaxMusic3RVQDepthDecoder",
        build=_minimax_rvq_depth,
        num_blocks={"attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="",
        timestep_convention="",
        image_tokens=8,
        notes=(
            "In EXTRA, not ZOO: not a denoiser. It is the small autoregressive 'depth' language "
            "model of MiniMax Music 3 that predicts the residual RVQ codebooks of one audio frame "
            "(no timestep, no diffusion); its hidden states condition the flow transformer. "
            "Llama-style blocks: x + attn(rms(x)) with CAUSAL SDPA (is_causal=True) over the 8 depth "
            "steps, then x + swiglu(rms(x)); learned absolute positions added to the input."
        ),
    ),
    extra=True,
)


# --------------------------------------------------------------------------------------------
# Spectrogram diffusion (MIDI to mel)


def _t5_film():
    from diffusers import T5FilmDecoder

    model = _model(
        T5FilmDecoder,
        input_dims=8,
        targets_length=32,
        d_model=32,
        num_layers=2,
        num_heads=2,
        d_kv=16,
        d_ff=64,
    )
    g = _gen()
    notes_mask = torch.ones(B, 12, dtype=torch.bool)
    notes_mask[:, 9:] = False  # padded note tokens
    encodings_and_masks = [
        (_randn(B, 12, 32, g=g), notes_mask),  # notes encoder output
        (_randn(B, 32, 32, g=g), torch.ones(B, 32, dtype=torch.bool)),  # previous mel chunk
    ]
    kwargs = dict(
        encodings_and_masks=encodings_and_masks,
        decoder_input_tokens=_randn(B, 32, 8, g=g),
        decoder_noise_time=_t("flow1"),  # pipeline: DDPM t / 1000, in [0, 1)
    )
    return model, (), kwargs


_register(
    ZooEntry(
        name="T5FilmDecoder",
        build=_t5_film,
        reused_labels=("decoders.*.cross_attn",),
        num_blocks={"attn": 2, "cross_attn": 2, "mlp": 2},
        mlp_streams={"image": 2},
        timestep_arg="decoder_noise_time",
        timestep_convention="flow1",
        image_tokens=32,
        notes=(
            "Spectrogram diffusion decoder (MIDI notes -> mel frames), a T5 decoder with FiLM: "
            "x + attn(film(rms(x))), x + xattn(rms(x), enc), x + geglu(film(rms(x))); no gates, "
            "FiLM scale/shift from the noise-time embedding (broadcast [B, 1, 4D]). Attention has "
            "scale 1. The cross-attention keys are the notes-encoder and "
            "continuous-encoder outputs concatenated, with a [B, 1, N, K] 0/-1e10 mask. scale_qk=False "
            "selects the classic AttnProcessor, not SDPA: heads folded into the batch axis by "
            "reshape ([B, H, N, d] -> [B*H, N, d]), baddbmm(mask, q, k^T), softmax, bmm; the token "
            "analysis does not follow the heads back out of the batch axis, so the cross-attention "
            "is reused whole on partial steps (exact, saves less: a known limitation). The MLP's "
            "GELU is a hand-written tanh formula (NewGELUActivation), not F.gelu. Returns a bare "
            "tensor (no return_dict); all inputs by keyword as the pipeline passes them. The "
            "pipeline's DDPM timesteps / 1000 lie in [0, 1), decreasing: flow1 here."
        ),
    )
)
