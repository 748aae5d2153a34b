"""Grouped and dense slice-and-conv (``C_in // groups > 1``) by tiled matmuls.

Bilinear interpolation is linear in the kernel, so ``y(p) = sum_corners w_corner(p) *
(K_corner conv x)(p)``. Pixels that share the same pair of neighbouring cells form a band;
each band is convolved with the 4 corner kernels in one batched matmul over all its tiles,
and the results are blended.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .grid_interp import grid_bands

__all__ = ["tiled_slice_conv_rows", "row_chunks"]

Tensor = torch.Tensor


def tiled_slice_conv_rows(x: Tensor, grid: Tensor, groups: int, bands: Sequence[int]) -> Tensor:
    """Grouped / dense slice-and-conv for some row bands, by batched matmuls.

    x: ``(B, C_in, H, W)``; grid: ``(B, C_out, C_in/g, k, k, gh, gw)``. Returns the output
    rows of the given row bands, ``(B, C_out, rows, W)``, concatenated in order.

    Bilinear interpolation is linear in the kernel, so within a tile of pixels that share
    the same 2x2 neighbouring cells, ``y = sum_corners w_corner * (K_corner conv x)``: the
    4 corner kernels are applied to the tile's unfolded neighbourhoods in one matmul.
    """
    b, c_in, h, w = x.shape
    c_out, cg_in, k = grid.shape[1], grid.shape[2], grid.shape[3]
    gh, gw = grid.shape[-2:]
    r = k // 2
    dev, dt = x.device, x.dtype
    y0, y1, ys, yl, yf = grid_bands(h, gh)
    x0, x1, xs, xl, xf = grid_bands(w, gw)
    nx, tx = len(x0), int(xl.max())
    # Column tiles of the padded input: column index of every tile position, (nx, tx + 2r).
    col_idx = (xs.view(-1, 1) + torch.arange(tx + 2 * r).view(1, -1)).to(dev)
    xf_t = torch.zeros(nx, tx, dtype=dt)
    valid_x = torch.arange(tx).view(1, -1) < xl.view(-1, 1)
    xf_t[valid_x] = xf.to(dt)
    xf_t = xf_t.to(dev).view(1, nx, 1, 1, tx)
    keep_x = valid_x.flatten().nonzero().flatten().to(dev)
    cg_out = c_out // groups
    xpad = F.pad(x, (r, r + tx, r, r))
    # Cells first, (B, gh, gw, G, C_out/g, C_in/g*k*k), so a band's cells are contiguous.
    # Bands are consecutive, so their cells are one contiguous range of grid rows.
    lo, hi = int(y0[bands[0]]), int(y1[bands[-1]])
    grid_t = grid[..., lo : hi + 1, :].permute(0, 5, 6, 1, 2, 3, 4)
    grid_t = grid_t.reshape(b, hi - lo + 1, gw, groups, cg_out, cg_in * k * k)
    pieces = []
    for band in bands:
        cy0, cy1 = int(y0[band]) - lo, int(y1[band]) - lo
        s, n = int(ys[band]), int(yl[band])
        slab = xpad[:, :, s : s + n + 2 * r, :]  # (B, C_in, n + 2r, W + 2r + tx)
        tiles = slab.index_select(3, col_idx.flatten()).view(b, c_in, n + 2 * r, nx, -1)
        tiles = tiles.permute(0, 3, 1, 2, 4).reshape(b * nx, c_in, n + 2 * r, tx + 2 * r)
        cols = F.unfold(tiles, k)  # (B*nx, C_in*k*k, n*tx)
        cols = cols.view(b * nx * groups, cg_in * k * k, n * tx)
        fy = yf[s : s + n].to(dt).to(dev)
        # The 4 corner kernels of every tile of this band, stacked along the output axis
        # so that one matmul per tile applies all of them:
        # (B, 2 rows, gw, G, C_out/g, K) -> (B*nx*G, 2*2*C_out/g, K).
        rows = grid_t.index_select(1, torch.tensor([cy0, cy1], device=dev))
        kern = torch.stack(
            [rows.index_select(2, x0.to(dev)), rows.index_select(2, x1.to(dev))], dim=2
        )  # (B, 2y, 2x, nx, G, cgo, K)
        kern = kern.permute(0, 3, 4, 1, 2, 5, 6).reshape(b * nx * groups, 4 * cg_out, -1)
        y = torch.bmm(kern, cols).view(b, nx, groups, 2, 2, cg_out, n, tx)
        # Blend: bilinear weights (1-fy, fy) along rows and (1-fx, fx) per tile column.
        wx = torch.stack([1 - xf_t.view(nx, tx), xf_t.view(nx, tx)], dim=1)  # (nx, 2, tx)
        wx = wx.view(1, nx, 1, 1, 2, 1, 1, tx)
        wy = torch.stack([1 - fy, fy]).view(1, 1, 1, 2, 1, 1, n, 1)
        acc = (y * wx).sum(4)  # (B, nx, G, 2y, cgo, n, tx)
        acc = (acc * wy.squeeze(4)).sum(3).reshape(b, nx, c_out, n, tx)
        # (B, nx, C_out, n, tx) -> (B, C_out, n, nx*tx) -> crop each tile to its band length.
        acc = acc.permute(0, 2, 3, 1, 4).reshape(b, c_out, n, nx * tx)
        pieces.append(acc.index_select(3, keep_x))
    return torch.cat(pieces, dim=2)


def row_chunks(h: int, gh: int, max_rows: int) -> list[tuple[slice, list[int]]]:
    """Group consecutive row bands into chunks of about ``max_rows`` rows."""
    _, _, ys, yl, _ = grid_bands(h, gh)
    chunks, cur, start = [], [], 0
    for band in range(len(ys)):
        cur.append(band)
        end = int(ys[band] + yl[band])
        if end - start >= max_rows or band == len(ys) - 1:
            chunks.append((slice(start, end), cur))
            cur, start = [], end
    return chunks
