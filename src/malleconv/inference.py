"""Denoising images with a trained model: noise-level estimation, tiled inference, a
one-call API for numpy arrays and torch tensors.

Public functions::

    estimate_sigma(image) -> float             # noise std in 8-bit units (wavelet MAD)
    denoise_tensor(model, noisy, sigma, ...)    # (B, C, H, W) -> (B, C, H, W), optional tiles
    denoise(image, sigma=None, model=..., ...)  # array / tensor in, same kind, dtype, shape out

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

import functools
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .io import from_float, to_float
from .models.precision import Autocast, check_precision

__all__ = [
    "DEFAULT_BLIND_MODEL",
    "DEFAULT_MODEL",
    "SIGMA_MAX",
    "default_model",
    "denoise",
    "denoise_tensor",
    "estimate_sigma",
    "is_blind",
]

SIGMA_MAX = 75.0
"""Largest noise level (8-bit units) the models are trained for and the API accepts."""

# Median absolute deviation of a standard normal variable: MAD / 0.6745 estimates the std.
_MAD_TO_STD = 0.6745

ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# Noise level estimation


def _planes(image: np.ndarray | torch.Tensor) -> Iterator[np.ndarray]:
    """Colour planes of ``image`` as float32 ``H x W`` arrays (alpha channels dropped).

    One plane at a time, so that a big image never exists in float all at once.
    """
    if torch.is_tensor(image):
        t = image.detach()
        if t.dim() == 2:
            t = t[None]
        if t.dim() == 3:
            t = t[None]
        if t.dim() != 4:
            raise ValueError(
                f"estimate_sigma expects an H x W, (C, H, W) or (B, C, H, W) tensor, "
                f"got shape {tuple(image.shape)}"
            )
        if t.shape[1] in (2, 4):  # gray + alpha, RGBA: the last channel is alpha
            t = t[:, :-1]
        for i in range(t.shape[0]):
            for c in range(t.shape[1]):
                plane = t[i, c]
                if not plane.is_floating_point():
                    plane = plane.float() / (255.0 if plane.dtype == torch.uint8 else 65535.0)
                yield plane.to("cpu", torch.float32).numpy()
        return
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(
            f"estimate_sigma expects an H x W or H x W x C (C in 1..4) array, got shape {arr.shape}"
        )
    if arr.shape[2] in (2, 4):
        arr = arr[:, :, :-1]
    for c in range(arr.shape[2]):
        yield to_float(arr[:, :, c])


def _plane_sigma(plane: np.ndarray) -> float:
    h, w = plane.shape
    h, w = h - h % 2, w - w % 2
    if h < 2 or w < 2:
        return 0.0
    x = plane[:h, :w].astype(np.float32, copy=False)
    # Finest diagonal detail band of the orthonormal Haar transform, one coefficient per 2x2
    # block. Its filter has unit norm, so white noise of std s gives coefficients of std s.
    hh = (x[0::2, 0::2] - x[0::2, 1::2] - x[1::2, 0::2] + x[1::2, 1::2]) * np.float32(0.5)
    return float(np.median(np.abs(hh))) / _MAD_TO_STD


def estimate_sigma(image: np.ndarray | torch.Tensor) -> float:
    """Estimate the std of additive white Gaussian noise, in 8-bit units (0-255 scale).

    The classical wavelet estimator of Donoho and Johnstone (1994): the noise std is the
    median absolute value of the finest diagonal (HH) detail band of a Haar wavelet
    transform divided by 0.6745. Image content is mostly smooth at that scale, so HH holds
    mostly noise and the median is robust to the edges that leak into it. The estimate is
    computed per colour channel and the channel estimates are averaged (images of a batch
    too). Alpha channels (the last channel of a 2- or 4-channel image) are ignored. Strongly
    textured images give an over-estimate; clipped noise (saturated pixels) an
    under-estimate.

    Args:
        image: values in [0, 1]: an ``H x W`` or ``H x W x C`` numpy array (uint8 and uint16
            are scaled to [0, 1]), or an ``H x W``, ``(C, H, W)`` or ``(B, C, H, W)`` tensor.

    Returns:
        The estimated sigma, clamped to ``[0, 75]``; 0 for images smaller than 2 x 2.

    Raises:
        ValueError: unsupported shape, or NaN / infinite values.
    """
    sigmas = []
    for plane in _planes(image):
        if not np.isfinite(plane).all():
            raise ValueError("estimate_sigma: the image contains NaN or infinite values")
        sigmas.append(_plane_sigma(plane))
    if not sigmas:
        return 0.0
    sigma = float(np.mean(sigmas)) * 255.0
    return min(max(sigma, 0.0), SIGMA_MAX)


# --------------------------------------------------------------------------------------------
# Tiled inference


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
    w = torch.ones(length, dtype=torch.float64)
    n = ramp.numel()
    if n:
        if left:
            w[:n] = ramp
        if right:
            w[length - n :] = torch.minimum(w[length - n :], ramp.flip(0))
    return w


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
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
        tile: Tile side in pixels (at least 16), or None to run the whole image at once.
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
    if tile is not None:
        tile = int(tile)
        overlap = int(overlap)
        if tile < 16:
            raise ValueError(f"tile must be at least 16 pixels, got {tile}")
        if not 0 <= overlap <= tile // 2:
            raise ValueError(f"overlap must be in [0, tile // 2 = {tile // 2}], got {overlap}")
    device, dtype = _model_device_dtype(model)
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
    return x.contiguous(memory_format=torch.channels_last)


def _denoise_tiled(model, noisy, sigma, tile, overlap, progress, device, dtype):
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
    if rows.shape[2] == 0:
        return
    inv_y = (1.0 / total_y[y0 : y0 + rows.shape[2]]).to(rows.device, rows.dtype)
    emit(y0, rows * inv_y.view(-1, 1) * inv_x)


# --------------------------------------------------------------------------------------------
# One-call API


def _check_sigma(sigma) -> float | None:
    """None for automatic estimation, else the validated float."""
    if sigma is None or (isinstance(sigma, str) and sigma.strip().lower() == "auto"):
        return None
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(
            f"sigma must be a number in [0, {SIGMA_MAX:g}] (8-bit units) or 'auto', got {sigma!r}"
        ) from None
    if not 0.0 <= value <= SIGMA_MAX:  # also rejects NaN
        raise ValueError(
            f"sigma must be in [0, {SIGMA_MAX:g}] (noise std in 8-bit units), got {sigma!r}"
        )
    return value


# Models whose weights ship with the package and that denoise() uses when not told which:
# a blind model when the noise level is to be found, the white-noise model when it is given
# (so sigma=N keeps meaning white Gaussian noise of level N, as in the published tables).
DEFAULT_MODEL = "mallenet-s"
DEFAULT_BLIND_MODEL = "mallenet-s-real"


def default_model(auto: bool) -> str:
    """The model :func:`denoise` uses without ``model=``: :data:`DEFAULT_BLIND_MODEL` when
    the noise level is estimated (``auto``) and its weights are shipped, else
    :data:`DEFAULT_MODEL`."""
    from .models.registry import weights_dir

    if auto and (weights_dir() / f"{DEFAULT_BLIND_MODEL}.safetensors").is_file():
        return DEFAULT_BLIND_MODEL
    return DEFAULT_MODEL


def is_blind(model: nn.Module) -> bool:
    """Whether ``model`` estimates the noise level itself (``model(noisy, None)``)."""
    inner = model
    while not hasattr(inner, "estimator") and isinstance(getattr(inner, "model", None), nn.Module):
        inner = inner.model
    return hasattr(inner, "estimator")


class _EstimatedLevel(nn.Module):
    """Runs a blind model in automatic mode whatever ``sigma`` it is handed, with a
    ``strength`` multiplier, and keeps the mean level of each call for reporting."""

    def __init__(self, model: nn.Module, strength: float):
        super().__init__()
        self.model = model
        self.strength = float(strength)
        self.levels: list[float] = []

    @property
    def config(self):
        return self.model.config

    def forward(self, noisy: torch.Tensor, sigma=None) -> torch.Tensor:
        out, level = self.model(noisy, None, strength=self.strength, return_level=True)
        self.levels.append(float(level.float().mean()))
        return out


def _check_strength(strength) -> float:
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"strength must be a positive number, got {strength!r}") from None
    if not 0.0 < value <= 10.0:  # also rejects NaN
        raise ValueError(f"strength must be in (0, 10], got {strength!r}")
    return value


def _model_key(name_or_path: str | os.PathLike) -> tuple:
    """Cache key: the name, or for a file its resolved path and modification stamp."""
    p = Path(name_or_path)
    if p.is_file():
        st = p.stat()
        return (str(p.resolve()), st.st_mtime_ns, st.st_size)
    return (os.fspath(name_or_path),)


@functools.lru_cache(maxsize=4)
def _cached_model(name_or_path: str, device: str, _key: tuple) -> nn.Module:
    from .models import fuse_batchnorm, load_model

    # Loaded by name for inference only: folding BatchNorm saves a memory pass per layer,
    # and channels-last runs the convolutions about 2x faster on CPU
    # (docs/benchmarks/inference_speed.md).
    model = fuse_batchnorm(load_model(name_or_path, device))
    return model.to(memory_format=torch.channels_last)


def _resolve_device(device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r} requested but CUDA is not available")
    return dev


def _get_model(model, device) -> nn.Module:
    if isinstance(model, nn.Module):
        if device is not None:
            want = _resolve_device(device)
            have, _ = _model_device_dtype(model)
            if have.type != want.type or (want.index is not None and have.index != want.index):
                raise ValueError(
                    f"the model is on {have} but device={str(want)!r} was asked for; "
                    "move it with model.to(device) or leave device=None"
                )
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a name, a weights path or an nn.Module, got {model!r}")
    dev = _resolve_device("cpu" if device is None else device)
    return _cached_model(os.fspath(model), str(dev), _model_key(model))


def model_channels(model: nn.Module) -> int:
    """Colour channels a model takes: 1 (gray) or 3."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "in_channels"):
        return int(config.in_channels)
    kwargs = getattr(model, "init_kwargs", None)
    if kwargs and "in_channels" in kwargs:
        return int(kwargs["in_channels"])
    return 3


