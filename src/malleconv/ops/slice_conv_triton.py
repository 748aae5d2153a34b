"""Fused depthwise slice-and-conv in Triton, forward and backward (CUDA).

One kernel per pass instead of a loop of ``k*k`` tap kernels: each program takes a block
of pixels of one ``(batch, channel)`` plane, interpolates every tap's weight from the
kernel grid in registers and sums the taps, so neither a per-pixel kernel nor a
full-resolution weight map is ever written to memory.

* forward: ``out(p) = sum_t w_t(p) x(p + o_t)``, zero padding;
* ``grad_x(q) = sum_t w_t(q - o_t) g(q - o_t)``, gathered (no atomics);
* ``grad_grid[t, cy, cx] = sum_p a_cy(p) b_cx(p) g(p) x(p + o_t)``: one program per grid
  cell and plane reduces the pixels of the cell's bilinear support (no atomics), where
  ``a``, ``b`` are the interpolation weights of the cell along y and x.

Interpolation follows ``F.interpolate(mode="bilinear", align_corners=False)``, as
:func:`malleconv.ops.slice_conv.slice_conv_reference` does. Computation is in float32
whatever the input dtype. :func:`malleconv.ops.slice_conv.slice_conv` selects this path
for unguided depthwise grids on CUDA when Triton is installed; the tests run the same
kernels on the CPU in Triton's interpreter (``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .slice_conv_depthwise import refuse_second_order

__all__ = ["depthwise_slice_conv"]

_BLOCK = 128  # pixels per program (forward, grad_x)
_TILE_H, _TILE_W = 8, 16  # pixel tile of the grad_grid reduction


@triton.jit
def _source(pos, n_out, n_cells):
    """Bilinear source cells and weight towards the second, align_corners=False."""
    # ``* 1.0``, not ``.to``: Triton passes a size of 1 as a compile-time constant.
    src = (pos.to(tl.float32) + 0.5) * (n_cells * 1.0 / n_out) - 0.5
    src = tl.maximum(src, 0.0)
    i0 = tl.minimum(src.to(tl.int32), n_cells - 1)
    i1 = tl.minimum(i0 + 1, n_cells - 1)
    frac = tl.minimum(tl.maximum(src - i0.to(tl.float32), 0.0), 1.0)
    return i0, i1, frac


@triton.jit
def _pixel_block(H, W, BLOCK: tl.constexpr):
    """This program's block of flat pixel indices, which are inside, and their rows, columns."""
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    return offs, offs < H * W, offs // W, offs % W


