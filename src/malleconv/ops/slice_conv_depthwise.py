"""Depthwise slice-and-conv (``C_in // groups == 1``) by a loop over the ``k*k`` taps.

For each tap, the tap's weights are multiplied with the shifted input. Large inputs on a
CPU work in cache-sized chunks of rows whose weights are one ``lerp`` of two
x-interpolated grid rows (bilinear interpolation is separable), forward and backward;
small inputs upsample one full-resolution weight map per tap. On CUDA with Triton
installed, one fused kernel per pass replaces the loop
(:mod:`malleconv.ops.slice_conv_triton`). Gradients are explicit, so no per-tap
intermediate is kept for the backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .grid_interp import grid_bands, upsample_into

__all__ = ["depthwise_slice_conv", "BANDED_MIN_NUMEL", "CHUNK_BYTES"]

Tensor = torch.Tensor

# Below this many elements the per-band Python loop costs more than it saves.
BANDED_MIN_NUMEL = 1 << 20
# Rows per chunk are chosen so that one chunk of a feature map is about this many bytes:
# the chunk's weights, input rows and output stay in cache across the k*k taps.
CHUNK_BYTES = 1 << 21


def _shift_regions(h: int, w: int, di: int, dj: int) -> tuple[tuple[slice, slice], ...]:
    """Where tap offset ``(di, dj)`` reads inside the image: ``(out_region, in_region)``.

    Pixels whose neighbour falls outside the image read zero padding and are skipped,
    which avoids materialising a padded copy of the input.
    """
    # Clamped at 0: a tap farther out than the image is long reads nothing (a negative
    # bound would count from the end).
    out = (slice(max(0, -di), max(0, h - max(0, di))), slice(max(0, -dj), max(0, w - max(0, dj))))
    src = (slice(max(0, di), max(0, h + min(0, di))), slice(max(0, dj), max(0, w + min(0, dj))))
    return out, src


def refuse_second_order() -> None:
    """Called first in slice_conv's backward passes. They compute explicit first-order
    gradients; under ``create_graph=True`` (grad mode on in a backward) the gradients would
    carry no graph back to the grid, and a second derivative would silently lack its terms."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            "slice_conv has first-order gradients only: differentiating its gradient "
            "(create_graph=True, e.g. a gradient penalty) is not supported; use "
            "malleconv.ops.slice_conv_reference, which autograd differentiates twice"
        )


def _tap_order(k: int) -> list[tuple[int, int]]:
    # The centre tap first: it covers every pixel, so it initialises the output.
    r = k // 2
    return [(r, r)] + [(i, j) for i in range(k) for j in range(k) if (i, j) != (r, r)]


