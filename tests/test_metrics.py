"""Tests for malleconv.evaluation.metrics against independent, direct formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from malleconv.evaluation.metrics import psnr, ssim


def _pair(shape, seed=0, noise=25):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, size=shape).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-noise, noise + 1, size=shape), 0, 255)
    return a, b.astype(np.uint8)


def _ssim_direct(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Wang et al. 2004 SSIM written out: loop over channels and every 11 x 11 window."""
    a = np.atleast_3d(a.astype(np.float64))
    b = np.atleast_3d(b.astype(np.float64))
    coords = np.arange(11) - 5.0
    g = np.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * 1.5**2))
    g /= g.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    per_channel = []
    for c in range(a.shape[2]):
        values = []
        for i in range(a.shape[0] - 10):
            for j in range(a.shape[1] - 10):
                x = a[i : i + 11, j : j + 11, c]
                y = b[i : i + 11, j : j + 11, c]
                mx, my = (g * x).sum(), (g * y).sum()
                vx = (g * (x - mx) ** 2).sum()
                vy = (g * (y - my) ** 2).sum()
                cov = (g * (x - mx) * (y - my)).sum()
                values.append(
                    ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
                )
        per_channel.append(np.mean(values))
    return float(np.mean(per_channel))


def test_psnr_matches_formula():
    a, b = _pair((13, 17, 3))
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-10)
    assert psnr(a, b) == psnr(b, a)
    assert psnr(a / 255.0, b / 255.0, data_range=1.0) == pytest.approx(psnr(a, b), abs=1e-9)


def test_psnr_known_value_and_identity():
    a = np.zeros((4, 4), np.uint8)
    b = np.full((4, 4), 1, np.uint8)  # MSE 1 -> 20 log10(255)
    assert psnr(a, b) == pytest.approx(48.1308036, abs=1e-6)
    assert psnr(a, a) == math.inf


@pytest.mark.parametrize("shape", [(14, 12), (13, 15, 2), (11, 11, 3)])
def test_ssim_matches_direct_loop(shape):
    a, b = _pair(shape, seed=sum(shape))
    assert ssim(a, b) == pytest.approx(_ssim_direct(a, b), abs=1e-12)


def test_ssim_properties():
    a, b = _pair((20, 24, 3), seed=4)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-12)
    assert 0 < ssim(a, b) < 1
    # Channels are averaged: SSIM of a 3-channel image is the mean of per-channel SSIMs.
    per_channel = [ssim(a[:, :, c], b[:, :, c]) for c in range(3)]
    assert ssim(a, b) == pytest.approx(np.mean(per_channel), abs=1e-12)
    assert ssim(a[:, :, :1], b[:, :, :1]) == pytest.approx(per_channel[0], abs=1e-12)
    assert ssim(a / 255.0, b / 255.0, data_range=1.0) == pytest.approx(ssim(a, b), abs=1e-9)


def test_metric_errors():
    with pytest.raises(ValueError, match="same shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="11"):
        ssim(np.zeros((10, 20)), np.zeros((10, 20)))


def test_ssim_matches_scikit_image_value():
    # Reference computed once with scikit-image 0.26: structural_similarity(a, b,
    # gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
    # channel_axis=-1) on these arithmetic images (no RNG, so the inputs never change).
    i, j, c = np.meshgrid(np.arange(24), np.arange(30), np.arange(3), indexing="ij")
    a = ((i * 7 + j * 13 + c * 50) % 256).astype(np.uint8)
    b = ((i * 7 + j * 13 + c * 50 + (i * j) % 17 - 8) % 256).astype(np.uint8)
    assert ssim(a, b) == pytest.approx(0.864263422511368, abs=1e-12)


def test_psnr_refuses_a_range_that_is_not_positive_and_empty_images():
    a = np.zeros((4, 4))
    for bad in (0, -255, float("nan")):
        with pytest.raises(ValueError, match="data_range must be positive"):
            psnr(a, a + 1, data_range=bad)
    with pytest.raises(ValueError, match="empty"):
        psnr(np.zeros((0, 4)), np.zeros((0, 4)))
