"""Train the bundled MNIST models: a small CNN classifier and a class-conditional pixel-space DiT.

Writes, into --out (default toca_compile/demo/assets/):
    mnist_classifier.safetensors   MNISTClassifier weights (fp32)
    mnist_dit.safetensors          DiTTransformer2DModel weights (fp16, loaded as fp32)
    mnist_dit_training.json        command, timings, loss curve, configs, accuracies, versions

--variant p2 trains the second bundled DiT instead (zoo.MNIST_DIT_P2_CONFIG: patch 2, 196
tokens) into mnist_dit_p2.safetensors and mnist_dit_p2_training.json, and reuses the classifier
already in --out (both DiTs are scored by the same classifier; --no-skip-classifier retrains it).

The DiT is trained with the DDPM loss on the target and schedule of zoo.MNIST_SCHEDULER_CONFIG
(v-prediction, 1000-step cosine schedule) with Min-SNR-5 loss weighting, AdamW with warm-up and
cosine decay, gradient clipping, an EMA of the weights and classifier-free-guidance label dropout
(the label is replaced by the null label 10 for a random 10% of the batch). The DiT's own
per-block label dropout is switched off during training: diffusers draws it independently in
every block, so a "dropped" sample would still see its label in the other blocks. At the end the
raw and the EMA weights are both scored (classifier accuracy of generated digits) and the better
one is saved.

--max-minutes bounds the DiT training loop: the learning-rate schedule runs on
max(step / steps, elapsed / budget), so on a slower machine training ends early with a fully
decayed learning rate instead of overrunning (the step count then depends on the machine's
speed). Examples (one thread; about 38 minutes in all, and about an hour for the 196-token DiT):

    python examples/train_mnist.py --threads 1
    python examples/train_mnist.py --variant p2 --threads 1 --max-minutes 50
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from toca_compile.demo import zoo  # noqa: E402
from toca_compile.demo.mnist import load_mnist  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mnist",
                   help="directory with the MNIST idx .gz files and SHA256SUMS")
    p.add_argument("--out", type=Path, default=REPO / "toca_compile" / "demo" / "assets")
    p.add_argument("--variant", choices=sorted(zoo.DIT_VARIANTS), default="p4",
                   help="which bundled DiT: p4 (patch 4, 49 tokens) or p2 (patch 2, 196 tokens)")
    p.add_argument("--steps", type=int, default=8000, help="DiT optimiser steps (upper bound, see --max-minutes)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--min-lr-frac", type=float, default=0.05, help="final lr as a fraction of --lr")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the DiT weights (0: no EMA)")
    p.add_argument("--min-snr-gamma", type=float, default=5.0,
                   help="Min-SNR loss weighting min(snr, gamma) / snr (0: plain MSE)")
    p.add_argument("--cfg-dropout", type=float, default=0.1, help="fraction of labels replaced by the null label")
    p.add_argument("--max-minutes", type=float, default=34.0, help="wall budget of the DiT training loop")
    p.add_argument("--classifier-epochs", type=int, default=2)
    p.add_argument("--classifier-batch-size", type=int, default=128)
    p.add_argument("--skip-classifier", action=argparse.BooleanOptionalAction, default=None,
                   help="reuse the classifier already in --out (default: yes for --variant p2, no for p4)")
    p.add_argument("--eval-samples", type=int, default=200, help="generated samples scored by the classifier")
    p.add_argument("--eval-guidance", type=float, default=4.0)
    p.add_argument("--eval-steps", type=int, default=50)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.skip_classifier is None:
        args.skip_classifier = args.variant != "p4"
    return args


# ----------------------------------------------------------------------------- classifier


def train_classifier(args, train_x, train_y, test_x, test_y, log) -> tuple[zoo.MNISTClassifier, dict]:
    torch.manual_seed(args.seed)
    model = zoo.MNISTClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    n = len(train_x)
    steps_per_epoch = n // args.classifier_batch_size
    total = steps_per_epoch * args.classifier_epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=total, pct_start=0.15)
    t0 = time.perf_counter()
    bar = _bar(total, "classifier", args)
    for epoch in range(args.classifier_epochs):
        model.train()
        perm = torch.randperm(n)
        for i in range(steps_per_epoch):
            idx = perm[i * args.classifier_batch_size : (i + 1) * args.classifier_batch_size]
            x = train_x[idx]
            # small random translations (+-2 px) make it robust on generated digits
            dx, dy = (int(v) for v in torch.randint(-2, 3, (2,)))
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(model(x), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        acc = classifier_accuracy(model, test_x, test_y)
        log(f"classifier epoch {epoch + 1}: test accuracy {acc:.4f}")
    bar.close()
    info = {
        "epochs": args.classifier_epochs,
        "batch_size": args.classifier_batch_size,
        "test_accuracy": acc,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return model.eval(), info


@torch.no_grad()
def classifier_accuracy(model, x, y, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += (model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item()
    return correct / len(x)


# ----------------------------------------------------------------------------- DiT


def init_linears_and_patches_(model) -> None:
    """The part of the DiT-paper initialisation every bundled transformer shares: xavier-uniform
    linears with zero biases, then the patch-embedding convolution initialised like a linear."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
    proj = model.pos_embed.proj
    torch.nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
    torch.nn.init.zeros_(proj.bias)


