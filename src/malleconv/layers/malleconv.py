"""MalleConv2d and the per-pixel dynamic convolution baseline."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.slice_conv import slice_conv
from ..ops.slice_conv_export import gather_pad_to_multiple, in_export_mode
from .blocks import InvertedBottleneck, PReLU

__all__ = ["MalleConv2d", "PerPixelConv2d"]


def _check_positive_ints(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_channels(in_channels: int, out_channels: int, kernel_size: int, groups: int) -> None:
    _check_positive_ints(in_channels=in_channels, out_channels=out_channels,
                         kernel_size=kernel_size, groups=groups)
    if kernel_size < 1 or kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(
            f"in_channels={in_channels} and out_channels={out_channels} must both be "
            f"divisible by groups={groups}"
        )


def _check_input(x: torch.Tensor, channels: int) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"x must have shape (B, {channels}, H, W), got {tuple(x.shape)}")


class _DynamicConvBase(nn.Module):
    """Static kernel + bias shared by the dynamic layers (the dynamic part is a delta)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int):
        super().__init__()
        _check_channels(in_channels, out_channels, kernel_size, groups)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.groups = kernel_size, groups
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # as nn.Conv2d
        fan_in = in_channels // groups * kernel_size**2
        nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    @property
    def kernel_numel(self) -> int:
        return self.out_channels * (self.in_channels // self.groups) * self.kernel_size**2

    def static_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's static convolution alone (what a fresh layer computes)."""
        return F.conv2d(
            x, self.weight, self.bias, padding=self.kernel_size // 2, groups=self.groups
        )


class MalleConv2d(_DynamicConvBase):
    """Malleable convolution: kernels predicted on a low-resolution grid, sliced per pixel.

    ``(B, C_in, H, W) -> (B, C_out, H, W)``, zero padding ``k // 2``, stride 1.

    A small predictor runs on the input average-pooled by ``downsample``, then through
    inverted-bottleneck blocks with 2x pooling until the total stride is ``grid_stride``,
    and a zero-initialised 1x1 conv outputs, per grid cell, a kernel delta and a bias
    delta. The grid has ``ceil(H / grid_stride) x ceil(W / grid_stride)`` cells. The
    dynamic kernel is the static ``weight`` plus the delta, so a freshly initialised layer
    is exactly a plain convolution.

    With ``guided=True`` the grid is a bilateral grid with ``grid_depth`` planes and each
    pixel's kernel is also interpolated along depth at a guide value, ``sigmoid`` of a
    learned 1x1 conv of the input (``(B, 1, H, W)``, ``guide="learned"``), or, as in the
    authors' code, each output channel's own input feature clipped to [0, 1]
    (``guide="self"``, needs ``in_channels == out_channels``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        groups: int = 1,
        *,
        grid_stride: int = 16,
        downsample: int = 2,
        predictor_width: int = 32,
        predictor_depth: int = 1,
        guided: bool = False,
        grid_depth: int = 8,
        norm: str = "batch",
        guide: str = "learned",
    ):
        super().__init__(in_channels, out_channels, kernel_size, groups)
        if guide not in ("learned", "self"):
            raise ValueError(f"guide must be 'learned' or 'self', got {guide!r}")
        if guided and guide == "self" and in_channels != out_channels:
            raise ValueError(
                f"guide='self' needs in_channels == out_channels, got {in_channels} and "
                f"{out_channels}"
            )
        self.guide_mode = guide
        _check_positive_ints(grid_stride=grid_stride, downsample=downsample,
                             predictor_width=predictor_width, predictor_depth=predictor_depth,
                             grid_depth=grid_depth)
        if downsample < 1 or grid_stride < downsample or grid_stride % downsample:
            raise ValueError(
                f"grid_stride={grid_stride} must be a multiple of downsample={downsample} >= 1"
            )
        pools = grid_stride // downsample
        if pools & (pools - 1):
            raise ValueError(
                f"grid_stride / downsample must be a power of 2, got {grid_stride}/{downsample}"
            )
        self.grid_stride, self.downsample = grid_stride, downsample
        self.guided, self.grid_depth = guided, grid_depth if guided else 1
        self._batch_norm = norm == "batch"
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, predictor_width, 3, padding=1),
            PReLU(predictor_width),
        ]
        for _ in range(int(math.log2(pools))):
            layers += [InvertedBottleneck(predictor_width, 2, norm) for _ in range(predictor_depth)]
            layers.append(nn.MaxPool2d(2))
        layers += [InvertedBottleneck(predictor_width, 2, norm) for _ in range(predictor_depth)]
        self.predictor = nn.Sequential(*layers)
        self.to_grid = nn.Conv2d(
            predictor_width, (self.kernel_numel + out_channels) * self.grid_depth, 1
        )
        # Zero init: the dynamic part starts at 0, the layer starts as its static conv.
        nn.init.zeros_(self.to_grid.weight)
        nn.init.zeros_(self.to_grid.bias)
        self.to_guide = nn.Conv2d(in_channels, 1, 1) if guided and guide == "learned" else None

    def predict_grid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict the kernels for ``x`` (``(B, C_in, H, W)``).

        Returns the grid ``(B, C_out, C_in/g, k, k, [gd,] gh, gw)`` and the bias
        ``(B, C_out, [gd,] gh, gw)``, the ``gd`` axis only when guided.
        """
        b, _, h, w = x.shape
        s = self.grid_stride
        gh, gw = -(-h // s), -(-w // s)
        if self.training and self._batch_norm and b * gh * gw == 1 and not in_export_mode():
            # Else torch's "Expected more than 1 value per channel when training", from deep
            # inside the predictor.
            raise ValueError(
                f"MalleConv2d in training mode: a batch of {b} at {h}x{w} is one grid cell "
                f"(grid_stride={s}), one value per channel for the predictor's BatchNorm; "
                "train on more images or larger ones, or call .eval()"
            )
        # Replicate-pad to whole cells so every cell sees its full footprint.
        if in_export_mode() or torch.compiler.is_compiling():
            # Index gathers: a graph for every size, and Inductor's replicate-pad backward
            # fails on channels-last inputs (torch 2.13).
            xp = gather_pad_to_multiple(x, s, reflect=False)
        elif (gh * s, gw * s) != (h, w):
            xp = F.pad(x, (0, gw * s - w, 0, gh * s - h), mode="replicate")
        else:
            xp = x
        if self.downsample > 1:
            xp = F.avg_pool2d(xp, self.downsample)
        coeffs = self.to_grid(self.predictor(xp))  # (B, P * gd, gh, gw)
        gh, gw = coeffs.shape[-2], coeffs.shape[-1]
        gd = self.grid_depth
        k, ci = self.kernel_size, self.in_channels // self.groups
        coeffs = coeffs.view(b, self.kernel_numel + self.out_channels, gd, gh, gw)
        kern = coeffs[:, : self.kernel_numel].reshape(b, self.out_channels, ci, k, k, gd, gh, gw)
        bias = coeffs[:, self.kernel_numel :]
        kern = kern + self.weight[None, :, :, :, :, None, None, None]
        bias = bias + self.bias[None, :, None, None, None]
        if not self.guided:
            return kern.squeeze(5), bias.squeeze(2)
        return kern, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_channels)
        grid, bias = self.predict_grid(x)
        guide = None
        if self.guided:
            if self.guide_mode == "self":
                guide = x.clamp(0, 1)
            else:
                guide = torch.sigmoid(self.to_guide(x)).to(x.dtype)
        # Under autocast the predictor may run in another precision than x.
        return slice_conv(x, grid.to(x.dtype), bias.to(x.dtype), groups=self.groups, guide=guide)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"groups={self.groups}, grid_stride={self.grid_stride}, guided={self.guided}"
        )


