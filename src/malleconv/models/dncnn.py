"""DnCNN (Zhang et al., 2017): the classic plain-conv baseline, for speed comparisons."""

from __future__ import annotations

from torch import nn

__all__ = ["DnCNN"]


class DnCNN(nn.Module):
    """``depth`` 3x3 convs of ``width`` channels with BN + ReLU, predicting the residual.

    ``forward(noisy, sigma=None)``: ``(B, C, H, W) -> (B, C, H, W)``; sigma is ignored
    (DnCNN-B/C are blind).
    """

    def __init__(self, in_channels: int = 3, depth: int = 20, width: int = 64):
        super().__init__()
        self.init_kwargs = dict(in_channels=in_channels, depth=depth, width=width)
        layers = [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(width, in_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, noisy, sigma=None):
        return noisy - self.body(noisy)
