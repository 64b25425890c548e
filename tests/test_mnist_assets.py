"""Fast checks of the MNIST reader, the bundled MNIST models and the sampler."""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import struct
import sys
from pathlib import Path

import pytest
import torch

from toca_compile.demo import zoo
from toca_compile.demo.mnist import (
    FILES,
    MNISTChecksumError,
    download_with_torchvision,
    load_mnist,
    read_idx,
    verify_files,
)

REPO = Path(__file__).resolve().parent.parent
SMALL = FILES["test"][1]  # t10k-labels-idx1-ubyte.gz, a few KB



def _write_sums(root: Path, names: list[str], digest: str | None = None) -> None:
    lines = []
    for name in names:
        d = digest or hashlib.sha256((root / name).read_bytes()).hexdigest()
        lines.append(f"{d}  {name}\n")
    (root / "SHA256SUMS").write_text("".join(lines))


# ----------------------------------------------------------------------------- reader


def test_read_idx_synthetic(tmp_path):
    payload = bytes(range(24))
    raw = b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 3, 4) + payload
    with gzip.open(tmp_path / "x-idx3-ubyte.gz", "wb") as fh:
        fh.write(raw)
    t = read_idx(tmp_path / "x-idx3-ubyte.gz")
    assert t.dtype == torch.uint8 and t.shape == (2, 3, 4)
    assert t.flatten().tolist() == list(payload)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x01\x02")
    with pytest.raises(ValueError, match="payload"):
        read_idx(tmp_path / "bad")


def test_load_real_mnist(mnist_dir):
    images, labels = load_mnist(mnist_dir, "test")
    assert images.dtype == torch.uint8 and images.shape == (10000, 28, 28)
    assert labels.dtype == torch.uint8 and labels.shape == (10000,)
    assert labels.max().item() == 9 and torch.bincount(labels.long()).min().item() > 800
    assert images.max().item() == 255 and images.float().mean().item() == pytest.approx(33.8, abs=1.0)
    _, train_labels = read_idx(mnist_dir / FILES["train"][0]), read_idx(mnist_dir / FILES["train"][1])
    assert train_labels.shape == (60000,)


def test_checksum_mismatch_names_the_file(tmp_path, mnist_dir):
    shutil.copyfile(mnist_dir / SMALL, tmp_path / SMALL)
    _write_sums(tmp_path, [SMALL])
    verify_files(tmp_path, [SMALL])  # matches
    _write_sums(tmp_path, [SMALL], digest="0" * 64)
    with pytest.raises(MNISTChecksumError, match=SMALL):
        verify_files(tmp_path, [SMALL])


def test_corrupted_file_is_rejected(tmp_path, mnist_dir):
    shutil.copyfile(mnist_dir / SMALL, tmp_path / SMALL)
    _write_sums(tmp_path, [SMALL])
    data = bytearray((tmp_path / SMALL).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / SMALL).write_bytes(bytes(data))
    with pytest.raises(MNISTChecksumError, match="does not match"):
        verify_files(tmp_path, [SMALL])


def test_missing_files_and_sums(tmp_path):
    with pytest.raises(MNISTChecksumError, match="SHA256SUMS"):
        load_mnist(tmp_path, "test")
    (tmp_path / "SHA256SUMS").write_text("")
    with pytest.raises(MNISTChecksumError, match=FILES["test"][0]):
        load_mnist(tmp_path, "test")
    (tmp_path / SMALL).write_bytes(b"x")
    with pytest.raises(MNISTChecksumError, match=f"{SMALL} has no entry"):
        verify_files(tmp_path, [SMALL])
    with pytest.raises(ValueError, match="split"):
        load_mnist(tmp_path, "valid")  # type: ignore[arg-type]