def _image_dims(image) -> tuple[int, int, int, int]:
    """``(B, C, H, W)`` of an image array or tensor that :func:`denoise` accepts."""
    if torch.is_tensor(image):
        shape = tuple(image.shape)
        dims = {2: (1, 1) + shape, 3: (1,) + shape, 4: shape}.get(len(shape))
        if dims is None or dims[1] not in (1, 2, 3, 4):
            raise ValueError(
                f"image tensor must be H x W, (C, H, W) or (B, C, H, W) with C in 1..4, "
                f"got shape {shape}"
            )
        if not (image.dtype == torch.uint8 or image.is_floating_point()):
            raise TypeError(f"image tensor must be float or uint8, got {image.dtype}")
        return dims
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array or a torch tensor, got {type(image)}")
    shape = image.shape
    if not (image.ndim == 2 or (image.ndim == 3 and shape[2] in (1, 2, 3, 4))):
        raise ValueError(f"image must be H x W or H x W x C with C in 1..4, got shape {shape}")
    if image.dtype not in (np.uint8, np.uint16) and image.dtype.kind != "f":
        raise TypeError(f"image must be uint8, uint16 or float, got {image.dtype}")
    return (1, shape[2] if image.ndim == 3 else 1) + shape[:2]


def _denoise_streaming(image, fixed_sigma, net, want, tile, overlap, progress, strength=1.0):
    """:func:`denoise` of a big image tile by tile, without a float copy of the whole image.

    Tiles are converted to float as they are read and finished rows are converted back to
    the input's dtype as they come out of :func:`_blend_tiles`, straight into the result.
    Same output as the whole-image path (same channel, alpha and rounding rules). Returns
    the result and the noise level the model was given.
    """
    b, c, h, w = _image_dims(image)
    ncol = c - 1 if c in (2, 4) else c
    is_tensor = torch.is_tensor(image)
    if is_tensor:
        src = image.detach().reshape(b, c, h, w)
        floating = src.is_floating_point()
        if floating and not bool(torch.isfinite(src).all()):
            raise ValueError("image contains NaN or infinite values")
        result = torch.empty_like(src)
        out_device = src.device
    else:
        src = image if image.ndim == 3 else image[:, :, None]
        floating = image.dtype.kind == "f"
        if floating and not np.isfinite(src).all():
            raise ValueError("image contains NaN or infinite values")
        result = np.empty_like(src)
        out_device = torch.device("cpu")

    if fixed_sigma is None:
        parts = [src[i] for i in range(b)] if is_tensor else [src]
        sig: float | torch.Tensor = torch.tensor(
            [estimate_sigma(part) for part in parts], dtype=torch.float32
        )
        sig = (sig * strength).clamp(max=SIGMA_MAX)
    else:
        sig = fixed_sigma

    def read(sy: slice, sx: slice) -> torch.Tensor:
        if is_tensor:
            t = src[:, :ncol, sy, sx]
            x = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
        else:
            tile_px = to_float(src[sy, sx, :ncol]).transpose(2, 0, 1)
            x = torch.from_numpy(np.ascontiguousarray(tile_px))[None]
        return x.expand(-1, 3, -1, -1) if (ncol == 1 and want == 3) else x

    def emit(y0: int, rows: torch.Tensor) -> None:
        if rows.shape[1] != ncol:  # a gray image through a colour model
            rows = rows.mean(dim=1, keepdim=True)
        n = rows.shape[2]
        if is_tensor:
            result[:, :ncol, y0 : y0 + n] = _tensor_like(rows, src.dtype).to(result.device)
        else:
            result[y0 : y0 + n, :, :ncol] = _array_like(rows[0].permute(1, 2, 0).numpy(), src.dtype)

    dev, dtype = _model_device_dtype(net)
    was_training = net.training
    net.eval()
    try:
        _blend_tiles(
            net, (h, w), read, emit, sig, tile, overlap, progress, dev, dtype,
            torch.float32, out_device,
        )  # fmt: skip
    finally:
        net.train(was_training)
    if ncol != c:  # alpha, bit-exact
        if is_tensor:
            result[:, -1] = src[:, -1]
        else:
            result[..., -1] = src[..., -1]
    return result.reshape(image.shape), sig


