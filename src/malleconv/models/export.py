"""Exporting MalleNet models to ONNX graphs with a dynamic batch, height and width.

:func:`export_onnx` writes one of two graphs, the interface every runtime builds against
(the ONNX Runtime backend of :mod:`malleconv.inference.onnx_backend`, a browser page):

* a white-noise model (``mallenet-s``, ``mallenet-s-gray``, any :class:`MalleNet`):
  inputs ``noisy`` float32 ``[N, C, H, W]`` in [0, 1], ``sigma`` float32 ``[N]`` (8-bit
  units) and ``strength`` float32 ``[1]``; output ``denoised`` ``[N, C, H, W]``, not
  clipped. The net gets the level ``clamp(sigma * strength, 0, 75)``
  (:class:`WhiteNoiseGraph`);
* a blind model (``mallenet-s-real``, :class:`BlindMalleNet`), its noise-level estimator
  inside the graph: inputs ``noisy`` ``[N, 3, H, W]``, ``strength`` ``[1]`` and
  ``max_level`` and ``min_level`` ``[N]`` (8-bit units: the estimated map is capped at
  ``max_level``, then raised to at least ``min_level``, before the strength applies; +inf and
  0 mean neither, and a cap of 75 at a strength of at least 1 is none either);
  outputs ``denoised`` and ``level`` ``[N, 1, H, W]``,
  the level map the denoiser got (:class:`BlindGraph`).

The automatic mode's choice between them reads the image in numpy
(:mod:`malleconv.inference.noise_level`) and stays outside the graphs: a runtime runs that
code, then one of the two graphs.

The graphs are recorded with PyTorch's TorchScript-based exporter (``dynamo=False``) at
opset 17, inside :func:`~malleconv.ops.export_mode`, where slice-and-conv and the padding
to a multiple of 8 are written in standard operators (docs/design.md says why this
exporter and opset). ``target`` picks between equal ways to write the activations:
``"cpu"`` (default) for ONNX Runtime's x86 CPU provider, ``"web"`` for onnxruntime-web
(:data:`~malleconv.ops.slice_conv_export.EXPORT_TARGETS`). The file's metadata holds the
model card's facts and the target (:func:`onnx_metadata`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import warnings
from pathlib import Path

import torch
from torch import nn

from ..data.noise import SIGMA_MAX, SIGMA_MIN
from ..io.atomic import temporary_path
from ..ops.slice_conv_export import EXPORT_TARGETS, export_mode
from .blind import BlindMalleNet, limit_level
from .fuse import fuse_batchnorm
from .mallenet import MalleNet
from .registry import load_model, weights_dir

__all__ = [
    "EXPORT_FORMAT",
    "OPSET",
    "BlindGraph",
    "WhiteNoiseGraph",
    "export_onnx",
    "onnx_metadata",
    "weights_digest",
]

# The ONNX opset of the exported graphs (docs/design.md: why 17).
OPSET = 17
# Bumped whenever the graphs change for the same weights, so cached files are re-exported.
EXPORT_FORMAT = 5

# What docs/models.md (the model cards) says each shipped model was trained on.
_TRAINING_DATA = {
    "mallenet-s": "train/CBSD432 (424 images, the last 8 by name held out); white Gaussian "
    "noise, sigma in [0, 75]",
    "mallenet-s-gray": "BT.601 luminance of train/CBSD432 (424 images, 8 held out); white "
    "Gaussian noise, sigma in [0, 75]",
    "mallenet-s-real": "train/CBSD432 and train/OpenPhotos (last 8 OpenPhotos files held "
    "out); camera-like noise (p 0.5), no noise (p 0.05), white Gaussian noise otherwise",
}

_WHITE_INPUTS = (
    "noisy: float32 [N, C, H, W] in [0, 1]; sigma: float32 [N], noise std in 8-bit units "
    "(0-255); strength: float32 [1], multiplies sigma (the net gets clamp(sigma * strength, "
    "0, 75))"
)
_WHITE_OUTPUTS = "denoised: float32 [N, C, H, W], not clipped"
_BLIND_INPUTS = (
    "noisy: float32 [N, 3, H, W] in [0, 1]; strength: float32 [1], multiplies the estimated "
    "level map; max_level: float32 [N], 8-bit units, caps the estimated map before the "
    "strength (+inf: no cap; 75 too when strength >= 1); min_level: float32 [N], 8-bit units, "
    "the least level after the cap, before the strength (0: none)"
)
_BLIND_OUTPUTS = (
    "denoised: float32 [N, 3, H, W], not clipped; level: float32 [N, 1, H, W], the level map "
    "(8-bit units) the denoiser got, after cap, strength and clamp to [0, 75]"
)


class WhiteNoiseGraph(nn.Module):
    """The exported white-noise graph: ``forward(noisy (N, C, H, W), sigma (N,),
    strength (1,)) -> denoised (N, C, H, W)``, the net run at
    ``clamp(sigma * strength, 0, 75)``, as :func:`malleconv.denoise` runs it."""

    def __init__(self, net: MalleNet):
        super().__init__()
        self.net = net

    def forward(self, noisy: torch.Tensor, sigma: torch.Tensor, strength: torch.Tensor):
        level = (sigma * strength).clamp(SIGMA_MIN, SIGMA_MAX)
        return self.net(noisy, level)


class BlindGraph(nn.Module):
    """The exported blind graph: ``forward(noisy (N, 3, H, W), strength (1,),
    max_level (N,), min_level (N,)) -> (denoised (N, 3, H, W), level (N, 1, H, W))``, the
    same steps as :meth:`BlindMalleNet.forward` with ``sigma=None`` (estimate,
    ``map_variation``, cap, bound, strength, clamp to [0, 75])."""

    def __init__(self, model: BlindMalleNet):
        super().__init__()
        self.model = model

    def forward(
        self,
        noisy: torch.Tensor,
        strength: torch.Tensor,
        max_level: torch.Tensor,
        min_level: torch.Tensor,
    ):
        model = self.model
        level = model._level_from_estimate(model.estimator(noisy))
        level = limit_level(level, max_level, min_level)
        level = (level * strength).clamp(SIGMA_MIN, SIGMA_MAX)
        return model.denoiser(noisy, level), level


def weights_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a weights file, hex (keys the cache of exported graphs)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _commit() -> str | None:
    """The git commit of the source tree the package runs from, when it is a checkout."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def onnx_metadata(
    model: nn.Module,
    name: str | None = None,
    weights: str | os.PathLike | None = None,
    target: str = "cpu",
) -> dict[str, str]:
    """The metadata an exported file carries: the model card's facts and the interface.

    Keys: ``name``, ``version`` (of malleconv), ``kind`` (``white`` or ``blind``),
    ``training_data``, ``sigma_units``, ``inputs``, ``outputs``, ``config`` (JSON of the
    architecture), ``opset``, ``export_format``, ``target`` (what the graph is tuned
    for, :func:`export_onnx`), and where known ``weights_sha256`` (of
    ``weights``, the file the model was loaded from), ``training_steps``,
    ``malleconv_commit``, ``model_card``.
    """
    from .. import __version__

    name = name or getattr(model, "model_name", None) or type(model).__name__
    blind = isinstance(model, BlindMalleNet)
    config = model.spec_config() if blind else model.config.to_dict()
    meta = {
        "name": name,
        "version": __version__,
        "kind": "blind" if blind else "white",
        "training_data": _TRAINING_DATA.get(name, "not recorded (not a shipped model)"),
        "sigma_units": "8-bit (0-255)",
        "inputs": _BLIND_INPUTS if blind else _WHITE_INPUTS,
        "outputs": _BLIND_OUTPUTS if blind else _WHITE_OUTPUTS,
        "config": json.dumps(config, sort_keys=True),
        "opset": str(OPSET),
        "export_format": str(EXPORT_FORMAT),
        "target": target,
    }
    if name in _TRAINING_DATA:
        meta["model_card"] = f"docs/models.md#{name}"
    if weights is not None and Path(weights).is_file():
        weights = Path(weights)
        meta["weights_sha256"] = weights_digest(weights)
        spec = weights.with_suffix(".json")
        spec = json.loads(spec.read_text()) if spec.is_file() else {}
        steps = spec.get("meta", {}).get("steps")
        if steps is not None:
            meta["training_steps"] = str(steps)
    commit = _commit()
    if commit:
        meta["malleconv_commit"] = commit
    return meta


