"""The noise floor: an image-wide noise reading that texture does not raise.

Noise is a property of the sensor and of the processing, so it is present in the flattest
parts of an image; texture is not. :func:`read_noise_floor` measures the finest Haar
diagonal detail (HH) in small blocks, keeps the blocks that are neither near black nor
near white (clipping hides noise there), and takes a low percentile of their RMS: what is
left where the image is flattest. It is read at full resolution and on the 2x2 block means
(times 2, so white noise reads the same at both; noise correlated between neighbours, as
camera noise is after demosaicking and denoising in the camera, reads higher at half
resolution).

A learned noise-level map reads fine texture as noise (on clean, sharp photos it reads
6-10); the floor reads such photos near 0.5-1 and their noisy shots several times higher.
The automatic mode (:mod:`~.auto`) caps the map at a multiple of the floor, so textured
regions get at most the noise of their image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .noise_level import _planes

__all__ = ["NoiseFloor", "read_half_floor", "read_noise_floor"]

# The floor is a low percentile of per-block RMS: low enough to skip every textured block
# of a busy photo, high enough that a few blocks of sky or wall suffice.
FLOOR_PERCENTILE = 5.0
# Blocks of 8 x 8 HH coefficients at full resolution and 4 x 4 at half resolution: 16 x 16
# pixels of the image either way. Same-sized blocks at half resolution would span 32 x 32
# pixels, and fewer textured photos have flat areas that large (on the training photos the
# clean floor's 95th percentile drops from 4.2 to 2.5, while noisy ones read the same).
BLOCK, COARSE_BLOCK = 8, 4
# Blocks whose mean is this close to black or white are skipped (8-bit units / 255).
_DARK, _BRIGHT = 8.0 / 255.0, 247.0 / 255.0


def _white_bias(block: int) -> float:
    """For white noise of std s, the 5th percentile of the RMS of ``block**2`` Gaussian
    coefficients is about ``s * (1 - 1.645 / sqrt(2 block**2))``: dividing by this makes the
    floor read s on flat images."""
    return 1.0 - 1.645 / float(np.sqrt(2.0 * block * block))


@dataclass(frozen=True)
class NoiseFloor:
    """The noise floor of an image, in 8-bit units (std of white noise that reads the same).

    Attributes:
        fine: at full resolution.
        coarse: on the 2x2 block means, times 2.
    """

    fine: float
    coarse: float

    @property
    def level(self) -> float:
        """The larger of the two: white noise reads alike at both, correlated noise higher
        at half resolution, and either way this is the noise the image carries."""
        return max(self.fine, self.coarse)


def _haar(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``H x W`` plane -> its finest HH band (orthonormal: white noise keeps its std) and
    its 2x2 block means, both ``H // 2 x W // 2``."""
    h, w = x.shape[0] - x.shape[0] % 2, x.shape[1] - x.shape[1] % 2
    a, b, c, d = x[0:h:2, 0:w:2], x[0:h:2, 1:w:2], x[1:h:2, 0:w:2], x[1:h:2, 1:w:2]
    return (a - b - c + d) * np.float32(0.5), (a + b + c + d) * np.float32(0.25)


def _block_rms(plane: np.ndarray, block: int) -> np.ndarray:
    """``H x W`` plane in [0, 1] -> the RMS of its HH band in each ``block x block`` block
    of coefficients whose mean is neither near black nor near white (1-D, maybe empty)."""
    hh, mean = _haar(plane)
    h, w = hh.shape[0] // block * block, hh.shape[1] // block * block
    if h == 0 or w == 0:
        return np.empty(0, np.float32)
    cut = (h // block, block, w // block, block)
    rms = np.sqrt(np.square(hh[:h, :w]).reshape(cut).mean(axis=(1, 3)))
    level = mean[:h, :w].reshape(cut).mean(axis=(1, 3))
    keep = (level > _DARK) & (level < _BRIGHT)
    return rms[keep]


def _floor(rms: list[np.ndarray], block: int) -> float:
    values = np.concatenate(rms) if rms else np.empty(0)
    if values.size == 0:
        return 0.0
    return float(np.percentile(values, FLOOR_PERCENTILE)) / _white_bias(block) * 255.0


def read_noise_floor(image: np.ndarray | torch.Tensor) -> NoiseFloor:
    """The noise floor of an image at full and at half resolution.

    Args:
        image: values in [0, 1]: an ``H x W`` or ``H x W x C`` numpy array (uint8 and uint16
            are scaled to [0, 1]), or an ``H x W``, ``(C, H, W)`` or ``(B, C, H, W)`` tensor;
            alpha channels are ignored; the colour planes (and images of a batch) are pooled.

    Returns:
        A :class:`NoiseFloor` in 8-bit units; 0 where the image has no block to read (a
        block is 16 x 16 pixels; blocks near black or white are skipped).

    Raises:
        ValueError: unsupported shape, or NaN / infinite values.
    """
    return _read_planes(_planes(image), "read_noise_floor")


def read_half_floor(image: np.ndarray | torch.Tensor) -> NoiseFloor:
    """:func:`read_noise_floor` of the image at half resolution: of its 2x2 block means (odd
    last rows and columns dropped), the image that the automatic mode's half-resolution pass
    denoises (:func:`~.auto.half_pass`). Takes what :func:`read_noise_floor` takes."""
    return _read_planes((_haar(plane)[1] for plane in _planes(image)), "read_half_floor")


def _read_planes(planes, caller: str) -> NoiseFloor:
    fine, coarse = [], []
    for plane in planes:
        if not np.isfinite(plane).all():
            raise ValueError(f"{caller}: the image contains NaN or infinite values")
        fine.append(_block_rms(plane, BLOCK))
        # Averaging 2x2 pixels halves white noise: doubled, it reads as at full resolution.
        coarse.append(_block_rms(_haar(plane)[1], COARSE_BLOCK) * np.float32(2.0))
    return NoiseFloor(_floor(fine, BLOCK), _floor(coarse, COARSE_BLOCK))
