"""Bundled models: a small class-conditional DiT trained on MNIST pixels, and an MNIST classifier.

Both are tiny and CPU-friendly; they exist so that the quality of token-wise caching can be
measured on a real trained diffusion transformer (e.g. classifier accuracy of generated digits,
or an FID computed on :meth:`MNISTClassifier.features`). ``examples/train_mnist.py`` produces
the weights in ``toca_compile/demo/assets/`` (:func:`assets`).

The DiT works directly on 28x28 pixels scaled to [-1, 1] (no VAE), patch 4, so an image is
7x7 = 49 tokens. A second DiT, the same but for patch 2 (14x14 = 196 tokens, four times as many:
:data:`MNIST_DIT_P2_CONFIG`), is bundled to measure token-wise caching where there are more tokens
to choose between; ``load_mnist_dit(variant="p2")`` loads it (:data:`DIT_VARIANTS`).

Both predict v = sqrt(abar) * eps - sqrt(1 - abar) * x0 under a 1000-step cosine schedule (see
:data:`MNIST_SCHEDULER_CONFIG`). Labels 0..9 are the digits; label 10 (:data:`NULL_LABEL`) is the
"no class" label used for classifier-free guidance (diffusers' ``LabelEmbedding`` reserves index
``num_classes`` for it when its dropout probability is > 0, which it always is inside
``DiTTransformer2DModel``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable  # Python >= 3.11; annotations only

NUM_CLASSES = 10
NULL_LABEL = NUM_CLASSES  # index of the unconditional ("dropped") label embedding
IMAGE_SIZE = 28

# kwargs of diffusers.DiTTransformer2DModel
MNIST_DIT_CONFIG: dict = {
    "num_attention_heads": 4,
    "attention_head_dim": 16,  # width 64
    "in_channels": 1,
    "out_channels": 1,  # the v target only (no learned sigma): DDIM does not need variances
    "num_layers": 6,
    "dropout": 0.0,
    "attention_bias": True,
    "sample_size": IMAGE_SIZE,
    "patch_size": 4,
    "activation_fn": "gelu-approximate",
    "num_embeds_ada_norm": NUM_CLASSES,
    "norm_type": "ada_norm_zero",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-5,
}

# kwargs of diffusers.DDPMScheduler / DDIMScheduler. 1000 training steps as in DiT, but the
# cosine schedule and v-prediction: at 28x28 pixels the DiT paper's linear betas (made for 32x32
# latents) leave the last few hundred steps almost pure noise, and an epsilon-predicting model
# trained this briefly makes poor x0 estimates there, which the first DDIM steps amplify.
MNIST_SCHEDULER_CONFIG: dict = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "v_prediction",
    "clip_sample": False,
}

# The same model with patch 2: 14x14 = 196 tokens per image instead of 49 (4x the FLOPs of the
# linears per call, 16x those of the attention scores), the same parameters but for the patch
# embedding and the output projection. Trained by `examples/train_mnist.py --variant p2`.
MNIST_DIT_P2_CONFIG: dict = {**MNIST_DIT_CONFIG, "patch_size": 2}

# kwargs of diffusers.SD3Transformer2DModel: the joint-attention (MM-DiT) variant of the bundled
# DiT, same width, patch and token count (49 image tokens); the label enters as
# JOINT_CONTEXT_TOKENS "text" tokens attended together with the image tokens, plus a pooled vector
# (see LabelConditioning). Trained by examples/train_mnist_joint.py.
MNIST_JOINT_CONFIG: dict = {
    "sample_size": IMAGE_SIZE,
    "patch_size": 4,
    "in_channels": 1,
    "out_channels": 1,
    "num_layers": 4,
    "attention_head_dim": 16,
    "num_attention_heads": 4,  # width 64
    "joint_attention_dim": 64,
    "caption_projection_dim": 64,
    "pooled_projection_dim": 64,
    "pos_embed_max_size": 7,
}
JOINT_CONTEXT_TOKENS = 4

DIT_ASSET = "mnist_dit.safetensors"
DIT_P2_ASSET = "mnist_dit_p2.safetensors"
JOINT_ASSET = "mnist_joint.safetensors"
CLASSIFIER_ASSET = "mnist_classifier.safetensors"


@dataclass(frozen=True)
class DitVariant:
    """One bundled MNIST DiT: its config, weights file and training record (both in :func:`assets`)."""

    name: str
    config: dict
    asset: str
    training_record: str

    @property
    def tokens(self) -> int:
        """Tokens per image: (28 / patch)^2."""
        return (self.config["sample_size"] // self.config["patch_size"]) ** 2

    @property
    def train_command(self) -> str:
        """The command that writes this variant's weights."""
        extra = "" if self.name == "p4" else f" --variant {self.name}"
        return f"python examples/train_mnist.py{extra}"


