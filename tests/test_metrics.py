"""Fast checks of toca_compile.demo.metrics: PSNR, SSIM, Fréchet distance, classifier FID and accuracy."""
from __future__ import annotations

import math

import pytest
import torch

from toca_compile.demo import metrics, zoo


def _images(n: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g) * 2 - 1


# ----------------------------------------------------------------------------- PSNR / SSIM


def test_identical_images():
    x = _images()
    p, s = metrics.psnr(x, x), metrics.ssim(x, x)
    assert p.shape == (4,) and s.shape == (4,)
    assert torch.isinf(p).all() and (p > 0).all()
    assert torch.allclose(s, torch.ones(4), atol=1e-6)


def test_psnr_known_value_and_per_sample():
    a = torch.zeros(3, 1, 28, 28)
    b = a.clone()
    b[0] += 0.2  # mse 0.04, range 2: 10 log10(4 / 0.04) = 20 dB
    b[1] += 0.02  # 40 dB
    p = metrics.psnr(a, b)
    assert p[0].item() == pytest.approx(20.0, abs=1e-4)
    assert p[1].item() == pytest.approx(40.0, abs=1e-4)
    assert math.isinf(p[2].item())
    # data_range scales the peak: range 1 is 20 log10(2) dB lower
    assert metrics.psnr(a, b, data_range=1.0)[0].item() == pytest.approx(20.0 - 20 * math.log10(2), abs=1e-4)


def test_ssim_drops_with_noise_and_is_symmetric():
    x = _images(6)
    g = torch.Generator().manual_seed(1)
    small = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    large = (x + 0.5 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    s_small, s_large = metrics.ssim(x, small), metrics.ssim(x, large)
    assert s_small.shape == (6,)
    assert (s_small < 1).all() and (s_large < s_small).all()
    assert torch.allclose(metrics.ssim(small, x), s_small, atol=1e-6)
    assert (metrics.psnr(x, large) < metrics.psnr(x, small)).all()


def test_ssim_of_a_sample_does_not_depend_on_the_batch_it_is_computed_in():
    """Computed a chunk of samples at a time (memory), each sample's SSIM is the one it has alone."""
    x = _images(7)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(-1, 1)
    whole = metrics.ssim(x, noisy, chunk=100)
    assert torch.equal(metrics.ssim(x, noisy, chunk=3), whole)
    alone = torch.cat([metrics.ssim(x[i:i + 1], noisy[i:i + 1]) for i in range(7)])
    torch.testing.assert_close(alone, whole, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="chunk"):
        metrics.ssim(x, noisy, chunk=0)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        metrics.psnr(torch.zeros(2, 1, 28, 28), torch.zeros(3, 1, 28, 28))


# ----------------------------------------------------------------------------- Fréchet distance


def test_frechet_self_is_zero_and_grows_with_shift():
    g = torch.Generator().manual_seed(0)
    f = torch.relu(torch.randn(400, 32, generator=g))
    f[:, :4] = 0  # dead units: singular covariances, as with real ReLU features
    assert metrics.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)
    d = [metrics.frechet_distance(f, f + c) for c in (0.1, 0.5, 1.0)]
    assert d[0] < d[1] < d[2]
    # a pure mean shift by c in every one of the D dimensions: exactly D c^2
    assert d[2] == pytest.approx(32 * 1.0, rel=1e-6)


def test_frechet_matches_closed_forms():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5000, 1, generator=g, dtype=torch.float64)
    b = 3.0 * torch.randn(5000, 1, generator=g, dtype=torch.float64) + 1.0
    # 1-D: (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2 with the sample moments
    expected = (a.mean() - b.mean()) ** 2 + (a.std() - b.std()) ** 2
    assert metrics.frechet_distance(a, b) == pytest.approx(float(expected), rel=1e-9)
    # D-dim: agrees with tr((Σa Σb)^½) = Σ sqrt(eig(Σa Σb))
    x = torch.randn(300, 16, generator=g, dtype=torch.float64)
    y = torch.randn(300, 16, generator=g, dtype=torch.float64) @ torch.randn(16, 16, generator=g, dtype=torch.float64)
    ca, cb = torch.cov(x.T), torch.cov(y.T)
    ref = ((x.mean(0) - y.mean(0)) ** 2).sum() + ca.trace() + cb.trace() - 2 * torch.linalg.eigvals(ca @ cb).sqrt().real.sum()
    assert metrics.frechet_distance(x, y) == pytest.approx(float(ref), rel=1e-7)
    assert metrics.frechet_distance(x.numpy(), y.numpy()) == pytest.approx(float(ref), rel=1e-7)


def test_frechet_rejects_bad_shapes():
    with pytest.raises(ValueError):
        metrics.frechet_distance(torch.zeros(10, 3), torch.zeros(10, 4))
    with pytest.raises(ValueError):
        metrics.frechet_distance(torch.zeros(1, 3), torch.zeros(10, 3))


# ----------------------------------------------------------------------------- with the classifier


@pytest.fixture(scope="module")
def mnist_test(mnist_dir):
    from toca_compile.demo.mnist import load_mnist

    images, labels = load_mnist(mnist_dir, "test")
    return images[:1000], labels[:1000]


def test_accuracy_on_real_digits(mnist_test):
    images, labels = mnist_test
    classifier = zoo.load_mnist_classifier()
    acc_uint8 = metrics.class_accuracy(images, labels, classifier)
    acc_float = metrics.class_accuracy(zoo.to_model_range(images), labels, classifier)
    assert acc_uint8 == acc_float
    assert acc_float >= 0.95
    assert metrics.class_accuracy(zoo.to_model_range(images), (labels + 1) % 10, classifier) < 0.1


def test_classifier_fid_real_vs_degraded(mnist_test):
    images, _ = mnist_test
    classifier = zoo.load_mnist_classifier()
    x = zoo.to_model_range(images)
    a, b = x[:500], x[500:]
    assert metrics.classifier_fid(a, a, classifier) == pytest.approx(0.0, abs=1e-3)
    real = metrics.classifier_fid(a, b, classifier)
    g = torch.Generator().manual_seed(0)
    noisy = [metrics.classifier_fid((a + s * torch.randn(a.shape, generator=g)).clamp(-1, 1), b, classifier)
             for s in (0.3, 0.8)]
    assert real < noisy[0] < noisy[1]
    feats = metrics.classifier_features(a, classifier)
    assert feats.shape == (500, zoo.MNISTClassifier.feature_dim)
