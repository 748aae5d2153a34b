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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.noise import SIGMA_MAX
from .noise_level import NoiseReading, read_noise

__all__ = ["WHITE_MAX_RATIO", "AutoDenoiser", "Route"]

# Readings whose coarse / fine ratio is below this go to the white-noise model. Chosen on
# the held-out split of benchmarks/noise_routing.py (docs/benchmarks/noise_routing.md).
WHITE_MAX_RATIO = 1.3


@dataclass(frozen=True)
class Route:
    """What the automatic mode decided for one image.

    Attributes:
        model: the prepared model to run.
        name: its name (reporting).
        sigma: the white-noise level read, before the strength; None when the model is a
            blind model that finds its own level map.
        reading: the reading the choice was made on.
    """

    model: nn.Module
    name: str
    sigma: float | None
    reading: NoiseReading

    @property
    def kind(self) -> str:
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
    """

    def __init__(
        self,
        white: nn.Module,
        blind: nn.Module,
        names: tuple[str, str] = ("white", "blind"),
        strength: float = 1.0,
        max_ratio: float = WHITE_MAX_RATIO,
    ):
        super().__init__()
        self.white = white
        self.blind = blind
        self.names = names
        self.strength = float(strength)
        self.max_ratio = float(max_ratio)

    @property
    def config(self):
        return self.white.config

    def route(self, image: torch.Tensor | object) -> Route:
        """Read one image (anything :func:`~.noise_level.read_noise` takes) and choose."""
        reading = read_noise(image)
        if reading.ratio < self.max_ratio:
            return Route(self.white, self.names[0], reading.sigma, reading)
        return Route(self.blind, self.names[1], None, reading)

    def white_level(self, route: Route) -> float:
        """The level the white-noise model gets on ``route``: the reading times the
        strength, capped at 75."""
        return min(float(route.sigma) * self.strength, SIGMA_MAX)

    def forward(self, noisy: torch.Tensor, sigma=None) -> torch.Tensor:
        if sigma is not None:
            return self.white(noisy, sigma)
        outs = []
        for image in noisy.split(1):
            route = self.route(image)
            level = self.white_level(route) if route.sigma is not None else 0.0
            outs.append(route.model(image, level))
        return torch.cat(outs)
