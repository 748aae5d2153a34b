"""Getting a model ready for inference: the one place that decides how a model is run.

:func:`prepare_model` loads a model by name or weights path (cached), folds its BatchNorm,
makes it channels-last, and wraps it for the run asked for: a blind model's automatic
level (:class:`EstimatedLevel`), the x8 self-ensemble, bfloat16 autocast. ``denoise``,
``malleconv denoise``, ``malleconv eval`` and the benchmarks all run models through it,
so they measure what users get. :func:`default_model` picks the model when none is named.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
from torch import nn

from ..data.noise import check_strength
from ..models.ensemble import SelfEnsemble
from ..models.fuse import fuse_batchnorm
from ..models.precision import Autocast, check_precision
from ..models.registry import load_model, weights_dir
from ..models.wrapper import DenoiserWrapper
from ..runtime import tune_allocator_once
from .auto import AutoDenoiser, half_resolution, merge_half
from .tiling import model_device_dtype

__all__ = [
    "AUTO_MODEL",
    "BACKENDS",
    "DEFAULT_BACKEND",
    "DEFAULT_BLIND_MODEL",
    "DEFAULT_MODEL",
    "EstimatedLevel",
    "check_backend",
    "default_model",
    "estimated_levels",
    "is_blind",
    "model_channels",
    "prepare_auto",
    "prepare_model",
]

# Models whose weights ship with the package and that denoise() uses when not told which:
# a blind model when the noise level is to be found, the white-noise model when it is given
# (so sigma=N keeps meaning white Gaussian noise of level N, as in the published tables).
DEFAULT_MODEL = "mallenet-s"
DEFAULT_BLIND_MODEL = "mallenet-s-real"
# The automatic mode's name: DEFAULT_MODEL for white noise, DEFAULT_BLIND_MODEL for other
# noise, chosen per image (:class:`~.auto.AutoDenoiser`); DEFAULT_MODEL when sigma is given.
AUTO_MODEL = "auto"
# How prepared models run: "torch" (the PyTorch modules), "onnxruntime" or "openvino"
# (their exported graphs, :mod:`~.onnx_backend`, the optional extras ``malleconv[onnx]``
# and ``malleconv[openvino]``). The default is docs/design.md's decision (the ONNX
# export), on docs/benchmarks/onnx_speed.md's figures.
BACKENDS = ("torch", "onnxruntime", "openvino")
# Precisions each backend runs (check_precision names the ones that exist).
BACKEND_PRECISIONS = {
    "torch": ("float32", "bfloat16"),
    "onnxruntime": ("float32",),
    "openvino": ("float32", "bfloat16"),
}
DEFAULT_BACKEND = "torch"


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`BACKENDS`, else a ValueError naming them."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def default_model(auto: bool) -> str:
    """The model :func:`~malleconv.inference.denoise` uses without ``model=``:
    :data:`AUTO_MODEL` when the noise level is estimated (``auto``) and the blind model's
    weights are shipped, else :data:`DEFAULT_MODEL`."""
    if auto and (weights_dir() / f"{DEFAULT_BLIND_MODEL}.safetensors").is_file():
        return AUTO_MODEL
    return DEFAULT_MODEL


def is_blind(model: nn.Module) -> bool:
    """Whether ``model`` estimates the noise level itself (``model(noisy, None)``)."""
    inner = model
    while not _estimates(inner) and isinstance(getattr(inner, "model", None), nn.Module):
        inner = inner.model
    return _estimates(inner)


def _estimates(model: nn.Module) -> bool:
    # A PyTorch blind model has its estimator; an exported one says so (onnx_backend).
    return hasattr(model, "estimator") or bool(getattr(model, "estimates_level", False))


def model_channels(model: nn.Module) -> int:
    """Colour channels a model takes: 1 (gray) or 3."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "in_channels"):
        return int(config.in_channels)
    kwargs = getattr(model, "init_kwargs", None)
    if kwargs and "in_channels" in kwargs:
        return int(kwargs["in_channels"])
    return 3


