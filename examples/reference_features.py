"""Classifier features of real MNIST test digits, shipped so `toca demo` can report a
classifier-feature FID on a machine with no data.

    python examples/reference_features.py --data ../shared/data/mnist
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file

from toca_compile.demo.mnist import load_mnist
from toca_compile.demo.zoo import load_mnist_classifier, to_model_range

ASSET = Path(__file__).resolve().parents[1] / "toca_compile" / "demo" / "assets" / "mnist_test_features.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"))
    parser.add_argument("--per-class", type=int, default=200)
    args = parser.parse_args()
    images, labels = load_mnist(args.data, "test")
    chosen = torch.cat([torch.nonzero(labels == d).flatten()[: args.per_class] for d in range(10)])
    classifier = load_mnist_classifier()
    with torch.no_grad():
        features = classifier.features(to_model_range(images[chosen]))
    save_file({"features": features.half().contiguous(), "labels": labels[chosen].contiguous()}, str(ASSET))
    print(f"wrote {len(chosen)} feature vectors of dim {features.shape[1]} to {ASSET}")


if __name__ == "__main__":
    main()
