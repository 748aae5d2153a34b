"""Slice-and-conv: apply a low-resolution grid of convolution kernels at full resolution.

Every output pixel gets its own ``k x k`` kernel, bilinearly interpolated from a
``gh x gw`` grid of kernels (and, for guided slicing, linearly along a depth axis
selected by a per-pixel guide value, as in a bilateral grid). The per-pixel kernels
are never materialised: that is what makes MalleConv cheap in memory.

Three evaluation strategies, all exact, each in its own module:

* **Fused kernel** (depthwise on CUDA with Triton installed): one Triton kernel per pass
  (:mod:`malleconv.ops.slice_conv_triton`).
* **Tap loop** (``C_in // groups == 1``: depthwise, with optional channel multiplier):
  the weights of each of the ``k*k`` taps times the shifted input, in cache-sized chunks
  of rows on a CPU (:mod:`malleconv.ops.slice_conv_depthwise`).
* **Tiled conv** (grouped and dense kernels): the 4 corner kernels of each band of pixels
  applied in one matmul and blended (:mod:`malleconv.ops.slice_conv_tiled`).

Guided slicing reduces to the unguided case: the depth weights depend only on the output
channel and pixel, so ``y = sum_d hat_d(z) * slice_conv(x, grid[..., d, :, :])``.

Both strategies run inside a custom autograd function that stores only its inputs and
recomputes chunk by chunk in backward, so training memory stays at a few feature maps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .grid_interp import upsample_bilinear
from .slice_conv_depthwise import depthwise_slice_conv, refuse_second_order
from .slice_conv_export import in_export_mode, standard_slice_conv
from .slice_conv_tiled import row_chunks, tiled_slice_conv_rows

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
    for name, t in (("grid", grid), ("bias", bias), ("guide", guide)):
        if isinstance(t, Tensor) and t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but x on {x.device}")
    if min(x.shape) < 1:
        raise ValueError(f"x must not have empty dimensions, got {_shape(x)}")
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
            if not bool(torch.isfinite(guide).all()):
                raise ValueError("guide contains NaN or infinite values")
            if guide.numel() and (guide.min() < 0 or guide.max() > 1):
                raise ValueError(
                    "guide values must lie in [0, 1] (clamp the guide first), got range "
                    f"[{guide.min().item():.4g}, {guide.max().item():.4g}]"
                )
    return c_out, k, gd, gh, gw


# --------------------------------------------------------------------------- reference


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
        return upsample_bilinear(bias, size)
    b, c, gd = bias.shape[:3]
    planes = upsample_bilinear(bias.reshape(b, c * gd, *bias.shape[-2:]), size)
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
        planes = upsample_bilinear(flat, (h, w)).reshape(b, c_out, cg_in * k * k, gd, h, w)
        dw = _depth_weights(guide, gd)  # (B, 1 or C_out, gd, H, W)
        kernels = (planes * dw.unsqueeze(2)).sum(3)
    else:
        flat = grid.reshape(b, c_out * cg_in * k * k, gh, gw)
        kernels = upsample_bilinear(flat, (h, w)).reshape(b, c_out, cg_in * k * k, h, w)
    kernels = kernels.reshape(b, groups, cg_out, cg_in * k * k, h * w)
    # Neighbourhoods (B, groups, C_in/g * k * k, H*W), ordered like conv2d weights.
    cols = F.unfold(x, k, padding=k // 2).reshape(b, groups, 1, cg_in * k * k, h * w)
    out = (kernels * cols).sum(3).reshape(b, c_out, h, w)
    if bias is not None:
        out = out + _slice_bias(bias, guide, (h, w))
    return out


# --------------------------------------------------------------------------- fast paths

# --------------------------------------------------------------------------- pieces


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
            return depthwise_slice_conv(xx, g)
        return tiled_slice_conv_rows(xx, g, groups, bands)

    if depthwise:
        row_pieces = [(all_rows, None)]
    else:
        # About 8 feature-map rows of unfolded neighbourhoods per piece keeps memory low.
        w = x.shape[3]
        cols = max(1, grid.shape[2] * grid.shape[3] ** 2 * w)
        max_rows = max(1, (4 << 20) // cols)
        row_pieces = row_chunks(h, grid.shape[-2], max_rows)

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
        refuse_second_order()
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
        While a graph is exported (:func:`~malleconv.ops.slice_conv_export.export_mode`)
        the same sum is written in standard operators (depthwise grids only).
    """
    if in_export_mode():
        # No argument checks: their shape tests would be recorded as guards on the size.
        return standard_slice_conv(x, grid, bias, groups=groups, guide=guide)
    check_slice_conv_args(x, grid, bias, groups, guide)
    guided = guide is not None
    if not guided and grid.shape[2] == 1:
        # The common MalleConv case has its own autograd function with explicit gradients.
        out = depthwise_slice_conv(x, grid)
        if bias is not None:
            out = out + upsample_bilinear(bias, tuple(x.shape[-2:]))
        return out
    pieces = _make_chunks(x, grid, groups, guided, bias is not None)
    return _SliceConvFunction.apply(pieces, x, grid, bias, guide)