@triton.jit
def _tap_neighbours(y, x, inside, taps, tap_ok, SIGN: tl.constexpr, H, W, K: tl.constexpr):
    """Pixels ``(y, x) + SIGN * o_t`` for every tap ``t`` (``(KK_PAD, N)``) and which of them
    are real pixels of the image (the others read zero padding)."""
    ny = y[None, :] + SIGN * (taps // K - K // 2)[:, None]
    nx = x[None, :] + SIGN * (taps % K - K // 2)[:, None]
    valid = tap_ok[:, None] & inside[None, :] & (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
    return ny, nx, valid


@triton.jit
def _tap_weights(grid_plane, taps, tap_ok, y, x, mask, H, W, GH, GW):
    """Interpolated weights ``(KK_PAD, N)`` of every tap at pixels ``(y, x)`` (2-D)."""
    y0, y1, fy = _source(y, H, GH)
    x0, x1, fx = _source(x, W, GW)
    base = grid_plane + taps[:, None] * (GH * GW)
    m = tap_ok[:, None] & mask
    g00 = tl.load(base + y0 * GW + x0, mask=m, other=0.0).to(tl.float32)
    g01 = tl.load(base + y0 * GW + x1, mask=m, other=0.0).to(tl.float32)
    g10 = tl.load(base + y1 * GW + x0, mask=m, other=0.0).to(tl.float32)
    g11 = tl.load(base + y1 * GW + x1, mask=m, other=0.0).to(tl.float32)
    top = g00 + (g01 - g00) * fx
    bottom = g10 + (g11 - g10) * fx
    return top + (bottom - top) * fy


@triton.jit
def _forward_kernel(
    x_ptr, grid_ptr, out_ptr, H, W, GH, GW, K: tl.constexpr, KK_PAD: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    plane = tl.program_id(0)
    offs, inside, y, x = _pixel_block(H, W, BLOCK)
    taps = tl.arange(0, KK_PAD)
    tap_ok = taps < K * K
    ny, nx, valid = _tap_neighbours(y, x, inside, taps, tap_ok, 1, H, W, K)
    x_plane = x_ptr + plane.to(tl.int64) * H * W
    xv = tl.load(x_plane + ny * W + nx, mask=valid, other=0.0).to(tl.float32)
    grid_plane = grid_ptr + plane.to(tl.int64) * (K * K) * GH * GW
    w = _tap_weights(
        grid_plane, taps, tap_ok, y[None, :], x[None, :], inside[None, :], H, W, GH, GW
    )
    out = tl.sum(w * xv, axis=0)
    tl.store(out_ptr + plane.to(tl.int64) * H * W + offs, out, mask=inside)


@triton.jit
def _grad_x_kernel(
    g_ptr, grid_ptr, gx_ptr, H, W, GH, GW, K: tl.constexpr, KK_PAD: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    plane = tl.program_id(0)
    offs, inside, y, x = _pixel_block(H, W, BLOCK)
    taps = tl.arange(0, KK_PAD)
    tap_ok = taps < K * K
    # Pixel p = q - o_t read x at q through tap t.
    py, px, valid = _tap_neighbours(y, x, inside, taps, tap_ok, -1, H, W, K)
    g_plane = g_ptr + plane.to(tl.int64) * H * W
    gv = tl.load(g_plane + py * W + px, mask=valid, other=0.0).to(tl.float32)
    grid_plane = grid_ptr + plane.to(tl.int64) * (K * K) * GH * GW
    w = _tap_weights(grid_plane, taps, tap_ok, py, px, valid, H, W, GH, GW)
    out = tl.sum(w * gv, axis=0)
    tl.store(gx_ptr + plane.to(tl.int64) * H * W + offs, out, mask=inside)


@triton.jit
def _grad_grid_kernel(
    g_ptr, x_ptr, gg_ptr, H, W, GH, GW, K: tl.constexpr, KK_PAD: tl.constexpr,
    TILE_H: tl.constexpr, TILE_W: tl.constexpr,
):  # fmt: skip
    plane = tl.program_id(0)
    cell = tl.program_id(1)
    cy, cx = cell // GW, cell % GW
    # A window of pixels holding the cell's bilinear support, with a margin (pixels
    # outside the support get a zero weight below).
    sy = H * 1.0 / GH
    sx = W * 1.0 / GW
    y_start = tl.maximum(((cy - 1).to(tl.float32) * sy - 1.0).to(tl.int32), 0)
    y_end = tl.minimum(((cy + 2).to(tl.float32) * sy + 2.0).to(tl.int32), H)
    x_start = tl.maximum(((cx - 1).to(tl.float32) * sx - 1.0).to(tl.int32), 0)
    x_end = tl.minimum(((cx + 2).to(tl.float32) * sx + 2.0).to(tl.int32), W)
    taps = tl.arange(0, KK_PAD)
    tap_ok = taps < K * K
    lane = tl.arange(0, TILE_H * TILE_W)
    g_plane = g_ptr + plane.to(tl.int64) * H * W
    x_plane = x_ptr + plane.to(tl.int64) * H * W
    acc = tl.zeros((KK_PAD, TILE_H * TILE_W), dtype=tl.float32)
    for ty in range(y_start, y_end, TILE_H):
        for tx in range(x_start, x_end, TILE_W):
            y = ty + lane // TILE_W
            x = tx + lane % TILE_W
            inside = (y < y_end) & (x < x_end)
            y0, y1, fy = _source(y, H, GH)
            x0, x1, fx = _source(x, W, GW)
            wy = tl.where(y0 == cy, 1.0 - fy, 0.0) + tl.where(y1 == cy, fy, 0.0)
            wx = tl.where(x0 == cx, 1.0 - fx, 0.0) + tl.where(x1 == cx, fx, 0.0)
            gv = tl.load(g_plane + y * W + x, mask=inside, other=0.0).to(tl.float32)
            weighted = gv * wy * wx
            ny, nx, valid = _tap_neighbours(y, x, inside, taps, tap_ok, 1, H, W, K)
            xv = tl.load(x_plane + ny * W + nx, mask=valid, other=0.0).to(tl.float32)
            acc += xv * weighted[None, :]
    total = tl.sum(acc, axis=1)
    out = gg_ptr + (plane.to(tl.int64) * (K * K) + taps) * GH * GW + cy * GW + cx
    tl.store(out, total, mask=tap_ok)


def _launch_shape(x: torch.Tensor, grid: torch.Tensor):
    b, c, h, w = x.shape
    k, gh, gw = grid.shape[3], grid.shape[-2], grid.shape[-1]
    kk_pad = triton.next_power_of_2(k * k)
    return b, c, h, w, k, gh, gw, kk_pad


class _TritonDepthwiseSliceConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, grid):
        x, grid = x.contiguous(), grid.contiguous()
        b, c, h, w, k, gh, gw, kk_pad = _launch_shape(x, grid)
        out = torch.empty_like(x)
        launch = (b * c, triton.cdiv(h * w, _BLOCK))
        _forward_kernel[launch](x, grid, out, h, w, gh, gw, K=k, KK_PAD=kk_pad, BLOCK=_BLOCK)
        ctx.save_for_backward(x, grid)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        refuse_second_order()
        x, grid = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        b, c, h, w, k, gh, gw, kk_pad = _launch_shape(x, grid)
        grad_x = grad_grid = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.empty_like(x)
            launch = (b * c, triton.cdiv(h * w, _BLOCK))
            _grad_x_kernel[launch](
                grad_out, grid, grad_x, h, w, gh, gw, K=k, KK_PAD=kk_pad, BLOCK=_BLOCK
            )
        if ctx.needs_input_grad[1]:
            grad_grid = torch.empty(grid.shape, dtype=torch.float32, device=grid.device)
            _grad_grid_kernel[(b * c, gh * gw)](
                grad_out, x, grad_grid, h, w, gh, gw, K=k, KK_PAD=kk_pad,
                TILE_H=_TILE_H, TILE_W=_TILE_W,
            )  # fmt: skip
            grad_grid = grad_grid.to(grid.dtype)
        return grad_x, grad_grid


def depthwise_slice_conv(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Unguided depthwise slice-and-conv by the fused kernels.

    x: ``(B, C, H, W)``; grid: ``(B, C, 1, k, k, gh, gw)`` (one kernel per channel, as
    after a channel multiplier's ``repeat_interleave``) -> ``(B, C, H, W)``.
    """
    if grid.shape[2] != 1 or grid.shape[1] != x.shape[1]:
        raise ValueError(
            f"depthwise_slice_conv needs grid (B, C, 1, k, k, gh, gw) with C = {x.shape[1]}, "
            f"got {tuple(grid.shape)}"
        )
    return _TritonDepthwiseSliceConv.apply(x, grid)
