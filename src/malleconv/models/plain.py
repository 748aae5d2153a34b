"""A plain DnCNN-style backbone, optionally with one dynamic convolution in the middle.

The test bed for the paper's claim that a single MalleConv added to a standard conv
backbone lowers its cost at equal quality, or raises its quality at similar cost
(``docs/ablation.md``). Unlike :class:`~malleconv.models.dncnn.DnCNN` it is conditioned on
the noise level, as MalleNet is, so both train under one recipe.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers.blocks import PReLU
from ..layers.malleconv import MalleConv2d, PerPixelConv2d
from .mallenet import noise_level_map

__all__ = ["PlainDenoiser", "GatedDynamicConv"]

MIDDLE_KINDS = ("none", "malle", "perpixel")


class GatedDynamicConv(nn.Module):
    """``x + gate * prelu(dynamic_conv(x))``: a depthwise 3x3 MalleConv or per-pixel conv
    in the form MalleNet uses, the gate initialised to 0 so the layer starts as identity.

    ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, channels: int, kind: str = "malle", grid_stride: int = 8):
        super().__init__()
        layer = {"malle": MalleConv2d, "perpixel": PerPixelConv2d}[kind]
        self.conv = layer(
            channels,
            channels,
            3,
            groups=channels,
            grid_stride=grid_stride,
            downsample=2,
            predictor_width=16,
            predictor_depth=1,
        )
        self.act = PReLU(channels)
        self.gate = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gate * self.act(self.conv(x))


class PlainDenoiser(nn.Module):
    """``depth`` 3x3 convs of ``width`` channels (BatchNorm + ReLU between), predicting the
    noise, with the noise-level map as an extra input channel.

    ``middle`` inserts one :class:`GatedDynamicConv` after conv ``depth // 2``: ``"malle"``
    (MalleConv) or ``"perpixel"`` (per-pixel dynamic kernels); ``"none"`` leaves the
    backbone plain.

    ``forward(noisy, sigma)``: noisy ``(B, C, H, W)`` in [0, 1], sigma in 8-bit units (a
    number, ``(B,)`` or a ``(B, 1, H, W)`` map) -> denoised ``(B, C, H, W)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        depth: int = 10,
        width: int = 48,
        middle: str = "none",
        grid_stride: int = 8,
    ):
        super().__init__()
        if middle not in MIDDLE_KINDS:
            raise ValueError(f"middle must be one of {MIDDLE_KINDS}, got {middle!r}")
        if depth < 3:
            raise ValueError(f"depth must be at least 3, got {depth}")
        self.init_kwargs = dict(
            in_channels=in_channels, depth=depth, width=width, middle=middle,
            grid_stride=grid_stride,
        )  # fmt: skip
        self.in_channels = in_channels
        layers: list[nn.Module] = [nn.Conv2d(in_channels + 1, width, 3, padding=1), nn.ReLU()]
        for i in range(depth - 2):
            if middle != "none" and i == (depth - 2) // 2:
                layers.append(GatedDynamicConv(width, middle, grid_stride))
            layers += [
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
        layers.append(nn.Conv2d(width, in_channels, 3, padding=1))
        # A zero noise estimate at initialisation: training starts from the identity.
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.body = nn.Sequential(*layers)

    def forward(self, noisy: torch.Tensor, sigma=None) -> torch.Tensor:
        if noisy.dim() != 4 or noisy.shape[1] != self.in_channels:
            raise ValueError(
                f"noisy must have shape (B, {self.in_channels}, H, W), got {tuple(noisy.shape)}"
            )
        if sigma is None:
            raise ValueError("sigma is required: this model is conditioned on the noise level")
        x = torch.cat([noisy, noise_level_map(sigma, noisy)], dim=1)
        return noisy - self.body(x)