class _DepthwiseSliceConv(torch.autograd.Function):
    """Unguided depthwise slice-and-conv by a loop over the ``k*k`` taps.

    x: ``(B, C, H, W)`` (already expanded for a channel multiplier);
    grid: ``(B, C, 1, k, k, gh, gw)`` -> ``(B, C, H, W)``.
    Extra memory: one tap's weight map; backward likewise, with explicit gradients (the
    adjoint of bilinear upsampling for the grid).
    """

    @staticmethod
    def forward(ctx, x, grid):
        ctx.save_for_backward(x, grid)
        # Cache-sized chunks pay on a CPU; on a GPU they only multiply kernel launches.
        if x.numel() >= BANDED_MIN_NUMEL and x.device.type == "cpu":
            return _banded_forward(x, grid)
        h, w = x.shape[-2:]
        k = grid.shape[3]
        r = k // 2
        fmt = _memory_format(x)
        out = torch.empty_like(x, memory_format=fmt)
        weight = torch.empty_like(out)
        for n, (i, j) in enumerate(_tap_order(k)):
            upsample_into(grid[:, :, 0, i, j].contiguous(memory_format=fmt), weight)
            (oy, ox), (sy, sx) = _shift_regions(h, w, i - r, j - r)
            if n == 0:
                torch.mul(weight, x, out=out)
            else:
                out[:, :, oy, ox].addcmul_(weight[:, :, oy, ox], x[:, :, sy, sx])
        return out

    @staticmethod
    def backward(ctx, grad_out):
        refuse_second_order()
        x, grid = ctx.saved_tensors
        need_x, need_grid = ctx.needs_input_grad[:2]
        if x.numel() >= BANDED_MIN_NUMEL and x.device.type == "cpu":
            return _banded_backward(x, grid, grad_out, need_x, need_grid)
        b, c, h, w = x.shape
        k, gh, gw = grid.shape[3], grid.shape[-2], grid.shape[-1]
        r = k // 2
        fmt = _memory_format(x)
        grad_out = grad_out.contiguous(memory_format=fmt)
        grad_x = grad_grid = None
        buf = torch.empty_like(grad_out)
        if need_grid:
            grad_grid = torch.zeros_like(grid)
        for n, (i, j) in enumerate(_tap_order(k)):
            (oy, ox), (sy, sx) = _shift_regions(h, w, i - r, j - r)
            if need_x:
                # d out[p] / d x[p + t] = W_t[p]: scatter the weighted gradient back.
                upsample_into(grid[:, :, 0, i, j].contiguous(memory_format=fmt), buf)
                if n == 0:
                    grad_x = buf * grad_out
                else:
                    grad_x[:, :, sy, sx].addcmul_(buf[:, :, oy, ox], grad_out[:, :, oy, ox])
            if need_grid:
                # d out[p] / d W_t[p] = x[p + t], then the adjoint of the upsampling.
                if n == 0:
                    torch.mul(grad_out, x, out=buf)
                else:
                    buf.zero_()
                    torch.mul(grad_out[:, :, oy, ox], x[:, :, sy, sx], out=buf[:, :, oy, ox])
                grad_grid[:, :, 0, i, j] = torch.ops.aten.upsample_bilinear2d_backward(
                    buf, [h, w], [b, c, gh, gw], False, None, None
                )
        return grad_x, grad_grid


def _x_interpolated(grid: Tensor, cells: slice, w: int, fmt: torch.memory_format) -> Tensor:
    """Some grid rows interpolated along x only.

    grid: ``(B, C, 1, k, k, gh, gw)`` -> ``(B, C, k*k, rows, W)`` for the grid rows
    ``cells``. Bilinear interpolation is separable, so a pixel's kernel is the linear
    interpolation along y of two of these rows. For channels-last inputs the result has
    channels innermost, so that a row broadcast over a chunk of pixels reads contiguously.
    """
    b, c, _, k, _, _, gw = grid.shape
    picked = grid[..., cells, :]
    n = picked.shape[-2]
    if fmt == torch.channels_last:
        # Transpose the small grid, not the interpolated rows: upsampling a channels-last
        # (B*k*k, C, n, gw) input gives channels-last (B*k*k, C, n, W) rows directly.
        per_tap = picked.reshape(b, c, k * k, n, gw).permute(0, 2, 3, 4, 1).contiguous()
        per_tap = per_tap.view(b * k * k, n, gw, c).permute(0, 3, 1, 2)
        rows = F.interpolate(per_tap, size=(n, w), mode="bilinear", align_corners=False)
        rows = rows.contiguous(memory_format=torch.channels_last)
        return rows.permute(0, 2, 3, 1).view(b, k * k, n, w, c).permute(0, 4, 1, 2, 3)
    flat = picked.reshape(b, c * k * k, n, gw)
    rows = F.interpolate(flat, size=(n, w), mode="bilinear", align_corners=False)
    return rows.view(b, c, k * k, n, w)


