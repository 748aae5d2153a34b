"""The automatic mode: which model denoises an image whose noise level is not given.

White Gaussian noise is what the white-noise model (``mallenet-s``) was trained on, and
the wavelet estimator reads its level well; camera noise is correlated between pixels,
which that estimator reads far too low and that model takes for texture, so a blind model
(``mallenet-s-real``) that estimates its own level map handles it. :class:`AutoDenoiser`
reads the image (:func:`~.noise_level.read_noise`) and sends it to one or the other:
white noise reads the same at full and at half resolution, correlated noise and image
content read higher at half resolution. The threshold on that ratio was chosen on a
held-out synthetic split (``benchmarks/noise_routing.py``, docs/benchmarks/noise_routing.md),
not on the test sets.

Neither reading tells noise from fine texture, and the blind model's learned map reads
texture as noise too, so on its own the mode smooths clean, sharp photos. The noise floor
(:func:`~.noise_floor.read_noise_floor`: the noise left in the flattest parts of the image)
does tell them apart, so the level either model gets is capped at :data:`FLOOR_CAP` times
the noise in the floor (the floor less a clean photo's own, :data:`FLOOR_BASELINE`): a noisy
photo keeps the level its noise needs, a clean one gets a level near 0 and comes back nearly
unchanged. A floor below :data:`MIN_FLOOR` (flat areas flattened by JPEG or in-camera
smoothing) says nothing of the noise, and sets no cap. The other way round, the learned map
under-reads noise whose grain is wider than a pixel, which the floor at half resolution
sees: on the blind route such images get at least that floor (:func:`level_bound`), unless
their fine floor is high too (no flat area even at the pixel scale: the floor reads texture).
Where that grain is wider still (the image's noise reading, :func:`~.noise_level.read_noise`,
at least :data:`HALF_PASS_RATIO` times higher at half resolution than at full: the blotches of
a small photo or video frame shown enlarged), a denoiser of pixel-scale noise leaves it at
any level; at half resolution it is pixel-scale again, so the blind model also denoises the
image's 2x2 block means and the output's low band comes from that pass (:func:`merge_half`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.noise import SIGMA_MAX
from .noise_floor import NoiseFloor, read_half_floor, read_noise_floor
from .noise_level import NoiseReading, read_noise

__all__ = ["BOUND_MAX_FINE", "BOUND_RATIO", "CLEAN_FLOOR", "FLOOR_BASELINE", "FLOOR_BOUND",
           "FLOOR_CAP", "HALF_PASS_RATIO", "MIN_FLOOR", "WHITE_MAX_RATIO", "AutoDenoiser",
           "HalfPass", "Route",
           "floor_noise", "half_resolution", "level_bound", "level_cap", "merge_half"]

# Readings whose coarse / fine ratio is below this go to the white-noise model. Chosen on
# the held-out split of benchmarks/noise_routing.py (docs/benchmarks/noise_routing.md).
WHITE_MAX_RATIO = 1.3
# The level either model gets is at most this times the noise floor, on images whose floor
# reads at least MIN_FLOOR: the first setting that cost the held-out split's camera and white
# noise nothing (benchmarks/noise_floor_cap.py; docs/models.md, the automatic mode, also
# gives its cost on coarse, JPEG-flattened noise).
FLOOR_CAP = 4.0
# The floor a clean photo reads from its own texture and 8-bit steps, taken out of the
# floor in quadrature before FLOOR_CAP applies (noise and that baseline add in variance).
# Chosen with FLOOR_BOUND and BOUND_RATIO on the held-out split: of the settings tried, the
# one that leaves clean crops most unchanged while noisy ones lose nothing on average against
# the setting it replaced (no baseline, no bound): docs/benchmarks/floor-bound/, docs/models.md.
FLOOR_BASELINE = 1.0
# A floor below this says nothing of the noise: the flattest blocks are flatter than a clean
# 8-bit photo's own (JPEG or in-camera smoothing flattened them, or the image is synthetic)
# while the noise lives elsewhere. Such images get no cap.
MIN_FLOOR = 0.5
# Images whose floor reads below this (and at least MIN_FLOOR) are reported as clean (no
# measurable noise): above the clean crops of that split that have flat areas (0.6-1.5),
# below the noisy ones that the cap leaves alone.
CLEAN_FLOOR = 1.75
# On the blind route, images whose coarse floor reads at least BOUND_RATIO times the fine one
# (grain wider than a pixel, which the learned map under-reads) and that are not read as
# clean get a level of at least FLOOR_BOUND times the coarse floor (0: no bound).
FLOOR_BOUND = 1.0
BOUND_RATIO = 2.5
# ... unless their fine floor reads BOUND_MAX_FINE or more: then even the flattest blocks are
# busy at the pixel scale, as in a photo of gravel or grass with no flat area at all, and the
# coarse floor reads texture, not grain. Chosen on the held-out split with its most textured
# windows: benchmarks/bound_texture.py, docs/benchmarks/bound_texture.md.
BOUND_MAX_FINE = 6.0
# Images given that bound whose noise reading's coarse / fine ratio is at least this also
# get the half-resolution pass (0: never). Chosen on the held-out split:
# benchmarks/coarse_grain.py, docs/benchmarks/coarse_grain.md.
HALF_PASS_RATIO = 5.5


def floor_noise(floor: float, baseline: float = FLOOR_BASELINE) -> float:
    """The noise in a floor reading: ``sqrt(max(floor^2 - baseline^2, 0))``."""
    # math.sqrt, as the page's Math.sqrt: both correctly rounded, so they decide alike.
    return math.sqrt(max(floor * floor - baseline * baseline, 0.0))


def level_cap(
    floor: NoiseFloor,
    factor: float = FLOOR_CAP,
    min_floor: float = MIN_FLOOR,
    baseline: float = FLOOR_BASELINE,
) -> float:
    """The most level either model gets on an image with this floor: ``factor`` times the
    noise in it (:func:`floor_noise` with ``baseline``), or 75 (no cap) when it reads below
    ``min_floor``. The defaults are the shipped :data:`FLOOR_CAP`, :data:`MIN_FLOOR` and
    :data:`FLOOR_BASELINE`."""
    if floor.level < min_floor:
        return SIGMA_MAX
    return factor * floor_noise(floor.level, baseline)


def level_bound(
    floor: NoiseFloor,
    multiple: float = FLOOR_BOUND,
    ratio: float = BOUND_RATIO,
    max_fine: float = BOUND_MAX_FINE,
) -> float | None:
    """The least level the blind model gets on an image with this floor: ``multiple`` times
    the coarse floor where that reads at least ``ratio`` times the fine one, the fine floor
    reads below ``max_fine`` and the image is not read as clean (floor at least
    :data:`CLEAN_FLOOR`); else None (also for ``multiple`` 0). The defaults are the shipped
    :data:`FLOOR_BOUND`, :data:`BOUND_RATIO` and :data:`BOUND_MAX_FINE`."""
    coarse = (floor.coarse >= ratio * floor.fine and floor.fine < max_fine
              and floor.level >= CLEAN_FLOOR)
    return multiple * floor.coarse if multiple > 0 and coarse else None


@dataclass(frozen=True)
class HalfPass:
    """The half-resolution pass of one image: the cap and bound of its level map, read from
    the image's own floor at half resolution (:func:`~.noise_floor.read_half_floor`) as
    :func:`level_cap` and :func:`level_bound` read them at full resolution.

    Attributes:
        floor: the floor at half resolution.
        cap: the most level the pass gets.
        bound: the least level it gets, or None.
    """

    floor: NoiseFloor
    cap: float
    bound: float | None

    @classmethod
    def of(cls, image) -> HalfPass:
        """The pass for ``image`` (anything :func:`~.noise_floor.read_noise_floor` takes)."""
        floor = read_half_floor(image)
        return cls(floor, level_cap(floor), level_bound(floor))


def half_resolution(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> its 2x2 block means ``(B, C, ceil(H / 2), ceil(W / 2))``, an odd
    last row or column repeated."""
    pad = (0, x.shape[-1] % 2, 0, x.shape[-2] % 2)
    return F.avg_pool2d(F.pad(x, pad, mode="replicate") if any(pad) else x, 2)


