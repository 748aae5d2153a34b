"""Slice-and-conv: apply a low-resolution grid of convolution kernels at full resolution.

Every output pixel gets its own ``k x k`` kernel, bilinearly interpolated from a
``gh x gw`` grid of kernels (and, for guided slicing, linearly along a depth axis
selected by a per-pixel guide value, as in a bilateral grid). The per-pixel kernels
are never materialised: that is what makes MalleConv cheap in memory.

Three evaluation strategies, all exact:

* **Fused kernel** (depthwise on CUDA with Triton installed): one Triton kernel per pass
  (:mod:`malleconv.ops.slice_conv_triton`).
* **Tap loop** (``C_in // groups == 1``: depthwise, with optional channel multiplier).
  For each of the ``k*k`` taps, the tap's weights are multiplied with the shifted input.
  Large inputs work in cache-sized chunks of rows whose weights are one ``lerp`` of two
  x-interpolated grid rows (bilinear interpolation is separable), forward and backward;
  small inputs upsample one full-resolution weight map per tap with ``F.interpolate``.
* **Tiled conv** (grouped and dense kernels). Bilinear interpolation is linear in the
  kernel, so ``y(p) = sum_corners w_corner(p) * (K_corner conv x)(p)``. Pixels that share
  the same pair of neighbouring cells form a band; each band is convolved with the 4
  corner kernels in one grouped ``conv2d`` over all tiles, and the results are blended.

Guided slicing reduces to the unguided case: the depth weights depend only on the output
channel and pixel, so ``y = sum_d hat_d(z) * slice_conv(x, grid[..., d, :, :])``.

Both strategies run inside a custom autograd function that stores only its inputs and
recomputes chunk by chunk in backward, so training memory stays at a few feature maps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["slice_conv", "slice_conv_reference", "check_slice_conv_args"]

Tensor = torch.Tensor


# --------------------------------------------------------------------------- validation


def _shape(t: Tensor | None) -> str:
    return "None" if t is None else str(tuple(t.shape))


def check_slice_conv_args(
    x: Tensor, grid: Tensor, bias: Tensor | None, groups: int, guide: Tensor | None
) -> tuple[int, int, int, int, int]:
    """Validate the arguments of :func:`slice_conv`.

    Returns ``(c_out, k, gd, gh, gw)`` with ``gd = 0`` for unguided slicing.
    Raises ``ValueError`` naming the offending argument and the expected shape.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x))}")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, C_in, H, W), got {_shape(x)}")
    if not isinstance(grid, Tensor) or not grid.is_floating_point():
        raise ValueError(
            f"grid must be a floating-point tensor, got {getattr(grid, 'dtype', type(grid))}"
        )
    if grid.dtype != x.dtype:
        raise ValueError(f"grid dtype {grid.dtype} must match x dtype {x.dtype}")
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    b, c_in, h, w = x.shape
    if c_in % groups != 0:
        raise ValueError(f"x has C_in={c_in} channels, not divisible by groups={groups}")
    guided = guide is not None
    want_dims = 8 if guided else 7
    expected = (
        "(B, C_out, C_in // groups, k, k, gd, gh, gw)"
        if guided
        else "(B, C_out, C_in // groups, k, k, gh, gw)"
    )
    if grid.dim() != want_dims:
        raise ValueError(
            f"grid must have shape {expected} = (B={b}, C_out, {c_in // groups}, k, k, ...)"
            f"{' (guided slicing)' if guided else ''}, got {_shape(grid)}"
        )
    c_out = grid.shape[1]
    k = grid.shape[3]
    if grid.shape[0] != b or grid.shape[2] != c_in // groups or grid.shape[4] != k:
        raise ValueError(
            f"grid must have shape {expected} with B={b}, C_in // groups={c_in // groups} and "
            f"a square kernel, got {_shape(grid)}"
        )
    if k % 2 != 1:
        raise ValueError(f"grid kernel size k must be odd, got k={k} (grid {_shape(grid)})")
    if c_out % groups != 0:
        raise ValueError(f"grid has C_out={c_out}, not divisible by groups={groups}")
    gd = grid.shape[5] if guided else 0
    gh, gw = grid.shape[-2], grid.shape[-1]
    if min(grid.shape) < 1:
        raise ValueError(f"grid must not have empty dimensions, got {_shape(grid)}")
    if bias is not None:
        if not isinstance(bias, Tensor) or bias.dtype != x.dtype:
            raise ValueError(f"bias must be a tensor of dtype {x.dtype}")
        ok = tuple(bias.shape) == (b, c_out, gh, gw) or (
            guided and tuple(bias.shape) == (b, c_out, gd, gh, gw)
        )
        if not ok:
            extra = f" or (B, C_out, gd, gh, gw) = {(b, c_out, gd, gh, gw)}" if guided else ""
            raise ValueError(
                f"bias must have shape (B, C_out, gh, gw) = {(b, c_out, gh, gw)}{extra}, "
                f"got {_shape(bias)}"
            )
    if guided:
        if not isinstance(guide, Tensor) or guide.dtype != x.dtype:
            raise ValueError(f"guide must be a tensor of dtype {x.dtype}")
        if (
            guide.dim() != 4
            or guide.shape[0] != b
            or guide.shape[2:] != x.shape[2:]
            or (guide.shape[1] not in (1, c_out))
        ):
            raise ValueError(
                f"guide must have shape (B, 1, H, W) = {(b, 1, h, w)} or (B, C_out, H, W) = "
                f"{(b, c_out, h, w)}, got {_shape(guide)}"
            )
        with torch.no_grad():
            if guide.numel() and (guide.min() < 0 or guide.max() > 1):
                raise ValueError(
                    "guide values must lie in [0, 1] (clamp the guide first), got range "
                    f"[{guide.min().item():.4g}, {guide.max().item():.4g}]"
                )
    return c_out, k, gd, gh, gw