class EstimatedLevel(DenoiserWrapper):
    """A blind model run in automatic mode whatever ``sigma`` it is handed.

    ``forward(noisy (B, C, H, W), sigma) -> (B, C, H, W)``: ``sigma`` is ignored; the model
    estimates its own ``(B, 1, H, W)`` noise-level map, capped at ``max_level`` and raised to
    at least ``min_level`` (8-bit units, None for none; the automatic mode sets both per
    image, :func:`set_level_cap`) and then multiplied by ``strength``. With a ``half`` pass
    (:class:`~.auto.HalfPass`, set alike) it also denoises the input's 2x2 block means, with
    that pass's cap and bound, and takes the output's low band from it
    (:func:`~.auto.merge_half`). The mean level of each
    call is appended to ``levels``, so that a caller running it tile by tile (or under a
    self-ensemble) can report the level decided.
    """

    def __init__(self, model: nn.Module, strength: float = 1.0):
        super().__init__(model)
        self.strength = float(strength)
        self.max_level: float | None = None
        self.min_level: float | None = None
        self.half = None
        self.levels: list[float] = []

    def _run(self, noisy, max_level, min_level):
        # The bound is passed only when set, so blind models written before it still run.
        bound = {} if min_level is None else {"min_level": min_level}
        return self.model(
            noisy, None, strength=self.strength, max_level=max_level, return_level=True,
            **bound,
        )

    def forward(self, noisy: torch.Tensor, sigma=None) -> torch.Tensor:
        out, level = self._run(noisy, self.max_level, self.min_level)
        self.levels.append(float(level.float().mean()))
        if self.half is not None:
            half, _ = self._run(half_resolution(noisy), self.half.cap, self.half.bound)
            out = merge_half(out, half)
        return out


def estimated_levels(model: nn.Module) -> list[float] | None:
    """The ``levels`` list of the :class:`EstimatedLevel` inside ``model``'s wrappers (the
    mean level of each call, in 8-bit units), or None when ``model`` is not a blind model
    in automatic mode. Clear it to start a new count."""
    found = _first_wrapped(model, EstimatedLevel)
    return None if found is None else found.levels


def set_level_cap(
    model: nn.Module, max_level: float | None, min_level: float | None = None, half=None
) -> None:
    """Cap the level map of the :class:`EstimatedLevel` inside ``model``'s wrappers at
    ``max_level`` and raise it to at least ``min_level`` (8-bit units, the bound applied
    after the cap; None: none), and give it the half-resolution pass ``half``
    (:class:`~.auto.HalfPass`, None: none), until they are set again."""
    found = _first_wrapped(model, EstimatedLevel)
    if found is None:
        raise ValueError("set_level_cap: the model is not a blind model in automatic mode")
    found.max_level = None if max_level is None else float(max_level)
    found.min_level = None if min_level is None else float(min_level)
    found.half = half


def built_in_strength(model: nn.Module) -> float | None:
    """The strength that ``model`` applies by itself, or None: the automatic mode
    (:class:`~.auto.AutoDenoiser`) and a blind model in automatic mode
    (:class:`EstimatedLevel`) are prepared with theirs, inside any wrappers."""
    found = _first_wrapped(model, (AutoDenoiser, EstimatedLevel))
    return None if found is None else found.strength


def _first_wrapped(model: nn.Module, kinds) -> nn.Module | None:
    """The outermost module of ``kinds`` among ``model`` and the models its wrappers
    (``DenoiserWrapper``: ``.model``) hold, or None."""
    inner = model
    while isinstance(inner, nn.Module):
        if isinstance(inner, kinds):
            return inner
        inner = inner._modules.get("model")
    return None


def _model_key(name_or_path: str | os.PathLike) -> tuple:
    """Cache key: the name, or for a file its resolved path and modification stamp."""
    p = Path(name_or_path)
    if p.is_file():
        st = p.stat()
        return (str(p.resolve()), st.st_mtime_ns, st.st_size)
    return (os.fspath(name_or_path),)


