"""Where int8 quantisation of ``mallenet-s``'s ONNX Runtime graph loses quality, and what it
gains in speed.

    python research/onnx_int8.py --data $MALLECONV_DATA [--holdout 8] [--crop 384]
        [--repeats 3] [--out docs/research]

The ``cpu`` graph of ``mallenet-s`` (what ``--backend onnxruntime`` runs) is quantised to
int8 after training (``onnxruntime.quantization.quantize_static``, QDQ format, uint8
activations per tensor, int8 weights per channel, calibrated on noisy crops of the first 8
``train/CBSD432`` images as ``benchmarks/onnx_parity.py`` calibrates), whole or with groups
of nodes left in float32 (:data:`GROUPS`). Each variant is scored on the held-out training
files (the last ``--holdout`` of ``train/CBSD432`` and ``train/OpenPhotos`` in order, as the
trainer holds them out; ``--crop`` centre crops, white noise of sigma 25, one draw, PSNR of
the 8-bit output) and timed at 512x512 beside float32 ONNX Runtime and PyTorch (the model
as ``denoise`` prepares it), all in alternating rounds in one process, best time. No test
set is used. The question it answers: is there an int8 graph that runs faster than PyTorch
at no visible cost, and if not, which part of the network loses the quality. Writes
``onnx_int8.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from malleconv.runtime import command_line, cpu_name, tune_allocator, write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from onnx_parity import _calibration_reader  # noqa: E402  (one calibration, one definition)

# Nodes left in float32, by a test on the node's name in the exported graph (the module
# path of the layer that wrote it). "top" is everything outside the network's modules (the
# noise-level map, padding and cropping, the output's subtraction): left in float32 by
# every partial variant, so that the variants differ only in the group named.
LEVEL0 = ("encoders.0", "decoders.0", "/tail/", "heads.0", "fuse.0")
LEVELS123 = tuple(f"{part}.{lvl}" for lvl in (1, 2, 3)
                  for part in ("encoders", "decoders", "heads", "fuse"))
GROUPS = {
    "MalleConv layers (slice-and-conv and predictors)": lambda n: "/conv/" in n.name,
    "first and last convolutions (heads, tail)": lambda n: "/heads." in n.name
    or "/tail/" in n.name,
    "level 0 (full resolution)": lambda n: _in(n, LEVEL0),
    "levels 1-3": lambda n: _in(n, LEVELS123),
    "level 0's additions": lambda n: n.op_type == "Add" and _in(n, LEVEL0),
    "level 0's MalleConv": lambda n: "decoders.0/body/body.1/" in n.name,
}


def _in(node, parts) -> bool:
    return any(part in node.name for part in parts)


def _is_top(name: str) -> bool:
    return not name.startswith("/net/") or name.count("/") <= 2


def _excluded(graph, group: str) -> list[str]:
    """Names of the nodes of ``graph`` that the variant ``group`` leaves in float32."""
    return [n.name for n in graph.node if _is_top(n.name) or GROUPS[group](n)]


def variants(src: Path, calibration: Path, tmp: Path) -> dict[str, Path]:
    """``{label: ONNX file}``: float32, int8 whole (min/max and percentile calibration),
    int8 of the convolutions only, and int8 with each of :data:`GROUPS` left in float32."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    pre = tmp / "pre.onnx"
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    graph = onnx.load(str(pre)).graph
    inputs = [i.name for i in graph.input]
    plans = {
        "int8, whole graph": {},
        "int8, whole graph, percentile calibration": {
            "calibrate_method": CalibrationMethod.Percentile},
        "int8, convolutions only": {"op_types_to_quantize": ["Conv"]},
    }
    for group in GROUPS:
        plans[f"int8, {group} in float32"] = {"nodes_to_exclude": _excluded(graph, group)}
    files = {"float32": src}
    for i, (label, extra) in enumerate(plans.items()):
        dst = tmp / f"v{i}.onnx"
        quantize_static(
            str(pre), str(dst), _calibration_reader(calibration, inputs, False),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, per_channel=True, **extra,
        )  # fmt: skip
        files[label] = dst
        print("quantised:", label, flush=True)
    return files