def test_download_without_torchvision_is_clear(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` fail
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(ImportError, match="pip install torchvision"):
        download_with_torchvision(tmp_path)


# ----------------------------------------------------------------------------- assets


@pytest.fixture(scope="module")
def dit():
    return zoo.load_mnist_dit()


@pytest.fixture(scope="module")
def classifier():
    return zoo.load_mnist_classifier()


def test_dit_asset_shapes(dit):
    assert dit.config.sample_size == 28 and dit.config.patch_size == 4  # 49 tokens
    assert dit.config.num_embeds_ada_norm == zoo.NUM_CLASSES
    table = dit.transformer_blocks[0].norm1.emb.class_embedder.embedding_table
    assert table.num_embeddings == zoo.NUM_CLASSES + 1  # the null label exists
    assert not dit.training and all(not p.requires_grad for p in dit.parameters())
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        out = dit(x, timestep=torch.tensor([999, 500, 0]), class_labels=torch.tensor([0, 7, zoo.NULL_LABEL])).sample
    assert out.shape == (3, 1, 28, 28) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_assets_are_small():
    assets = REPO / "toca_compile" / "demo" / "assets"
    for name in (zoo.DIT_ASSET, zoo.DIT_P2_ASSET, zoo.CLASSIFIER_ASSET):
        assert (assets / name).stat().st_size < 4 * 2**20


def test_p2_dit_asset_has_196_tokens():
    dit = zoo.load_mnist_dit(variant="p2")
    assert dit.config.patch_size == 2 and dict(dit.config) | zoo.MNIST_DIT_P2_CONFIG == dict(dit.config)
    assert zoo.dit_variant("p2").tokens == 196 and zoo.dit_variant("p4").tokens == 49
    x = torch.randn(2, 1, 28, 28)
    assert dit.pos_embed(x).shape == (2, 196, 64)  # the tokens the transformer blocks see
    with torch.no_grad():
        out = dit(x, timestep=torch.tensor([999, 0]), class_labels=torch.tensor([3, zoo.NULL_LABEL])).sample
    assert out.shape == (2, 1, 28, 28) and torch.isfinite(out).all()
    record = json.loads(zoo.assets().joinpath(zoo.dit_variant("p2").training_record).read_text())
    assert record["dit_config"] == zoo.MNIST_DIT_P2_CONFIG and record["tokens"] == 196
    assert "--variant p2" in record["command"]


def test_a_dit_file_loads_only_as_its_own_variant(tmp_path):
    p4_file = zoo.assets().joinpath(zoo.DIT_ASSET)
    with pytest.raises(ValueError, match=r"variant 'p2'.*patch_size: file 4, variant 2.*--variant p2"):
        zoo.load_mnist_dit(path=p4_file, variant="p2")
    with pytest.raises(ValueError, match=r"variant 'p4'.*patch_size: file 2, variant 4"):
        zoo.load_mnist_dit(path=zoo.assets().joinpath(zoo.DIT_P2_ASSET))
    from safetensors.torch import load_file, save_file

    bare = tmp_path / "bare.safetensors"  # no config record: the shapes tell
    save_file(load_file(str(p4_file)), str(bare))
    with pytest.raises(ValueError, match="does not fit the config of variant 'p2'"):
        zoo.load_mnist_dit(path=bare, variant="p2")
    with pytest.raises(ValueError, match="unknown MNIST DiT variant 'p3'"):
        zoo.load_mnist_dit(variant="p3")


def test_a_missing_dit_asset_names_the_command(monkeypatch):
    config = {**zoo.MNIST_DIT_CONFIG, "patch_size": 7}
    monkeypatch.setitem(zoo.DIT_VARIANTS, "p7", zoo.DitVariant("p7", config, "mnist_dit_p7.safetensors", "x.json"))
    with pytest.raises(FileNotFoundError, match=r"assets/mnist_dit_p7\.safetensors is missing; run "
                                                r"`python examples/train_mnist\.py --variant p7`"):
        zoo.load_mnist_dit(variant="p7")


def test_classifier_shapes(classifier):
    x = torch.zeros(5, 1, 28, 28) - 1
    with torch.no_grad():
        assert classifier(x).shape == (5, 10)
        assert classifier.features(x).shape == (5, zoo.MNISTClassifier.feature_dim)


def test_classifier_on_real_digits(classifier, mnist_dir):
    images, labels = load_mnist(mnist_dir, "test")
    with torch.no_grad():
        pred = classifier(zoo.to_model_range(images[:200])).argmax(1)
    assert (pred == labels[:200].long()).float().mean().item() >= 0.97


# ----------------------------------------------------------------------------- sampler


class _Recorder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config
        self.calls: list[tuple[int, list[int]]] = []

    def forward(self, x, timestep, class_labels, return_dict=True):
        self.calls.append((x.shape[0], class_labels.tolist()))
        return self.model(x, timestep=timestep, class_labels=class_labels, return_dict=return_dict)


def test_sampler_two_steps_batched_cfg(dit):
    rec = _Recorder(dit)
    out = zoo.sample(rec, [3, 8], steps=2, guidance=3.0, seed=0, progress=False)
    assert out.shape == (2, 1, 28, 28) and out.dtype == torch.float32
    assert out.min().item() >= -1.0 and out.max().item() <= 1.0
    # one model call per step, on cond + uncond concatenated
    assert rec.calls == [(4, [3, 8, zoo.NULL_LABEL, zoo.NULL_LABEL])] * 2
    again = zoo.sample(dit, [3, 8], steps=2, guidance=3.0, seed=0, progress=False)
    assert torch.equal(out, again)


def test_sampler_without_guidance_and_bad_labels(dit):
    rec = _Recorder(dit)
    out = zoo.sample(rec, torch.tensor([1]), steps=2, guidance=1.0, seed=1, progress=False)
    assert out.shape == (1, 1, 28, 28) and rec.calls == [(1, [1])] * 2
    with pytest.raises(ValueError, match="labels"):
        zoo.sample(dit, [11], steps=2, progress=False)