def _for_inference(model: nn.Module) -> nn.Module:
    """``model`` with BatchNorm folded and channels-last weights, modified in place.

    Folding saves a memory pass per layer and channels-last runs the convolutions several
    times faster on CPU (docs/benchmarks/inference_speed.md).
    """
    return fuse_batchnorm(model).to(memory_format=torch.channels_last)


@functools.lru_cache(maxsize=4)
def _cached_model(name_or_path: str, device: str, _key: tuple) -> nn.Module:
    return _for_inference(load_model(name_or_path, device))


def _resolve_device(device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r} requested but CUDA is not available")
    return dev


@functools.lru_cache(maxsize=4)
def _cached_onnx_model(
    name_or_path: str, threads: int, backend: str, precision: str, _key: tuple
) -> nn.Module:
    from .onnx_backend import onnx_denoiser

    return onnx_denoiser(name_or_path, threads=threads, backend=backend, precision=precision)


def _onnx_model(model, device, pretrained: bool, backend: str, precision: str) -> nn.Module:
    """The unwrapped model run by ONNX Runtime or OpenVINO (:mod:`~.onnx_backend`)."""
    from .onnx_backend import onnx_denoiser, require_backend

    require_backend(backend)
    if device is not None and _resolve_device(device).type != "cpu":
        raise ValueError(f"backend {backend!r} runs on the CPU, got device={str(device)!r}")
    if not pretrained:
        raise ValueError(f"backend {backend!r} runs trained models only (pretrained=True)")
    if isinstance(model, nn.Module):
        if _runs_onnx(model):  # already prepared for an ONNX backend
            return model
        return onnx_denoiser(model, backend=backend, precision=precision)
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a name, a weights path or an nn.Module, got {model!r}")
    threads = torch.get_num_threads()
    return _cached_onnx_model(os.fspath(model), threads, backend, precision, _model_key(model))


def _runs_onnx(model: nn.Module) -> bool:
    from .onnx_backend import OnnxBlindDenoiser, OnnxDenoiser

    return any(isinstance(m, (OnnxDenoiser, OnnxBlindDenoiser)) for m in model.modules())


def _base_model(
    model, device, pretrained: bool, backend: str = DEFAULT_BACKEND, precision: str = "float32"
) -> nn.Module:
    """The unwrapped model: loaded and made ready by name / path, or ``model`` itself."""
    if backend != "torch":
        return _onnx_model(model, device, pretrained, backend, precision)
    if isinstance(model, nn.Module):
        if device is not None:
            want = _resolve_device(device)
            have, _ = model_device_dtype(model)
            if have.type != want.type or (want.index is not None and have.index != want.index):
                raise ValueError(
                    f"the model is on {have} but device={str(want)!r} was asked for; "
                    "move it with model.to(device) or leave device=None"
                )
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a name, a weights path or an nn.Module, got {model!r}")
    dev = _resolve_device("cpu" if device is None else device)
    if not pretrained:
        return _for_inference(load_model(model, dev, pretrained=False))
    return _cached_model(os.fspath(model), str(dev), _model_key(model))


