"""Building blocks shared by the predictor networks and MalleNet."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["InvertedBottleneck", "make_norm", "make_act"]


def make_norm(kind: str, channels: int) -> nn.Module:
    """``"batch"`` (as in the authors' code), ``"group"`` (one group) or ``"none"``."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'group' or 'none', got {kind!r}")


def make_act(kind: str, channels: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(channels)
    if kind == "gelu":
        return nn.GELU()
    if kind == "relu":
        return nn.ReLU(inplace=True)
    raise ValueError(f"act must be 'prelu', 'gelu' or 'relu', got {kind!r}")


class InvertedBottleneck(nn.Module):
    """MobileNetV2-style block: 1x1 expand, depthwise 3x3, 1x1 project, with a residual.

    ``(B, C, H, W) -> (B, C, H, W)``. Each conv is followed by a norm and an activation,
    as in the authors' MalleNet code.
    """

    def __init__(self, channels: int, expand: int = 5, norm: str = "batch", act: str = "prelu"):
        super().__init__()
        hidden = channels * expand
        bias = norm == "none"
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=bias),
            make_norm(norm, hidden),
            make_act(act, hidden),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=bias),
            make_norm(norm, hidden),
            make_act(act, hidden),
            nn.Conv2d(hidden, channels, 1, bias=bias),
            make_norm(norm, channels),
            make_act(act, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
