"""How fast one loader process makes a recipe's training batches, so a GPU is not starved.

    python research/batch_speed.py --data $MALLECONV_DATA/train/CBSD432 \
        $MALLECONV_DATA/train/OpenPhotos [--configs configs/mallenet-s-real.yaml ...] \
        [--batches 8] [--step-seconds 0.083] [--out docs/research]

Each recipe's batches (``malleconv.training.StepBatches``, exactly as ``malleconv train``
draws them: crops, augmentations, white noise and, where the recipe asks, synthetic camera
noise) are made one after another on one CPU thread, as one ``data.workers`` loader
process makes them, after one warm-up batch. ``--step-seconds`` is the time of one training
step on the device the batches are for; the report gives how many loader processes keep up
with it (a GPU lease should set ``data.workers`` at least that high). Writes
``batch_speed.md`` / ``batch_speed.json``.
"""

from __future__ import annotations

import argparse
import datetime
import math
import time

import torch

from malleconv.data.datasets import ImageFolderPatches
from malleconv.runtime import command_line, cpu_name, tune_allocator, write_report
from malleconv.training.batches import StepBatches
from malleconv.training.config import load_config

DEFAULT_CONFIGS = ["configs/chroma-mix-gpu.yaml", "configs/mallenet-s-real-gpu.yaml"]


def seconds_per_batch(batches: StepBatches, count: int) -> float:
    """Mean wall time of making batches 1..count (batch 0 warms up)."""
    batches[0]
    start = time.perf_counter()
    for step in range(1, count + 1):
        batches[step]
    return (time.perf_counter() - start) / count


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", nargs="+", required=True, help="the training folders")
    ap.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    ap.add_argument("--batches", type=int, default=8, help="batches timed per recipe")
    ap.add_argument(
        "--step-seconds",
        type=float,
        default=0.083,
        help="one training step's time on the target device (loaders needed = batch time / "
        "this); 0.083 s: mallenet-s stage 20 alone on an H200, 5,790 steps of batch 32 in 8 min",
    )
    ap.add_argument("--out", default="docs/research")
    args = ap.parse_args(argv)
    if args.batches < 1:
        ap.error("--batches must be at least 1")
    if args.step_seconds <= 0:
        ap.error("--step-seconds must be positive")
    tune_allocator()
    # One loader process is one thread of batch making.
    torch.set_num_threads(1)

    rows = []
    for path in args.configs:
        cfg = load_config(path)
        d = cfg["data"]
        seed = int(cfg["train"]["seed"])
        patches = ImageFolderPatches(args.data, int(d["patch_size"]), seed=seed)
        sec = seconds_per_batch(StepBatches.from_config(patches, cfg), args.batches)
        pixels = int(d["batch_size"]) * int(d["patch_size"]) ** 2
        rows.append(
            {
                "config": path,
                "batch": f"{d['batch_size']} x {d['patch_size']}x{d['patch_size']}",
                "camera_noise_prob": float(d["camera_noise_prob"]),
                "seconds_per_batch": round(sec, 6),
                "pixels_per_second": round(pixels / sec),
                "workers_set": int(d["workers"]),
                "workers_needed": math.ceil(sec / args.step_seconds),
            }
        )
        print(f"{path}: {sec:.3f} s per batch, {pixels / sec:,.0f} pixels/s on one thread")

    report = {
        "command": command_line("research/batch_speed.py", argv),
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "batches": args.batches,
        "step_seconds": args.step_seconds,
        "rows": rows,
    }
    lines = [
        "# Batch making speed",
        "",
        f"Command: `{report['command']}`  ",
        f"{report['date']}, torch {report['torch']}, {report['cpu']}, one thread (one loader "
        f"process), mean of {args.batches} batches after one warm-up batch.",
        "",
        f"Loaders needed: batch time / {args.step_seconds} s, the time of one training step on the "
        "device the batches feed.",
        "",
        "| recipe | batch | camera-noise share | s per batch | pixels/s | loaders set "
        "| loaders needed |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['config']}` | {r['batch']} | {r['camera_noise_prob']:g} "
            f"| {r['seconds_per_batch']:.3f} | {r['pixels_per_second']:,} | {r['workers_set']} "
            f"| {r['workers_needed']} |"
        )
    write_report(args.out, "batch_speed", report, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
