"""The ONNX backends: exported graphs run as denoisers of the project's interface.

:class:`OnnxDenoiser` and :class:`OnnxBlindDenoiser` are ``nn.Module``s around a session
of a graph written by :func:`~malleconv.models.export.export_onnx`: an
``onnxruntime.InferenceSession`` (``backend="onnxruntime"``) or an
:class:`~.openvino_backend.OpenVinoSession` (``backend="openvino"``), with the calls the
PyTorch models have (``forward(noisy, sigma)``; for the blind one also ``strength``,
``max_level``, ``min_level`` and ``return_level``). So :func:`~.prepare.prepare_model`, the
automatic mode's choice per image (which stays in Python, outside the graphs), tiling, streaming,
the self-ensemble, 16-bit and alpha run unchanged with every backend.

Exported files are cached on disk (:func:`exported_graph`): ``MALLECONV_CACHE`` or
``$XDG_CACHE_HOME/malleconv`` (default ``~/.cache/malleconv``), under ``onnx/``, one file per
model keyed by its name, the SHA-256 of its weights, the package version and the export
format (and the export target when it is not ``cpu``), so new weights or a new exporter
never reuse a stale graph. The first use of a model exports it (about 5 s); later uses
load the file. A model given as an ``nn.Module`` is exported into memory on every
preparation, never cached. Each backend runs the export target measured fastest on it
(:data:`BACKEND_TARGETS`, docs/design.md).

``onnxruntime`` and ``onnx`` are an optional extra, ``pip install 'malleconv[onnx]'``;
OpenVINO another, ``pip install 'malleconv[openvino]'``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models.export import EXPORT_FORMAT, OPSET, export_onnx, weights_digest
from ..models.mallenet import MalleNetConfig
from ..models.registry import MODEL_CONFIGS, weights_dir

__all__ = [
    "BACKEND_TARGETS",
    "ONNX_BACKENDS",
    "OnnxBlindDenoiser",
    "OnnxDenoiser",
    "cache_dir",
    "exported_graph",
    "onnx_denoiser",
    "require_onnxruntime",
    "session_options",
]

# The backends that run exported graphs, and the export target each runs: ONNX Runtime's
# CPU provider chains PReLU written as convolutions through its blocked layout; OpenVINO
# fuses the Max / Mul form itself and runs it faster (docs/benchmarks/onnx_speed.md).
ONNX_BACKENDS = ("onnxruntime", "openvino")
BACKEND_TARGETS = {"onnxruntime": "cpu", "openvino": "openvino"}


def require_runtime(module: str, extra: str):
    """The runtime ``module`` of the backend of that name, with ``onnx`` (the exporter
    writes the metadata with it), or an ImportError that names the ``extra`` to install."""
    import importlib

    hint = f"pip install 'malleconv[{extra}]'"
    try:
        runtime = importlib.import_module(module)
    except ImportError as err:
        needs = f"backend {module!r} needs the {module} and onnx packages"
        raise ImportError(f"{needs}: {hint}") from err
    try:
        import onnx  # noqa: F401
    except ImportError as err:
        raise ImportError(f"backend {module!r} needs the onnx package: {hint}") from err
    return runtime


def require_onnxruntime():
    """The ``onnxruntime`` module, or an ImportError that names the extra to install."""
    return require_runtime("onnxruntime", "onnx")


def cache_dir() -> Path:
    """Where exported graphs are cached: ``$MALLECONV_CACHE/onnx``, else
    ``$XDG_CACHE_HOME/malleconv/onnx`` (``~/.cache/malleconv/onnx``)."""
    root = os.environ.get("MALLECONV_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "malleconv")
    return Path(root) / "onnx"


def _weights_file(name_or_path: str | os.PathLike) -> tuple[Path, str]:
    """``(weights file, model name)`` of a registered name or a ``.safetensors`` path."""
    s = os.fspath(name_or_path)
    if s in MODEL_CONFIGS:
        path = weights_dir() / f"{s}.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"no pretrained weights are shipped for {s!r} ({path})")
        return path, s
    path = Path(s)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    spec = path.with_suffix(".json")
    name = json.loads(spec.read_text()).get("name", path.stem) if spec.is_file() else path.stem
    return path, name


def exported_graph(
    name_or_path: str | os.PathLike, *, part: str | None = None, target: str = "cpu"
) -> Path:
    """The cached ONNX file of a registered model or weights file, exported on first use.

    ``part="denoiser"`` is the white-noise graph of a blind model's denoiser (what a blind
    model runs when it is given a level); ``target`` the export target
    (:func:`~malleconv.models.export.export_onnx`). The file name holds the model name,
    the first 16 hex digits of the weights' SHA-256, the package version, the export
    format and a target other than ``cpu``.
    """
    from .. import __version__
    from ..models.registry import load_model

    weights, name = _weights_file(name_or_path)
    digest = weights_digest(weights)[:16]
    label = name if part is None else f"{name}.{part}"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)
    suffix = "" if target == "cpu" else f"-{target}"
    path = cache_dir() / f"{safe}-{digest}-v{__version__}-f{EXPORT_FORMAT}-op{OPSET}{suffix}.onnx"
    if not path.is_file():
        if part is None:
            export_onnx(name_or_path, path, target=target)
        else:
            model = load_model(name_or_path)
            export_onnx(getattr(model, part), path, name=label, target=target)
    return path


def session_options(threads: int | None = None):
    """The session options the backend runs with: every graph optimisation, ``threads``
    intra-op threads (default: PyTorch's thread count, so ``--threads`` applies to both
    backends), sequential execution (measured in docs/benchmarks/onnx_speed.md)."""
    ort = require_onnxruntime()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return so


def require_backend(backend: str):
    """The runtime module of ``backend`` (one of :data:`ONNX_BACKENDS`), or an ImportError
    that names the extra to install."""
    if backend == "openvino":
        from .openvino_backend import require_openvino

        return require_openvino()
    if backend != "onnxruntime":
        raise ValueError(f"backend must be one of {', '.join(ONNX_BACKENDS)}, got {backend!r}")
    return require_onnxruntime()


def _session(
    source: str | bytes,
    threads: int | None,
    backend: str = "onnxruntime",
    precision: str = "float32",
):
    if backend == "openvino":
        from .openvino_backend import OpenVinoSession

        return OpenVinoSession(source, int(threads or torch.get_num_threads()), precision)
    if precision != "float32":
        raise ValueError(f"backend 'onnxruntime' runs float32, got precision={precision!r}")
    ort = require_onnxruntime()
    return ort.InferenceSession(
        source, session_options(threads), providers=["CPUExecutionProvider"]
    )


def _metadata(session) -> dict[str, str]:
    if hasattr(session, "metadata"):  # OpenVinoSession
        return dict(session.metadata)
    return dict(session.get_modelmeta().custom_metadata_map)


def _backend_name(session) -> str:
    return getattr(session, "backend", "onnxruntime")


def _per_image(value, n: int, what: str) -> np.ndarray:
    """A number or a per-image ``(N,)`` tensor / array as a float32 ``(N,)`` array."""
    if torch.is_tensor(value):
        value = value.detach().to("cpu", torch.float32).numpy()
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 0:
        return np.full((n,), float(arr), dtype=np.float32)
    if arr.ndim == 4 and arr.shape[:2] == (n, 1):
        flat = arr.reshape(n, -1)
        if (flat == flat[:, :1]).all():  # a constant map per image is a number per image
            return np.ascontiguousarray(flat[:, 0])
    if arr.shape != (n,):
        raise ValueError(
            f"the ONNX backends take {what} as a number or one value per image "
            f"(shape ({n},)), got shape {arr.shape}; level maps need backend='torch'"
        )
    return np.ascontiguousarray(arr)


def _as_input(noisy: torch.Tensor, channels: int) -> np.ndarray:
    """``noisy (N, C, H, W)`` as the contiguous float32 array the graphs take."""
    if not torch.is_tensor(noisy) or noisy.dim() != 4 or noisy.shape[1] != channels:
        shape = tuple(noisy.shape) if torch.is_tensor(noisy) else type(noisy).__name__
        raise ValueError(f"noisy must have shape (B, {channels}, H, W), got {shape}")
    if noisy.device.type != "cpu":
        raise ValueError(f"the ONNX backends run on the CPU, got a tensor on {noisy.device}")
    return np.ascontiguousarray(noisy.detach().to(torch.float32).numpy())


class OnnxDenoiser(nn.Module):
    """A white-noise graph as a denoiser: ``forward(noisy (B, C, H, W), sigma) ->
    (B, C, H, W)`` with ``sigma`` a number or ``(B,)`` in 8-bit units (clamped to [0, 75]
    in the graph), float32 on the CPU, not clipped.

    Attributes: ``session`` (an ``onnxruntime.InferenceSession`` or an
    :class:`~.openvino_backend.OpenVinoSession`), ``backend`` (which), ``config`` (the
    network's :class:`~malleconv.models.MalleNetConfig`), ``model_name``, ``metadata`` (the
    file's).
    """

    def __init__(self, session, name: str | None = None):
        super().__init__()
        self.session = session
        self.backend = _backend_name(session)
        self.metadata = _metadata(session)
        if self.metadata.get("kind") != "white":
            kind = self.metadata.get("kind")
            raise ValueError(f"not a white-noise graph (metadata kind {kind!r})")
        self.config = MalleNetConfig(**json.loads(self.metadata["config"]))
        self.model_name = name or self.metadata.get("name", "onnx")
        self.eval()

    def forward(self, noisy: torch.Tensor, sigma=None) -> torch.Tensor:
        if sigma is None:
            raise ValueError("sigma is required: this model is conditioned on the noise level")
        x = _as_input(noisy, self.config.in_channels)
        feed = {
            "noisy": x,
            "sigma": _per_image(sigma, x.shape[0], "sigma"),
            "strength": np.ones((1,), np.float32),
        }
        (out,) = self.session.run(["denoised"], feed)
        return torch.from_numpy(out)

    def extra_repr(self) -> str:
        return f"{self.model_name}, {self.backend}"


class OnnxBlindDenoiser(nn.Module):
    """A blind graph as a denoiser, called as :class:`~malleconv.models.BlindMalleNet` is:
    ``forward(noisy (B, 3, H, W), sigma=None, *, strength=1.0, return_level=False,
    max_level=None, min_level=None)``.

    ``sigma`` None: the graph estimates the level map, caps it at ``max_level`` (a number
    or ``(B,)``; None: no cap, fed to the graph as +inf), raises it to at least
    ``min_level`` (likewise; None: fed as 0), multiplies it by ``strength``;
    returns the denoised batch, and with ``return_level`` also the ``(B, 1, H, W)`` level
    map the denoiser got. A given
    ``sigma`` (number or ``(B,)``) runs the model's denoiser on it, as the PyTorch model
    does, through the denoiser's own white-noise graph (``denoiser``, exported on first
    use).
    """

    estimates_level = True

    def __init__(self, session, name: str | None = None, denoiser=None):
        super().__init__()
        self.session = session
        self.backend = _backend_name(session)
        self.metadata = _metadata(session)
        if self.metadata.get("kind") != "blind":
            raise ValueError(f"not a blind graph (metadata kind {self.metadata.get('kind')!r})")
        spec = json.loads(self.metadata["config"])
        self.config = MalleNetConfig(**spec["denoiser"])
        self.model_name = name or self.metadata.get("name", "onnx")
        self._denoiser = denoiser
        self.eval()

    def forward(
        self,
        noisy: torch.Tensor,
        sigma=None,
        *,
        strength: float = 1.0,
        return_level: bool = False,
        max_level=None,
        min_level=None,
    ):
        if sigma is not None:
            return self._given_level(noisy, sigma, strength, return_level)
        x = _as_input(noisy, 3)
        n = x.shape[0]
        feed = {
            "noisy": x,
            "strength": np.full((1,), float(strength), np.float32),
            # No cap is an infinite one: 75 would still cap estimates above 75 before a
            # strength below 1 applies.
            "max_level": _per_image(np.inf if max_level is None else max_level, n, "max_level"),
            "min_level": _per_image(0.0 if min_level is None else min_level, n, "min_level"),
        }
        out, level = self.session.run(["denoised", "level"], feed)
        out = torch.from_numpy(out)
        return (out, torch.from_numpy(level)) if return_level else out

    def _given_level(self, noisy, sigma, strength, return_level):
        if self._denoiser is None:
            raise ValueError(
                f"{self.model_name}: this graph estimates its own level; to give a sigma, "
                "prepare the model by name or weights path (its denoiser is exported then)"
            )
        if callable(self._denoiser) and not isinstance(self._denoiser, nn.Module):
            self._denoiser = self._denoiser()
        n = noisy.shape[0]
        level = np.clip(_per_image(sigma, n, "sigma") * float(strength), 0.0, 75.0)
        out = self._denoiser(noisy, level)
        if not return_level:
            return out
        h, w = noisy.shape[-2:]
        return out, torch.from_numpy(level).view(n, 1, 1, 1).expand(n, 1, h, w)

    def extra_repr(self) -> str:
        return f"{self.model_name}, {self.backend}"


def _wrap(session, name: str | None, denoiser=None) -> nn.Module:
    kind = _metadata(session).get("kind")
    if kind == "blind":
        return OnnxBlindDenoiser(session, name, denoiser)
    return OnnxDenoiser(session, name)


def onnx_denoiser(
    model: str | os.PathLike | nn.Module,
    *,
    threads: int | None = None,
    backend: str = "onnxruntime",
    precision: str = "float32",
) -> nn.Module:
    """The denoiser of ``model`` run by ``backend`` (``"onnxruntime"`` or ``"openvino"``):
    a registered name or ``.safetensors`` path (its graph from the cache,
    :func:`exported_graph`, in the backend's target :data:`BACKEND_TARGETS`), an ``.onnx``
    file written by :func:`~malleconv.models.export.export_onnx` (any target), or a
    MalleNet / BlindMalleNet module (exported into memory now). ``precision``:
    ``"float32"``, or with OpenVINO also ``"bfloat16"``."""
    require_backend(backend)
    target = BACKEND_TARGETS[backend]

    def session(source):
        return _session(source, threads, backend, precision)

    if isinstance(model, nn.Module):
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model, Path(tmp) / "model.onnx", target=target)
            data = path.read_bytes()
        graph = session(data)
        denoiser = None
        if _metadata(graph).get("kind") == "blind":
            inner = getattr(model, "denoiser", None)
            if inner is not None:
                denoiser = lambda: onnx_denoiser(  # noqa: E731
                    inner, threads=threads, backend=backend, precision=precision
                )
        return _wrap(graph, getattr(model, "model_name", None), denoiser)
    s = os.fspath(model)
    if s.endswith(".onnx"):
        if not Path(s).is_file():
            raise FileNotFoundError(f"ONNX file not found: {s}")
        return _wrap(session(s), None)
    graph = session(str(exported_graph(s, target=target)))
    denoiser = None
    if _metadata(graph).get("kind") == "blind":
        denoiser = lambda: OnnxDenoiser(  # noqa: E731
            session(str(exported_graph(s, part="denoiser", target=target)))
        )
    return _wrap(graph, _weights_file(s)[1], denoiser)
