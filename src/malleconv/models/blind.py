"""A blind denoiser: a learned noise-level map feeding a noise-level-conditioned MalleNet.

Real camera noise is signal dependent and spatially and across-channel correlated, so a
white-noise estimator (wavelet MAD) reads it far too low. :class:`NoiseLevelEstimator` is a
small CNN trained on white and camera-like noise (:mod:`malleconv.data.camera_noise`) to
predict the local noise level per pixel, as CBDNet's estimation sub-network does; the
MalleNet denoiser takes that map as its noise-level input. A given ``sigma`` bypasses the
estimator, so ``sigma=N`` keeps meaning white Gaussian noise of level ``N``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.noise import SIGMA_MAX, SIGMA_MIN
from .mallenet import MalleNet, MalleNetConfig, noise_level_map, pad_to_multiple

__all__ = ["BlindMalleNet", "NoiseLevelEstimator", "limit_level", "noise_level_loss"]


@dataclass
class EstimatorConfig:
    in_channels: int = 3
    width: int = 32


class NoiseLevelEstimator(nn.Module):
    """Noisy ``(B, C, H, W)`` in [0, 1] -> noise level ``(B, 1, H, W)`` in 8-bit units (>= 0).

    Runs at 1/2, 1/4 and 1/8 resolution, so it costs a small fraction of the denoiser,
    with a receptive field of several dozen pixels to tell fine texture from noise; the map
    is upsampled bilinearly, so it varies smoothly.
    """

    def __init__(self, in_channels: int = 3, width: int = 32):
        super().__init__()
        self.config = EstimatorConfig(in_channels, width)
        c = width

        def conv(i, o):
            return nn.Conv2d(i, o, 3, padding=1)

        self.at_half = nn.Sequential(conv(4 * in_channels, c), nn.ReLU(), conv(c, c), nn.ReLU())
        self.at_quarter = nn.Sequential(
            conv(c, c), nn.ReLU(), conv(c, c), nn.ReLU(), conv(c, c), nn.ReLU()
        )
        self.at_eighth = nn.Sequential(conv(c, c), nn.ReLU(), conv(c, c), nn.ReLU())
        self.head = nn.Conv2d(3 * c, 1, 1)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        h, w = noisy.shape[-2:]
        x = pad_to_multiple(noisy, 8)
        x = self.at_half(F.pixel_unshuffle(x, 2))
        q = self.at_quarter(F.avg_pool2d(x, 2))
        e = self.at_eighth(F.avg_pool2d(q, 2))
        size = q.shape[-2:]
        feats = torch.cat(
            [
                F.avg_pool2d(x, 2),
                q,
                F.interpolate(e, size=size, mode="bilinear", align_corners=False),
            ],
            dim=1,
        )
        level = F.softplus(self.head(feats)) * 10.0
        level = F.interpolate(level, scale_factor=4, mode="bilinear", align_corners=False)
        return level[..., :h, :w]


def noise_level_loss(
    estimate: torch.Tensor, target: torch.Tensor, under_weight: float = 0.7
) -> torch.Tensor:
    """Asymmetric squared error of noise-level maps (8-bit units), as in CBDNet.

    Under-estimates weigh ``under_weight`` and over-estimates ``1 - under_weight``: a
    denoiser told too low a level leaves noise, which looks worse than slight smoothing.
    Errors are measured in tenths of the 8-bit scale so the loss is of order 1.
    """
    err = (estimate - target) / 10.0
    weight = torch.where(err < 0, under_weight, 1.0 - under_weight)
    return (weight * err.pow(2)).mean()


def limit_level(level: torch.Tensor, max_level=None, min_level=None) -> torch.Tensor:
    """``(B, 1, H, W)`` level map capped at ``max_level``, then raised to at least
    ``min_level`` (each None, a float or a ``(B,)`` tensor, 8-bit units; None: no limit).
    The one place the order is set, for the model and its exported graph alike."""
    for limit, op in ((max_level, torch.minimum), (min_level, torch.maximum)):
        if limit is not None:
            limit = torch.as_tensor(limit, dtype=level.dtype, device=level.device)
            level = op(level, limit.reshape(-1, 1, 1, 1))
    return level


class BlindMalleNet(nn.Module):
    """``forward(noisy, sigma=None, *, strength=1.0)``: a MalleNet that estimates the noise.

    ``map_variation`` (stored with the weights) is how much of the estimated map's spatial
    variation the denoiser gets: ``level = mean + map_variation * (map - mean)``, the mean
    taken per image (per tile when tiled). Why: the estimator reads lower levels on fine
    texture, so the full map leaves noise there and, on clean photos, treats texture as
    noise where it reads high; a flatter map scored better on the held-out synthetic split
    (``benchmarks/blind_validation.py``, docs/models.md).

    Args of forward:
        noisy: ``(B, C, H, W)`` in [0, 1].
        sigma: None to estimate a per-pixel level map; else a float, ``(B,)`` tensor or
            ``(B, 1, H, W)`` map in 8-bit units, passed to the denoiser as it is.
        strength: Multiplier on the noise level (estimated or given): below 1 keeps more
            grain, above 1 removes more.
        max_level: None, a float or a ``(B,)`` tensor in 8-bit units: the estimated map is
            capped there before ``strength`` applies. Why: the estimator reads fine texture
            as noise; an image-wide reading of the noise in flat regions bounds it
            (:mod:`malleconv.inference.noise_floor`). Ignored when ``sigma`` is given.
        min_level: likewise, a lower bound on the estimated map (applied after the cap).
        return_level: Also return the level map the denoiser got (reporting).
        also_estimate: Also run the estimator when ``sigma`` is given and return
            ``(denoised, estimate)`` (training both parts in one forward).
        blind: With ``also_estimate``, a ``(B,)`` bool mask of the samples whose denoiser
            gets the estimate instead of ``sigma``. Why: trained only on true levels, the
            denoiser never sees the estimator's errors, and the estimator never learns
            which level serves the denoiser best; on these samples the reconstruction
            loss reaches the estimator too (end-to-end, as CBDNet trains). They get the
            estimate as inference gives it, ``map_variation`` applied.
        detach_blind: Stop the reconstruction loss at the estimate on the blind samples:
            the denoiser still learns the estimator's errors, but the estimator keeps its
            own regression target. Why: trained through the denoiser, the estimator drifted
            from the level scale (docs/training-log.md, stage 2 of ``mallenet-s-real``).

    Returns:
        Denoised ``(B, C, H, W)``, or ``(denoised, level)`` with ``return_level``.
    """

    def __init__(
        self, denoiser: MalleNet, estimator: NoiseLevelEstimator, map_variation: float = 1.0
    ):
        super().__init__()
        if not 0.0 <= map_variation <= 1.0:
            raise ValueError(f"map_variation must be in [0, 1], got {map_variation}")
        self.denoiser = denoiser
        self.estimator = estimator
        self.map_variation = float(map_variation)

    @property
    def config(self) -> MalleNetConfig:
        return self.denoiser.config

    @property
    def multiple(self) -> int:
        return self.denoiser.multiple

    def forward(
        self,
        noisy: torch.Tensor,
        sigma=None,
        *,
        strength: float = 1.0,
        return_level: bool = False,
        also_estimate: bool = False,
        blind: torch.Tensor | None = None,
        detach_blind: bool = False,
        max_level=None,
        min_level=None,
    ):
        estimate = self.estimator(noisy) if (sigma is None or also_estimate) else None
        if sigma is None:
            level = limit_level(self._level_from_estimate(estimate), max_level, min_level)
        else:
            level = sigma if torch.is_tensor(sigma) else torch.tensor(float(sigma))
            level = noise_level_map(level, noisy) * 255.0
            if blind is not None:
                if estimate is None:
                    raise ValueError("blind needs also_estimate=True")
                told = self._level_from_estimate(estimate.detach() if detach_blind else estimate)
                level = torch.where(blind.view(-1, 1, 1, 1).to(level.device), told, level)
        if strength != 1.0:
            level = level * float(strength)
        level = level.clamp(SIGMA_MIN, SIGMA_MAX)
        out = self.denoiser(noisy, level)
        if also_estimate:
            return out, estimate
        return (out, level) if return_level else out

    def _level_from_estimate(self, estimate: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` estimate -> the level the denoiser gets (``map_variation``)."""
        if self.map_variation == 1.0:
            return estimate
        mean = estimate.mean(dim=(-2, -1), keepdim=True)
        return mean + self.map_variation * (estimate - mean)

    def spec_config(self) -> dict:
        return {
            "denoiser": self.denoiser.config.to_dict(),
            "estimator": asdict(self.estimator.config),
            "map_variation": self.map_variation,
        }

    @classmethod
    def from_spec(cls, config: dict) -> BlindMalleNet:
        return cls(
            MalleNet(MalleNetConfig(**config["denoiser"])),
            NoiseLevelEstimator(**config.get("estimator", {})),
            map_variation=float(config.get("map_variation", 1.0)),
        )
