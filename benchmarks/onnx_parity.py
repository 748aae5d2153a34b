"""ONNX Runtime and OpenVINO against PyTorch: output parity, PSNR, and quantised graphs.

    python benchmarks/onnx_parity.py [--data $MALLECONV_DATA] [--sizes 1x1 37x53 512x512
        1024x768] [--backends onnxruntime openvino openvino-bfloat16] [--variants fp32
        fp16 int8-dynamic int8-static] [--calibration train/CBSD432] [--out docs/benchmarks]

1. Parity: every shipped model, prepared as ``denoise`` runs it (torch) and as its
   exported graph with each of ``--backends`` (``openvino-bfloat16``: OpenVINO compiled in
   bfloat16, reported beside the float32 ones, not held to their target), on the same
   random input at each ``--sizes``: the largest absolute difference of the outputs
   (float32; target 1e-4). White-noise models at sigma 25, the blind model with its
   estimated level.
2. Quality: ``malleconv.denoise`` in its default mode with each backend, scored as
   ``malleconv eval`` scores (the protocol's seeded noise): CBSD68 at sigma 25 (told) and
   CC15 (real noise, the automatic mode); target for float32: the same PSNR to 0.01 dB.
3. Variants of ONNX Runtime's graphs, each scored the same way and timed at 512x512
   (``mallenet-s``):
   fp32 (the backend's graphs), fp16 (weights and activations, inputs and outputs kept
   float32), int8 with dynamic quantisation (weights), int8 with static quantisation (QDQ,
   calibrated on noisy crops of ``--calibration``, never on a test set). A variant that
   ONNX Runtime cannot build or run is reported with its error.

Data: ``--data`` (default ``$MALLECONV_DATA``) holding ``test/CBSD68``, ``real/CC15`` and
the calibration folder. Writes ``onnx_parity.json`` / ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from malleconv.models.precision import native_bf16
from malleconv.runtime import command_line, cpu_name, tune_allocator, write_report

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_speed import _bfloat16_note  # noqa: E402  (one wording for both reports)

SHIPPED = ["mallenet-s", "mallenet-s-gray", "mallenet-s-real"]
RUNS = ("onnxruntime", "openvino", "openvino-bfloat16")


def _backend(run: str) -> tuple[str, str]:
    """``(backend, precision)`` of a ``--backends`` entry such as ``openvino-bfloat16``."""
    backend, _, precision = run.partition("-")
    return backend, precision or "float32"


def _size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def parity(sizes, runs) -> list[dict]:
    from malleconv.inference import denoise_tensor, prepare_model

    rows = []
    for name in SHIPPED:
        nets = {"torch": prepare_model(name, auto=True)}
        for run in runs:
            backend, precision = _backend(run)
            nets[run] = prepare_model(name, auto=True, backend=backend, precision=precision)
        channels = 1 if name.endswith("gray") else 3
        for h, w in sizes:
            x = torch.rand(1, channels, h, w, generator=torch.Generator().manual_seed(h * w))
            out = {b: denoise_tensor(net, x, 25.0) for b, net in nets.items()}
            for run in runs:
                diff = float((out["torch"] - out[run]).abs().max())
                rows.append(
                    {"model": name, "size": f"{h}x{w}", "backend": run, "max_abs_diff": diff}
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def _scores(denoise_fn, data: Path) -> dict:
    """PSNR of ``denoise_fn(noisy (1, C, H, W) float, sigma)`` on CBSD68 sigma 25 and
    CC15 (sigma None: found by the denoiser), as ``malleconv eval`` scores them."""
    from malleconv.evaluation.protocol import evaluate
    from malleconv.evaluation.real import evaluate_real

    cbsd = evaluate(denoise_fn, [data / "test" / "CBSD68"], [25.0], progress=False)
    cc = evaluate_real(denoise_fn, [data / "real" / "CC15"], ["auto"], progress=False)
    return {"CBSD68_s25": cbsd["CBSD68"][25.0]["psnr"], "CC15": cc["CC15"]["auto"]["psnr"]}


def _api_denoiser(run: str):
    import malleconv

    backend, precision = _backend(run)

    def denoise(noisy, sigma):
        return malleconv.denoise(noisy, sigma, backend=backend, precision=precision)

    return denoise


def _module_denoiser(white, blind):
    """The default mode (the automatic mode; ``mallenet-s`` when sigma is given) of two
    given denoisers, through ``malleconv.denoise``."""
    import malleconv
    from malleconv.inference.auto import AutoDenoiser
    from malleconv.inference.prepare import EstimatedLevel

    auto = AutoDenoiser(white, EstimatedLevel(blind), ("mallenet-s", "mallenet-s-real"))

    def run(noisy, sigma):
        if sigma is not None:
            return malleconv.denoise(noisy, sigma, model=white)
        return malleconv.denoise(noisy, None, model=auto)

    return run


def _calibration_reader(folder: Path, input_names: list[str], blind: bool, count: int = 8):
    """Noisy 256x256 crops of the first ``count`` images of ``folder`` (white noise of
    sigma 5-50) as a quantisation calibration data reader."""
    from onnxruntime.quantization import CalibrationDataReader

    from malleconv.evaluation.protocol import load_test_image
    from malleconv.io import list_images

    rng = np.random.default_rng(0)
    feeds = []
    for path, _ in list_images([folder], recursive=False)[:count]:
        clean = load_test_image(path)[:256, :256].astype(np.float32) / 255
        sigma = float(rng.uniform(5, 50))
        noisy = clean + rng.normal(0, sigma / 255, clean.shape).astype(np.float32)
        x = np.ascontiguousarray(noisy.transpose(2, 0, 1)[None])
        if blind:
            feed = {"noisy": x, "strength": np.ones(1, np.float32)}
            feed["max_level"] = np.full(1, np.inf, np.float32)
            feed["min_level"] = np.zeros(1, np.float32)
        else:
            feed = {"noisy": x, "sigma": np.full(1, sigma, np.float32)}
            feed["strength"] = np.ones(1, np.float32)
        feeds.append({k: v for k, v in feed.items() if k in input_names})

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    return Reader()


def _variant_file(kind: str, src: Path, dst: Path, calibration: Path, blind: bool) -> Path:
    import onnx

    if kind == "fp32":
        return src
    if kind == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dst))
        return dst
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    pre = dst.with_name(dst.stem + "-pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    if kind == "int8-dynamic":
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8)
        return dst
    if kind == "int8-static":
        names = [i.name for i in onnx.load(str(pre)).graph.input]
        quantize_static(
            str(pre), str(dst), _calibration_reader(calibration, names, blind),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, per_channel=True,
        )  # fmt: skip
        return dst
    raise ValueError(f"unknown variant {kind!r}")


def variants(kinds, data: Path, calibration: Path, repeats: int) -> list[dict]:
    import onnxruntime as ort

    from malleconv.inference.onnx_backend import (
        OnnxBlindDenoiser,
        OnnxDenoiser,
        exported_graph,
        session_options,
    )
    from malleconv.inference.tiling import denoise_tensor

    rows = []
    x512 = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(5))
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            row: dict = {"variant": kind}
            try:
                nets = {}
                kinds_of = (("mallenet-s", OnnxDenoiser), ("mallenet-s-real", OnnxBlindDenoiser))
                for name, cls in kinds_of:
                    path = _variant_file(
                        kind, exported_graph(name), Path(tmp) / f"{name}-{kind}.onnx",
                        calibration, name.endswith("real"),
                    )  # fmt: skip
                    session = ort.InferenceSession(
                        str(path), session_options(), providers=["CPUExecutionProvider"]
                    )
                    nets[name] = cls(session, name)
                    row[f"{name}_mb"] = round(Path(path).stat().st_size / 1e6, 2)
                white = nets["mallenet-s"]
                denoise_tensor(white, x512, 25.0)
                best = float("inf")
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    denoise_tensor(white, x512, 25.0)
                    best = min(best, time.perf_counter() - t0)
                row["seconds_512"] = best
                row.update(_scores(_module_denoiser(white, nets["mallenet-s-real"]), data))
            except Exception as err:  # noqa: BLE001 - a variant ORT cannot run is a result
                row["error"] = f"{type(err).__name__}: {str(err)[:300]}"
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("MALLECONV_DATA"))
    ap.add_argument(
        "--sizes", nargs="*", type=_size, default=["1x1", "37x53", "512x512", "1024x768"]
    )
    ap.add_argument("--backends", nargs="+", choices=RUNS, default=list(RUNS))
    ap.add_argument(
        "--variants", nargs="*", default=["fp32", "fp16", "int8-dynamic", "int8-static"]
    )
    ap.add_argument("--calibration", default="train/CBSD432", help="folder under --data")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="docs/benchmarks")
    args = ap.parse_args(argv)
    if not args.data:
        ap.error("--data (or MALLECONV_DATA) is required")
    data = Path(args.data)
    for sub in ("test/CBSD68", "real/CC15", args.calibration):
        if not (data / sub).is_dir():
            ap.error(f"--data {data}: no folder {sub}")
    tune_allocator()
    torch.set_num_threads(args.threads)
    sizes = [s if isinstance(s, tuple) else _size(s) for s in args.sizes]

    runs = list(args.backends)
    parity_rows = parity(sizes, runs)
    quality = {b: _scores(_api_denoiser(b), data) for b in ["torch", *runs]}
    print(json.dumps(quality), flush=True)
    variant_rows = []
    if "onnxruntime" in runs:
        variant_rows = variants(args.variants, data, data / args.calibration, args.repeats)

    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu_name()}, {os.cpu_count()} CPUs",
        "hardware_bfloat16": native_bf16(),
        "command": command_line("benchmarks/onnx_parity.py", argv),
        "parity": parity_rows,
        "quality": quality,
        "variants": variant_rows,
    }
    exact = [r for r in parity_rows if _backend(r["backend"])[1] == "float32"]
    worst = max((r["max_abs_diff"] for r in exact), default=float("nan"))
    lines = [
        "# ONNX Runtime and OpenVINO against PyTorch: parity, PSNR and quantised graphs",
        "",
        f"Command: `{result['command']}` ({result['date']}, {result['machine']}).",
        "",
        "Largest absolute difference of the outputs (images in [0, 1]), each model "
        "prepared as `denoise` runs it, white-noise models at sigma 25, the blind model at "
        f"its own level. Worst of the float32 backends: {worst:.2g} (target 1e-4: "
        f"{'PASS' if worst <= 1e-4 else 'FAIL'}); OpenVINO in bfloat16 for its cost.",
        *_bfloat16_note(result, runs),
        "",
        "| model | backend | " + " | ".join(f"{h}x{w}" for h, w in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for name in SHIPPED:
        for run in runs:
            cells = [
                f"{r['max_abs_diff']:.2g}"
                for r in parity_rows
                if r["model"] == name and r["backend"] == run
            ]
            lines.append(f"| {name} | {run} | " + " | ".join(cells) + " |")
    t = quality["torch"]
    lines += [
        "",
        "PSNR of `malleconv.denoise` in its default mode (CBSD68: sigma 25 told, "
        "`mallenet-s`; CC15: the automatic mode), scored as `malleconv eval` scores, and "
        "the difference from torch:",
        "",
        "| backend | CBSD68 sigma 25 | CC15 |",
        "|---|---|---|",
        f"| torch | {t['CBSD68_s25']:.3f} | {t['CC15']:.3f} |",
    ]
    for run in runs:
        o = quality[run]
        lines.append(
            f"| {run} | {o['CBSD68_s25']:.3f} ({o['CBSD68_s25'] - t['CBSD68_s25']:+.3f}) | "
            f"{o['CC15']:.3f} ({o['CC15'] - t['CC15']:+.3f}) |"
        )
    if variant_rows:
        lines += [
            "",
            "Variants of ONNX Runtime's graphs (both of the default mode's), `mallenet-s` "
            "timed at 512x512 (`denoise_tensor`, best of the repeats), PSNR as above, cost "
            "against fp32:",
            "",
            "| variant | files (MB) | s at 512x512 | CBSD68 s25 | CC15 | note |",
            "|---|---|---|---|---|---|",
        ]
    base = next((r for r in variant_rows if r["variant"] == "fp32" and "error" not in r), None)
    for r in variant_rows:
        if "error" in r:
            lines.append(f"| {r['variant']} | | | | | {r['error']} |")
            continue
        size = f"{r['mallenet-s_mb']:.1f} + {r['mallenet-s-real_mb']:.1f}"
        cost = ""
        if base is not None and r is not base:
            cost = (
                f"{r['CBSD68_s25'] - base['CBSD68_s25']:+.2f} / {r['CC15'] - base['CC15']:+.2f}"
                f" dB, {base['seconds_512'] / r['seconds_512']:.2f}x speed"
            )
        lines.append(
            f"| {r['variant']} | {size} | {r['seconds_512']:.3f} | {r['CBSD68_s25']:.3f} | "
            f"{r['CC15']:.3f} | {cost} |"
        )
    write_report(args.out, "onnx_parity", result, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
