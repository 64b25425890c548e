"""The real-weight examples (examples/*.py) run end to end on tiny random-weight pipelines.

Each pipeline is diffusers' own class with the transformer, VAE and scheduler of the test zoo
(tests/pipeline_zoo.py) plus tiny random text encoders and tokenizers built here (the tokenizers
from an in-memory vocabulary: nothing is read from the internet), saved with ``save_pretrained``
into a temporary directory. The example's ``main([...])`` then loads it from there, generates
with plain ``torch.compile`` and with ``toca_compile.apply`` (backend ``eager``: no Inductor
compile on this CPU), prints the speed-up, PSNR and summary and saves the side-by-side picture.
A last test checks that a model that is not there gives the message saying what to do, without
any network access.
"""
from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

import pipeline_zoo
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # examples/ is not installed
from examples import dit_xl_2, flux, pixart, sd3, video

WORDS = ["a", "an", "the", "red", "fox", "cat", "dog", "city", "at", "night", "in", "snow", "photograph", "running"]


# -- tiny tokenizers and text encoders -------------------------------------------------------
def t5_tokenizer(max_length: int = 32):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("\u2581" + w, -1.0) for w in WORDS]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    return T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           extra_ids=0, model_max_length=max_length)


def clip_tokenizer(tmp: Path):
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for word in WORDS:
        vocab[word + "</w>"] = len(vocab)
    for char in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "vocab.json").write_text(json.dumps(vocab))
    (tmp / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(vocab_file=str(tmp / "vocab.json"), merges_file=str(tmp / "merges.txt"),
                         model_max_length=77)


def t5_encoder(d_model: int, umt5: bool = False):
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    config_class, model_class = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    config = config_class(vocab_size=len(WORDS) + 3, d_model=d_model, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                          relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return model_class(config).eval()


def clip_encoder(hidden: int, projection: int | None = None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(1)
    config = CLIPTextConfig(vocab_size=80, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=77, projection_dim=projection or hidden,
                            bos_token_id=0, eos_token_id=1, pad_token_id=1)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


# -- the pipelines, saved --------------------------------------------------------------------
def tiny_dit():
    return pipeline_zoo.dit()[0]


def tiny_pixart():
    from diffusers import PixArtAlphaPipeline

    pipe, _ = pipeline_zoo.pixart()  # transformer: caption_channels 24
    return PixArtAlphaPipeline(**{**pipe.components, "tokenizer": t5_tokenizer(), "text_encoder": t5_encoder(24)})


def tiny_sd3(tmp: Path):
    from diffusers import StableDiffusion3Pipeline

    pipe, _ = pipeline_zoo.sd3()  # joint_attention_dim 24, pooled_projection_dim 16
    clip = clip_tokenizer(tmp / "clip-vocab")
    return StableDiffusion3Pipeline(**{**pipe.components, "tokenizer": clip, "tokenizer_2": clip,
                                       "tokenizer_3": t5_tokenizer(), "text_encoder": clip_encoder(8, 8),
                                       "text_encoder_2": clip_encoder(8, 8), "text_encoder_3": t5_encoder(24)})


def tiny_flux(tmp: Path):
    from diffusers import FluxPipeline

    pipe, _ = pipeline_zoo.flux()  # joint_attention_dim 24, pooled_projection_dim 16
    return FluxPipeline(**{**pipe.components, "tokenizer": clip_tokenizer(tmp / "clip-vocab"),
                           "text_encoder": clip_encoder(16), "tokenizer_2": t5_tokenizer(),
                           "text_encoder_2": t5_encoder(24)})


def tiny_cogvideox():
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )

    # the zoo's CogVideoX transformer (tests/diffusers_zoo.py), with room for the pipeline's
    # 226 text tokens, and a VAE as small as diffusers' own pipeline tests use
    transformer = pipeline_zoo._redraw_zero_gates(pipeline_zoo._seeded(
        CogVideoXTransformer3DModel, num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
        time_embed_dim=32, text_embed_dim=24, num_layers=2, sample_width=4, sample_height=4, sample_frames=5,
        patch_size=2, temporal_compression_ratio=4, max_text_seq_length=226))
    vae = pipeline_zoo._seeded(
        AutoencoderKLCogVideoX, in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4)
    return CogVideoXPipeline(tokenizer=t5_tokenizer(226), text_encoder=t5_encoder(24), vae=vae,
                             transformer=transformer, scheduler=CogVideoXDDIMScheduler())


def tiny_wan():
    from diffusers import WanPipeline

    pipe, _ = pipeline_zoo.wan()  # text_dim 24; CFG as two calls under cache_context
    return WanPipeline(**{**pipe.components, "tokenizer": t5_tokenizer(), "text_encoder": t5_encoder(24, umt5=True)})


def tiny_ltx():
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel

    # the zoo's LTX transformer (tests/diffusers_zoo.py) and a VAE compressing 4x in space and time
    transformer = pipeline_zoo._redraw_zero_gates(pipeline_zoo._seeded(
        LTXVideoTransformer3DModel, in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2,
        attention_head_dim=16, cross_attention_dim=32, num_layers=2, caption_channels=24))
    vae = pipeline_zoo._seeded(
        AutoencoderKLLTXVideo, in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False), upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1), timestep_conditioning=False, patch_size=1, patch_size_t=1,
        encoder_causal=True, decoder_causal=False)
    return LTXPipeline(tokenizer=t5_tokenizer(), text_encoder=t5_encoder(24), vae=vae, transformer=transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler())


