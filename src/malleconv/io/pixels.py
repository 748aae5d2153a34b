"""Pixel array conversions: integer <-> float, alpha removal, RGB -> gray.

Integer pixel arrays are ``H x W`` (gray) or ``H x W x C`` with ``C`` in ``{2, 3, 4}`` (gray +
alpha, RGB, RGBA), dtype ``uint8`` or ``uint16``. Float arrays are ``float32`` in ``[0, 1]``
with the same layout.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["convert_channels", "drop_alpha", "from_float", "rgb_to_gray", "to_float"]

# ITU-R BT.601 luma weights, the convention of the gray denoising benchmarks (MATLAB rgb2gray).
_BT601 = np.array([0.299, 0.587, 0.114])


def to_float(pixels: np.ndarray) -> np.ndarray:
    """Convert pixels to float32 in ``[0, 1]`` (uint8 / 255, uint16 / 65535), same shape.

    Float input is returned as float32 without rescaling; bool maps to 0 and 1.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / np.float32(255)
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / np.float32(65535)
    if pixels.dtype.kind == "f":
        return pixels.astype(np.float32, copy=False)
    if pixels.dtype == np.bool_:
        return pixels.astype(np.float32)
    raise TypeError(f"to_float expects uint8, uint16 or float pixels, got {pixels.dtype}")


def from_float(arr: np.ndarray, dtype: npt.DTypeLike = np.uint8) -> np.ndarray:
    """Convert floats in ``[0, 1]`` to uint8/uint16: clip, scale, round half to even, cast.

    NaN becomes 0. The shape is unchanged.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise TypeError(f"from_float converts to uint8 or uint16, not {dtype}")
    top = float(np.iinfo(dtype).max)
    scaled = np.nan_to_num(np.asarray(arr, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    return np.rint(np.clip(scaled, 0.0, 1.0) * top).astype(dtype)


def drop_alpha(pixels: np.ndarray) -> np.ndarray:
    """Remove the alpha channel: ``H x W x 2`` -> ``H x W``, ``H x W x 4`` -> ``H x W x 3``."""
    if pixels.ndim == 3 and pixels.shape[2] == 2:
        return pixels[:, :, 0]
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        return pixels[:, :, :3]
    return pixels


def rgb_to_gray(pixels: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luminance ``0.299 R + 0.587 G + 0.114 B``, rounded, in the input dtype.

    Args:
        pixels: ``H x W`` (returned as is), ``H x W x C`` with ``C`` in 1..4; alpha is ignored.

    Returns:
        ``H x W`` array with the dtype of ``pixels``.
    """
    pixels = drop_alpha(pixels)
    if pixels.ndim == 2:
        return pixels
    if pixels.shape[2] == 1:
        return pixels[:, :, 0]
    luma = pixels.astype(np.float64) @ _BT601
    if pixels.dtype.kind == "f":
        return luma.astype(pixels.dtype)
    top = np.iinfo(pixels.dtype).max
    return np.clip(np.rint(luma), 0, top).astype(pixels.dtype)


def convert_channels(pixels: np.ndarray, *, gray: bool) -> np.ndarray:
    """Drop alpha and convert to ``H x W x 1`` (``gray=True``, BT.601) or ``H x W x 3``.

    Gray input is replicated to three channels when ``gray`` is False.
    """
    pixels = drop_alpha(pixels)
    if gray:
        return rgb_to_gray(pixels)[:, :, None]
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    return pixels