# --------------------------------------------------------------------------- reference


def _upsample(t: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear, align_corners=False upsampling of ``(N, C, gh, gw)`` to ``(N, C, H, W)``."""
    if t.shape[-2:] == size:
        return t
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)


def _depth_weights(guide: Tensor, gd: int) -> Tensor:
    """Linear-interpolation weights along depth.

    guide: ``(B, G, H, W)`` in [0, 1] -> ``(B, G, gd, H, W)``; the weight of plane ``d``
    is ``max(0, 1 - |z - d|)`` with ``z = clamp(guide * gd - 0.5, 0, gd - 1)``, which is
    exactly linear interpolation between planes ``floor(z)`` and ``floor(z) + 1``.
    """
    z = (guide * gd - 0.5).clamp(0, gd - 1)
    planes = torch.arange(gd, device=guide.device, dtype=guide.dtype).view(1, 1, gd, 1, 1)
    return (1 - (z.unsqueeze(2) - planes).abs()).clamp_min(0)


def _slice_bias(bias: Tensor, guide: Tensor | None, size: tuple[int, int]) -> Tensor:
    """Per-pixel bias ``(B, C_out, H, W)`` from ``(B, C_out, gh, gw)`` or, guided,
    ``(B, C_out, gd, gh, gw)``."""
    if bias.dim() == 4:
        return _upsample(bias, size)
    b, c, gd = bias.shape[:3]
    planes = _upsample(bias.reshape(b, c * gd, *bias.shape[-2:]), size)
    return (planes.view(b, c, gd, *size) * _depth_weights(guide, gd)).sum(2)


def slice_conv_reference(
    x: Tensor,
    grid: Tensor,
    bias: Tensor | None = None,
    *,
    groups: int = 1,
    guide: Tensor | None = None,
) -> Tensor:
    """Readable definition of :func:`slice_conv` that builds every per-pixel kernel.

    Memory is ``O(C_out * C_in/groups * k * k * H * W)``: use it for tests only.
    """
    c_out, k, gd, gh, gw = check_slice_conv_args(x, grid, bias, groups, guide)
    b, c_in, h, w = x.shape
    cg_in = c_in // groups
    cg_out = c_out // groups
    # Per-pixel kernels (B, C_out, C_in/g, k*k, H, W).
    if gd:
        flat = grid.reshape(b, c_out * cg_in * k * k * gd, gh, gw)
        planes = _upsample(flat, (h, w)).reshape(b, c_out, cg_in * k * k, gd, h, w)
        dw = _depth_weights(guide, gd)  # (B, 1 or C_out, gd, H, W)
        kernels = (planes * dw.unsqueeze(2)).sum(3)
    else:
        flat = grid.reshape(b, c_out * cg_in * k * k, gh, gw)
        kernels = _upsample(flat, (h, w)).reshape(b, c_out, cg_in * k * k, h, w)
    kernels = kernels.reshape(b, groups, cg_out, cg_in * k * k, h * w)
    # Neighbourhoods (B, groups, C_in/g * k * k, H*W), ordered like conv2d weights.
    cols = F.unfold(x, k, padding=k // 2).reshape(b, groups, 1, cg_in * k * k, h * w)
    out = (kernels * cols).sum(3).reshape(b, c_out, h, w)
    if bias is not None:
        out = out + _slice_bias(bias, guide, (h, w))
    return out


# --------------------------------------------------------------------------- fast paths


def _upsample_into(t: Tensor, out: Tensor) -> Tensor:
    """Bilinear (align_corners=False) upsampling of ``t`` into the preallocated ``out``.

    Writing into a reused buffer matters: a fresh full-resolution allocation per tap costs
    more (page faults) than the interpolation itself.
    """
    return torch._C._nn.upsample_bilinear2d(t, tuple(out.shape[-2:]), False, None, None, out=out)


def _shift_regions(h: int, w: int, di: int, dj: int) -> tuple[tuple[slice, slice], ...]:
    """Where tap offset ``(di, dj)`` reads inside the image: ``(out_region, in_region)``.

    Pixels whose neighbour falls outside the image read zero padding and are skipped,
    which avoids materialising a padded copy of the input.
    """
    out = (slice(max(0, -di), h - max(0, di)), slice(max(0, -dj), w - max(0, dj)))
    src = (slice(max(0, di), h + min(0, di)), slice(max(0, dj), w + min(0, dj)))
    return out, src


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
        if x.numel() >= _BANDED_MIN_NUMEL and x.device.type == "cpu":
            return _depthwise_banded(x, grid)
        h, w = x.shape[-2:]
        k = grid.shape[3]
        r = k // 2
        fmt = _memory_format(x)
        out = torch.empty_like(x, memory_format=fmt)
        weight = torch.empty_like(out)
        for n, (i, j) in enumerate(_tap_order(k)):
            _upsample_into(grid[:, :, 0, i, j].contiguous(memory_format=fmt), weight)
            (oy, ox), (sy, sx) = _shift_regions(h, w, i - r, j - r)
            if n == 0:
                torch.mul(weight, x, out=out)
            else:
                out[:, :, oy, ox].addcmul_(weight[:, :, oy, ox], x[:, :, sy, sx])
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, grid = ctx.saved_tensors
        need_x, need_grid = ctx.needs_input_grad[:2]
        if x.numel() >= _BANDED_MIN_NUMEL and x.device.type == "cpu":
            return _depthwise_banded_backward(x, grid, grad_out, need_x, need_grid)
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
                _upsample_into(grid[:, :, 0, i, j].contiguous(memory_format=fmt), buf)
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


# Below this many elements the per-band Python loop costs more than it saves.
_BANDED_MIN_NUMEL = 1 << 20
# Rows per chunk are chosen so that one chunk of a feature map is about this many bytes:
# the chunk's weights, input rows and output stay in cache across the k*k taps.
_CHUNK_BYTES = 1 << 21


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


def _depthwise_banded(x: Tensor, grid: Tensor) -> Tensor:
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
    cell0, cell1, starts, lengths, frac = _bands(h, gh)
    frac = frac.to(device=x.device, dtype=x.dtype)
    max_rows = max(1, _CHUNK_BYTES // max(1, b * c * w * x.element_size()))
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


def _depthwise_banded_backward(
    x: Tensor, grid: Tensor, grad_out: Tensor, need_x: bool, need_grid: bool
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of :func:`_depthwise_banded` in the same cache-sized chunks of rows.

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
    cell0, cell1, starts, lengths, frac = _bands(h, gh)
    frac = frac.to(device=x.device, dtype=x.dtype)
    # (H, 2): each row's weights on its two grid rows.
    y_weights = torch.stack([1 - frac, frac], dim=1)
    max_rows = max(1, _CHUNK_BYTES // max(1, b * c * w * x.element_size()))
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


def _depthwise(x: Tensor, grid: Tensor) -> Tensor:
    """Depthwise (``C_in // groups == 1``) slice-and-conv, any channel multiplier."""
    mult = grid.shape[1] // x.shape[1]
    if mult > 1:
        # Output channel o reads input channel o // mult, as in conv2d with groups=C_in.
        x = x.repeat_interleave(mult, dim=1)
    # On a GPU the tap loop is k*k small kernel launches per pass: one fused kernel instead.
    if x.is_cuda and (kernels := _triton_kernels()) is not None:
        return kernels.depthwise_slice_conv(x, grid)
    return _DepthwiseSliceConv.apply(x, grid)


def _bands(n: int, cells: int) -> tuple[Tensor, ...]:
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


def _dense_rows(x: Tensor, grid: Tensor, groups: int, bands: Sequence[int]) -> Tensor:
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
    y0, y1, ys, yl, yf = _bands(h, gh)
    x0, x1, xs, xl, xf = _bands(w, gw)
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


def _row_chunks(h: int, gh: int, max_rows: int) -> list[tuple[slice, list[int]]]:
    """Group consecutive row bands into chunks of about ``max_rows`` rows."""
    _, _, ys, yl, _ = _bands(h, gh)
    chunks, cur, start = [], [], 0
    for band in range(len(ys)):
        cur.append(band)
        end = int(ys[band] + yl[band])
        if end - start >= max_rows or band == len(ys) - 1:
            chunks.append((slice(start, end), cur))
            cur, start = [], end
    return chunks


Chunk = Callable[[Tensor, Tensor, "Tensor | None", "Tensor | None"], Tensor]


def _make_chunks(
    x: Tensor, grid: Tensor, groups: int, guided: bool, has_bias: bool
) -> list[tuple[slice, Chunk]]:
    """Pieces ``(rows, f)`` of the output: ``out[..., rows, :] += f(x, grid, bias, guide)``.

    The backward recomputes one piece at a time, so a piece's intermediates are the only
    extra memory held at once.
    """
    h = x.shape[2]
    gd = grid.shape[5] if guided else 0
    depthwise = grid.shape[2] == 1
    all_rows = slice(0, h)

    def unguided(g: Tensor, xx: Tensor, rows: slice, bands: list[int] | None) -> Tensor:
        if depthwise:
            return _depthwise(xx, g)
        return _dense_rows(xx, g, groups, bands)

    if depthwise:
        row_pieces = [(all_rows, None)]
    else:
        # About 8 feature-map rows of unfolded neighbourhoods per piece keeps memory low.
        w = x.shape[3]
        cols = max(1, grid.shape[2] * grid.shape[3] ** 2 * w)
        max_rows = max(1, (4 << 20) // cols)
        row_pieces = _row_chunks(h, grid.shape[-2], max_rows)

    pieces: list[tuple[slice, Chunk]] = []
    for rows, bands in row_pieces:
        if guided:
            for d in range(gd):

                def f(xx, gg, bb, guide, rows=rows, bands=bands, d=d):
                    y = unguided(gg.select(5, d), xx, rows, bands)
                    return y * _depth_weights(guide[..., rows, :], gd).select(2, d)

                pieces.append((rows, f))
        else:

            def f(xx, gg, bb, guide, rows=rows, bands=bands):
                return unguided(gg, xx, rows, bands)

            pieces.append((rows, f))

    if has_bias:

        def bias_piece(xx, gg, bias, guide):
            return _slice_bias(bias, guide, tuple(xx.shape[-2:]))

        pieces.append((all_rows, bias_piece))
    return pieces


class _SliceConvFunction(torch.autograd.Function):
    """Sum of output pieces; backward recomputes one piece at a time.

    Saving only the inputs (not per-piece intermediates) keeps the memory of a
    forward+backward at a few feature maps.
    """

    @staticmethod
    def forward(ctx, pieces, x, grid, bias, guide):
        ctx.pieces = pieces
        ctx.save_for_backward(x, grid, bias, guide)
        b, _, h, w = x.shape
        out = x.new_zeros(b, grid.shape[1], h, w)
        for rows, f in pieces:
            out[:, :, rows].add_(f(x, grid, bias, guide))
        return out

    @staticmethod
    def backward(ctx, grad_out):
        inputs = list(ctx.saved_tensors)
        needs = ctx.needs_input_grad[1:]
        leaves = [
            t.detach().requires_grad_(bool(n)) if t is not None else None
            for t, n in zip(inputs, needs)
        ]
        wrt_idx = [i for i, (t, n) in enumerate(zip(leaves, needs)) if t is not None and n]
        grads: list[Tensor | None] = [None] * 4
        for rows, f in ctx.pieces:
            with torch.enable_grad():
                y = f(*leaves)
            if not y.requires_grad:
                continue
            parts = torch.autograd.grad(
                y, [leaves[i] for i in wrt_idx], grad_out[:, :, rows], allow_unused=True
            )
            for i, g in zip(wrt_idx, parts):
                if g is not None:
                    grads[i] = g if grads[i] is None else grads[i].add_(g)
        return (None, *grads)


def slice_conv(
    x: Tensor,
    grid: Tensor,
    bias: Tensor | None = None,
    *,
    groups: int = 1,
    guide: Tensor | None = None,
) -> Tensor:
    """Apply a low-resolution grid of kernels to every pixel of ``x`` (slice-and-conv).

    Args:
        x: ``(B, C_in, H, W)`` input feature map.
        grid: ``(B, C_out, C_in // groups, k, k, gh, gw)`` kernels (odd ``k``), or with
            guided slicing ``(B, C_out, C_in // groups, k, k, gd, gh, gw)``.
        bias: ``(B, C_out, gh, gw)`` (or ``(B, C_out, gd, gh, gw)`` when guided) or None.
        groups: as in :func:`torch.nn.functional.conv2d`.
        guide: ``(B, 1, H, W)`` or ``(B, C_out, H, W)`` values in [0, 1] selecting the
            depth of a bilateral grid, or None.

    Returns:
        ``(B, C_out, H, W)``. The kernel at pixel ``(y, x)`` is the bilinear
        (``align_corners=False``) interpolation of the grid at that pixel, applied as a
        cross-correlation with zero padding ``k // 2``; a grid whose cells all hold the
        same kernel gives exactly ``conv2d``. Per-pixel kernels are never stored: the
        extra memory is a few feature maps, in the forward and in the backward.
    """
    check_slice_conv_args(x, grid, bias, groups, guide)
    guided = guide is not None
    if not guided and grid.shape[2] == 1:
        # The common MalleConv case has its own autograd function with explicit gradients.
        out = _depthwise(x, grid)
        if bias is not None:
            out = out + _upsample(bias, tuple(x.shape[-2:]))
        return out
    pieces = _make_chunks(x, grid, groups, guided, bias is not None)
    return _SliceConvFunction.apply(pieces, x, grid, bias, guide)