def _tensor_like(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Float output -> ``dtype``: clipped to [0, 1]; uint8 rounded."""
    y = y.clamp(0.0, 1.0)
    return (y * 255.0).round().to(torch.uint8) if dtype == torch.uint8 else y.to(dtype)


def _array_like(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float output -> ``dtype``: clipped to [0, 1]; integers scaled and rounded."""
    return np.clip(a, 0.0, 1.0).astype(dtype) if dtype.kind == "f" else from_float(a, dtype)


def _to_batch(image, dims) -> tuple[torch.Tensor, Callable[[torch.Tensor], object]]:
    """``image`` (validated by :func:`_image_dims`, which gave ``dims``) as a float32
    ``(B, C, H, W)`` tensor, and the function converting a result back."""
    b, c, h, w = dims
    if torch.is_tensor(image):
        t = image.detach().reshape(dims)
        shape, dtype, dev = tuple(image.shape), image.dtype, image.device
        x = t.to(torch.float32) / 255.0 if dtype == torch.uint8 else t.to(torch.float32)

        def back(y: torch.Tensor):
            return _tensor_like(y, dtype).reshape(shape).to(dev)

        return x, back

    shape, dtype = image.shape, image.dtype
    arr = image.reshape(h, w, c)
    x = torch.from_numpy(np.ascontiguousarray(to_float(arr).transpose(2, 0, 1)))[None]

    def back_np(y: torch.Tensor):
        return _array_like(y[0].permute(1, 2, 0).cpu().numpy(), dtype).reshape(shape)

    return x, back_np


def denoise(
    image: np.ndarray | torch.Tensor,
    sigma: float | str | None = None,
    model: str | os.PathLike | nn.Module | None = None,
    tile: int | None = None,
    overlap: int = 32,
    device: str | torch.device | None = None,
    *,
    strength: float = 1.0,
    self_ensemble: bool = False,
    precision: str = "float32",
    progress: ProgressFn | None = None,
    report: dict | None = None,
):
    """Denoise an image array or tensor; returns the same kind, dtype and shape.

    Accepted inputs:

    * numpy ``H x W`` or ``H x W x C`` (C = 1, 2 gray + alpha, 3 RGB, 4 RGBA), dtype uint8,
      uint16 or float (values in [0, 1]; noisy values outside it are used as they are);
    * torch ``H x W``, ``(C, H, W)`` or ``(B, C, H, W)`` tensors, float in [0, 1] or uint8.

    Output: integer images are rounded and clipped to their range; **float outputs are
    clipped to [0, 1]** (use :func:`denoise_tensor` for the raw, unclipped model output).
    Alpha channels are returned untouched. A gray image with a colour model is replicated
    to three channels and the mean of the three denoised channels is returned; a colour
    image with a gray model is an error.

    Args:
        image: The noisy image.
        sigma: Noise std in 8-bit units, in [0, 75], meaning white Gaussian noise of that
            level; None or ``"auto"`` finds the level: a blind model (``mallenet-s-real``)
            estimates a per-pixel noise-level map that also covers camera noise, other
            models get :func:`estimate_sigma` (white noise only; per image of a batch).
            Models without a noise input (DnCNN) ignore it.
        model: Registered name (shipped weights), ``.safetensors`` path or a model; default
            :func:`default_model`: ``mallenet-s-real`` when the level is estimated,
            ``mallenet-s`` when it is given. Loaded models are cached by name / path (and
            file time) and device.
        tile: Tile side for bounded memory on big images, None for whole images (see
            :func:`denoise_tensor`).
        overlap: Tile overlap in pixels.
        device: Where a named model runs (default "cpu"). For an ``nn.Module`` the model's
            own device is used; a different explicit device is an error.
        self_ensemble: Average the model over the 8 flips / rotations of the image
            (:class:`~malleconv.models.ensemble.SelfEnsemble`): 8x the time, a little
            higher PSNR (docs/models.md).
        precision: ``"float32"`` (default) or ``"bfloat16"``: run the convolutions in
            bfloat16 (:class:`~malleconv.models.precision.Autocast`). 1.5-2x faster on
            CPUs with hardware bfloat16 (AVX-512 BF16, AMX) for at most 0.012 dB of PSNR
            on the test sets (docs/models.md); on other CPUs it can be slower (see
            :func:`~malleconv.models.precision.native_bf16`).
        strength: Multiplier on the noise level, given or estimated (result capped at 75):
            below 1 keeps more grain and detail, above 1 removes more.
        progress: ``progress(done, total)`` called after each tile.
        report: A dict that receives what was decided: ``"sigma"`` (the level the model
            was given; for a noise-level map its mean, per image of a batch as a list
            when estimated by :func:`estimate_sigma`) and ``"how"`` (``"given"``,
            ``"estimated"`` or ``"estimated map"``) and ``"model"``.

    Raises:
        ValueError: sigma outside [0, 75], strength outside (0, 10], unknown precision,
            unsupported shape, NaN / infinite values, colour image with a gray model, CUDA
            requested but not available.
        FileNotFoundError: the model has no weights file.
    """
    fixed_sigma = _check_sigma(sigma)
    strength = _check_strength(strength)
    check_precision(precision)
    b, c, h, w = _image_dims(image)
    if b * c * h * w == 0:
        raise ValueError(f"cannot denoise an empty image of shape {tuple(image.shape)}")
    if model is None:
        model = default_model(auto=fixed_sigma is None)
    net = _get_model(model, device)
    if report is not None:
        named = isinstance(model, (str, os.PathLike))
        report["model"] = getattr(net, "model_name", None) or (
            os.fspath(model) if named else type(model).__name__
        )
    level_map = None
    if fixed_sigma is None and is_blind(net):
        net = level_map = _EstimatedLevel(net, strength)
        fixed_sigma = 0.0  # handed on, never used: the model estimates its own level
    elif fixed_sigma is not None:
        fixed_sigma = min(fixed_sigma * strength, SIGMA_MAX)
    if self_ensemble:
        from .models.ensemble import SelfEnsemble

        net = SelfEnsemble(net)
    if precision != "float32":
        net = Autocast(net, getattr(torch, precision))
    want = model_channels(net)
    if want == 1 and c - (c in (2, 4)) == 3:
        raise ValueError("the model is a gray (1-channel) model but the image has colour")
    if tile is not None and (h > tile or w > tile):
        result, sig = _denoise_streaming(
            image, fixed_sigma, net, want, tile, overlap, progress, strength
        )
        _report(report, level_map, fixed_sigma, sigma, sig)
        return result

    x, back = _to_batch(image, (b, c, h, w))
    if not bool(torch.isfinite(x).all()):
        raise ValueError("image contains NaN or infinite values")

    c = x.shape[1]
    alpha = x[:, -1:] if c in (2, 4) else None
    colour = x[:, :-1] if alpha is not None else x

    if fixed_sigma is None:
        sig: float | torch.Tensor = torch.tensor(
            [estimate_sigma(colour[i]) for i in range(colour.shape[0])], dtype=torch.float32
        )
        sig = (sig * strength).clamp(max=SIGMA_MAX)
    else:
        sig = fixed_sigma

    inp = colour.expand(-1, 3, -1, -1) if (colour.shape[1] == 1 and want == 3) else colour
    out = denoise_tensor(net, inp, sig, tile=tile, overlap=overlap, progress=progress)
    if out.shape[1] != colour.shape[1]:
        out = out.mean(dim=1, keepdim=True)
    if alpha is not None:
        out = torch.cat([out, alpha.to(out.dtype)], dim=1)
    result = back(out)
    if alpha is not None:
        # Bit-exact alpha, not a float round trip.
        if torch.is_tensor(image):
            result[..., -1, :, :] = image[..., -1, :, :].detach().to(result.device)
        else:
            result[..., -1] = image[..., -1]
    _report(report, level_map, fixed_sigma, sigma, sig)
    return result


def _report(report, level_map, fixed_sigma, sigma_arg, sig) -> None:
    """Fill :func:`denoise`'s ``report`` dict with the level decided."""
    if report is None:
        return
    if level_map is not None:
        report["sigma"] = float(np.mean(level_map.levels)) if level_map.levels else 0.0
        report["how"] = "estimated map"
    elif _check_sigma(sigma_arg) is not None:
        report["sigma"] = float(fixed_sigma)
        report["how"] = "given"
    else:
        values = sig.tolist() if torch.is_tensor(sig) else [sig]
        report["sigma"] = values[0] if len(values) == 1 else values
        report["how"] = "estimated"