def merge_half(full: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """The output of the full-resolution pass with its low band taken from the pass over
    the 2x2 block means.

    Args:
        full: ``(B, C, H, W)``, the denoiser's output at full resolution.
        half: ``(B, C, ceil(H / 2), ceil(W / 2))``, the denoiser's output on
            ``half_resolution`` of the same input.

    Returns:
        ``full + up(half - half_resolution(full))``, ``up`` bilinear (half-pixel centres) to
        ``H x W``: where ``half`` equals the block means of ``full`` it returns ``full``.
    """
    size = (full.shape[-2] + full.shape[-2] % 2, full.shape[-1] + full.shape[-1] % 2)
    if tuple(half.shape[-2:]) != (size[0] // 2, size[1] // 2):
        raise ValueError(f"merge_half: a half-resolution output of {tuple(full.shape[-2:])} "
                         f"is {(size[0] // 2, size[1] // 2)}, got {tuple(half.shape[-2:])}")
    diff = half.to(full.dtype) - half_resolution(full)
    up = F.interpolate(diff, size=size, mode="bilinear", align_corners=False)
    return full + up[..., : full.shape[-2], : full.shape[-1]]


@dataclass(frozen=True)
class Route:
    """What the automatic mode decided for one image.

    Attributes:
        model: the prepared model to run.
        name: its name (reporting).
        sigma: the white-noise level read, before the strength; None when the model is a
            blind model that finds its own level map.
        reading: the reading the choice was made on.
        floor: the image's noise floor.
        cap: the most level the model gets (:data:`FLOOR_CAP` times the noise in the
            floor; 75, no cap, when the floor reads below :data:`MIN_FLOOR`).
        bound: the least level the blind model gets (:func:`level_bound`), or None.
        half: the half-resolution pass (:class:`HalfPass`), or None.
    """

    model: nn.Module
    name: str
    sigma: float | None
    reading: NoiseReading
    floor: NoiseFloor
    cap: float
    bound: float | None = None
    half: HalfPass | None = None

    @property
    def kind(self) -> str:
        if MIN_FLOOR <= self.floor.level < CLEAN_FLOOR:
            return "clean"
        return "white noise" if self.sigma is not None else "camera noise"


class AutoDenoiser(nn.Module):
    """``forward(noisy (B, C, H, W), sigma=None) -> (B, C, H, W)``: the automatic mode.

    With ``sigma`` None each image goes where :meth:`route` sends it; a given ``sigma``
    means white Gaussian noise and goes to the white-noise model. ``denoise`` routes a
    whole image before it is tiled (one decision per image, not per tile).

    Args:
        white: the prepared white-noise model (``net(noisy, sigma)``).
        blind: the prepared blind model in automatic mode (it ignores ``sigma``;
            :class:`~.prepare.EstimatedLevel`, which applies the strength).
        names: ``(white name, blind name)`` for reports.
        strength: multiplier on the white-noise level read (the blind model applies its own).
        max_ratio: readings with ``ratio`` below it count as white noise.
        half_ratio: images given a lower bound whose reading's ``ratio`` is at least this
            also get the half-resolution pass (0: never).
    """

    def __init__(
        self,
        white: nn.Module,
        blind: nn.Module,
        names: tuple[str, str] = ("white", "blind"),
        strength: float = 1.0,
        max_ratio: float = WHITE_MAX_RATIO,
        half_ratio: float = HALF_PASS_RATIO,
    ):
        super().__init__()
        self.white = white
        self.blind = blind
        self.names = names
        self.strength = float(strength)
        self.max_ratio = float(max_ratio)
        self.half_ratio = float(half_ratio)

    @property
    def config(self):
        return self.white.config

    def route(self, image: torch.Tensor | object) -> Route:
        """Read one image (anything :func:`~.noise_level.read_noise` takes) and choose.

        The blind model is also given this image's level cap (and bound and half-resolution
        pass), which it keeps until the
        next ``route``: run the chosen model on this image (tile by tile if need be) before
        routing another.
        """
        reading = read_noise(image)
        floor = read_noise_floor(image)
        cap = level_cap(floor)
        if reading.ratio < self.max_ratio:
            return Route(self.white, self.names[0], reading.sigma, reading, floor, cap)
        from .prepare import set_level_cap  # prepare imports this module

        bound = level_bound(floor)
        coarse = bound is not None and self.half_ratio > 0 and reading.ratio >= self.half_ratio
        half = HalfPass.of(image) if coarse else None
        set_level_cap(self.blind, cap, bound, half)
        return Route(self.blind, self.names[1], None, reading, floor, cap, bound, half)

    def white_level(self, route: Route) -> float:
        """The level the white-noise model gets on ``route``: the reading, at most the cap,
        times the strength, at most 75."""
        return min(min(float(route.sigma), route.cap) * self.strength, SIGMA_MAX)

    def forward(self, noisy: torch.Tensor, sigma=None) -> torch.Tensor:
        if sigma is not None:
            return self.white(noisy, sigma)
        outs = []
        for image in noisy.split(1):
            route = self.route(image)
            level = self.white_level(route) if route.sigma is not None else 0.0
            outs.append(route.model(image, level))
        return torch.cat(outs)