def prepare_model(
    model: str | os.PathLike | nn.Module | None = None,
    device: str | torch.device | None = None,
    *,
    auto: bool = False,
    strength: float = 1.0,
    self_ensemble: bool = False,
    precision: str = "float32",
    pretrained: bool = True,
    backend: str = DEFAULT_BACKEND,
) -> nn.Module:
    """A model ready to run as ``net(noisy (B, C, H, W), sigma) -> (B, C, H, W)``.

    In order:

    1. ``model`` None: :func:`default_model` (``auto`` says whether the level is
       estimated). ``"auto"`` (:data:`AUTO_MODEL`): with ``auto``, an
       :class:`~.auto.AutoDenoiser` of :data:`DEFAULT_MODEL` and :data:`DEFAULT_BLIND_MODEL`,
       each prepared as below; without, :data:`DEFAULT_MODEL`.
    2. A registered name or ``.safetensors`` path is loaded on ``device`` (default "cpu")
       in eval mode, BatchNorm folded into the convolutions, weights channels-last; loaded
       models are cached by name / path (and file time) and device, so preparing the same
       model again is cheap and returns the same module inside new wrappers. An
       ``nn.Module`` is used as it is (not modified, on its own device: another explicit
       ``device`` is an error). With ``backend="onnxruntime"`` or ``"openvino"`` the model
       is its exported graph run by ONNX Runtime or OpenVINO on the CPU
       (:func:`~.onnx_backend.onnx_denoiser`: graphs of named models cached on disk, a
       module exported now), with the same calls.
    3. ``auto`` and a blind model (:func:`is_blind`): wrapped in :class:`EstimatedLevel`
       with ``strength``, so it finds its own level map whatever sigma it is handed. Other
       models are unchanged by ``auto`` and ``strength``: their level is a number that the
       caller passes (and multiplies by the strength).
    4. ``self_ensemble``: averaged over the 8 flips / rotations
       (:class:`~malleconv.models.ensemble.SelfEnsemble`).
    5. ``precision="bfloat16"``: run under bfloat16 autocast
       (:class:`~malleconv.models.precision.Autocast`); with ``backend="openvino"``,
       compiled in bfloat16 instead (:data:`BACKEND_PRECISIONS`).

    Wrappers pass attribute access through (``config``, ``model_name``, parameters), so
    :func:`model_channels` and :func:`~malleconv.inference.tiling.model_device_dtype` see
    the wrapped model's. ``pretrained=False`` gives a randomly initialised registered model
    prepared the same way, not cached (benchmarks of speed, which does not depend on the
    weights; torch backend only).

    Raises:
        ValueError: unknown name or precision (or one the backend does not run), strength
            outside (0, 10], CUDA requested but not available, a module on another device
            than ``device``.
        FileNotFoundError: the model has no weights file.
        ImportError: ``backend="onnxruntime"`` / ``"openvino"`` without the
            ``malleconv[onnx]`` / ``malleconv[openvino]`` extra.
    """
    strength = check_strength(strength)
    tune_allocator_once()  # a model passed as a module skips load_model, which does it
    check_precision(precision)
    check_backend(backend)
    if precision not in BACKEND_PRECISIONS[backend]:
        raise ValueError(
            f"backend {backend!r} runs precision {' or '.join(BACKEND_PRECISIONS[backend])}, "
            f"got {precision!r}"
        )
    if model is None:
        model = default_model(auto=auto)
    if isinstance(model, str) and model == AUTO_MODEL:
        options = dict(
            self_ensemble=self_ensemble, precision=precision, pretrained=pretrained, backend=backend
        )
        if not auto:
            return prepare_model(DEFAULT_MODEL, device, **options)
        return prepare_auto(device=device, strength=strength, **options)
    net = _base_model(model, device, pretrained, backend, precision)
    if auto and is_blind(net) and estimated_levels(net) is None:
        net = EstimatedLevel(net, strength)
    if self_ensemble:
        net = SelfEnsemble(net)
    if precision != "float32" and backend == "torch":  # the ONNX backends compile it in
        net = Autocast(net, getattr(torch, precision))
    return net


def prepare_auto(
    white: str | os.PathLike = DEFAULT_MODEL,
    blind: str | os.PathLike = DEFAULT_BLIND_MODEL,
    device: str | torch.device | None = None,
    *,
    strength: float = 1.0,
    **options,
) -> AutoDenoiser:
    """The automatic mode (:class:`~.auto.AutoDenoiser`) of a white-noise model and a blind
    model, each a name or weights path prepared by :func:`prepare_model` with ``options``
    (``self_ensemble``, ``precision``, ``pretrained``, ``backend``);
    ``prepare_model("auto", auto=True)``
    is this with the defaults. Other pairs are for benchmarks of candidate models."""
    white_net = prepare_model(white, device, **options)
    blind_net = prepare_model(blind, device, auto=True, strength=strength, **options)
    if not is_blind(blind_net):
        raise ValueError(f"{os.fspath(blind)} is not a blind model (it has no noise estimator)")
    names = (os.fspath(white), os.fspath(blind))
    return AutoDenoiser(white_net, blind_net, names, strength)