def init_dit_(model) -> None:
    """DiT-paper initialisation: xavier linears, N(0, 0.02) embeddings, adaLN-Zero (zeroed
    modulation and output layers, so every block starts as the identity)."""
    init_linears_and_patches_(model)
    for block in model.transformer_blocks:
        emb = block.norm1.emb
        torch.nn.init.normal_(emb.class_embedder.embedding_table.weight, std=0.02)
        torch.nn.init.normal_(emb.timestep_embedder.linear_1.weight, std=0.02)
        torch.nn.init.normal_(emb.timestep_embedder.linear_2.weight, std=0.02)
        torch.nn.init.zeros_(block.norm1.linear.weight)
        torch.nn.init.zeros_(block.norm1.linear.bias)
    for layer in (model.proj_out_1, model.proj_out_2):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)


def disable_internal_label_dropout_(model) -> None:
    for block in model.transformer_blocks:
        block.norm1.emb.class_embedder.dropout_prob = 0.0


@torch.no_grad()
def ema_update_(ema, model, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1.0 - decay)


def build_dit(config: dict = zoo.MNIST_DIT_CONFIG):
    from diffusers import DiTTransformer2DModel

    model = DiTTransformer2DModel(**config)
    init_dit_(model)
    disable_internal_label_dropout_(model)
    return model


def train_dit(args, train_x, train_y, log, build=build_dit, config=None):
    """Train the model ``build()`` returns (called after seeding; anything called as
    ``model(xt, timestep=t, class_labels=y, return_dict=False)[0]``); returns it, its EMA and a
    record of the run."""
    torch.manual_seed(args.seed)
    model = build()
    model.train()
    ema = copy.deepcopy(model).eval().requires_grad_(False) if args.ema > 0 else None
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f}M parameters, config {config if config is not None else zoo.MNIST_DIT_CONFIG}")

    sched = zoo.make_scheduler("ddpm")
    alphas_cumprod = sched.alphas_cumprod.float()
    prediction = sched.config.prediction_type
    if prediction not in ("epsilon", "v_prediction"):
        raise ValueError(f"unsupported prediction_type {prediction!r}")
    v_pred = prediction == "v_prediction"
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))
    budget = args.max_minutes * 60.0
    n = len(train_x)
    gen = torch.Generator().manual_seed(args.seed + 1)
    curve, window = [], []
    perm, cursor = torch.randperm(n, generator=gen), 0
    t0 = time.perf_counter()
    stopped_by = "steps"
    bar = _bar(args.steps, "DiT", args)
    step = 0
    for step in range(1, args.steps + 1):
        elapsed = time.perf_counter() - t0
        progress = max((step - 1) / args.steps, elapsed / budget)
        if progress >= 1.0:
            stopped_by = "time"
            step -= 1
            break
        if step <= args.warmup:
            lr = args.lr * step / args.warmup
        else:
            lr = args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in opt.param_groups:
            group["lr"] = lr

        if cursor + args.batch_size > n:
            perm, cursor = torch.randperm(n, generator=gen), 0
        idx = perm[cursor : cursor + args.batch_size]
        cursor += args.batch_size
        x0 = train_x[idx]
        y = train_y[idx].clone()
        y[torch.rand(len(y), generator=gen) < args.cfg_dropout] = zoo.NULL_LABEL
        t = torch.randint(0, sched.config.num_train_timesteps, (len(y),), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise

        target = noise if v_pred is False else a.sqrt() * noise - (1 - a).sqrt() * x0

        pred = model(xt, timestep=t, class_labels=y, return_dict=False)[0]
        per_sample = (pred - target).pow(2).mean(dim=(1, 2, 3))
        if args.min_snr_gamma > 0:  # Min-SNR-gamma (Hang et al. 2023): x0-loss weight min(snr, gamma)
            snr = a.view(-1) / (1 - a.view(-1))
            loss = (per_sample * snr.clamp(max=args.min_snr_gamma) / (snr + 1 if v_pred else snr)).mean()
        else:
            loss = per_sample.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if ema is not None:
            ema_update_(ema, model, min(args.ema, (1 + step) / (10 + step)))

        window.append(per_sample.mean().item())  # the curve shows the unweighted MSE to the target
        bar.update(1)
        if step % args.log_every == 0:
            mean = sum(window) / len(window)
            curve.append({"step": step, "loss": round(mean, 5), "lr": round(lr, 7),
                          "grad_norm": round(float(grad_norm), 4), "seconds": round(time.perf_counter() - t0, 1)})
            bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.1e}")
            if args.no_progress:
                log(f"step {step}: loss {mean:.4f} lr {lr:.2e} ({time.perf_counter() - t0:.0f}s)")
            window = []
    bar.close()
    seconds = time.perf_counter() - t0
    info = {
        "steps_done": step,
        "stopped_by": stopped_by,
        "seconds": round(seconds, 1),
        "seconds_per_step": round(seconds / max(step, 1), 4),
        "parameters": n_params,
        "final_loss": curve[-1]["loss"] if curve else None,
        "loss_curve": curve,
    }
    model.eval()
    return model, ema, info


