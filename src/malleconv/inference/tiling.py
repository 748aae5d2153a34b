"""Running a denoiser on a ``(B, C, H, W)`` batch, whole or in overlapping blended tiles.

:func:`denoise_tensor` runs a model on a tensor batch; :func:`stream_tiles` runs it on an
image that is read and written a tile at a time (what :func:`malleconv.inference.denoise`
does with big images, so that they never exist in float all at once).

Tiling. With ``tile=T`` the image is cut into ``T x T`` tiles that overlap by at least
``overlap`` pixels (tiles are spread evenly, so the last one ends exactly on the border and
every tile is full size when the image is at least ``T`` big). Each tile's output is
weighted by a separable window that is 1 inside and rises as a raised cosine over
``overlap`` pixels on every side that borders another tile (no ramp on image borders), and
the weighted outputs are summed into an output accumulator and normalised by the summed
weights. Where two ramps meet they add up to exactly 1, so tile borders, where a tile lacks
context, get almost no weight and no seam shows. Memory is bounded by one tile's
activations plus the output and weight accumulators.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

__all__ = ["COMMAND_OVERLAP", "COMMAND_TILE", "MIN_TILE", "ProgressFn", "check_tiling",
           "denoise_tensor", "model_device_dtype", "stream_tiles"]

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: called after each tile with the tiles done and their total."""


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with overlaps >= overlap."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    n = math.ceil((size - overlap) / stride)
    n = max(n, 2)
    # Evenly spread: the first tile starts at 0, the last one ends on the border.
    return [round(i * (size - tile) / (n - 1)) for i in range(n)]


def _ramp(n: int) -> torch.Tensor:
    """Raised cosine rising over ``n`` samples; ``ramp[i] + ramp[n - 1 - i] == 1``."""
    i = torch.arange(n, dtype=torch.float64)
    return 0.5 - 0.5 * torch.cos(math.pi * (i + 0.5) / n)


def _window(length: int, ramp: torch.Tensor, left: bool, right: bool) -> torch.Tensor:
    """Blending weights ``(length,)`` of a tile: 1, with ``ramp`` on the sides that border
    another tile (``left`` / ``right``)."""
    w = torch.ones(length, dtype=torch.float64)
    n = ramp.numel()
    if n:
        if left:
            w[:n] = ramp
        if right:
            w[length - n :] = torch.minimum(w[length - n :], ramp.flip(0))
    return w


# Smaller tiles are mostly border: the output would differ from a whole-image run.
MIN_TILE = 16

# The tile side and overlap of `malleconv denoise` and of the page (web/, through
# models/auto.json), so that both give the same pixels; the Python API runs whole images
# unless told. Chosen on speed and memory, side by side: docs/design.md (tile size).
COMMAND_TILE = 384
COMMAND_OVERLAP = 32


def check_tiling(tile, overlap) -> tuple[int | None, int]:
    """``tile`` and ``overlap`` as :func:`denoise_tensor` and ``denoise`` take them, checked:
    ``tile`` None or 0 (no tiling) or an integer of at least :data:`MIN_TILE`; ``overlap`` an
    integer in ``[0, tile // 2]`` (any integer >= 0 when not tiling).

    Returns:
        ``(tile or None, overlap)`` as ints.

    Raises:
        ValueError: either is not an integer (floats with no fraction pass; bools do not),
            or out of range; the message names the argument.
    """
    tile = None if tile is None else _integer("tile", tile)
    overlap = _integer("overlap", overlap)
    if not tile:
        if overlap < 0:
            raise ValueError(f"overlap must be at least 0, got {overlap}")
        return None, overlap
    if tile < MIN_TILE:
        raise ValueError(f"tile must be 0 or None (no tiling) or at least {MIN_TILE} pixels, "
                         f"got {tile}")
    if not 0 <= overlap <= tile // 2:
        raise ValueError(f"overlap must be in [0, tile // 2 = {tile // 2}], got {overlap}")
    return tile, overlap


