"""Image-quality metrics for comparing cached and uncached generations of the MNIST DiT.

* :func:`psnr`, :func:`ssim`: per-sample PSNR (dB) and SSIM of two image batches, computed by
  torchmetrics' functional implementations (SSIM: 11x11 Gaussian window, sigma 1.5,
  k1 = 0.01, k2 = 0.03, averaged over the valid region of the window).
* :func:`frechet_distance`: Fréchet distance between Gaussians fitted to two feature sets,
  with the matrix square root from :func:`scipy.linalg.sqrtm`.
* :func:`classifier_fid`: that distance on the penultimate features of an MNIST classifier
  (``classifier.features``), an FID whose feature extractor is a small classifier trained on
  MNIST rather than Inception. Its values are not comparable with Inception FIDs, and like
  every FID it is biased upwards by a finite sample count: compare values computed with the
  same number of images only.
* :func:`class_accuracy`: fraction of images the classifier assigns to their intended label.

Images are float tensors in [-1, 1] of shape [B, 1, H, W] (the DiT's range). The classifier
helpers also take uint8 MNIST images [N, 28, 28] / [N, 1, 28, 28] in 0..255, as
:func:`toca_compile.demo.mnist.load_mnist` returns them.

Needs ``torchmetrics`` and ``scipy`` (neither pulls torchvision or another torch).
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

ArrayLike = Union[torch.Tensor, np.ndarray]

__all__ = ["psnr", "ssim", "frechet_distance", "classifier_features", "classifier_fid", "class_accuracy"]


def _pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape:
        raise ValueError(f"image batches differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.dim() == 3:  # [B, H, W] -> [B, 1, H, W]
        a, b = a.unsqueeze(1), b.unsqueeze(1)
    if a.dim() != 4:
        raise ValueError(f"expected images [B, C, H, W] (or [B, H, W]), got shape {tuple(a.shape)}")
    # float64: identical inputs give exactly inf dB / SSIM 1, and 1e-5 differences stay visible
    return a.detach().double().cpu(), b.detach().double().cpu()


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each sample, shape [B] (inf where a sample is identical).

    ``data_range`` is max - min of the pixel range: 2.0 for images in [-1, 1].
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio  # noqa: PLC0415

    a, b = _pair(a, b)
    out = peak_signal_noise_ratio(a, b, data_range=float(data_range), reduction="none", dim=(1, 2, 3))
    return out.float()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0, chunk: int = 256) -> torch.Tensor:
    """Structural similarity of each sample, shape [B] (1 for identical samples).

    Gaussian 11x11 window (sigma 1.5), constants (0.01·range)², (0.03·range)²; the mean is over
    the positions where the window fits inside the image (18x18 of a 28x28 image). Computed
    ``chunk`` samples at a time: the windowed convolution unfolds every window of its five
    maps per sample (5 x 121 x 784 float64 values, about 4 MB per 28x28 sample).
    """
    from torchmetrics.functional.image import structural_similarity_index_measure  # noqa: PLC0415

    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    a, b = _pair(a, b)
    out = [structural_similarity_index_measure(a[i:i + chunk], b[i:i + chunk], data_range=float(data_range),
                                               reduction="none").reshape(-1)
           for i in range(0, a.shape[0], chunk)]
    return torch.cat(out).float()


def _as_numpy(feats: ArrayLike) -> np.ndarray:
    if isinstance(feats, torch.Tensor):
        feats = feats.detach().cpu().double().numpy()
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {feats.shape}")
    if feats.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors to fit a Gaussian, got {feats.shape[0]}")
    return feats


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, D] and [M, D].

    ``‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½)`` with unbiased covariances, in float64. The
    square root is :func:`scipy.linalg.sqrtm`; when the product is too close to singular for it
    (non-finite result), ``1e-6·I`` is added to both covariances, and the negligible imaginary
    part rounding leaves is dropped.
    """
    a, b = _as_numpy(feats_a), _as_numpy(feats_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets differ in dimension: {a.shape[1]} vs {b.shape[1]}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    diff = mu_a - mu_b

    covmean = _sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        offset = np.eye(cov_a.shape[0]) * 1e-6
        covmean = _sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    value = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))
    # the distance is >= 0; rounding can leave a tiny negative value for identical sets
    return max(value, 0.0)


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    import warnings  # noqa: PLC0415

    from scipy import linalg  # noqa: PLC0415

    # Feature dimensions that are constant over a set (ReLU units that never fire) make the
    # covariances singular; sqrtm then warns although its result is still accurate (it agrees
    # with the eigenvalue form tr((Σa Σb)^½) = Σ sqrt(eig(Σa Σb)) to ~1e-9 on MNIST features).
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        return linalg.sqrtm(matrix)


def _to_classifier_input(images: torch.Tensor) -> torch.Tensor:
    images = torch.as_tensor(images)
    if images.dtype == torch.uint8:  # raw MNIST, 0..255
        images = images.float() / 127.5 - 1.0
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4:
        raise ValueError(f"expected images [B, 1, H, W] or [B, H, W], got shape {tuple(images.shape)}")
    return images.float()


def _device_of(module: torch.nn.Module) -> torch.device:
    try:
        return next(module.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


@torch.no_grad()
def _run_batched(fn, images: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    outs = [fn(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, images.shape[0], batch_size)]
    return torch.cat(outs)


def classifier_features(images: torch.Tensor, classifier: torch.nn.Module, batch_size: int = 1000) -> torch.Tensor:
    """``classifier.features`` of ``images`` ([-1, 1] floats or uint8 MNIST), run in batches: [N, D]."""
    images = _to_classifier_input(images)
    return _run_batched(classifier.features, images, _device_of(classifier), batch_size)


def classifier_fid(images: torch.Tensor, reference_images: torch.Tensor, classifier: torch.nn.Module) -> float:
    """Fréchet distance between the classifier features of ``images`` and ``reference_images``.

    Values depend on the number of images (finite-sample bias): compare equal counts only.
    """
    return frechet_distance(classifier_features(images, classifier),
                            classifier_features(reference_images, classifier))


def class_accuracy(images: torch.Tensor, labels: torch.Tensor, classifier: torch.nn.Module) -> float:
    """Fraction of ``images`` whose classifier argmax equals ``labels``."""
    images = _to_classifier_input(images)
    labels = torch.as_tensor(labels).reshape(-1).long().cpu()
    if labels.numel() != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.numel()} labels")
    logits = _run_batched(classifier, images, _device_of(classifier), 1000)
    return float((logits.argmax(dim=1) == labels).double().mean())
