"""Denoising speed of the named models on one image, side by side in one process.

    python benchmarks/inference_speed.py [--models mallenet-s dncnn-c] [--size 512]
        [--repeat 5] [--out docs/benchmarks]

Models are randomly initialised (speed does not depend on the weights), batch 1, in four
settings side by side: the plain module as ``load_model`` returns it (BatchNorm, NCHW);
BatchNorm folded, NCHW; folded and channels-last (float32: what ``denoise`` and
``malleconv denoise`` run by default); and the latter under bfloat16 autocast
(``--precision bfloat16``). The process first calls ``tune_allocator()``, as the
``malleconv`` command does (``--no-tune-allocator`` keeps glibc's default, which is what a
plain Python process gets: about 2x slower here, docs/research/allocator.md). Writes
``inference_speed.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import statistics
import sys
import time

import torch

from malleconv.inference import prepare_model
from malleconv.models import MalleNet, create_model, fuse_batchnorm, model_stats
from malleconv.models.precision import native_bf16
from malleconv.runtime import command_line, cpu_name, tune_allocator, write_report


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
    ap.add_argument(
        "--no-tune-allocator",
        action="store_true",
        help="keep glibc's default allocator (the malleconv command tunes it; see "
        "malleconv.runtime)",
    )
    args = ap.parse_args(argv)
    if args.no_tune_allocator:
        os.environ["MALLECONV_NO_MALLOC_TUNING"] = "1"  # or load_model would tune it
    tuned = False if args.no_tune_allocator else tune_allocator()
    rows = []
    for name in args.models:
        plain = create_model(name).eval()
        model = fuse_batchnorm(copy.deepcopy(plain))
        c = model.config.in_channels if isinstance(model, MalleNet) else 3
        x = torch.rand(1, c, args.size, args.size)
        gflops = model_stats(model, args.size)["gflops"]
        # What denoise runs, prepared by the function that prepares it.
        last = prepare_model(name, pretrained=False)
        x_last = x.contiguous(memory_format=torch.channels_last)
        settings = {
            "plain NCHW": (plain, x),
            "NCHW": (model, x),
            "channels-last": (last, x_last),
            "channels-last bf16": (prepare_model(last, precision="bfloat16"), x_last),
        }
        row = {"model": name, "gflops": gflops}
        with torch.inference_mode():
            for label, (m, xx) in settings.items():
                row[label] = _time(lambda m=m, xx=xx: m(xx, 25.0), args.repeat)
        rows.append(row)
        print(
            f"{name:12s} {gflops:8.1f} GFLOPs  "
            + "  ".join(f"{label} {row[label]:.3f} s" for label in settings),
            flush=True,
        )
    meta = {
        "command": command_line("benchmarks/inference_speed.py", argv),
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "native_bf16": native_bf16("cpu"),
        "threads": torch.get_num_threads(),
        "size": args.size,
        "repeat": args.repeat,
        "allocator": "tune_allocator()" if tuned else "glibc default",
    }
    base = rows[0]
    lines = [
        "# Inference speed",
        "",
        f"Command: `{meta['command']}`  ",
        f"{meta['date']}, torch {meta['torch']}, {meta['cpu']} "
        f"({'with' if meta['native_bf16'] else 'without'} hardware bfloat16), "
        f"{meta['threads']} threads, allocator: {meta['allocator']}, "
        f"one {args.size}x{args.size} image, median of "
        f"{args.repeat} runs after a warm-up. Seconds per image. *plain*: the module as "
        "`load_model` returns it (BatchNorm, NCHW); the other columns fold BatchNorm; "
        "*channels-last* is what `denoise` runs by default, *bf16* adds "
        "`--precision bfloat16` (autocast).",
        "",
        "| model | GFLOPs | plain NCHW | NCHW | channels-last | channels-last bf16 "
        "| plain / channels-last | channels-last / bf16 "
        f"| channels-last time / {base['model']} |",
        "|---|" + "---:|" * 8,
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['gflops']:.1f} | {r['plain NCHW']:.3f} | {r['NCHW']:.3f} | "
            f"{r['channels-last']:.3f} | {r['channels-last bf16']:.3f} | "
            f"{r['plain NCHW'] / r['channels-last']:.2f}x | "
            f"{r['channels-last'] / r['channels-last bf16']:.2f}x | "
            f"{r['channels-last'] / base['channels-last']:.2f} |"
        )
    write_report(args.out, "inference_speed", {"meta": meta, "rows": rows}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