class PerPixelConv2d(_DynamicConvBase):
    """Per-pixel dynamic convolution: the baseline MalleConv is measured against.

    ``(B, C_in, H, W) -> (B, C_out, H, W)``. A predictor at full resolution outputs a
    kernel for every pixel, stored as a ``(B, C_out * C_in/g * k * k, H, W)`` tensor and
    applied to the unfolded neighbourhoods. Same constructor as :class:`MalleConv2d`;
    ``grid_stride``, ``downsample`` and ``grid_depth`` have no meaning here and are ignored.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        groups: int = 1,
        *,
        grid_stride: int = 16,
        downsample: int = 2,
        predictor_width: int = 32,
        predictor_depth: int = 1,
        guided: bool = False,
        grid_depth: int = 8,
        norm: str = "batch",
    ):
        super().__init__(in_channels, out_channels, kernel_size, groups)
        if guided:
            raise ValueError("guided=True is not supported by PerPixelConv2d")
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, predictor_width, 3, padding=1),
            PReLU(predictor_width),
        ]
        layers += [InvertedBottleneck(predictor_width, 2, norm) for _ in range(predictor_depth)]
        self.predictor = nn.Sequential(*layers)
        self.to_kernels = nn.Conv2d(predictor_width, self.kernel_numel + out_channels, 1)
        nn.init.zeros_(self.to_kernels.weight)
        nn.init.zeros_(self.to_kernels.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_channels)
        b, _, h, w = x.shape
        k, g = self.kernel_size, self.groups
        ci, co = self.in_channels // g, self.out_channels
        pred = self.to_kernels(self.predictor(x))
        kernels = pred[:, : self.kernel_numel].reshape(b, g, co // g, ci * k * k, h * w)
        kernels = kernels + self.weight.reshape(1, g, co // g, ci * k * k, 1)
        cols = F.unfold(x, k, padding=k // 2).reshape(b, g, 1, ci * k * k, h * w)
        out = (kernels * cols).sum(3).reshape(b, co, h, w)
        return out + pred[:, self.kernel_numel :] + self.bias.view(1, -1, 1, 1)