def _graph_and_io(model: nn.Module):
    """``(graph module, example inputs, input names, output names, dynamic axes)``."""
    # Example sizes other than 1 and 8-multiples, so that no size is taken for a constant.
    n, h, w = 2, 40, 56
    if isinstance(model, BlindMalleNet):
        graph = BlindGraph(model)
        args = (torch.rand(n, 3, h, w), torch.ones(1), torch.full((n,), SIGMA_MAX), torch.zeros(n))
        inputs = ["noisy", "strength", "max_level", "min_level"]
        outputs = ["denoised", "level"]
        axes = {"noisy": {0: "N", 2: "H", 3: "W"}, "max_level": {0: "N"}, "min_level": {0: "N"}}
        axes |= {"denoised": {0: "N", 2: "H", 3: "W"}, "level": {0: "N", 2: "H", 3: "W"}}
    elif isinstance(model, MalleNet):
        graph = WhiteNoiseGraph(model)
        c = model.config.in_channels
        args = (torch.rand(n, c, h, w), torch.full((n,), 25.0), torch.ones(1))
        inputs, outputs = ["noisy", "sigma", "strength"], ["denoised"]
        axes = {"noisy": {0: "N", 2: "H", 3: "W"}, "sigma": {0: "N"}}
        axes |= {"denoised": {0: "N", 2: "H", 3: "W"}}
    else:
        raise TypeError(
            f"export_onnx exports MalleNet and BlindMalleNet models, got {type(model).__name__}"
        )
    return graph.eval(), args, inputs, outputs, axes