def _banded_forward(x: Tensor, grid: Tensor) -> Tensor:
    """Depthwise slice-and-conv forward in cache-sized chunks of rows.

    x: ``(B, C, H, W)``; grid: ``(B, C, 1, k, k, gh, gw)`` -> ``(B, C, H, W)``.
    Rows between the same two grid rows share two x-interpolated kernel rows, so a tap's
    weights for a chunk are one ``lerp`` of two broadcast rows: no full-resolution
    upsampling, and the chunk's weights, input and output stay in cache over all taps.
    Extra memory: the output, one chunk of weights and ``(B, C, k*k, 2, W)`` kernel rows.
    """
    b, c, h, w = x.shape
    k, gh = grid.shape[3], grid.shape[-2]
    r = k // 2
    fmt = _memory_format(x)
    cell0, cell1, starts, lengths, frac = grid_bands(h, gh)
    frac = frac.to(device=x.device, dtype=x.dtype)
    max_rows = max(1, CHUNK_BYTES // max(1, b * c * w * x.element_size()))
    out = torch.empty_like(x, memory_format=fmt)
    wbuf = torch.empty(b, c, min(max_rows, h), w, dtype=x.dtype, device=x.device)
    wbuf = wbuf.contiguous(memory_format=fmt)
    taps = _tap_order(k)
    for c0, c1, start, length in zip(
        cell0.tolist(), cell1.tolist(), starts.tolist(), lengths.tolist()
    ):
        rows = _x_interpolated(grid, slice(c0, c1 + 1), w, fmt)  # cells c0 and c1 -> 0, -1
        for y0 in range(start, start + length, max_rows):
            y1 = min(y0 + max_rows, start + length)
            fy = frac[y0:y1].view(1, 1, y1 - y0, 1)
            out_rows = out[:, :, y0:y1]
            for n, (i, j) in enumerate(taps):
                t, di, dj = i * k + j, i - r, j - r
                row0 = rows[:, :, t, 0].unsqueeze(2)
                if c0 == c1:
                    weight = row0
                else:
                    weight = wbuf[:, :, : y1 - y0]
                    torch.lerp(row0, rows[:, :, t, -1].unsqueeze(2), fy, out=weight)
                if n == 0:  # the centre tap covers every pixel: it initialises the output
                    torch.mul(weight, x[:, :, y0:y1], out=out_rows)
                    continue
                # Output rows of this chunk whose neighbour (di, dj) is inside the image.
                oy0, oy1 = max(y0, -di), min(y1, h - di)
                if oy1 <= oy0:
                    continue
                (_, ox), (_, sx) = _shift_regions(h, w, di, dj)
                wy = slice(oy0 - y0, oy1 - y0) if weight.shape[2] > 1 else slice(None)
                out_rows[:, :, oy0 - y0 : oy1 - y0, ox].addcmul_(
                    weight[:, :, wy, ox], x[:, :, oy0 + di : oy1 + di, sx]
                )
    return out


def _banded_backward(
    x: Tensor, grid: Tensor, grad_out: Tensor, need_x: bool, need_grid: bool
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of :func:`_banded_forward` in the same cache-sized chunks of rows.

    x, grad_out: ``(B, C, H, W)``; grid: ``(B, C, 1, k, k, gh, gw)``. Returns
    ``(grad_x, grad_grid)`` (None where not needed). Per chunk and tap, ``grad_x`` gathers
    the lerped weights times the output gradient (as the forward, transposed), and the
    products ``grad_out * shifted x`` are reduced over the chunk's rows with the y-weights
    ``(1 - fy, fy)`` in one matmul onto the two x-interpolated kernel rows; the adjoint of
    the x-interpolation then maps those rows back onto the grid. No full-resolution weight
    map is made: extra memory is a chunk of weights, a chunk of products and
    ``(B, C, k*k, gh, W)`` row gradients.
    """
    b, c, h, w = x.shape
    k, gh, gw = grid.shape[3], grid.shape[-2], grid.shape[-1]
    r, taps = k // 2, _tap_order(k)
    fmt = _memory_format(x)
    grad_out = grad_out.contiguous(memory_format=fmt)
    cell0, cell1, starts, lengths, frac = grid_bands(h, gh)
    frac = frac.to(device=x.device, dtype=x.dtype)
    # (H, 2): each row's weights on its two grid rows.
    y_weights = torch.stack([1 - frac, frac], dim=1)
    max_rows = max(1, CHUNK_BYTES // max(1, b * c * w * x.element_size()))
    chunk = min(max_rows, h)
    grad_x = torch.zeros_like(x, memory_format=fmt) if need_x else None
    wbuf = torch.empty(b, c, chunk, w, dtype=x.dtype, device=x.device).contiguous(memory_format=fmt)
    pbuf = torch.empty_like(wbuf) if need_grid else None
    # Gradient of the x-interpolated kernel rows, (B, gh, W, k*k, C): channels innermost,
    # as the matmul over a channels-last chunk yields them, and a channels-last
    # (B, k*k*C, gh, W) tensor for the adjoint of the interpolation.
    grad_rows = (
        torch.zeros(b, gh, w, k * k, c, dtype=x.dtype, device=x.device) if need_grid else None
    )
    for c0, c1, start, length in zip(
        cell0.tolist(), cell1.tolist(), starts.tolist(), lengths.tolist()
    ):
        rows = _x_interpolated(grid, slice(c0, c1 + 1), w, fmt) if need_x else None
        for y0 in range(start, start + length, max_rows):
            y1 = min(y0 + max_rows, start + length)
            n_rows = y1 - y0
            fy = frac[y0:y1].view(1, 1, n_rows, 1)
            for n, (i, j) in enumerate(taps):
                t, di, dj = i * k + j, i - r, j - r
                oy0, oy1 = max(y0, -di), min(y1, h - di)
                if oy1 <= oy0:
                    continue
                (_, ox), (_, sx) = _shift_regions(h, w, di, dj)
                wy = slice(oy0 - y0, oy1 - y0)
                g_part = grad_out[:, :, oy0:oy1, ox]
                x_part = x[:, :, oy0 + di : oy1 + di, sx]
                if need_x:
                    row0 = rows[:, :, t, 0].unsqueeze(2)
                    if c0 == c1:
                        weight = row0.expand(b, c, n_rows, w)
                    else:
                        weight = wbuf[:, :, :n_rows]
                        torch.lerp(row0, rows[:, :, t, -1].unsqueeze(2), fy, out=weight)
                    grad_x[:, :, oy0 + di : oy1 + di, sx].addcmul_(weight[:, :, wy, ox], g_part)
                if need_grid:
                    prod = pbuf[:, :, :n_rows]
                    if n:  # off-centre taps leave the border rows / column at zero
                        prod.zero_()
                    torch.mul(g_part, x_part, out=prod[:, :, wy, ox])
                    # Rows reduced by the (2, rows) y-weights -> (B, 2, W, C).
                    if fmt == torch.channels_last:
                        flat = prod.permute(0, 2, 3, 1).reshape(b, n_rows, w * c)
                        both = torch.matmul(y_weights[y0:y1].t(), flat).view(b, 2, w, c)
                    else:
                        flat = prod.reshape(b * c, n_rows, w)
                        both = torch.matmul(y_weights[y0:y1].t(), flat)
                        both = both.view(b, c, 2, w).permute(0, 2, 3, 1)
                    grad_rows[:, c0, :, t] += both[:, 0]
                    grad_rows[:, c1, :, t] += both[:, 1]
    grad_grid = None
    if need_grid:
        # Adjoint of the x-only interpolation (identity along y: gh rows to gh rows), on
        # channels (tap, C) in that order, then put back in the grid's (C, tap) order.
        per_row = grad_rows.permute(0, 3, 4, 1, 2).reshape(b, k * k * c, gh, w)
        per_cell = torch.ops.aten.upsample_bilinear2d_backward(
            per_row, [gh, w], [b, k * k * c, gh, gw], False, None, None
        )
        grad_grid = per_cell.reshape(b, k * k, c, gh, gw).transpose(1, 2)
        grad_grid = grad_grid.reshape(b, c, 1, k, k, gh, gw)
    return grad_x, grad_grid


def _memory_format(x: Tensor) -> torch.memory_format:
    if (
        x.dim() == 4
        and x.is_contiguous(memory_format=torch.channels_last)
        and not (x.is_contiguous())
    ):
        return torch.channels_last
    return torch.contiguous_format


def _triton_kernels():
    """:mod:`malleconv.ops.slice_conv_triton`, or None when Triton is not installed."""
    global _TRITON
    if _TRITON is None:
        try:
            from . import slice_conv_triton
        except ImportError:
            slice_conv_triton = False
        _TRITON = slice_conv_triton
    return _TRITON or None


_TRITON = None


def depthwise_slice_conv(x: Tensor, grid: Tensor) -> Tensor:
    """Depthwise (``C_in // groups == 1``) slice-and-conv, any channel multiplier."""
    mult = grid.shape[1] // x.shape[1]
    if mult > 1:
        # Output channel o reads input channel o // mult, as in conv2d with groups=C_in.
        x = x.repeat_interleave(mult, dim=1)
    # On a GPU the tap loop is k*k small kernel launches per pass: one fused kernel instead.
    if x.is_cuda and (kernels := _triton_kernels()) is not None:
        return kernels.depthwise_slice_conv(x, grid)
    return _DepthwiseSliceConv.apply(x, grid)