def saved(pipe, tmp: Path) -> Path:
    where = tmp / "pipeline"
    pipe.save_pretrained(where)
    return where


# -- running an example ----------------------------------------------------------------------
def run_example(module, model: Path, tmp: Path, capsys, *extra: str) -> tuple[str, Image.Image]:
    out = tmp / "side_by_side.png"
    rc = module.main(["--model", str(model), "--steps", "4", "--compiler", "eager", "--device", "cpu",
                      "--out", str(out), *extra])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert re.search(r"speed-up: \d+\.\d\dx", printed), printed
    assert re.search(r"PSNR toca vs uncached: (\d+\.\d\d|inf) dB", printed), printed
    partial = re.search(r"partial steps: (\d+) of (\d+)", printed)
    assert partial and int(partial[1]) > 0 and int(partial[2]) == 8, printed  # warm-up + timed, 4 steps each
    assert "toca-compile summary of pipe.transformer" in printed
    step_rows = re.findall(r"^ +([A-Za-z]{4})$", printed, flags=re.MULTILINE)  # one letter per step, F = full
    assert len(step_rows) == 2 and all("P" in row for row in step_rows), printed
    assert out.is_file()
    return printed, Image.open(out)


def test_dit_xl_2(tmp_path, capsys):
    printed, image = run_example(dit_xl_2, saved(tiny_dit(), tmp_path), tmp_path, capsys, "--class-labels", "1", "7")
    assert "re-timed from 50 to 4 steps" in printed
    assert image.size == (2 * 8, 2 * 8)  # [uncached | toca], one row per class label (8x8 images)


def test_pixart(tmp_path, capsys):
    printed, image = run_example(pixart, saved(tiny_pixart(), tmp_path), tmp_path, capsys,
                                 "--height", "16", "--width", "16", "--no-resolution-binning")
    assert "PixArtTransformer2DModel" in printed and "re-timed from 20 to 4 steps" in printed
    assert image.size == (2 * 16, 16)


def test_sd3(tmp_path, capsys):
    printed, image = run_example(sd3, saved(tiny_sd3(tmp_path), tmp_path), tmp_path, capsys,
                                 "--height", "16", "--width", "16", "--interval", "2")
    assert "SD3Transformer2DModel" in printed
    assert image.size == (2 * 16, 16)


def test_flux(tmp_path, capsys):
    printed, image = run_example(flux, saved(tiny_flux(tmp_path), tmp_path), tmp_path, capsys,
                                 "--height", "32", "--width", "32", "--true-cfg", "2.0", "--negative-prompt", "dog")
    assert "FluxTransformer2DModel" in printed and "re-timed from 50 to 4 steps" in printed
    assert image.size == (2 * 32, 32)


def test_video(tmp_path, capsys):
    printed, image = run_example(video, saved(tiny_cogvideox(), tmp_path), tmp_path, capsys,
                                 "--height", "32", "--width", "32", "--frames", "5", "--strip-frames", "3",
                                 "--interval", "2")
    assert "CogVideoXTransformer3DModel" in printed and "one row per frame" in printed
    assert image.size == (2 * 32, 3 * 32)  # three of the five frames


@pytest.mark.parametrize("build, frames, transformer", [(tiny_wan, "5", "WanTransformer3DModel"),
                                                        (tiny_ltx, "9", "LTXVideoTransformer3DModel")],
                         ids=["wan", "ltx"])
def test_video_with_wan_and_ltx(build, frames, transformer, tmp_path, capsys):
    """The other two pipelines examples/video.py takes: Wan (CFG as two calls under
    cache_context, loaded through accelerate) and LTX-Video (batched CFG, packed latents)."""
    printed, image = run_example(video, saved(build(), tmp_path), tmp_path, capsys,
                                 "--height", "32", "--width", "32", "--frames", frames, "--strip-frames", "3",
                                 "--interval", "2")
    assert transformer in printed and "one row per frame" in printed
    assert image.size == (2 * 32, 3 * 32)


@pytest.mark.parametrize("module", [dit_xl_2, pixart, sd3, flux, video], ids=lambda m: m.__name__.split(".")[-1])
def test_missing_weights_say_what_to_do_and_download_nothing(module, tmp_path, monkeypatch, capsys):
    connections = []

    def no_network(*args, **kwargs):
        connections.append(args)
        raise OSError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))  # read per call

    default = module.build_parser().get_default("model")
    assert module.main(["--compiler", "eager", "--device", "cpu", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert f"the weights of {default!r} are neither a local directory nor in the Hugging Face cache" in err, err
    assert f"hf download {default}" in err and "--allow-download" in err and "GB" in err
    assert connections == []
    assert not (tmp_path / "x.png").exists()

    missing = tmp_path / "no-such-dir"
    assert module.main(["--model", str(missing), "--device", "cpu"]) == 2
    assert f"the model directory {str(missing)!r} does not exist" in capsys.readouterr().err
