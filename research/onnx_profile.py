"""Where ONNX Runtime spends a ``mallenet-s`` run, per operator type, for each export target.

    python research/onnx_profile.py [--size 512] [--threads 1] [--targets cpu openvino web]
        [--out docs/research]

Exports ``mallenet-s`` once per ``--targets`` (:func:`malleconv.export_onnx`, ``target=``),
runs each graph on a ``--size`` square of noise (sigma 25) with all graph optimisations and
ONNX Runtime's profiler on, and sums the profiled kernel time of the last run by operator
type (after ONNX Runtime's own rewrites: ``ReorderInput`` / ``ReorderOutput`` are its
conversions to and from the blocked NCHWc layout of its x86 convolutions). The question it
answered: what do the ``Max`` form of PReLU (``openvino``; ``web`` until export format 4)
and ONNX ``PRelu`` (``web``, what the page runs) cost in that provider, and does the ``cpu``
form (1x1 depthwise convolutions, a fused ReLU and an Add) remove it (docs/design.md, the
ONNX export); since export format 5 it also shows what the ``cpu`` graph's time is made of. Writes
``onnx_profile.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from malleconv.runtime import command_line, cpu_name, write_report


def profile(path: str, size: int, threads: int, repeats: int = 3) -> dict:
    """``{"seconds": best run, "ops": {type: ms in the profiled run}, "count": {type: n}}``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="onnx_profile-"), "run")
    session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        "noisy": rng.random((1, 3, size, size), dtype=np.float32),
        "sigma": np.full((1,), 25.0, np.float32),
        "strength": np.ones(1, np.float32),
    }
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        best = min(best, time.perf_counter() - start)
    events = json.loads(Path(session.end_profiling()).read_text())
    last = max(e["ts"] for e in events if e.get("name") == "model_run")
    ops: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["ts"] >= last and e["name"].endswith("_kernel_time"):
            ops[e["args"]["op_name"]] += e["dur"] / 1000.0
            count[e["args"]["op_name"]] += 1
    return {"seconds": best, "ops": dict(ops), "count": dict(count)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--targets", nargs="+", default=["cpu", "openvino", "web"],
                    choices=["cpu", "openvino", "web"])
    ap.add_argument("--out", default="docs/research")
    args = ap.parse_args(argv)
    from malleconv.models.export import export_onnx

    tmp = tempfile.mkdtemp(prefix="onnx_profile-")
    results = {}
    for target in args.targets:
        path = export_onnx("mallenet-s", os.path.join(tmp, f"{target}.onnx"), target=target)
        results[target] = profile(str(path), args.size, args.threads)
        print(target, f"{results[target]['seconds']:.3f} s", flush=True)
    types = sorted(
        {t for r in results.values() for t in r["ops"]},
        key=lambda t: -max(r["ops"].get(t, 0.0) for r in results.values()),
    )
    lines = [
        "# Where ONNX Runtime spends a `mallenet-s` run",
        "",
        f"Command: `{command_line('research/onnx_profile.py', argv)}` ({cpu_name()}, "
        f"{args.threads} thread(s), {args.size}x{args.size}, all graph optimisations).",
        "",
        "Profiled kernel time of one run by operator type, after ONNX Runtime's rewrites "
        "(`ReorderInput` / `ReorderOutput`: conversions to and from the blocked layout of its "
        "x86 convolutions); ms (count). Best wall time of 3 runs at the bottom.",
        "",
        "| operator | " + " | ".join(f"`{t}` graph" for t in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    for t in types:
        cells = [
            f"{r['ops'][t]:.1f} ({r['count'][t]})" if t in r["ops"] else ""
            for r in results.values()
        ]
        if max(r["ops"].get(t, 0.0) for r in results.values()) >= 1.0:
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines.append(
        "| **total profiled** | "
        + " | ".join(f"{sum(r['ops'].values()):.0f}" for r in results.values())
        + " |"
    )
    lines.append(
        "| **best run, s** | " + " | ".join(f"{r['seconds']:.3f}" for r in results.values()) + " |"
    )
    write_report(args.out, "onnx_profile", results, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
