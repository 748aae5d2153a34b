"""Bayer mosaics and linear demosaicing, for the camera-noise synthesis
(:mod:`malleconv.data.camera_noise`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["demosaic_bilinear", "demosaic_malvar", "mosaic_masks"]


def mosaic_masks(h: int, w: int, phase: int = 0, device=None) -> torch.Tensor:
    """``(3, H, W)`` 0/1 masks of a Bayer RGGB mosaic shifted by ``phase`` (0..3): which
    sites sample red, green and blue."""
    dy, dx = divmod(int(phase), 2)
    yy = (torch.arange(h, device=device).view(-1, 1) + dy) % 2
    xx = (torch.arange(w, device=device).view(1, -1) + dx) % 2
    red = (yy == 0) & (xx == 0)
    blue = (yy == 1) & (xx == 1)
    green = ~(red | blue)
    return torch.stack([red, green, blue]).float()


def _conv_same(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` * ``(k, k)`` kernel, reflect padding."""
    k = kernel.shape[-1]
    x = F.pad(x, (k // 2,) * 4, mode="reflect")
    return F.conv2d(x, kernel.to(x).view(1, 1, k, k))


def demosaic_bilinear(mosaic: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Bilinear demosaic: ``(B, 1, H, W)`` mosaic, ``(3, H, W)`` masks -> ``(B, 3, H, W)``."""
    rb = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 4
    g = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]) / 4
    planes = [_conv_same(mosaic * masks[c], rb if c != 1 else g) for c in range(3)]
    return torch.cat(planes, dim=1)


def demosaic_malvar(mosaic: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Malvar-He-Cutler gradient-corrected linear demosaic (ICASSP 2004).

    ``(B, 1, H, W)`` mosaic, ``(3, H, W)`` RGGB-type masks -> ``(B, 3, H, W)``. Sharper than
    bilinear on edges; its 5x5 filters spread noise differently (a different correlation).
    """
    g_at_rb = (
        torch.tensor(
            [
                [0, 0, -1, 0, 0],
                [0, 0, 2, 0, 0],
                [-1, 2, 4, 2, -1],
                [0, 0, 2, 0, 0],
                [0, 0, -1, 0, 0],
            ],
            dtype=torch.float32,
        )
        / 8
    )
    # Colour at a green site whose row holds that colour (and its transpose for the column).
    along_row = (
        torch.tensor(
            [
                [0, 0, 0.5, 0, 0],
                [0, -1, 0, -1, 0],
                [-1, 4, 5, 4, -1],
                [0, -1, 0, -1, 0],
                [0, 0, 0.5, 0, 0],
            ],
            dtype=torch.float32,
        )
        / 8
    )
    along_col = along_row.t().contiguous()
    # Red at a blue site and blue at a red site.
    opposite = (
        torch.tensor(
            [
                [0, 0, -1.5, 0, 0],
                [0, 2, 0, 2, 0],
                [-1.5, 0, 6, 0, -1.5],
                [0, 2, 0, 2, 0],
                [0, 0, -1.5, 0, 0],
            ],
            dtype=torch.float32,
        )
        / 8
    )
    r_mask, g_mask, b_mask = masks[0], masks[1], masks[2]
    h, w = masks.shape[-2:]
    # Green sites in a red row, and in a blue row.
    red_rows = (r_mask.sum(dim=1, keepdim=True) > 0).float().expand(h, w)
    g_red_row = g_mask * red_rows
    g_blue_row = g_mask * (1 - red_rows)
    green = mosaic * g_mask + _conv_same(mosaic, g_at_rb) * (r_mask + b_mask)
    row = _conv_same(mosaic, along_row)
    col = _conv_same(mosaic, along_col)
    opp = _conv_same(mosaic, opposite)
    red = mosaic * r_mask + row * g_red_row + col * g_blue_row + opp * b_mask
    blue = mosaic * b_mask + row * g_blue_row + col * g_red_row + opp * r_mask
    return torch.cat([red, green, blue], dim=1)
