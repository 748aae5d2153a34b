"""Denoising speed of the named models on one image, side by side in one process.

    python benchmarks/inference_speed.py [--models mallenet-s dncnn-c] [--size 512]
        [--repeat 5] [--out docs/benchmarks]

Models are randomly initialised (speed does not depend on the weights), BatchNorm folded
as `malleconv denoise` does, batch 1, float32, NCHW and channels-last. Writes
``inference_speed.md`` / ``.json``.
"""

from __future__ import annotations

import os
import sys

# benchmarks/operator.py shadows the standard library's ``operator``: drop this folder.
if sys.path and os.path.realpath(sys.path[0] or os.curdir) == os.path.dirname(
    os.path.realpath(__file__)
):
    sys.path.pop(0)

import argparse
import datetime
import json
import statistics
import time
from pathlib import Path

import torch

from malleconv.models import MalleNet, create_model, fuse_batchnorm, model_stats


def _time(fn, repeat: int) -> float:
    fn()
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["mallenet-s", "dncnn-c", "mallenet-l"])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default="docs/benchmarks")
    args = ap.parse_args(argv)
    rows = []
    for name in args.models:
        model = fuse_batchnorm(create_model(name))
        c = model.config.in_channels if isinstance(model, MalleNet) else 3
        x = torch.rand(1, c, args.size, args.size)
        gflops = model_stats(model, args.size)["gflops"]
        row = {"model": name, "gflops": gflops}
        for label, fmt in (
            ("NCHW", torch.contiguous_format),
            ("channels-last", torch.channels_last),
        ):
            m = model.to(memory_format=fmt)
            xx = x.contiguous(memory_format=fmt)
            with torch.inference_mode():
                row[label] = _time(lambda m=m, xx=xx: m(xx, 25.0), args.repeat)
        rows.append(row)
        print(
            f"{name:12s} {gflops:8.1f} GFLOPs  NCHW {row['NCHW']:.3f} s  "
            f"channels-last {row['channels-last']:.3f} s",
            flush=True,
        )
    cmd = "python benchmarks/inference_speed.py " + " ".join(argv or sys.argv[1:])
    meta = {
        "command": cmd.strip(),
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "size": args.size,
        "repeat": args.repeat,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "inference_speed.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )
    base = rows[0]
    lines = [
        "# Inference speed",
        "",
        f"Command: `{meta['command']}`  ",
        f"{meta['date']}, torch {meta['torch']}, CPU, {meta['threads']} threads, one "
        f"{args.size}x{args.size} image, float32, BatchNorm folded, median of "
        f"{args.repeat} runs after a warm-up.",
        "",
        f"| model | GFLOPs | NCHW s | channels-last s | channels-last time / {base['model']} |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r["channels-last"] / base["channels-last"]
        lines.append(
            f"| {r['model']} | {r['gflops']:.1f} | {r['NCHW']:.3f} | "
            f"{r['channels-last']:.3f} | {ratio:.2f} |"
        )
    (out / "inference_speed.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
