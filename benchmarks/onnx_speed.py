"""PyTorch against ONNX Runtime and OpenVINO, side by side: time at 256^2 and 512^2, time
and peak memory on a 12-megapixel photo, and each runtime's settings.

    python benchmarks/onnx_speed.py [--sizes 256 512] [--megapixels 12] [--repeats 5]
        [--sigma 25 | auto] [--tile 384] [--threads 2] [--backends onnxruntime openvino
        openvino-bfloat16] [--out docs/benchmarks]

Every timing is ``malleconv.denoise`` on a uint8 image as the command runs it (the
allocator tuned, ``--sigma`` 25: ``mallenet-s``; ``auto``: the automatic mode), with
``backend="torch"`` and each of ``--backends`` (``openvino-bfloat16``: ``backend=
"openvino", precision="bfloat16"``):

* 256^2 and 512^2: one process, the same synthetic noisy image; each backend runs back
  to back (a warm-up, then ``--repeats`` timed runs), in two rounds that alternate the
  backends; best time;
* the photo (4000 x 3000 at 12 MP): one fresh child process per backend, tiled as the
  command does by default (:data:`~malleconv.inference.tiling.COMMAND_TILE`), with that
  child's peak resident memory (``VmHWM``), run twice with the backends alternated (best
  time, highest peak). Each child warms up on a 64 x 64 crop, as the command loads its
  model before the first image: OpenVINO's compiling for the photo's tile shapes is inside the time;
* ONNX Runtime's settings at 512^2: graph optimisation level, threads, sequential or
  parallel execution, and the graph written for the web (`--target web`), each against
  the backend's default session; OpenVINO's: the graph it runs (``--target openvino``)
  compiled for the image's shape (the backend's way) against one compiled for any
  shape, and the ``cpu`` graph.

Writes ``onnx_speed.json`` / ``.md``. Run it with the machine otherwise idle.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from malleconv.inference.tiling import COMMAND_TILE
from malleconv.models.precision import native_bf16
from malleconv.runtime import command_line, cpu_name, tune_allocator, write_report

RUNS = ("onnxruntime", "openvino", "openvino-bfloat16")
NAMES = {
    "torch": "PyTorch",
    "onnxruntime": "ONNX Runtime",
    "openvino": "OpenVINO",
    "openvino-bfloat16": "OpenVINO bfloat16",
}


def _backend(run: str) -> tuple[str, str]:
    """``(backend, precision)`` of a run such as ``openvino-bfloat16``."""
    backend, _, precision = run.partition("-")
    return backend, precision or "float32"


def _denoise(image, sigma, run: str, **options):
    import malleconv

    backend, precision = _backend(run)
    return malleconv.denoise(image, sigma, backend=backend, precision=precision, **options)


def noisy_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """``H x W x 3`` uint8: smooth gradients and discs plus white noise of std 25, made a
    plane at a time so that the photo's own memory stays small beside the denoiser's."""
    rng = np.random.default_rng(seed)
    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    discs = []
    for _ in range(12):
        cy, cx = rng.random(2) * (height, width)
        r = rng.uniform(0.03, 0.15) * min(height, width)
        discs.append((cy, cx, r, rng.random(3).astype(np.float32)))
    out = np.empty((height, width, 3), np.uint8)
    for c in range(3):
        plane = 0.25 + 0.5 * (0.6 * xx * (c + 1) / 3 + 0.4 * yy * (3 - c) / 3)
        for cy, cx, r, colour in discs:
            y0, y1 = max(0, int(cy - r)), min(height, int(cy + r) + 1)
            x0, x1 = max(0, int(cx - r)), min(width, int(cx + r) + 1)
            inside = (yy[y0:y1] * height - cy) ** 2 + (xx[:, x0:x1] * width - cx) ** 2 < r * r
            plane[y0:y1, x0:x1][inside] = colour[c]
        plane += rng.standard_normal((height, width), dtype=np.float32) * (25 / 255)
        out[:, :, c] = np.clip(np.rint(plane * 255), 0, 255)
    return out


def _sigma(text: str):
    return None if text == "auto" else float(text)


def _peak_gb() -> float:
    """This process's peak resident memory in GB: ``VmHWM`` on Linux, which starts afresh
    at ``exec`` (``ru_maxrss`` keeps the parent's peak across fork and exec), else
    ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def _child(args) -> int:
    """One backend on the photo, in this fresh process: prints time and peak memory."""
    import torch

    tune_allocator()
    torch.set_num_threads(args.threads)
    width = int(round((args.megapixels * 1e6 * 4 / 3) ** 0.5))
    height = int(round(width * 3 / 4))
    image = noisy_image(height, width)
    # Model loading (and for the ONNX backends the session) outside the timing, as the
    # command does before its first image.
    _denoise(image[:64, :64], _sigma(args.sigma), args.child)
    before = _peak_gb()
    t0 = time.perf_counter()
    out = _denoise(image, _sigma(args.sigma), args.child, tile=args.tile)
    seconds = time.perf_counter() - t0
    assert out.shape == image.shape
    peak = _peak_gb()
    print(
        json.dumps(
            {"seconds": seconds, "peak_gb": peak, "before_gb": before, "size": f"{width}x{height}"}
        )
    )
    return 0


def _time(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _side_by_side(sizes, sigma, repeats: int, backends, settle: float = 0.5) -> list[dict]:
    rows = []
    for size in sizes:
        image = noisy_image(size, size, seed=size)
        times = {b: float("inf") for b in backends}
        # Each backend runs back to back, as it does on a folder or on a photo's tiles, in
        # two rounds that alternate the backends. A pause first: the runtime that ran
        # before keeps its threads spinning for a moment (ONNX Runtime's pool, OpenMP).
        for _ in range(2):
            for b in backends:
                time.sleep(settle)
                _denoise(image, sigma, b)  # warm-up: model, session, compiling, allocations
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    _denoise(image, sigma, b)
                    times[b] = min(times[b], time.perf_counter() - t0)
        rows.append({"size": f"{size}x{size}", **{f"{b}_s": times[b] for b in backends}})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _photo(args, argv, backends) -> list[dict]:
    runs = {b: [] for b in backends}
    for _ in range(2):
        for b in backends:
            cmd = [sys.executable, __file__, "--child", b] + argv
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"{b} child failed:\n{out.stderr[-3000:]}")
            runs[b].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(b, runs[b][-1], flush=True)
    return [
        {
            "backend": b,
            "size": runs[b][0]["size"],
            "seconds": min(r["seconds"] for r in runs[b]),
            "peak_gb": max(r["peak_gb"] for r in runs[b]),
            # The process's peak before the photo is denoised (Python, libraries, model or
            # session, the photo itself): what denoising adds is the difference.
            "before_gb": max(r.get("before_gb", float("nan")) for r in runs[b]),
        }
        for b in backends
    ]


def _settings(sigma, repeats: int, threads: int) -> list[dict]:
    """ONNX Runtime session settings at 512^2 (mallenet-s, or the white graph)."""
    import onnxruntime as ort
    import torch

    from malleconv.inference.onnx_backend import OnnxDenoiser, exported_graph, session_options
    from malleconv.inference.tiling import denoise_tensor
    from malleconv.models.export import export_onnx

    path = str(exported_graph("mallenet-s"))
    # The same model with PReLU as Max and Mul (the page's form until export format 4).
    web_path = os.path.join(tempfile.mkdtemp(prefix="onnx_speed-"), "mallenet-s-max.onnx")
    export_onnx("mallenet-s", web_path, target="openvino")
    x = torch.from_numpy(noisy_image(512, 512, seed=512).transpose(2, 0, 1).copy())
    x = x[None].float() / 255
    level = ort.GraphOptimizationLevel
    variants = [
        (f"default (all optimisations, {threads} threads, sequential)", {}),
        ("optimisations: basic", {"graph_optimization_level": level.ORT_ENABLE_BASIC}),
        ("optimisations: extended", {"graph_optimization_level": level.ORT_ENABLE_EXTENDED}),
        ("optimisations: none", {"graph_optimization_level": level.ORT_DISABLE_ALL}),
        ("1 thread", {"intra_op_num_threads": 1}),
        ("parallel execution", {"execution_mode": ort.ExecutionMode.ORT_PARALLEL}),
        ("no memory arena", {"enable_cpu_mem_arena": False}),
        ("PReLU as Max and Mul (`--target openvino`)", {"graph": web_path}),
    ]
    level_in = 25.0 if sigma is None else sigma
    rows = []
    for name, changes in variants:
        so = session_options(threads)
        changes = dict(changes)
        graph = changes.pop("graph", path)
        for key, value in changes.items():
            setattr(so, key, value)
        session = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
        net = OnnxDenoiser(session, "mallenet-s")
        seconds = _time(lambda net=net: denoise_tensor(net, x, level_in), repeats)
        rows.append({"setting": name, "seconds": seconds})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _openvino_settings(sigma, repeats: int, threads: int) -> list[dict]:
    """OpenVINO at 512^2 (``mallenet-s``): the backend's graph compiled for the image's
    shape (its way), the same graph compiled once for any shape, the ``cpu`` graph."""
    import torch

    from malleconv.inference.onnx_backend import OnnxDenoiser, exported_graph
    from malleconv.inference.openvino_backend import OpenVinoSession
    from malleconv.inference.tiling import denoise_tensor

    class AnyShape(OpenVinoSession):
        """One model compiled with the graph's dynamic height and width."""

        def _request(self, shapes):
            if not self._compiled:
                compiled = self._core.compile_model(
                    self._model,
                    "CPU",
                    {
                        "INFERENCE_NUM_THREADS": self.threads,
                        "INFERENCE_PRECISION_HINT": "f32",
                        "PERFORMANCE_HINT": "LATENCY",
                    },
                )
                self._compiled["any"] = (compiled, compiled.create_infer_request())
            return self._compiled["any"]

    x = torch.from_numpy(noisy_image(512, 512, seed=512).transpose(2, 0, 1).copy())
    x = x[None].float() / 255
    graph = exported_graph("mallenet-s", target="openvino")
    variants = [
        ("default (`openvino` graph, compiled for the shape)", OpenVinoSession(graph, threads)),
        ("compiled once for any shape", AnyShape(graph, threads)),
        (
            "the `cpu` graph (PReLU as convolutions)",
            OpenVinoSession(exported_graph("mallenet-s"), threads),
        ),
        ("bfloat16", OpenVinoSession(graph, threads, "bfloat16")),
    ]
    level_in = 25.0 if sigma is None else sigma
    rows = []
    for name, session in variants:
        net = OnnxDenoiser(session, "mallenet-s")
        seconds = _time(lambda net=net: denoise_tensor(net, x, level_in), repeats)
        rows.append({"setting": name, "seconds": seconds})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _settings_table(title: str, rows: list[dict]) -> list[str]:
    base = rows[0]["seconds"]
    lines = ["", title, "", "| setting | time | relative |", "|---|---|---|"]
    lines += [
        f"| {r['setting']} | {r['seconds']:.3f} s | {r['seconds'] / base:.2f}x |" for r in rows
    ]
    return lines


def _bfloat16_note(result: dict, runs) -> list[str]:
    """A line for reports whose bfloat16 rows ran in float32 (a CPU without hardware
    bfloat16, where OpenVINO ignores the precision hint)."""
    if "openvino-bfloat16" not in runs or result["hardware_bfloat16"]:
        return []
    return [
        "",
        "This CPU has no hardware bfloat16 (AVX-512 BF16 or AMX): OpenVINO ran the "
        "bfloat16 rows in float32, so their figures are float32's.",
    ]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[256, 512])
    ap.add_argument("--megapixels", type=float, default=12.0, help="0: no photo run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sigma", default="25", help="a level (mallenet-s) or auto")
    ap.add_argument("--tile", type=int, default=COMMAND_TILE, help="default: the command's")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backends", nargs="+", choices=RUNS, default=list(RUNS))
    ap.add_argument("--no-settings", action="store_true", help="skip the runtimes' settings")
    ap.add_argument("--out", default="docs/benchmarks")
    ap.add_argument("--child", choices=("torch", *RUNS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args)

    import torch

    tune_allocator()
    torch.set_num_threads(args.threads)
    sigma = _sigma(args.sigma)
    backends = ["torch", *args.backends]
    small = _side_by_side(args.sizes, sigma, args.repeats, backends)
    photo = _photo(args, argv, backends) if args.megapixels > 0 else []
    settings, ov_settings = [], []
    if not args.no_settings:
        if "onnxruntime" in backends:
            settings = _settings(sigma, args.repeats, args.threads)
        if "openvino" in backends:
            ov_settings = _openvino_settings(sigma, args.repeats, args.threads)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu_name()}, {os.cpu_count()} CPUs",
        "hardware_bfloat16": native_bf16(),
        "command": command_line("benchmarks/onnx_speed.py", argv),
        "threads": args.threads,
        "sigma": args.sigma,
        "tile": args.tile,
        "backends": backends,
        "side_by_side": small,
        "photo": photo,
        "settings": settings,
        "openvino_settings": ov_settings,
    }
    others = backends[1:]
    lines = [
        "# PyTorch, ONNX Runtime and OpenVINO, side by side",
        "",
        f"Command: `{result['command']}` ({result['date']}, {result['machine']}, "
        f"{args.threads} threads).",
        "",
        "`malleconv.denoise` of a synthetic noisy uint8 image (sigma "
        f"{args.sigma}) with each backend in one process: each backend runs back to back "
        f"(a warm-up, which also compiles OpenVINO's model for the shape, then {args.repeats} "
        "timed runs), in two rounds that alternate the backends; best time. In brackets: "
        "the speed-up over PyTorch (its time over the backend's).",
        *_bfloat16_note(result, backends),
        "",
        "| image | " + " | ".join(NAMES[b] for b in backends) + " |",
        "|---|" + "---|" * len(backends),
    ]
    for r in small:
        t = r["torch_s"]
        cells = [f"{t:.3f} s"] + [f"{r[b + '_s']:.3f} s ({t / r[b + '_s']:.2f}x)" for b in others]
        lines.append(f"| {r['size']} | " + " | ".join(cells) + " |")
    if photo:
        t = photo[0]
        lines += [
            "",
            f"A {args.megapixels:g}-megapixel photo ({t['size']}), tiled by {args.tile} as "
            "the command does, one fresh process per backend and run (two runs each, "
            "alternated): best time (OpenVINO's compiling for the tile shapes included), "
            "highest peak resident memory of the process.",
            "",
            "| backend | time | peak RSS | peak RSS before denoising |",
            "|---|---|---|---|",
        ]
        for o in photo:
            speed = "" if o is t else f" ({t['seconds'] / o['seconds']:.2f}x)"
            lines.append(
                f"| {NAMES[o['backend']]} | {o['seconds']:.1f} s{speed} | "
                f"{o['peak_gb']:.2f} GB | {o['before_gb']:.2f} GB |"
            )
    if settings:
        lines += _settings_table(
            "ONNX Runtime's session settings, `mallenet-s` at 512x512 "
            "(`denoise_tensor`, best of the repeats); relative to the backend's default:",
            settings,
        )
    if ov_settings:
        lines += _settings_table(
            "OpenVINO's settings, `mallenet-s` at 512x512 (`denoise_tensor`, best of the "
            "repeats); relative to the backend's default:",
            ov_settings,
        )
        if not result["hardware_bfloat16"]:
            lines += ["", "Its bfloat16 row ran in float32: this CPU has no hardware bfloat16."]
    write_report(args.out, "onnx_speed", result, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
