"""The one-call denoising API: an image array or tensor in, the same kind out.

:func:`denoise` converts numpy arrays (uint8, uint16, float) and tensors (float, uint8) to
float batches and back (alpha channels untouched, gray images through colour models),
decides the model and noise level (given; the automatic mode's choice per image,
:mod:`~.auto`; :func:`~.noise_level.estimate_sigma`; or a blind model's own map),
prepares the model with :func:`~.prepare.prepare_model` and runs it with :mod:`~.tiling`
(whole, or tile by tile straight from and into the arrays for big images).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..data.noise import SIGMA_MAX, check_strength, parse_sigma
from ..io import from_float, to_float
from ..models.precision import check_precision
from .auto import AutoDenoiser
from .noise_level import estimate_sigma
from .prepare import (
    DEFAULT_BACKEND,
    built_in_strength,
    estimated_levels,
    model_channels,
    prepare_model,
)
from .tiling import ProgressFn, check_tiling, denoise_tensor, stream_tiles

__all__ = ["denoise"]


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
    the input's dtype as they come out of :func:`~.tiling.stream_tiles`, straight into the
    result. Same output as the whole-image path (same channel, alpha and rounding rules).
    Returns the result and the noise level the model was given.
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

    stream_tiles(
        net,
        (h, w),
        read,
        emit,
        sig,
        tile=tile,
        overlap=overlap,
        progress=progress,
        out_device=out_device,
    )
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
    backend: str = DEFAULT_BACKEND,
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
            level; None or ``"auto"`` finds the level: the automatic mode (the default
            model) reads each image and sends white noise to ``mallenet-s`` with the level
            read and other noise to ``mallenet-s-real`` (:class:`~.auto.AutoDenoiser`); a
            blind model estimates a per-pixel noise-level map that also covers camera noise;
            other models get :func:`estimate_sigma` (white noise only; per image of a
            batch). Models without a noise input (DnCNN) ignore it.
        model: Registered name (shipped weights), ``.safetensors`` path or a model; default
            :func:`~.prepare.default_model`: ``"auto"`` (the automatic mode) when the level
            is estimated, ``mallenet-s`` when it is given. Run as
            :func:`~.prepare.prepare_model` prepares it: named models are loaded once
            (cached by name / path, file time and device), BatchNorm folded, channels-last;
            a module is used as it is.
        tile: Tile side for bounded memory on big images (at least 16), None or 0 for whole
            images (see :func:`denoise_tensor`).
        overlap: Tile overlap in pixels, ``0 <= overlap <= tile // 2``.
        device: Where a named model runs (default "cpu"). For an ``nn.Module`` the model's
            own device is used; a different explicit device is an error.
        self_ensemble: Average the model over the 8 flips / rotations of the image
            (:class:`~malleconv.models.ensemble.SelfEnsemble`): 8x the time, a little
            higher PSNR (docs/models.md).
        precision: ``"float32"`` (default) or ``"bfloat16"``: run the convolutions in
            bfloat16 (:class:`~malleconv.models.precision.Autocast`). Faster on CPUs with
            hardware bfloat16 (AVX-512 BF16, AMX) for a small cost in PSNR (both measured
            in docs/models.md); on other CPUs it can be slower (see
            :func:`~malleconv.models.precision.native_bf16`).
        strength: Multiplier on the noise level, given or estimated (result capped at 75):
            below 1 keeps more grain and detail, above 1 removes more.
        progress: ``progress(done, total)`` called after each tile.
        backend: ``"torch"`` (default) runs the PyTorch model; ``"onnxruntime"`` and
            ``"openvino"`` its exported ONNX graph in ONNX Runtime (float32) or OpenVINO
            (float32 or bfloat16), on the CPU, with the same automatic mode, tiling,
            strength, 16-bit and alpha (the ``malleconv[onnx]`` / ``malleconv[openvino]``
            extras; :mod:`~.onnx_backend`). Speed and memory of each:
            docs/benchmarks/onnx_speed.md.
        report: A dict that receives what was decided: ``"sigma"`` (the level the model
            was given; for a noise-level map its mean, per image of a batch as a list
            when estimated by :func:`estimate_sigma`) and ``"how"`` (``"given"``,
            ``"estimated"`` or ``"estimated map"``) and ``"model"`` (the model that ran);
            in the automatic mode also ``"noise"`` (``"white noise"``, ``"camera noise"``
            or ``"clean"``: no measurable noise), ``"floor"`` (the noise floor read,
            :func:`~.noise_floor.read_noise_floor`) and ``"cap"`` (the most level the model
            got, before the strength), where set ``"bound"`` (the least level) and
            ``"half_pass"`` (True: the low band came from a half-resolution pass,
            :class:`~.auto.HalfPass`), and for a batch of several images every value is a
            per-image list.

    Raises:
        ValueError: sigma outside [0, 75], strength outside (0, 10], tile or overlap not an
            integer or out of range, an unknown device, a strength other than 1
            with no sigma for a prepared automatic-mode model (it carries its own, see
            :func:`~.prepare.prepare_auto`), a sigma for a blind model prepared in automatic
            mode (it would ignore it), unknown precision, unsupported shape, NaN /
            infinite values, colour image with a gray model, CUDA requested but not available.
        FileNotFoundError: the model has no weights file.
    """
    if isinstance(image, np.ndarray) and not image.dtype.isnative:
        # Big-endian arrays (from a FITS or a raw file, say): run on native ones, return
        # the byte order given.
        native = image.astype(image.dtype.newbyteorder("="))
        out = denoise(native, sigma, model, tile, overlap, device, strength=strength,
                      self_ensemble=self_ensemble, precision=precision, progress=progress,
                      report=report, backend=backend)
        return out.astype(image.dtype)
    fixed_sigma = parse_sigma(sigma)
    strength = check_strength(strength)
    tile, overlap = check_tiling(tile, overlap)
    check_precision(precision)
    if isinstance(model, nn.Module):
        _check_prepared_model(model, fixed_sigma, strength)
    b, c, h, w = _image_dims(image)
    if b * c * h * w == 0:
        raise ValueError(f"cannot denoise an empty image of shape {tuple(image.shape)}")
    net = prepare_model(
        model,
        device,
        auto=fixed_sigma is None,
        strength=strength,
        self_ensemble=self_ensemble,
        precision=precision,
        backend=backend,
    )
    route = None
    if isinstance(net, AutoDenoiser) and fixed_sigma is None:
        if torch.is_tensor(image) and image.dim() == 4 and b > 1:
            return _denoise_each(
                image, report, model=net, tile=tile, overlap=overlap, progress=progress
            )
        route = net.route(image)  # one decision for the whole image, before any tiling
        fixed_sigma = net.white_level(route) if route.sigma is not None else None
        strength, net = 1.0, route.model  # the strength is in the level or the blind model
    if report is not None:
        named = isinstance(model, (str, os.PathLike))
        report["model"] = (
            route.name
            if route is not None
            else getattr(net, "model_name", None)
            or (os.fspath(model) if named else type(model).__name__)
        )
        if route is not None:
            report["noise"] = route.kind
            report["floor"] = route.floor.level
            report["cap"] = route.cap
            if route.bound is not None:
                report["bound"] = route.bound
            if route.half is not None:
                report["half_pass"] = True
    given = fixed_sigma is not None and route is None
    level_map = estimated_levels(net)
    if level_map is not None:
        level_map.clear()  # a prepared model passed in keeps its list between calls
        fixed_sigma = 0.0  # handed on, never used: the model estimates its own level
    elif given:
        fixed_sigma = min(fixed_sigma * strength, SIGMA_MAX)
    want = model_channels(net)
    if want == 1 and c - (c in (2, 4)) == 3:
        raise ValueError("the model is a gray (1-channel) model but the image has colour")
    if tile is not None and (h > tile or w > tile):
        result, sig = _denoise_streaming(
            image, fixed_sigma, net, want, tile, overlap, progress, strength
        )
        _report(report, level_map, given, fixed_sigma, sig)
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
    _report(report, level_map, given, fixed_sigma, sig)
    return result


