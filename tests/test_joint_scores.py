"""The bundled joint-attention MNIST model (SD3Transformer2DModel + label table) and
benchmarks/joint_scores.py: the model loads with its config, its MLP regions take the joint
attention score (each stream's own rows and columns), and the script runs end to end."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from toca_compile.demo import zoo

REPO = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


joint_scores = _load("joint_scores")


@pytest.fixture(scope="module")
def joint():
    return zoo.load_mnist_joint()


def test_bundled_joint_model_loads_with_its_config(joint):
    config = dict(joint.transformer.config)
    assert {k: config[k] for k in zoo.MNIST_JOINT_CONFIG} == zoo.MNIST_JOINT_CONFIG
    assert type(joint.transformer).__name__ == "SD3Transformer2DModel"
    assert not any(p.requires_grad for p in joint.parameters())
    record = json.loads(zoo.assets().joinpath("mnist_joint_training.json").read_text())
    assert record["joint_config"] == zoo.MNIST_JOINT_CONFIG and record["context_tokens"] == zoo.JOINT_CONTEXT_TOKENS
    x = torch.randn(2, 1, zoo.IMAGE_SIZE, zoo.IMAGE_SIZE)
    with torch.no_grad():
        out = joint(x, timestep=torch.tensor([10, 900]), class_labels=torch.tensor([3, zoo.NULL_LABEL]))[0]
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_a_joint_weights_file_of_another_config_is_refused(joint, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file(joint.state_dict(), str(path), metadata={"config": json.dumps(dict(zoo.MNIST_JOINT_CONFIG, num_layers=2))})
    with pytest.raises(ValueError, match="MNIST_JOINT_CONFIG"):
        zoo.load_mnist_joint(path=path)


def test_joint_model_mlps_take_the_joint_attention_score(joint):
    found = joint_scores.inspect_scores(joint)
    layers = zoo.MNIST_JOINT_CONFIG["num_layers"]
    # image MLPs in every block; text MLPs in all but the last (its text output feeds nothing)
    assert found["kinds"]["mlp"] == {"attention": 2 * layers - 1}, found
    image = zoo.IMAGE_SIZE ** 2 // zoo.MNIST_JOINT_CONFIG["patch_size"] ** 2
    text = zoo.JOINT_CONTEXT_TOKENS
    spans = sorted((m["offset"], m["span"]) for m in found["mlp_regions"])
    # SD3 puts the image tokens first in the joint sequence
    assert spans == [(0, image)] * layers + [(image, text)] * (layers - 1), spans


def test_joint_scores_script_runs_end_to_end(tmp_path):
    """Two images, four steps, the N=3 pair only: the rows cache (partial steps), each selects
    by the score it is labelled with, and the table and JSON are written."""
    out = tmp_path / "j"
    joint_scores.main(["--samples", "2", "--batch", "2", "--seeds", "1", "--steps", "4", "--intervals", "3",
                       "--no-matched", "--out", str(out)])
    saved = json.loads((out / "joint_scores.json").read_text())
    rows = {r["name"]: r for r in saved["rows"]}
    assert list(rows) == ["original", "toca-N3-r0.3-attention", "toca-N3-r0.3-random"]
    for score in ("attention", "random"):
        row = rows[f"toca-N3-r0.3-{score}"]
        assert row["scores_used"]["mlp"] == {score: 2 * zoo.MNIST_JOINT_CONFIG["num_layers"] - 1}
        assert row["partial_steps"] > 0 and row["flops_ratio"] > 1.2 and row["image_mlp_refreshed"] > 0
    assert len(saved["pairs"]) == 1 and (out / "joint_scores.md").read_text().startswith("Joint-attention score")
