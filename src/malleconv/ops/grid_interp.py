"""Bilinear interpolation of kernel grids, as ``F.interpolate(mode="bilinear",
align_corners=False)`` defines it: the geometry every slice-and-conv strategy shares."""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def upsample_bilinear(t: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear, align_corners=False upsampling of ``(N, C, gh, gw)`` to ``(N, C, H, W)``."""
    if t.shape[-2:] == size:
        return t
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)


def upsample_into(t: Tensor, out: Tensor) -> Tensor:
    """Bilinear (align_corners=False) upsampling of ``t`` into the preallocated ``out``.

    Writing into a reused buffer matters: a fresh full-resolution allocation per tap costs
    more (page faults) than the interpolation itself.
    """
    return torch._C._nn.upsample_bilinear2d(t, tuple(out.shape[-2:]), False, None, None, out=out)


def grid_bands(n: int, cells: int) -> tuple[Tensor, ...]:
    """Split ``n`` pixels along one axis into bands sharing the same pair of grid cells.

    Returns ``(cell0, cell1, start, length, frac)``: per band its two neighbouring cells,
    first pixel and length; per pixel the interpolation fraction towards ``cell1``.
    """
    src = ((torch.arange(n, dtype=torch.float64) + 0.5) * (cells / n) - 0.5).clamp_min(0)
    c0 = src.floor().long().clamp(max=cells - 1)
    frac = (src - c0).clamp(0, 1)
    used, length = torch.unique_consecutive(c0, return_counts=True)
    start = torch.cumsum(length, 0) - length
    return used, (used + 1).clamp(max=cells - 1), start, length, frac
