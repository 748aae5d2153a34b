"""Image quality metrics: PSNR and SSIM on numpy arrays.

Both take ``H x W`` or ``H x W x C`` arrays of any numeric dtype holding values on the scale of
``data_range`` (8-bit values and ``data_range=255`` in the evaluation protocol) and compute in
float64.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SSIM_WINDOW", "gaussian_window", "psnr", "ssim"]

SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def _as_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"images must be H x W or H x W x C, got shape {a.shape}")
    return a, b


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB.

    The MSE is taken over all pixels and channels. Identical images give ``inf``.

    Args:
        a, b: ``H x W`` or ``H x W x C`` arrays of the same shape.
        data_range: Peak value (255 for 8-bit values).
    """
    if not data_range > 0:  # also NaN
        raise ValueError(f"psnr: data_range must be positive, got {data_range}")
    a, b = _as_pair(a, b)
    if a.size == 0:
        raise ValueError(f"psnr: the images are empty (shape {a.shape})")
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = _SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian of length ``size`` (the SSIM window is its outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _filter_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of the last two axes of ``x`` with ``outer(w, w)``.

    A sum of shifted slices rather than a sliding-window view, whose matmul would materialise
    ``len(w)`` copies of the image.
    """
    k = len(w)
    h, wd = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    rows = sum(w[j] * x[..., j : j + h, :] for j in range(k))
    return sum(w[j] * rows[..., :, j : j + wd] for j in range(k))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Structural similarity (Wang et al., 2004), mean over pixels then over channels.

    Gaussian 11 x 11 window with sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, population
    (not sample) covariances, and only window positions fully inside the image ('valid').
    This equals ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=data_range, channel_axis=-1)``.

    Args:
        a, b: ``H x W`` or ``H x W x C`` arrays of the same shape, ``H, W >= 11``.
        data_range: Dynamic range of the values (255 for 8-bit values).
    """
    a, b = _as_pair(a, b)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels, "
            f"got {a.shape[:2]}"
        )
    if a.ndim == 2:
        a, b = a[:, :, None], b[:, :, None]
    x = a.transpose(2, 0, 1)
    y = b.transpose(2, 0, 1)
    w = gaussian_window()
    mu_x, mu_y, e_xx, e_yy, e_xy = _filter_valid(np.stack([x, y, x * x, y * y, x * y]), w)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov_xy = e_xy - mu_x * mu_y
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    per_channel = (num / den).mean(axis=(1, 2))
    return float(per_channel.mean())