def _unwrap(model: nn.Module) -> nn.Module:
    """The network inside inference wrappers (``.model`` of ``DenoiserWrapper``)."""
    inner = model
    while not isinstance(inner, (MalleNet, BlindMalleNet)):
        nxt = inner._modules.get("model") if isinstance(inner, nn.Module) else None
        if nxt is None:
            break
        inner = nxt
    return inner


def export_onnx(
    model: str | os.PathLike | nn.Module,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    target: str = "cpu",
) -> Path:
    """Export a model to an ONNX file at ``path`` (written atomically); returns the path.

    Args:
        model: A registered name (its shipped weights), a ``.safetensors`` path or a
            :class:`MalleNet` / :class:`BlindMalleNet` (also inside inference wrappers
            such as the automatic level of a blind model: the network is exported, the
            wrapper's settings are the graph's inputs). It is not modified: BatchNorm is
            folded into a copy.
        path: The ``.onnx`` file to write.
        name: The model name stored in the metadata (default: the model's).
        target: ``"cpu"`` (ONNX Runtime's CPU provider: each PReLU written as 1x1
            depthwise convolutions, a ReLU and an Add, which its blocked layout chains), ``"web"``
            (onnxruntime-web's WebAssembly: ONNX PRelu) or ``"openvino"`` (PReLU as Max and
            Mul, which OpenVINO fuses; the target is recorded).
            All compute the same function to float rounding (docs/design.md).

    The graph (module docstring) takes any batch, height and width (1x1 included) and
    matches the PyTorch model to float rounding (``tests/test_onnx.py``,
    ``benchmarks/onnx_parity.py``).

    Raises:
        TypeError: a model that is not a MalleNet (DnCNN, the ablation's networks) or a
            self-ensemble / autocast wrapper.
        ValueError: a guided MalleConv (no export path), an unknown name or target,
            ``"auto"`` (the automatic mode is two graphs and a decision in Python).
        ImportError: the ``onnx`` package is missing (``pip install 'malleconv[onnx]'``).
    """
    try:
        import onnx
    except ImportError as err:
        raise ImportError(
            "exporting to ONNX needs the onnx package: pip install 'malleconv[onnx]'"
        ) from err
    import copy

    from .ensemble import SelfEnsemble
    from .precision import Autocast

    path = Path(path)
    weights = None
    if target not in EXPORT_TARGETS:
        raise ValueError(f"target must be one of {', '.join(EXPORT_TARGETS)}, got {target!r}")
    if isinstance(model, str) and model == "auto":
        raise ValueError(
            "the automatic mode is not one graph: it reads each image in Python and runs "
            "mallenet-s or mallenet-s-real; export those two (docs/design.md, the ONNX export)"
        )
    if isinstance(model, (str, os.PathLike)):
        net = load_model(model)
        name = name or getattr(net, "model_name", None)
        shipped = weights_dir() / f"{os.fspath(model)}.safetensors"
        weights = shipped if shipped.is_file() else Path(model)
    else:
        if any(isinstance(m, (SelfEnsemble, Autocast)) for m in model.modules()):
            raise TypeError(
                "export_onnx: a self-ensemble or autocast wrapper cannot be exported; "
                "export the model itself"
            )
        net = copy.deepcopy(_unwrap(model)).cpu().float()
        name = name or getattr(net, "model_name", None)
    cfg = net.config if isinstance(net, (MalleNet, BlindMalleNet)) else None
    if cfg is not None and cfg.malle_dynamic and cfg.malle_guided:
        raise ValueError(
            f"export_onnx: {name or 'the model'} has guided MalleConvs, which have no export path"
        )
    net = fuse_batchnorm(net).eval()
    graph, args, inputs, outputs, axes = _graph_and_io(net)
    tmp = temporary_path(path)  # a unique name: never a file of the user's
    try:
        meta = onnx_metadata(net, name, weights, target)
        _write(onnx, graph, args, inputs, outputs, axes, tmp, meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write(onnx, graph, args, inputs, outputs, axes, tmp: Path, meta: dict) -> None:
    """Record ``graph`` on ``args`` into the file ``tmp`` with the metadata ``meta``."""
    with torch.no_grad(), export_mode(meta["target"]), warnings.catch_warnings():
        # The tracer warns about every shape read; the graph is checked against the model
        # at several sizes by the tests instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            args,
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    proto = onnx.load(str(tmp))
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"malleconv {meta['name']} ({meta['kind']}-noise graph). {meta['inputs']}"
    proto.producer_name = "malleconv"
    proto.producer_version = meta["version"]
    onnx.save(proto, str(tmp))