DIT_VARIANTS: dict[str, DitVariant] = {
    "p4": DitVariant("p4", MNIST_DIT_CONFIG, DIT_ASSET, "mnist_dit_training.json"),  # 49 tokens, the default
    "p2": DitVariant("p2", MNIST_DIT_P2_CONFIG, DIT_P2_ASSET, "mnist_dit_p2_training.json"),  # 196 tokens
}


def dit_variant(name: str) -> DitVariant:
    """The bundled DiT called ``name`` ("p4": patch 4, 49 tokens; "p2": patch 2, 196 tokens)."""
    try:
        return DIT_VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown MNIST DiT variant {name!r}; choose one of {sorted(DIT_VARIANTS)}") from None

PathLike = Union[str, Path]


class MNISTClassifier(nn.Module):
    """A small CNN on [B, 1, 28, 28] images in [-1, 1]; ``forward`` gives logits over 10 digits.

    ``features`` returns the 128-d penultimate activations, usable for a classifier-feature FID.
    """

    feature_dim = 128

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.fc1 = nn.Linear(32 * 7 * 7, self.feature_dim)
        self.fc2 = nn.Linear(self.feature_dim, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


class LabelConditioning(nn.Module):
    """Digit label (0..9, or :data:`NULL_LABEL`) -> the joint transformer's conditioning: a
    ``[B, JOINT_CONTEXT_TOKENS, joint_attention_dim]`` table of learned context tokens
    (``encoder_hidden_states``) and a ``[B, pooled_projection_dim]`` learned vector
    (``pooled_projections``). Kept apart from the transformer so that the transformer alone is
    what ``torch.compile`` (and toca-compile) sees."""

    def __init__(self, tokens: int = JOINT_CONTEXT_TOKENS, dim: int = 64, pooled_dim: int = 64) -> None:
        super().__init__()
        self.tokens, self.dim = tokens, dim
        self.context = nn.Embedding(NUM_CLASSES + 1, tokens * dim)
        self.pooled = nn.Embedding(NUM_CLASSES + 1, pooled_dim)
        nn.init.normal_(self.context.weight, std=1.0)
        nn.init.normal_(self.pooled.weight, std=0.02)

    def forward(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.context(labels).view(-1, self.tokens, self.dim), self.pooled(labels)


class JointMNIST(nn.Module):
    """A label-conditional joint-attention denoiser with the bundled DiT's call signature,
    ``model(x, timestep=t, class_labels=y, return_dict=False)[0]`` (so :func:`sample` runs it):
    :class:`LabelConditioning` then ``transformer`` (a diffusers ``SD3Transformer2DModel``, or a
    ``torch.compile`` of one: ``JointMNIST(torch.compile(m.transformer, backend=...), m.conditioning)``)."""

    def __init__(self, transformer: nn.Module, conditioning: LabelConditioning) -> None:
        super().__init__()
        self.transformer = transformer
        self.conditioning = conditioning

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor, return_dict: bool = False):
        context, pooled = self.conditioning(class_labels)
        return self.transformer(hidden_states=x, encoder_hidden_states=context.to(x.dtype),
                                pooled_projections=pooled.to(x.dtype), timestep=timestep, return_dict=return_dict)


def make_mnist_joint() -> JointMNIST:
    """A randomly initialised :class:`JointMNIST` of :data:`MNIST_JOINT_CONFIG`."""
    from diffusers import SD3Transformer2DModel  # noqa: PLC0415

    c = MNIST_JOINT_CONFIG
    return JointMNIST(SD3Transformer2DModel(**c),
                      LabelConditioning(JOINT_CONTEXT_TOKENS, c["joint_attention_dim"], c["pooled_projection_dim"]))


def assets() -> Traversable:
    """The folder of bundled assets, ``toca_compile/demo/assets`` in the installed package: weights,
    their training record, reference classifier features and the calibrated schedules."""
    return resources.files(__package__).joinpath("assets")


def _asset_bytes(name: str, path: Optional[PathLike], command: str = "python examples/train_mnist.py") -> bytes:
    if path is not None:
        return Path(path).read_bytes()
    resource = assets().joinpath(name)
    try:
        return resource.read_bytes()
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"bundled asset toca_compile/demo/assets/{name} is missing; run `{command}` to create it"
        ) from exc


