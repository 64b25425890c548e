"""MNIST from its gzip idx files, checked against a ``SHA256SUMS`` file beside them.

The loader needs nothing beyond torch and the standard library. A directory is expected to
hold the four canonical files::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz
    SHA256SUMS                  (lines of "<sha256 hex>  <file name>")

``download_with_torchvision`` fills such a directory on machines that have torchvision and a
network; it is the only part that touches torchvision, and it imports it lazily.
"""
from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
from pathlib import Path
from typing import Literal, Union

import torch

PathLike = Union[str, Path]
Split = Literal["train", "test"]

SUMS_NAME = "SHA256SUMS"
FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# idx type codes -> (torch dtype, bytes per element, struct code); MNIST only uses 0x08.
_IDX_TYPES = {
    0x08: (torch.uint8, 1, "B"),
    0x09: (torch.int8, 1, "b"),
    0x0B: (torch.int16, 2, "h"),
    0x0C: (torch.int32, 4, "i"),
    0x0D: (torch.float32, 4, "f"),
    0x0E: (torch.float64, 8, "d"),
}


class MNISTChecksumError(RuntimeError):
    """A data file is missing, is not listed in SHA256SUMS, or does not match its checksum."""


def sha256_of(path: PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sums(root: PathLike) -> dict[str, str]:
    """Parse ``root/SHA256SUMS`` into {file name: lowercase hex digest}."""
    path = Path(root) / SUMS_NAME
    if not path.is_file():
        raise MNISTChecksumError(f"checksum file {path} is missing; cannot verify MNIST files in {root}")
    sums: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise MNISTChecksumError(f"{path}:{lineno}: expected '<sha256>  <file>', got {line!r}")
        digest, name = parts
        sums[name.lstrip("*").strip()] = digest.lower()  # "*name" is sha256sum's binary mode
    return sums


def verify_files(root: PathLike, names: tuple[str, ...] | list[str] | None = None) -> None:
    """Check ``names`` (default: all four MNIST files) in ``root`` against SHA256SUMS.

    Raises MNISTChecksumError naming the first file that is absent, unlisted, or different.
    """
    root = Path(root)
    sums = read_sums(root)
    if names is None:
        names = [n for pair in FILES.values() for n in pair]
    for name in names:
        path = root / name
        if not path.is_file():
            raise MNISTChecksumError(f"MNIST file {path} is missing")
        if name not in sums:
            raise MNISTChecksumError(f"MNIST file {name} has no entry in {root / SUMS_NAME}")
        actual = sha256_of(path)
        if actual != sums[name]:
            raise MNISTChecksumError(
                f"MNIST file {path} does not match {SUMS_NAME}: expected sha256 {sums[name]}, got {actual}"
            )


def read_idx(path: PathLike) -> torch.Tensor:
    """Read one idx file (gzip-compressed if its name ends in .gz) into a tensor."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an idx file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"{path}: unknown idx element type 0x{code:02x}")
    dtype, size, fmt = _IDX_TYPES[code]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    count = 1
    for dim in shape:
        count *= dim
    if len(data) != header + count * size:
        raise ValueError(f"{path}: header says shape {shape} but the payload has {len(data) - header} bytes")
    if size == 1:
        flat = torch.frombuffer(bytearray(data[header:]), dtype=dtype)
    else:  # idx stores big-endian values
        flat = torch.tensor(struct.unpack(f">{count}{fmt}", data[header:]), dtype=dtype)
    return flat.reshape(shape)


def load_mnist(root: PathLike, split: Split = "train", verify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images uint8 [N, 28, 28], labels uint8 [N]) of ``split`` ("train" or "test")."""
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
    root = Path(root)
    image_name, label_name = FILES[split]
    if verify:
        verify_files(root, (image_name, label_name))
    images, labels = read_idx(root / image_name), read_idx(root / label_name)
    if images.dtype != torch.uint8 or images.dim() != 3 or labels.dim() != 1 or len(images) != len(labels):
        raise ValueError(f"{root}: unexpected MNIST shapes {tuple(images.shape)} and {tuple(labels.shape)}")
    return images, labels


def download_with_torchvision(root: PathLike) -> Path:
    """Download MNIST with torchvision and lay it out in ``root`` for :func:`load_mnist`.

    torchvision verifies its downloads by MD5; this copies the four .gz files into ``root`` and
    writes a SHA256SUMS for them, so later loads are checked against what was downloaded.
    """
    try:
        from torchvision.datasets import MNIST  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise ImportError(
            "download_with_torchvision needs torchvision (pip install torchvision); "
            "alternatively place the four MNIST idx .gz files and a SHA256SUMS file in "
            f"{root} yourself"
        ) from exc
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    dataset_dir = root / "_torchvision"
    MNIST(str(dataset_dir), train=True, download=True)
    MNIST(str(dataset_dir), train=False, download=True)
    raw = dataset_dir / "MNIST" / "raw"
    lines = []
    for name in (n for pair in FILES.values() for n in pair):
        source = raw / name
        target = root / name
        if source.is_file():
            shutil.copyfile(source, target)
        elif (raw / name[:-3]).is_file():  # only the extracted file was kept: gzip it again
            with open(raw / name[:-3], "rb") as src, gzip.open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            raise FileNotFoundError(f"torchvision did not leave {name} in {raw}")
        lines.append(f"{sha256_of(target)}  {name}\n")
    (root / SUMS_NAME).write_text("".join(lines))
    return root