@torch.no_grad()
def sample_accuracy(dit, classifier, args, n: int) -> tuple[float, list]:
    labels = torch.arange(n) % zoo.NUM_CLASSES
    images = zoo.sample(dit, labels, steps=args.eval_steps, guidance=args.eval_guidance,
                        seed=args.seed + 2, progress=not args.no_progress)
    pred = classifier(images).argmax(1)
    per_class = [round((pred[labels == c] == c).float().mean().item(), 3) for c in range(zoo.NUM_CLASSES)]
    return (pred == labels).float().mean().item(), per_class


# ----------------------------------------------------------------------------- main


def _bar(total, desc, args):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=args.no_progress, mininterval=5.0)


def _save(path: Path, state: dict, metadata: dict, dtype: torch.dtype) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().to(dtype).contiguous() for k, v in state.items()}, str(path),
              metadata={k: json.dumps(v) if not isinstance(v, str) else v for k, v in metadata.items()})


def ship_best(candidates: dict, classifier, args, path: Path, metadata: dict, load, log) -> dict:
    """Score each candidate (raw / EMA weights) by classifier accuracy on the same generated
    labels, save the best as fp16 to ``path`` with ``metadata``, reload it with ``load(path)``
    and score the shipped file again. Returns the record's "eval" block."""
    t_eval = time.perf_counter()
    scores = {}
    for name, weights in candidates.items():
        acc, per_class = sample_accuracy(weights.eval(), classifier, args, args.eval_samples)
        scores[name] = {"accuracy": acc, "per_class": per_class}
        log(f"{name} weights: classifier accuracy on {args.eval_samples} samples {acc:.3f} {per_class}")
    chosen = max(scores, key=lambda k: (scores[k]["accuracy"], k == "ema"))
    _save(path, candidates[chosen].state_dict(), {**metadata, "weights": chosen}, torch.float16)
    acc, per_class = sample_accuracy(load(path), classifier, args, args.eval_samples)
    log(f"shipped ({chosen}, fp16 file): classifier accuracy {acc:.3f} {per_class}")
    return {"samples": args.eval_samples, "ddim_steps": args.eval_steps, "guidance": args.eval_guidance,
            "seconds": round(time.perf_counter() - t_eval, 1), "candidates": scores, "shipped_weights": chosen,
            "shipped_accuracy": acc, "shipped_per_class": per_class}


def training_record(t_start: float, **fields) -> dict:
    """What every training record starts with (command, wall time, versions, threads), then ``fields``."""
    import diffusers

    return {"command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
            "wall_seconds": round(time.perf_counter() - t_start, 1), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), **fields}


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    train_u8, train_lab = load_mnist(args.data, "train")
    test_u8, test_lab = load_mnist(args.data, "test")
    train_x, train_y = zoo.to_model_range(train_u8), train_lab.long()
    test_x, test_y = zoo.to_model_range(test_u8), test_lab.long()
    log(f"loaded MNIST from {args.data}: {len(train_x)} train, {len(test_x)} test")

    cls_path = args.out / zoo.CLASSIFIER_ASSET
    if args.skip_classifier:
        classifier = zoo.load_mnist_classifier(path=cls_path)
        cls_info = {"reused": str(cls_path), "test_accuracy": classifier_accuracy(classifier, test_x, test_y)}
    else:
        classifier, cls_info = train_classifier(args, train_x, train_y, test_x, test_y, log)
        _save(cls_path, classifier.state_dict(), {"test_accuracy": cls_info["test_accuracy"]}, torch.float32)
        classifier = zoo.load_mnist_classifier(path=cls_path)
        cls_info["test_accuracy"] = classifier_accuracy(classifier, test_x, test_y)  # of the saved file
    log(f"classifier test accuracy {cls_info['test_accuracy']:.4f}")

    variant = zoo.dit_variant(args.variant)
    model, ema, dit_info = train_dit(args, train_x, train_y, log, build=lambda: build_dit(variant.config),
                                     config=variant.config)
    log(f"DiT: {dit_info['steps_done']} steps in {dit_info['seconds']:.0f}s, final loss {dit_info['final_loss']}")

    # Score the raw and the EMA weights on the same generated labels; ship the better one.
    candidates = {"raw": model} if ema is None else {"raw": model, "ema": ema}
    dit_path = args.out / variant.asset
    evaluation = ship_best(candidates, classifier, args, dit_path, {"config": variant.config},
                           lambda path: zoo.load_mnist_dit(path=path, variant=args.variant), log)
    report = training_record(
        t_start, args={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        variant=args.variant, tokens=variant.tokens, dit_config=variant.config,
        scheduler_config=zoo.MNIST_SCHEDULER_CONFIG, classifier=cls_info, dit=dit_info, eval=evaluation)
    record = args.out / variant.training_record
    record.write_text(json.dumps(report, indent=1) + "\n")
    log(f"wrote {'' if args.skip_classifier else f'{cls_path}, '}{dit_path}, {record}")


if __name__ == "__main__":
    main()
