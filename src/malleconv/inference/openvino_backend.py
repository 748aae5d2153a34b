"""The OpenVINO backend: exported ONNX graphs compiled by OpenVINO's CPU plugin.

:class:`OpenVinoSession` reads a graph written by
:func:`~malleconv.models.export.export_onnx` (its ``openvino`` target) and answers the two
calls the ONNX denoisers of :mod:`~.onnx_backend` make of a session: ``run(names, feed)``
and ``metadata``. So the automatic mode, tiling, strength, 16-bit and alpha run on it as
on the other backends (``backend="openvino"``).

Why a compiled model per input shape: OpenVINO runs a graph compiled for fixed shapes
about 2.3x faster than the same graph left dynamic (docs/benchmarks/onnx_speed.md), and a
tiled photo has at most four tile shapes. Compiling one costs about a second; the
:data:`COMPILED_SHAPES` most recent shapes are kept.

``openvino`` (with ``onnx`` for the export) is an optional extra:
``pip install 'malleconv[openvino]'``.
"""

from __future__ import annotations

import collections
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["COMPILED_SHAPES", "OpenVinoSession", "require_openvino"]

# Compiled models kept per session: the tile shapes of a photo (interior, right, bottom,
# corner) plus a few whole images.
COMPILED_SHAPES = 6

# The backend's precisions: OpenVINO's inference precision hint. Without a hint its CPU
# plugin runs bfloat16 on processors that have it, so float32 is asked for explicitly.
_PRECISION_HINTS = {"float32": "f32", "bfloat16": "bf16"}


def require_openvino():
    """The ``openvino`` module, or an ImportError that names the extra to install."""
    from .onnx_backend import require_runtime

    return require_runtime("openvino", "openvino")


class OpenVinoSession:
    """An exported graph run by OpenVINO on the CPU, one compiled model per input shape.

    Args:
        source: The ``.onnx`` file, or its bytes.
        threads: Inference threads (OpenVINO's ``INFERENCE_NUM_THREADS``).
        precision: ``"float32"`` or ``"bfloat16"`` (OpenVINO's inference precision hint;
            on a CPU without bfloat16 OpenVINO runs float32).

    Attributes: ``metadata`` (the graph's ``metadata_props`` as a dict), ``backend``
    (``"openvino"``), ``precision``, ``threads``.
    """

    backend = "openvino"

    def __init__(self, source: str | os.PathLike | bytes, threads: int, precision: str = "float32"):
        if precision not in _PRECISION_HINTS:
            raise ValueError(
                f"backend 'openvino' runs precision {' or '.join(_PRECISION_HINTS)}, "
                f"got {precision!r}"
            )
        ov = require_openvino()
        self._core = ov.Core()
        if isinstance(source, bytes):
            # OpenVINO's ONNX reader takes a path; the graph is parsed into memory, so the
            # file need not outlive the read.
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.onnx"
                path.write_bytes(source)
                self._model = self._core.read_model(str(path))
        else:
            self._model = self._core.read_model(os.fspath(source))
        self.threads = int(threads)
        self.precision = precision
        self.metadata = _framework_info(self._model)
        self._compiled: collections.OrderedDict = collections.OrderedDict()

    def _request(self, shapes: tuple):
        """The infer request of the model compiled for ``shapes`` (input name, shape)."""
        hit = self._compiled.get(shapes)
        if hit is not None:
            self._compiled.move_to_end(shapes)
            return hit
        model = self._model.clone()
        model.reshape({name: list(shape) for name, shape in shapes})
        compiled = self._core.compile_model(
            model,
            "CPU",
            {
                "INFERENCE_NUM_THREADS": self.threads,
                "INFERENCE_PRECISION_HINT": _PRECISION_HINTS[self.precision],
                "PERFORMANCE_HINT": "LATENCY",
            },
        )
        hit = (compiled, compiled.create_infer_request())
        self._compiled[shapes] = hit
        while len(self._compiled) > COMPILED_SHAPES:
            self._compiled.popitem(last=False)
        return hit

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The outputs ``names`` for the inputs ``feed`` (name -> float32 array), as
        ``onnxruntime.InferenceSession.run`` returns them: new arrays."""
        shapes = tuple(sorted((name, tuple(arr.shape)) for name, arr in feed.items()))
        compiled, request = self._request(shapes)
        results = request.infer(feed)
        # The request reuses its output buffers on the next call: copy them out.
        return [np.array(results[compiled.output(name)], copy=True) for name in names]


def _framework_info(model) -> dict[str, str]:
    """The ONNX file's ``metadata_props``, which OpenVINO keeps under ``framework``."""
    if not model.has_rt_info(["framework"]):
        return {}
    keys = model.get_rt_info()["framework"]
    return {key: model.get_rt_info(["framework", key]).astype(str) for key in keys}