def _denoise_each(images: torch.Tensor, report: dict | None, **options) -> torch.Tensor:
    """:func:`denoise` of each image of a ``(B, C, H, W)`` batch on its own, as the
    automatic mode decides per image; ``report`` gets per-image lists."""
    outs, reports = [], []
    for image in images:
        reports.append({})
        outs.append(denoise(image, report=reports[-1], **options))
    if report is not None:
        for key in reports[0]:
            report[key] = [r[key] for r in reports]
    return torch.stack(outs)


def _check_prepared_model(model: nn.Module, fixed_sigma, strength: float) -> None:
    """Refuse a ``sigma`` or ``strength`` that a prepared automatic-mode ``model`` would
    silently ignore: it runs on its own estimate, at the strength it was prepared with."""
    if fixed_sigma is not None and estimated_levels(model) is not None:
        raise ValueError(
            f"sigma={fixed_sigma:g}: this model was prepared in automatic mode and estimates "
            "its own level; pass the blind model itself (or its name) to give a level"
        )
    built_in = built_in_strength(model)
    if fixed_sigma is None and strength != 1.0 and built_in is not None:
        raise ValueError(
            f"strength={strength:g}: this model was prepared with strength {built_in:g}, "
            "which it applies itself; prepare it with the strength wanted "
            "(prepare_auto(..., strength=...) or prepare_model(..., strength=...)) or pass "
            "the model by name"
        )


def _report(report, level_map, given, fixed_sigma, sig) -> None:
    """Fill :func:`denoise`'s ``report`` dict with the level decided: ``level_map`` the
    levels of a blind model's estimated maps (or None), ``given`` whether sigma was given,
    ``fixed_sigma`` the given level times the strength, ``sig`` the level passed to the
    model (float or ``(B,)`` tensor)."""
    if report is None:
        return
    if level_map is not None:
        report["sigma"] = float(np.mean(level_map)) if level_map else 0.0
        report["how"] = "estimated map"
    elif given:
        report["sigma"] = float(fixed_sigma)
        report["how"] = "given"
    else:
        values = sig.tolist() if torch.is_tensor(sig) else [sig]
        report["sigma"] = values[0] if len(values) == 1 else values
        report["how"] = "estimated"
