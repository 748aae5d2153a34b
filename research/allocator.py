"""Denoising time with glibc's default allocator against ``malleconv.runtime.tune_allocator``.

    python research/allocator.py [--size 512] [--repeat 3] [--model mallenet-s]
        [--out docs/research]

Each setting runs in its own fresh child process (the allocator is process-wide): load
the model, denoise one ``size x size`` colour image once to warm up, then ``--repeat``
times. Reports seconds per image, user and system CPU seconds and minor page faults of
the timed runs, and the ratio of the two settings, side by side. Writes
``allocator.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

from malleconv.runtime import command_line, write_report

CHILD = r"""
import json, resource, sys, time
import numpy as np
from malleconv.inference import denoise
from malleconv.runtime import tune_allocator
size, repeat, model, tuned = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
applied = tune_allocator() if tuned else False
img = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
denoise(img, 25, model)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(repeat):
    denoise(img, 25, model)
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
print(json.dumps({
    "applied": applied, "s_per_image": (t1 - t0) / repeat,
    "user_s": (r1.ru_utime - r0.ru_utime) / repeat, "sys_s": (r1.ru_stime - r0.ru_stime) / repeat,
    "minor_faults": (r1.ru_minflt - r0.ru_minflt) // repeat, "peak_rss_gb": r1.ru_maxrss / 1e6,
}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default="mallenet-s")
    ap.add_argument("--out", default="docs/research")
    args = ap.parse_args(argv)

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop("MALLECONV_NO_MALLOC_TUNING", None)
    rows = {}
    for name, flag in (("glibc default", "0"), ("tune_allocator()", "1")):
        cmd = [sys.executable, "-c", CHILD, str(args.size), str(args.repeat), args.model, flag]
        # load_model tunes the allocator on its first call: the baseline opts out.
        child_env = dict(env, MALLECONV_NO_MALLOC_TUNING="1") if flag == "0" else env
        proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env, check=True)
        rows[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(name, rows[name], flush=True)
    base, tuned = rows["glibc default"], rows["tune_allocator()"]
    speedup = base["s_per_image"] / tuned["s_per_image"]
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "command": command_line("research/allocator.py", argv),
        "size": args.size,
        "model": args.model,
        "results": rows,
        "speedup": round(speedup, 2),
    }
    print(f"speed-up with tune_allocator(): {speedup:.2f}x")
    lines = [
        "# Allocator: glibc default against `tune_allocator()`",
        "",
        f"Command: `{result['command']}` ({result['date']}, {result['machine']}). "
        f"`denoise` of one {args.size}x{args.size} colour image with `{args.model}`, "
        "per image, each setting in a fresh process; see `malleconv.runtime`.",
        "",
        "| allocator | s / image | user CPU s | system CPU s | minor page faults |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['s_per_image']:.3f} | {r['user_s']:.2f} | {r['sys_s']:.2f} | "
            f"{r['minor_faults']:,} |"
        )
    lines += ["", f"Speed-up: **{speedup:.2f}x**.", ""]
    write_report(args.out, "allocator", result, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