def _load_state(name: str, path: Optional[PathLike], command: str = "python examples/train_mnist.py") -> tuple[dict, dict]:
    from safetensors.torch import load  # noqa: PLC0415

    data = _asset_bytes(name, path, command)
    state = load(data)
    # The metadata sits in the JSON header after the 8-byte little-endian header length.
    header_len = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__", {}) or {}
    return state, metadata


def load_mnist_dit(
    dtype: torch.dtype = torch.float32,
    device: Union[str, torch.device] = "cpu",
    path: Optional[PathLike] = None,
    variant: str = "p4",
):
    """A bundled class-conditional MNIST DiT (a diffusers ``DiTTransformer2DModel``), in eval mode
    with gradients off: ``variant`` "p4" (the default; patch 4, 49 tokens) or "p2" (patch 2, 196
    tokens). ``path`` loads another safetensors file of the same variant's config instead."""
    from diffusers import DiTTransformer2DModel  # noqa: PLC0415

    spec = dit_variant(variant)
    state, metadata = _load_state(spec.asset, path, spec.train_command)
    source = path or spec.asset
    trained = json.loads(metadata["config"]) if "config" in metadata else None
    if trained is not None and trained != spec.config:
        diff = ", ".join(f"{k}: file {trained.get(k)!r}, variant {spec.config.get(k)!r}"
                         for k in sorted(set(trained) | set(spec.config)) if trained.get(k) != spec.config.get(k))
        raise ValueError(
            f"{source} was trained with another config than variant {variant!r} of the MNIST DiT ({diff}); "
            f"load it with its own variant, or retrain with `{spec.train_command}`"
        )
    model = DiTTransformer2DModel(**spec.config)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as exc:  # a file without a config record, of another shape
        raise ValueError(f"{source} does not fit the config of variant {variant!r} {spec.config}: {exc}") from exc
    model = model.to(device)
    if dtype != torch.float32:  # ModelMixin.to warns whenever a dtype is passed
        model = model.to(dtype)
    return model.eval().requires_grad_(False)


def load_mnist_joint(
    dtype: torch.dtype = torch.float32,
    device: Union[str, torch.device] = "cpu",
    path: Optional[PathLike] = None,
) -> JointMNIST:
    """The bundled class-conditional joint-attention MNIST model (:class:`JointMNIST`: a
    diffusers ``SD3Transformer2DModel`` of :data:`MNIST_JOINT_CONFIG` and its label table), eval
    mode, gradients off. Trained by ``examples/train_mnist_joint.py``; sample it with
    :func:`sample` like the DiT."""
    state, metadata = _load_state(JOINT_ASSET, path)
    if "config" in metadata and json.loads(metadata["config"]) != MNIST_JOINT_CONFIG:
        raise ValueError(
            f"{path or JOINT_ASSET} was trained with config {metadata['config']}, which differs from "
            f"MNIST_JOINT_CONFIG {MNIST_JOINT_CONFIG}; retrain with examples/train_mnist_joint.py"
        )
    model = make_mnist_joint()
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    model = model.to(device)
    if dtype != torch.float32:
        model = model.to(dtype)
    return model.eval().requires_grad_(False)


def load_mnist_classifier(
    device: Union[str, torch.device] = "cpu", path: Optional[PathLike] = None
) -> MNISTClassifier:
    """The bundled MNIST classifier (eval mode, gradients off); inputs in [-1, 1], [B, 1, 28, 28]."""
    state, _ = _load_state(CLASSIFIER_ASSET, path)
    model = MNISTClassifier()
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.to(device).eval().requires_grad_(False)


def mnist_schedule_files() -> dict[float, str]:
    """The calibrated schedules shipped for the bundled DiT (DDIM, 50 steps, CFG 3), by the
    FLOPs ratio they were calibrated for: ``ToCaConfig.from_schedule_file(path)`` runs one.
    Written by ``toca calibrate --model mnist --flops-ratio R --steps 50 --samples 20
    --seed 1000`` (calibration noise disjoint from the benchmarks' seeds)."""
    folder = assets().joinpath("schedules")
    out = {}
    for entry in folder.iterdir():
        name = entry.name
        if name.startswith("mnist-dit-ddim50-") and name.endswith("x.json"):
            out[float(name[len("mnist-dit-ddim50-"):-len("x.json")])] = str(entry)
    return dict(sorted(out.items()))


