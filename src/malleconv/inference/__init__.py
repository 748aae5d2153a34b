"""Denoising images with a trained model.

One job per module:

* :mod:`~.noise_level`: :func:`estimate_sigma`, the white-noise level of an image (wavelet
  MAD);
* :mod:`~.auto`: :class:`AutoDenoiser`, the automatic mode's choice per image of the
  white-noise model or a blind model;
* :mod:`~.tiling`: :func:`denoise_tensor`, a model on a ``(B, C, H, W)`` batch, whole or in
  overlapping blended tiles, and :func:`~.tiling.stream_tiles` for images read and
  written a tile at a time;
* :mod:`~.prepare`: :func:`prepare_model`, how a model is loaded and run (BatchNorm
  folded, channels-last, automatic level of blind models, self-ensemble, bfloat16), and
  :func:`default_model`;
* :mod:`~.api`: :func:`denoise`, numpy arrays and tensors in, the same kind out.

Public functions::

    estimate_sigma(image) -> float             # noise std in 8-bit units (wavelet MAD)
    read_noise(image) -> NoiseReading          # the same at full and half resolution
    read_noise_floor(image) -> NoiseFloor      # the noise in the flattest parts
    denoise_tensor(model, noisy, sigma, ...)    # (B, C, H, W) -> (B, C, H, W), optional tiles
    denoise(image, sigma=None, model=..., ...)  # array / tensor in, same kind, dtype, shape out
    prepare_model(model, device, ...)           # the model as denoise runs it

The noise-level range and its checks live in :mod:`malleconv.data.noise`.
"""

from ..data.noise import SIGMA_MAX, SIGMA_MIN
from .api import denoise
from .auto import AutoDenoiser
from .noise_floor import NoiseFloor, read_noise_floor
from .noise_level import estimate_sigma, read_noise
from .prepare import (
    AUTO_MODEL,
    DEFAULT_BLIND_MODEL,
    DEFAULT_MODEL,
    EstimatedLevel,
    default_model,
    estimated_levels,
    is_blind,
    model_channels,
    prepare_model,
)
from .tiling import ProgressFn, denoise_tensor

__all__ = [
    "AUTO_MODEL",
    "AutoDenoiser",
    "DEFAULT_BLIND_MODEL",
    "DEFAULT_MODEL",
    "SIGMA_MAX",
    "SIGMA_MIN",
    "EstimatedLevel",
    "NoiseFloor",
    "ProgressFn",
    "default_model",
    "denoise",
    "denoise_tensor",
    "estimate_sigma",
    "estimated_levels",
    "is_blind",
    "model_channels",
    "prepare_model",
    "read_noise",
    "read_noise_floor",
]
