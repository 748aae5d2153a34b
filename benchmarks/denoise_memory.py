"""Peak memory and time of ``malleconv denoise`` on one big photo, in a fresh process.

    python benchmarks/denoise_memory.py [--megapixels 24] [--sigma 25 | auto] [--tile 384]
        [--model mallenet-s] [--precision float32 [bfloat16]] [--out docs/benchmarks]

Makes a synthetic noisy RGB photo of about ``--megapixels`` (3:2, smooth shapes plus
Gaussian noise, 8-bit PNG) in a temporary folder, runs the real command line on it in a
child process (``python -m malleconv denoise IN -o OUT --tile N ...``) and reads the
child's peak resident memory (``ru_maxrss`` of that child, from ``os.wait4``), once per
``--precision`` (side by side, with the time ratio). The target of the ``denoise`` issue is
2 GB for a 24-megapixel photo. Writes ``denoise_memory.md`` / ``.json``.
Run it with the machine otherwise idle if the time matters to you; the memory does not
depend on load.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from malleconv.inference.tiling import COMMAND_TILE
from malleconv.runtime import command_line, cpu_name, write_report

TARGET_GB = 2.0


def synthetic_photo(height: int, width: int, sigma: float, seed: int = 0) -> np.ndarray:
    """``H x W x 3`` uint8: smooth colour gradients and discs, plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    img = np.empty((height, width, 3), np.float32)
    for c in range(3):
        img[:, :, c] = 0.25 + 0.5 * (0.6 * xx * (c + 1) / 3 + 0.4 * yy * (3 - c) / 3)
    for _ in range(12):
        cy, cx = rng.random(2) * (height, width)
        r = rng.uniform(0.03, 0.15) * min(height, width)
        y0, y1 = max(0, int(cy - r)), min(height, int(cy + r) + 1)
        x0, x1 = max(0, int(cx - r)), min(width, int(cx + r) + 1)
        inside = (yy[y0:y1] * height - cy) ** 2 + (xx[:, x0:x1] * width - cx) ** 2 < r * r
        img[y0:y1, x0:x1][inside] = rng.random(3).astype(np.float32)
    for c in range(3):  # plane by plane keeps this script's own memory low
        img[:, :, c] += rng.standard_normal((height, width), dtype=np.float32) * (sigma / 255)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--megapixels", type=float, default=24.0)
    ap.add_argument("--sigma", default="25", help="noise added, and passed to --sigma")
    ap.add_argument("--tile", type=int, default=COMMAND_TILE, help="default: the command's")
    ap.add_argument("--model", default="mallenet-s")
    ap.add_argument("--precision", nargs="+", choices=("float32", "bfloat16"), default=["float32"])
    ap.add_argument("--out", default="docs/benchmarks")
    args = ap.parse_args(argv)

    width = int(round((args.megapixels * 1e6 * 1.5) ** 0.5))
    height = int(round(width / 1.5))
    noise = 25.0 if args.sigma == "auto" else float(args.sigma)
    image = f"{width}x{height} ({width * height / 1e6:.1f} MP), RGB 8-bit PNG"
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "big.png"
        Image.fromarray(synthetic_photo(height, width, noise)).save(src, compress_level=1)
        for precision in args.precision:
            dst = Path(tmp) / f"big_denoised_{precision}.png"
            cmd = [
                sys.executable, "-m", "malleconv", "denoise", str(src), "-o", str(dst),
                "--sigma", args.sigma, "--tile", str(args.tile), "--model", args.model,
                "--precision", precision, "--no-progress",
            ]  # fmt: skip
            print("$", shlex.join(cmd), flush=True)
            seconds, peak_gb, code, log = _run_child(cmd, Path(tmp) / "child.log")
            if code != 0:
                print(log, file=sys.stderr)
                return code
            with Image.open(dst) as im:
                assert im.size == (width, height), im.size
            status = "PASS" if peak_gb <= TARGET_GB else "FAIL"
            runs.append(
                {
                    "precision": precision,
                    "seconds": round(seconds, 1),
                    "peak_rss_gb": round(peak_gb, 3),
                    "status": status,
                }
            )
            print(json.dumps(runs[-1]), flush=True)

    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu_name()}, {os.cpu_count()} CPUs",
        "command": command_line("benchmarks/denoise_memory.py", argv),
        "image": image,
        "model": args.model,
        "sigma": args.sigma,
        "tile": args.tile,
        "target_gb": TARGET_GB,
        "runs": runs,
    }
    base = runs[0]["seconds"]
    rows = "".join(
        f"| {image} | {args.model} | {r['precision']} | {args.tile} | {args.sigma} | "
        f"{r['seconds']:.1f} s | {base / r['seconds']:.2f}x | {r['peak_rss_gb']:.2f} GB | "
        f"{TARGET_GB:g} GB | {r['status']} |\n"
        for r in runs
    )
    write_report(
        args.out,
        "denoise_memory",
        result,
        "# Memory of `malleconv denoise` on a big photo\n\n"
        f"Command: `{result['command']}` ({result['date']}, {result['machine']}).\n\n"
        "A synthetic noisy photo is denoised by the command line in a fresh child process "
        "per precision; the peak is that child's maximum resident set size (everything: "
        "Python, torch, the decoded image, the model, the output, the PNG encoder). "
        f"*speed-up* is the first row's time over the row's.\n\n"
        "| image | model | precision | tile | sigma | wall time | speed-up | peak RSS "
        "| target | |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n" + rows,
    )
    return 0


def _run_child(cmd: list[str], log: Path) -> tuple[float, float, int, str]:
    """Run ``cmd``; returns wall seconds, its own peak RSS in GB, exit code and output."""
    with open(log, "w+") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        f.seek(0)
        return seconds, usage.ru_maxrss * 1024 / 1e9, proc.returncode, f.read()


if __name__ == "__main__":
    sys.exit(main())