def make_scheduler(kind: str = "ddim"):
    """A fresh diffusers scheduler with :data:`MNIST_SCHEDULER_CONFIG` ("ddim" or "ddpm")."""
    from diffusers import DDIMScheduler, DDPMScheduler  # noqa: PLC0415

    if kind == "ddim":
        return DDIMScheduler(**MNIST_SCHEDULER_CONFIG, timestep_spacing="trailing", set_alpha_to_one=True)
    if kind == "ddpm":
        return DDPMScheduler(**MNIST_SCHEDULER_CONFIG)
    raise ValueError(f"kind must be 'ddim' or 'ddpm', got {kind!r}")


#: classifier-free guidance scale of :func:`sample` (and of the benchmarks that do not set one)
GUIDANCE = 3.0


@torch.no_grad()
def sample(
    model: Callable,
    labels: Union[torch.Tensor, Sequence[int]],
    steps: int = 50,
    guidance: float = GUIDANCE,
    generator: Optional[torch.Generator] = None,
    seed: Optional[int] = None,
    progress: bool = True,
    scheduler=None,
    null_label: int = NULL_LABEL,
    device: Optional[Union[str, torch.device]] = None,
    dtype: Optional[torch.dtype] = None,
    callback: Optional[Callable[[int, torch.Tensor, torch.Tensor], None]] = None,
) -> torch.Tensor:
    """Generate digits of ``labels`` with deterministic DDIM (eta = 0) in ``steps`` steps.

    With ``guidance > 1`` classifier-free guidance runs as ONE batched model call per step on
    2B inputs (the B conditional ones, then the same latents with ``null_label``), and combines
    ``out = out_uncond + guidance * (out_cond - out_uncond)`` (the model's v predictions); with ``guidance <= 1`` only the
    B conditional inputs are run (plain conditional sampling). ``model`` may be a compiled
    module; it is called as ``model(x, timestep=t, class_labels=y, return_dict=False)[0]``.
    The initial noise comes from ``generator`` (or a fresh one seeded with ``seed``; neither:
    the global RNG), drawn on the CPU so results do not depend on the device.
    ``callback(i, t, x)`` is called after each step. Returns float32 images in [-1, 1],
    shape [B, 1, 28, 28].
    """
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if labels.numel() == 0:
        raise ValueError("labels is empty")
    if (labels < 0).any() or (labels > null_label).any():
        raise ValueError(f"labels must be in [0, {null_label}], got {labels.tolist()}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    config = getattr(model, "config", None)
    if device is None or dtype is None:
        try:
            param = next(iter(model.parameters()))  # type: ignore[attr-defined]
        except (AttributeError, StopIteration):
            param = None
        device = device if device is not None else (param.device if param is not None else "cpu")
        dtype = dtype if dtype is not None else (param.dtype if param is not None else torch.float32)
    size = int(getattr(config, "sample_size", IMAGE_SIZE)) if config is not None else IMAGE_SIZE
    channels = int(getattr(config, "in_channels", 1)) if config is not None else 1
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(seed)

    scheduler = scheduler if scheduler is not None else make_scheduler("ddim")
    scheduler.set_timesteps(steps)
    b = labels.numel()
    x = torch.randn((b, channels, size, size), generator=generator, dtype=torch.float32)
    x = (x * scheduler.init_noise_sigma).to(device)
    use_cfg = guidance > 1.0
    y = torch.cat([labels, torch.full_like(labels, null_label)]) if use_cfg else labels
    y = y.to(device)

    iterator = scheduler.timesteps
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415

        iterator = tqdm(iterator, desc="sampling", leave=False)
    for i, t in enumerate(iterator):
        x_in = torch.cat([x, x]) if use_cfg else x
        t_in = t.reshape(1).expand(x_in.shape[0]).to(device)
        out = model(x_in.to(dtype), timestep=t_in, class_labels=y, return_dict=False)[0].float()
        if use_cfg:
            out_cond, out_uncond = out.chunk(2)
            out = out_uncond + guidance * (out_cond - out_uncond)
        x = scheduler.step(out, t, x).prev_sample
        if callback is not None:
            callback(i, t, x)

    if size != IMAGE_SIZE:  # a padded model: crop back to the centre 28x28
        off = (size - IMAGE_SIZE) // 2
        x = x[..., off : off + IMAGE_SIZE, off : off + IMAGE_SIZE]
    return x.float().clamp(-1.0, 1.0).cpu()


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 MNIST images [N, 28, 28] (0..255) -> float [N, 1, 28, 28] in [-1, 1]."""
    return (images.float() / 127.5 - 1.0).unsqueeze(1)
