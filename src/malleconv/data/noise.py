"""Noise levels and synthetic additive white Gaussian noise (AWGN).

Noise levels ``sigma`` are in 8-bit units, as in the denoising literature: an image in
``[0, 1]`` receives noise of standard deviation ``sigma / 255``. Valid levels are ``[0, 75]``
(:data:`SIGMA_MIN`, :data:`SIGMA_MAX`), the range the models are trained for. This module
is the one home of that range and of its checks: :func:`check_sigma` for levels,
:func:`parse_sigma` for user input that may say ``"auto"``, :func:`check_strength` for the
multiplier on a level; training configs, the inference API and the command line use them.
"""

from __future__ import annotations

import hashlib
import math

import torch

__all__ = [
    "SIGMA_MAX",
    "SIGMA_MIN",
    "add_gaussian_noise",
    "STRENGTH_MAX",
    "check_sigma",
    "check_strength",
    "noise_level_map",
    "parse_sigma",
    "seed_for",
]

SIGMA_MIN = 0.0
SIGMA_MAX = 75.0
"""Largest noise level (8-bit units) the models are trained for and the API accepts."""

STRENGTH_MAX = 10.0
"""Largest multiplier on a noise level that :func:`check_strength` accepts."""


def check_sigma(sigma: float | torch.Tensor) -> None:
    """Raise ValueError unless every value of ``sigma`` is a finite number in ``[0, 75]``."""
    if isinstance(sigma, torch.Tensor):
        values = sigma.detach().to("cpu", torch.float64).flatten()
        ok = bool(torch.all((values >= SIGMA_MIN) & (values <= SIGMA_MAX)))
        shown = values.tolist() if values.numel() <= 8 else f"tensor of {values.numel()} values"
    else:
        try:
            value = float(sigma)
        except (TypeError, ValueError):
            raise ValueError(f"sigma must be a number, got {sigma!r}") from None
        ok = math.isfinite(value) and SIGMA_MIN <= value <= SIGMA_MAX
        shown = sigma
    if not ok:
        raise ValueError(
            f"sigma must be in [{SIGMA_MIN:g}, {SIGMA_MAX:g}] (8-bit units), got {shown}"
        )


def parse_sigma(sigma) -> float | None:
    """A noise level as a user gives it: None or ``"auto"`` (any case) -> None, meaning the
    level is to be found; anything else -> the level as a float, checked by
    :func:`check_sigma`.

    Raises:
        ValueError: not a number nor ``"auto"``, or outside ``[0, 75]`` (NaN included).
    """
    if sigma is None or (isinstance(sigma, str) and sigma.strip().lower() == "auto"):
        return None
    if isinstance(sigma, bool):  # float(True) is 1.0: almost surely not a level meant
        raise ValueError(f"sigma must be a number in [{SIGMA_MIN:g}, {SIGMA_MAX:g}] (8-bit "
                         f"units) or 'auto', got {sigma!r}")
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(
            f"sigma must be a number in [{SIGMA_MIN:g}, {SIGMA_MAX:g}] (8-bit units) or "
            f"'auto', got {sigma!r}"
        ) from None
    check_sigma(value)
    return value


def check_strength(strength) -> float:
    """A multiplier on the noise level (``strength`` of ``denoise``, ``--strength``) as a
    float in ``(0, 10]``: below 1 keeps more grain and detail, above 1 removes more.

    Raises:
        ValueError: not a number, or outside ``(0, 10]`` (NaN included).
    """
    try:
        if isinstance(strength, bool):
            raise TypeError
        value = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"strength must be a positive number, got {strength!r}") from None
    if not 0.0 < value <= STRENGTH_MAX:  # also rejects NaN
        raise ValueError(f"strength must be in (0, {STRENGTH_MAX:g}], got {strength!r}")
    return value


def _canonical_sigma(sigma: float) -> str:
    # 25, 25.0 and np.float32(25) must give the same seed.
    value = float(sigma)
    return repr(value) if not value.is_integer() else str(int(value))


def seed_for(name: str, sigma: float) -> int:
    """A seed for the noise of image ``name`` at level ``sigma``, stable across runs/platforms.

    Derived from SHA-256 of ``f"{name}:{sigma}"`` (with ``sigma`` written as an integer when it
    is one, so 25 and 25.0 agree); Python's ``hash()`` is salted per process and unusable here.

    Returns:
        An integer in ``[0, 2**63)``, valid for ``torch.Generator.manual_seed`` and numpy.
    """
    check_sigma(sigma)
    digest = hashlib.sha256(f"{name}:{_canonical_sigma(sigma)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _sigma_tensor(sigma: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sigma as a tensor broadcastable against ``like``: a per-sample vector of length N is
    reshaped to ``N x 1 x 1 x 1`` for a batch ``N x C x H x W``."""
    s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    if s.ndim == 1 and like.ndim >= 2 and s.shape[0] == like.shape[0] and s.shape[0] != 1:
        s = s.reshape(-1, *([1] * (like.ndim - 1)))
    return s


def add_gaussian_noise(
    clean: torch.Tensor,
    sigma: float | torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return ``clean + n`` with ``n ~ N(0, (sigma / 255)^2)``, not clipped.

    Args:
        clean: Float tensor in ``[0, 1]``, any shape, typically ``C x H x W`` or
            ``N x C x H x W``.
        sigma: Noise level(s) in 8-bit units in ``[0, 75]``: a number, or a tensor broadcastable
            to ``clean`` (a length-N vector is taken per sample for an ``N x ...`` batch).
        generator: Random generator for reproducible noise (on the device of ``clean``).

    Returns:
        Noisy tensor, same shape and dtype as ``clean``.
    """
    if not clean.is_floating_point():
        raise TypeError(f"clean must be a float tensor in [0, 1], got {clean.dtype}")
    check_sigma(sigma)
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device)
    return clean + noise * (_sigma_tensor(sigma, clean) / 255.0)


def noise_level_map(sigma: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A constant noise-level map ``sigma / 255`` with one channel, for non-blind models.

    Args:
        sigma: Number, or per-sample vector of length N when ``like`` is a batch.
        like: ``N x C x H x W`` or ``C x H x W`` tensor giving size, dtype and device.

    Returns:
        ``N x 1 x H x W`` (or ``1 x H x W``) tensor filled with ``sigma / 255``.
    """
    check_sigma(sigma)
    if like.ndim not in (3, 4):
        raise ValueError(f"like must be C x H x W or N x C x H x W, got shape {tuple(like.shape)}")
    shape = (*like.shape[:-3], 1, *like.shape[-2:])
    out = torch.empty(shape, dtype=like.dtype, device=like.device)
    out.copy_(_sigma_tensor(sigma, out).expand(shape) / 255.0)
    return out
