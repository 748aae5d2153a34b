"""White-noise level estimation: the wavelet MAD estimator of Donoho and Johnstone.

A model-free reading of the noise std of an image, used when the level is not given and
the model does not estimate it itself (a blind model estimates a per-pixel map instead,
:mod:`malleconv.models.blind`). :func:`read_noise` also reads the level at half
resolution, which tells white noise from correlated (camera) noise: the automatic mode
(:mod:`~.auto`) sends the first to the white-noise model and the second to a blind model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..data.noise import SIGMA_MAX, SIGMA_MIN
from ..io import to_float

__all__ = ["NoiseReading", "estimate_sigma", "read_noise"]

# Median absolute deviation of a standard normal variable: MAD / 0.6745 estimates the std.
_MAD_TO_STD = 0.6745


def _planes(image: np.ndarray | torch.Tensor) -> Iterator[np.ndarray]:
    """Colour planes of ``image`` as float32 ``H x W`` arrays (alpha channels dropped).

    One plane at a time, so that a big image never exists in float all at once.
    """
    if torch.is_tensor(image):
        t = image.detach()
        if t.dim() == 2:
            t = t[None]
        if t.dim() == 3:
            t = t[None]
        if t.dim() != 4:
            raise ValueError(
                f"estimate_sigma expects an H x W, (C, H, W) or (B, C, H, W) tensor, "
                f"got shape {tuple(image.shape)}"
            )
        if t.shape[1] in (2, 4):  # gray + alpha, RGBA: the last channel is alpha
            t = t[:, :-1]
        for i in range(t.shape[0]):
            for c in range(t.shape[1]):
                plane = t[i, c]
                if plane.dtype not in (torch.uint8, torch.uint16) and not plane.is_floating_point():
                    raise TypeError(f"estimate_sigma: tensors must be float in [0, 1], uint8 "
                                    f"or uint16, got {plane.dtype}")
                if not plane.is_floating_point():
                    plane = plane.float() / (255.0 if plane.dtype == torch.uint8 else 65535.0)
                yield plane.to("cpu", torch.float32).numpy()
        return
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(
            f"estimate_sigma expects an H x W or H x W x C (C in 1..4) array, got shape {arr.shape}"
        )
    if arr.shape[2] in (2, 4):
        arr = arr[:, :, :-1]
    for c in range(arr.shape[2]):
        yield to_float(arr[:, :, c])


def _plane_sigma(plane: np.ndarray) -> float:
    """Noise std of one ``H x W`` float plane in [0, 1] units (0 when under 2 x 2)."""
    h, w = plane.shape
    h, w = h - h % 2, w - w % 2
    if h < 2 or w < 2:
        return 0.0
    x = plane[:h, :w].astype(np.float32, copy=False)
    # Finest diagonal detail band of the orthonormal Haar transform, one coefficient per 2x2
    # block. Its filter has unit norm, so white noise of std s gives coefficients of std s.
    hh = (x[0::2, 0::2] - x[0::2, 1::2] - x[1::2, 0::2] + x[1::2, 1::2]) * np.float32(0.5)
    return float(np.median(np.abs(hh))) / _MAD_TO_STD


def _coarse_plane_sigma(plane: np.ndarray) -> float:
    """:func:`_plane_sigma` of the 2 x 2 block means of ``plane``, times 2.

    Averaging 4 pixels halves the std of white noise, so white noise reads the same here as
    at full resolution; noise correlated between neighbours is averaged away less, and
    reads higher.
    """
    h, w = plane.shape
    h, w = h - h % 2, w - w % 2
    if h < 4 or w < 4:
        return 0.0
    x = plane[:h, :w].astype(np.float32, copy=False)
    means = (x[0::2, 0::2] + x[0::2, 1::2] + x[1::2, 0::2] + x[1::2, 1::2]) * np.float32(0.25)
    return 2.0 * _plane_sigma(means)


def _level(plane_sigmas: list[float]) -> float:
    """Per-plane stds in [0, 1] units -> their mean in 8-bit units, clamped to [0, 75]."""
    return min(max(float(np.mean(plane_sigmas)) * 255.0, SIGMA_MIN), SIGMA_MAX)


@dataclass(frozen=True)
class NoiseReading:
    """Two wavelet MAD readings of an image's noise std, in 8-bit units.

    Attributes:
        sigma: at full resolution (:func:`estimate_sigma`).
        coarse_sigma: on the 2 x 2 block means, scaled so that white noise reads the same.
    """

    sigma: float
    coarse_sigma: float

    @property
    def ratio(self) -> float:
        """``coarse_sigma / sigma``: near 1 for white noise; above for noise correlated
        between neighbouring pixels (camera noise: 2-5) and for clean images, whose
        content dominates both readings; ``inf`` when ``sigma`` reads 0."""
        return self.coarse_sigma / self.sigma if self.sigma > 0 else float("inf")


def read_noise(image: np.ndarray | torch.Tensor) -> NoiseReading:
    """:func:`estimate_sigma` at full and at half resolution (channels averaged).

    Args:
        image: as for :func:`estimate_sigma`.

    Returns:
        A :class:`NoiseReading`; both levels clamped to ``[0, 75]``.

    Raises:
        ValueError: unsupported shape, or NaN / infinite values.
    """
    fine, coarse = [], []
    for plane in _planes(image):
        if not np.isfinite(plane).all():
            raise ValueError("read_noise: the image contains NaN or infinite values")
        fine.append(_plane_sigma(plane))
        coarse.append(_coarse_plane_sigma(plane))
    if not fine:
        return NoiseReading(0.0, 0.0)
    return NoiseReading(_level(fine), _level(coarse))


def estimate_sigma(image: np.ndarray | torch.Tensor) -> float:
    """Estimate the std of additive white Gaussian noise, in 8-bit units (0-255 scale).

    The classical wavelet estimator of Donoho and Johnstone (1994): the noise std is the
    median absolute value of the finest diagonal (HH) detail band of a Haar wavelet
    transform divided by 0.6745. Image content is mostly smooth at that scale, so HH holds
    mostly noise and the median is robust to the edges that leak into it. The estimate is
    computed per colour channel and the channel estimates are averaged (images of a batch
    too). Alpha channels (the last channel of a 2- or 4-channel image) are ignored. Strongly
    textured images give an over-estimate; clipped noise (saturated pixels) an
    under-estimate.

    Args:
        image: values in [0, 1]: an ``H x W`` or ``H x W x C`` numpy array (uint8 and uint16
            are scaled to [0, 1]), or an ``H x W``, ``(C, H, W)`` or ``(B, C, H, W)`` tensor.

    Returns:
        The estimated sigma, clamped to ``[0, 75]``; 0 for images smaller than 2 x 2.

    Raises:
        ValueError: unsupported shape, or NaN / infinite values.
    """
    sigmas = []
    for plane in _planes(image):
        if not np.isfinite(plane).all():
            raise ValueError("estimate_sigma: the image contains NaN or infinite values")
        sigmas.append(_plane_sigma(plane))
    return _level(sigmas) if sigmas else 0.0
