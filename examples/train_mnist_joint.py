"""Train the bundled joint-attention MNIST model (zoo.load_mnist_joint): a diffusers
SD3Transformer2DModel (MM-DiT: the label's context tokens and the 49 image tokens attended
together) of zoo.MNIST_JOINT_CONFIG, conditioned through zoo.LabelConditioning.

It exists to measure token selection in joint-attention blocks (benchmarks/joint_scores.py), so
it is trained exactly like the bundled DiT, with examples/train_mnist.py's loop (v-prediction on
the cosine schedule, Min-SNR-5, AdamW with warm-up and cosine decay, EMA, 10% CFG label
dropout to the null label 10, the learning-rate schedule bounded by --max-minutes); only the model
differs. The bundled classifier scores raw and EMA weights on generated digits and the better one
is saved (fp16) with a training record, into --out (default toca_compile/demo/assets/):

    mnist_joint.safetensors          JointMNIST weights (transformer.* and conditioning.*)
    mnist_joint_training.json        command, timings, loss curve, config, accuracies, versions

    python examples/train_mnist_joint.py --threads 1 --no-progress     # about 25 min of training

Every option of examples/train_mnist.py is accepted (the classifier ones are ignored: the bundled
classifier is reused); --max-minutes defaults to 25 here.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_mnist as tm  # noqa: E402

from toca_compile.demo import zoo  # noqa: E402
from toca_compile.demo.mnist import load_mnist  # noqa: E402


def init_joint_(model: zoo.JointMNIST) -> None:
    """The DiT recipe on the MM-DiT: xavier linears, N(0, 0.02) timestep embedder, adaLN-Zero
    (zeroed modulations of both streams and of the output norm, zeroed output projection)."""
    t = model.transformer
    tm.init_linears_and_patches_(t)
    emb = t.time_text_embed.timestep_embedder
    torch.nn.init.normal_(emb.linear_1.weight, std=0.02)
    torch.nn.init.normal_(emb.linear_2.weight, std=0.02)
    zeroed = [t.norm_out.linear, t.proj_out]
    for block in t.transformer_blocks:
        zeroed += [block.norm1.linear, block.norm1_context.linear]
    for layer in zeroed:
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)


def build_joint() -> zoo.JointMNIST:
    model = zoo.make_mnist_joint()
    init_joint_(model)
    return model


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = tm.parse_args(["--max-minutes", "25", *argv])
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    train_u8, train_lab = load_mnist(args.data, "train")
    train_x, train_y = zoo.to_model_range(train_u8), train_lab.long()
    test_u8, test_lab = load_mnist(args.data, "test")
    classifier = zoo.load_mnist_classifier()
    cls_acc = tm.classifier_accuracy(classifier, zoo.to_model_range(test_u8), test_lab.long())
    log(f"loaded MNIST: {len(train_x)} train; bundled classifier test accuracy {cls_acc:.4f}")

    model, ema, info = tm.train_dit(args, train_x, train_y, log, build=build_joint, config=zoo.MNIST_JOINT_CONFIG)
    log(f"joint model: {info['steps_done']} steps in {info['seconds']:.0f}s, final loss {info['final_loss']}")

    candidates = {"raw": model} if ema is None else {"raw": model, "ema": ema}
    path = args.out / zoo.JOINT_ASSET
    evaluation = tm.ship_best(candidates, classifier, args, path,
                              {"config": zoo.MNIST_JOINT_CONFIG, "context_tokens": zoo.JOINT_CONTEXT_TOKENS},
                              lambda saved: zoo.load_mnist_joint(path=saved), log)
    report = tm.training_record(
        t_start, args={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                             if not k.startswith("classifier") and k != "skip_classifier"},
        joint_config=zoo.MNIST_JOINT_CONFIG, context_tokens=zoo.JOINT_CONTEXT_TOKENS,
        scheduler_config=zoo.MNIST_SCHEDULER_CONFIG, classifier_test_accuracy=cls_acc, training=info, eval=evaluation)
    (args.out / "mnist_joint_training.json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB), {args.out / 'mnist_joint_training.json'}")


if __name__ == "__main__":
    main()