def held_out(data: Path, count: int, crop: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(clean (H, W, 3) float in [0, 1], noisy (1, 3, H, W))`` per held-out file: the
    last ``count`` of ``train/CBSD432`` and ``train/OpenPhotos`` in order, centre crops,
    white noise of sigma 25 (one seeded draw)."""
    from malleconv.io import list_images
    from malleconv.training.validation import load_val_images

    folders = [data / "train" / "CBSD432", data / "train" / "OpenPhotos"]
    files = [f for f, _ in list_images(folders)][-count:]
    rng = np.random.default_rng(0)
    out = []
    for _, clean in load_val_images(files, count, crop, gray=False):
        c = clean.astype(np.float32) / 255
        noisy = c + rng.normal(0, 25 / 255, c.shape).astype(np.float32)
        out.append((c, np.ascontiguousarray(noisy.transpose(2, 0, 1)[None])))
    return out


def _feed(names, x, sigma=25.0):
    feed = {"noisy": x, "sigma": np.full(1, sigma, np.float32), "strength": np.ones(1, np.float32)}
    return {k: v for k, v in feed.items() if k in names}


def measure(files: dict[str, Path], items, repeats: int) -> dict[str, dict]:
    """Per variant: held-out PSNR (dB) and best seconds at 512x512; ``"PyTorch"`` too."""
    import onnxruntime as ort

    from malleconv.inference.onnx_backend import session_options
    from malleconv.inference.prepare import prepare_model

    cpu = ["CPUExecutionProvider"]
    sessions = {k: ort.InferenceSession(str(p), session_options(), providers=cpu)
                for k, p in files.items()}
    rows: dict[str, dict] = {}
    for label, s in sessions.items():
        names = [i.name for i in s.get_inputs()]
        scores = []
        for clean, noisy in items:
            y = s.run(None, _feed(names, noisy))[0][0].transpose(1, 2, 0)
            y = np.round(np.clip(y, 0, 1) * 255) / 255
            scores.append(10 * np.log10(1 / np.mean((y - clean) ** 2)))
        rows[label] = {"psnr": float(np.mean(scores)), "seconds": float("inf")}
        print(f"{label}: {rows[label]['psnr']:.3f} dB", flush=True)
    net = prepare_model("mallenet-s")
    rng = np.random.default_rng(1)
    x = rng.random((1, 3, 512, 512), dtype=np.float32)
    xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    sigma = torch.tensor([25.0])
    # One call per graph with its feed built once, so the timed region is the run alone.
    runs = {"PyTorch": lambda: net(xt, sigma)}
    for label, s in sessions.items():
        feed = _feed([i.name for i in s.get_inputs()], x)
        runs[label] = lambda s=s, feed=feed: s.run(None, feed)
    rows["PyTorch"] = {"psnr": None, "seconds": float("inf")}
    with torch.inference_mode():
        for run in runs.values():  # a warm-up each
            run()
        for _ in range(repeats):
            for label in [*sessions, "PyTorch"]:
                for _ in range(2):
                    start = time.perf_counter()
                    runs[label]()
                    elapsed = time.perf_counter() - start
                    rows[label]["seconds"] = min(rows[label]["seconds"], elapsed)
    return rows


def table(rows: dict[str, dict], command: str, cpu: str, threads: int) -> str:
    base, torch_s = rows["float32"]["psnr"], rows["PyTorch"]["seconds"]
    lines = [
        "# int8 quantisation of the ONNX Runtime graph",
        "",
        f"Made by `{command}` ({cpu}, {threads} threads). `mallenet-s`'s `cpu` graph "
        "quantised after training (QDQ, uint8 activations per tensor, int8 weights per "
        "channel, min/max calibration on noisy `train/CBSD432` crops unless named), whole or "
        "with a part left in float32 (with the graph's own glue outside the network's "
        "modules). PSNR: the held-out training files at sigma 25 (no test set); time: one "
        "512x512 image, best of alternating rounds, beside PyTorch (as `denoise` prepares it).",
        "",
        "| graph | held-out PSNR (dB) | cost | s at 512x512 | speed against PyTorch |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, r in rows.items():
        psnr = "" if r["psnr"] is None else f"{r['psnr']:.3f}"
        cost = "" if r["psnr"] is None or label == "float32" else f"{r['psnr'] - base:+.2f}"
        lines.append(f"| {label} | {psnr} | {cost} | {r['seconds']:.3f} | "
                     f"{torch_s / r['seconds']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the dataset root")
    ap.add_argument("--holdout", type=int, default=8)
    ap.add_argument("--crop", type=int, default=384)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="docs/research")
    args = ap.parse_args(argv)
    tune_allocator()
    from malleconv.inference.onnx_backend import exported_graph

    items = held_out(args.data, args.holdout, args.crop)
    with tempfile.TemporaryDirectory(prefix="onnx_int8-") as tmp:
        files = variants(exported_graph("mallenet-s"), args.data / "train" / "CBSD432", Path(tmp))
        rows = measure(files, items, args.repeats)
    text = table(rows, command_line("research/onnx_int8.py", argv), cpu_name(),
                 torch.get_num_threads())
    print(text)
    write_report(args.out, "onnx_int8", {"rows": rows}, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