def _integer(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not float(value).is_integer():
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of the first parameter of ``model`` (CPU float32 without any)."""
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def _sigma_part(sigma, ys: slice, xs: slice, device, dtype):
    """The part of ``sigma`` (float, ``(B,)`` tensor or ``(B, 1, H, W)`` map) for a tile."""
    if torch.is_tensor(sigma):
        if sigma.dim() == 4:
            sigma = sigma[..., ys, xs]
        return sigma.to(device, dtype)
    return float(sigma)


def denoise_tensor(
    model: nn.Module,
    noisy: torch.Tensor,
    sigma: float | torch.Tensor,
    *,
    tile: int | None = None,
    overlap: int = 32,
    progress: ProgressFn | None = None,
) -> torch.Tensor:
    """Run ``model`` on a batch, whole or in overlapping blended tiles.

    The model runs under :func:`torch.inference_mode`, in eval mode (a model in training
    mode is switched to eval for the call and back afterwards), on the device and dtype of
    its parameters; the result has the device and dtype of ``noisy``. The output is not
    clipped.

    Args:
        model: A denoiser ``model(noisy, sigma)`` (MalleNet, DnCNN, ...).
        noisy: ``(B, C, H, W)`` float tensor, values in [0, 1] (not clipped).
        sigma: Noise level in 8-bit units: a float, a ``(B,)`` tensor or a
            ``(B, 1, H, W)`` map. Models that are not conditioned on it ignore it.
        tile: Tile side in pixels (at least 16), or None (or 0) to run the whole image at once.
            Images no larger than a tile run whole; along a side shorter than ``tile`` the
            tile is as long as the side.
        overlap: Minimum overlap of neighbouring tiles, also the length of the blending
            ramp; ``0 <= overlap <= tile // 2``. It should exceed the distance over which
            the missing context at a tile border changes the output.
        progress: Called as ``progress(done, total)`` after each tile.

    Returns:
        The denoised ``(B, C, H, W)`` tensor.
    """
    if not torch.is_tensor(noisy) or noisy.dim() != 4:
        shape = tuple(noisy.shape) if torch.is_tensor(noisy) else type(noisy).__name__
        raise ValueError(f"noisy must be a (B, C, H, W) tensor, got {shape}")
    if not noisy.is_floating_point():
        raise TypeError(f"noisy must be a float tensor, got {noisy.dtype}")
    b, c, h, w = noisy.shape
    if h == 0 or w == 0 or b == 0:
        raise ValueError(f"cannot denoise an empty tensor of shape {tuple(noisy.shape)}")
    tile, overlap = check_tiling(tile, overlap)
    device, dtype = model_device_dtype(model)
    was_training = model.training
    model.eval()
    try:
        if tile is None or (h <= tile and w <= tile):
            with torch.inference_mode():
                everything = slice(None)
                sig = _sigma_part(sigma, everything, everything, device, dtype)
                out = model(_channels_last(noisy.to(device, dtype)), sig)
            if progress is not None:
                progress(1, 1)
            # A normal (not inference) tensor, so callers may modify it in place.
            return out.to(noisy.device, noisy.dtype).clone(memory_format=torch.contiguous_format)
        return _denoise_tiled(model, noisy, sigma, tile, overlap, progress, device, dtype)
    finally:
        model.train(was_training)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    # Models prepared for inference are channels-last (prepare.py); inputs in the same
    # layout spare a conversion inside every convolution.
    return x.contiguous(memory_format=torch.channels_last)


def _denoise_tiled(model, noisy, sigma, tile, overlap, progress, device, dtype):
    """:func:`denoise_tensor` of ``noisy (B, C, H, W)`` in tiles; returns ``(B, C_out, H, W)``."""
    b, _, h, w = noisy.shape
    acc_dtype = torch.float64 if noisy.dtype == torch.float64 else torch.float32
    out: list[torch.Tensor] = []

    def emit(y0: int, rows: torch.Tensor) -> None:
        if not out:
            out.append(
                torch.empty((b, rows.shape[1], h, w), dtype=noisy.dtype, device=noisy.device)
            )
        out[0][:, :, y0 : y0 + rows.shape[2]] = rows

    _blend_tiles(
        model,
        (h, w),
        lambda sy, sx: noisy[:, :, sy, sx],
        emit,
        sigma,
        tile,
        overlap,
        progress,
        device,
        dtype,
        acc_dtype,
        noisy.device,
    )
    return out[0]


def stream_tiles(
    model: nn.Module,
    size: tuple[int, int],
    read: Callable[[slice, slice], torch.Tensor],
    emit: Callable[[int, torch.Tensor], None],
    sigma: float | torch.Tensor,
    *,
    tile: int,
    overlap: int = 32,
    progress: ProgressFn | None = None,
    out_device: torch.device | str = "cpu",
) -> None:
    """Denoise an image of ``size = (H, W)`` that is read and written a tile at a time.

    For images that must never exist in float all at once: ``read(ys, xs)`` returns the
    float ``(B, C, th, tw)`` input of a tile (rows ``ys``, columns ``xs``), converted as it
    is read; ``emit(y0, rows)`` receives finished, blended output rows ``(B, C_out, n, W)``
    starting at row ``y0``, top to bottom, in float32 on ``out_device``. The model runs as
    in :func:`denoise_tensor` (eval mode, inference mode, its own device and dtype), tiles
    and blending as described in the module docstring; ``tile`` and ``overlap`` are not
    checked here.
    """
    device, dtype = model_device_dtype(model)
    was_training = model.training
    model.eval()
    try:
        _blend_tiles(
            model, size, read, emit, sigma, tile, overlap, progress, device, dtype,
            torch.float32, torch.device(out_device),
        )  # fmt: skip
    finally:
        model.train(was_training)


def _blend_tiles(
    model, size, read, emit, sigma, tile, overlap, progress, device, dtype, acc_dtype, out_device
) -> None:
    """Run ``model`` on overlapping tiles and hand out blended rows, top to bottom.

    ``read(ys, xs)`` returns the ``(B, C, th, tw)`` float input of a tile;
    ``emit(y0, rows)`` receives finished output rows ``(B, C_out, n, W)`` in order. Only
    one row of tiles is held at a time (plus the rows it shares with the next one), so
    the memory does not grow with the image: a 24-megapixel photo never exists in float.

    The blending weight of a tile is ``wy_i(y) * wx_j(x)`` (raised-cosine ramps over the
    overlaps), so the total weight at a pixel is separable, ``WY(y) * WX(x)``, and each
    row can be normalised as soon as no later tile touches it.
    """
    h, w = size
    ys, xs = _tile_starts(h, tile, overlap), _tile_starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    ramp = _ramp(overlap)
    wy = [_window(th, ramp, i > 0, i < len(ys) - 1) for i in range(len(ys))]
    wx = [_window(tw, ramp, j > 0, j < len(xs) - 1) for j in range(len(xs))]
    total_y = torch.zeros(h, dtype=torch.float64)
    total_x = torch.zeros(w, dtype=torch.float64)
    for y0, win in zip(ys, wy):
        total_y[y0 : y0 + th] += win
    for x0, win in zip(xs, wx):
        total_x[x0 : x0 + tw] += win
    inv_x = (1.0 / total_x).to(out_device, acc_dtype)
    wy = [win.to(out_device, acc_dtype).view(-1, 1) for win in wy]
    wx = [win.to(out_device, acc_dtype) for win in wx]
    total, done = len(ys) * len(xs), 0
    pending, pending_y0 = None, 0  # blended rows not yet final
    for i, y0 in enumerate(ys):
        sy = slice(y0, y0 + th)
        band = None
        for j, x0 in enumerate(xs):
            sx = slice(x0, x0 + tw)
            part = read(sy, sx).to(device, dtype)
            with torch.inference_mode():
                pred = model(_channels_last(part), _sigma_part(sigma, sy, sx, device, dtype))
            pred = pred.to(out_device, acc_dtype)
            if band is None:
                band = torch.zeros(pred.shape[:2] + (th, w), dtype=acc_dtype, device=out_device)
            band[..., sx] += pred * wx[j]
            done += 1
            if progress is not None:
                progress(done, total)
        band *= wy[i]
        if pending is not None:
            # Rows above this tile row are final; the rest overlap it.
            final = y0 - pending_y0
            _emit_rows(emit, pending_y0, pending[:, :, :final], total_y, inv_x)
            band[:, :, : pending.shape[2] - final] += pending[:, :, final:]
        pending, pending_y0 = band, y0
    _emit_rows(emit, pending_y0, pending, total_y, inv_x)


def _emit_rows(emit, y0: int, rows: torch.Tensor, total_y: torch.Tensor, inv_x: torch.Tensor):
    """Normalise blended ``rows (B, C, n, W)`` starting at row ``y0`` by the summed weights
    and hand them to ``emit``."""
    if rows.shape[2] == 0:
        return
    inv_y = (1.0 / total_y[y0 : y0 + rows.shape[2]]).to(rows.device, rows.dtype)
    emit(y0, rows * inv_y.view(-1, 1) * inv_x)
