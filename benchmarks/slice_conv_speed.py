#!/usr/bin/env python
"""Speed and memory of slice-and-conv against its reference, per-pixel and static convs.

Usage::

    .venv/bin/python benchmarks/slice_conv_speed.py [--sizes 256 512 1024] [--channels 64]
        [--repeat 3] [--device cpu|cuda] [--out docs/benchmarks]

For ``C`` channels, ``k = 3``, batch 1, float32, depthwise (``groups = C``) and dense
(``groups = 1``) kernels and square ``H = W`` images, it measures

* ``slice_conv``: :func:`malleconv.ops.slice_conv.slice_conv` with a grid of stride 16,
  ``(1, C, C/g, 3, 3, ceil(H/16), ceil(W/16))``;
* ``slice_conv_reference``: the same inputs through ``slice_conv_reference``;
* ``per_pixel``: the core of ``PerPixelConv2d.forward`` on a given (as if predicted)
  per-pixel kernel tensor ``(1, C*C/g*9, H, W)``: unfold, multiply, sum;
* ``static``: ``F.conv2d`` with a ``(C, C/g, 3, 3)`` weight;
* ``perpixel_layer`` / ``malleconv_layer``: the full ``PerPixelConv2d`` / ``MalleConv2d``
  layers, predictor included (``eval()`` for the forward, ``train()`` for forward+backward).

Metrics: forward time (median of ``--repeat`` after ``--warmup`` runs, under ``torch.no_grad``),
forward+backward time (``loss = out.sum()``, every input, grid and parameter requiring
grad), and the peak *extra* memory of one forward and of one forward+backward: the peak
over the inputs, so the output, gradients and every temporary count.

Timings all run in this process, one case after the other. On CPU each memory case runs
in a fresh subprocess: it runs the case once at a tiny size (libraries, kernels, thread
pools), frees it, allocates and touches the real inputs, resets the peak resident size
(``/proc/self/clear_refs``; when the kernel refuses, the peak since start is used and the
JSON says so), reads ``VmRSS`` as the baseline, runs the case once and reports
``VmHWM - VmRSS_before``. On CUDA, ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats``, in process. One feature map is ``C*H*W*4`` bytes.

Writes ``slice_conv_speed.md`` and ``slice_conv_speed.json`` to ``--out`` and prints the
tables. Run it with the machine otherwise idle: the numbers are only as good as the quiet
around them.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from malleconv.layers.malleconv import MalleConv2d, PerPixelConv2d
from malleconv.ops.slice_conv import slice_conv, slice_conv_reference
from malleconv.runtime import cpu_name, write_report

K = 3
GRID_STRIDE = 16
WARMUP_SIZE = 32  # the child's tiny first run: loads code paths, allocates thread pools
METHODS = (
    "slice_conv",
    "slice_conv_reference",
    "per_pixel",
    "static",
    "malleconv_layer",
    "perpixel_layer",
)
KINDS = ("depthwise", "dense")
PASSES = ("fwd", "fwdbwd")

Tensor = torch.Tensor


def groups_of(kind: str, channels: int) -> int:
    return channels if kind == "depthwise" else 1


# --------------------------------------------------------------------------- cases


def build_case(
    method: str, kind: str, size: int, channels: int, device: str, train: bool
) -> tuple[Callable[[], Tensor], list[Tensor]]:
    """Inputs for one case: ``(fn, leaves)``; ``fn()`` returns the output.

    ``leaves`` are the tensors that get gradients (inputs, grid, parameters) when
    ``train``; their ``.grad`` is reset before each forward+backward.
    """
    c, g = channels, groups_of(kind, channels)
    cin = c // g
    h = w = size
    x = torch.randn(1, c, h, w, device=device)
    scale = (cin * K * K) ** -0.5
    if method in ("slice_conv", "slice_conv_reference"):
        gh, gw = -(-h // GRID_STRIDE), -(-w // GRID_STRIDE)
        grid = torch.randn(1, c, cin, K, K, gh, gw, device=device) * scale
        leaves = [x.requires_grad_(train), grid.requires_grad_(train)]
        op = slice_conv if method == "slice_conv" else slice_conv_reference
        return (lambda: op(x, grid, groups=g)), leaves
    if method == "per_pixel":
        # The kernel tensor is an input, as if predicted; the application is exactly the
        # core of PerPixelConv2d.forward (without its static-weight and bias additions).
        kern = torch.randn(1, c * cin * K * K, h, w, device=device) * scale
        leaves = [x.requires_grad_(train), kern.requires_grad_(train)]

        def per_pixel() -> Tensor:
            kernels = kern.reshape(1, g, c // g, cin * K * K, h * w)
            cols = F.unfold(x, K, padding=K // 2).reshape(1, g, 1, cin * K * K, h * w)
            return (kernels * cols).sum(3).reshape(1, c, h, w)

        return per_pixel, leaves
    if method == "static":
        weight = torch.randn(c, cin, K, K, device=device) * scale
        leaves = [x.requires_grad_(train), weight.requires_grad_(train)]
        return (lambda: F.conv2d(x, weight, padding=K // 2, groups=g)), leaves
    if method in ("malleconv_layer", "perpixel_layer"):
        cls = MalleConv2d if method == "malleconv_layer" else PerPixelConv2d
        layer = cls(c, c, K, g, grid_stride=GRID_STRIDE).to(device)
        layer.train(train)
        layer.requires_grad_(train)
        leaves = [x.requires_grad_(train), *layer.parameters()]
        return (lambda: layer(x)), leaves
    raise ValueError(f"unknown method {method!r}")


def run_once(fn: Callable[[], Tensor], leaves: list[Tensor], pass_: str, device: str) -> None:
    if pass_ == "fwd":
        with torch.no_grad():
            out = fn()
    else:
        for t in leaves:
            t.grad = None
        out = fn()
        out.sum().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    del out


def estimate_bytes(method: str, kind: str, size: int, channels: int, pass_: str) -> int:
    """Rough total memory of a case (inputs + peak extra), to skip what cannot fit.

    The methods that build every per-pixel kernel hold a few copies of its
    ``C * C/g * 9 * H * W`` floats at once: 3 (measured at 64-128 px: 2 to 3 for the
    reference and the bare application, forward or forward+backward), 4 for the
    per-pixel layer's forward+backward. The others need a few feature maps and grids.
    """
    c, g = channels, groups_of(kind, channels)
    hw = size * size
    fmap = c * hw * 4
    kernels = c * (c // g) * K * K * hw * 4
    grid = kernels // GRID_STRIDE**2
    if method in ("slice_conv_reference", "per_pixel"):
        return kernels * 3 + 4 * fmap
    if method == "perpixel_layer":
        # + the full-resolution predictor's activations (measured: 41 and 58 feature
        # maps in all, depthwise, forward and forward+backward)
        return kernels * 3 + 20 * fmap if pass_ == "fwd" else kernels * 4 + 30 * fmap
    return grid * 4 + 12 * fmap + (512 << 20)


# --------------------------------------------------------------------------- timing


def time_case(
    method: str,
    kind: str,
    size: int,
    channels: int,
    device: str,
    pass_: str,
    repeat: int,
    budget_s: float,
    warmup: int = 1,
) -> dict:
    """Median of ``repeat`` runs after ``warmup`` (at least one) untimed runs.

    When the last warm-up shows that ``repeat`` runs would take more than ``budget_s``, fewer
    runs are timed (at least one); ``runs`` says how many.
    """
    torch.manual_seed(0)
    fn, leaves = build_case(method, kind, size, channels, device, pass_ == "fwdbwd")
    for _ in range(max(1, warmup)):
        t0 = time.perf_counter()
        run_once(fn, leaves, pass_, device)
        warm = time.perf_counter() - t0
    runs = max(1, min(repeat, int(budget_s // max(warm, 1e-9))))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run_once(fn, leaves, pass_, device)
        times.append(time.perf_counter() - t0)
    del fn, leaves
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return {
        "ms": statistics.median(times) * 1e3,
        "ms_all": [t * 1e3 for t in times],
        "warmup_ms": warm * 1e3,
        "runs": runs,
        "repeat": repeat,
    }


# --------------------------------------------------------------------------- memory


def _proc_status() -> dict[str, int]:
    """``VmRSS`` / ``VmHWM`` of this process in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        return False
    st = _proc_status()
    return st["VmHWM"] <= st["VmRSS"] + (1 << 20)


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def child_memory(method: str, kind: str, size: int, channels: int, pass_: str) -> dict:
    """Peak extra resident memory of one CPU case (run in a fresh process)."""
    train = pass_ == "fwdbwd"
    torch.manual_seed(0)
    fn, leaves = build_case(method, kind, WARMUP_SIZE, channels, "cpu", train)
    run_once(fn, leaves, pass_, "cpu")
    del fn, leaves
    gc.collect()
    _malloc_trim()
    fn, leaves = build_case(method, kind, size, channels, "cpu", train)  # randn touches all
    gc.collect()
    reset = _reset_peak_rss()
    before = _proc_status()
    t0 = time.perf_counter()
    run_once(fn, leaves, pass_, "cpu")
    elapsed = time.perf_counter() - t0
    after = _proc_status()
    return {
        "peak_extra_bytes": after["VmHWM"] - before["VmRSS"],
        "rss_before": before["VmRSS"],
        "hwm_before": before["VmHWM"],
        "hwm_after": after["VmHWM"],
        "hwm_reset": reset,
        "seconds": elapsed,
    }


def cuda_memory(method: str, kind: str, size: int, channels: int, pass_: str) -> dict:
    torch.manual_seed(0)
    fn, leaves = build_case(method, kind, size, channels, "cuda", pass_ == "fwdbwd")
    run_once(fn, leaves, pass_, "cuda")  # warm-up
    for t in leaves:
        t.grad = None
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run_once(fn, leaves, pass_, "cuda")
    peak = torch.cuda.max_memory_allocated()
    del fn, leaves
    gc.collect()
    torch.cuda.empty_cache()
    return {"peak_extra_bytes": peak - base, "allocated_before": base}


def memory_case(
    method: str, kind: str, size: int, channels: int, pass_: str, device: str, timeout: float
) -> dict:
    if device == "cuda":
        return cuda_memory(method, kind, size, channels, pass_)
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", method, kind, str(size)]
    cmd += [str(channels), pass_, "--threads", str(torch.get_num_threads())]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout ({timeout:g} s)"}
    if proc.returncode != 0:
        if proc.returncode == -9:
            return {"error": "killed (SIGKILL, likely out of memory)"}
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"failed (rc {proc.returncode}): {tail[:200]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report


def fmt_ms(cell: dict | None) -> str:
    if cell is None:
        return "-"
    if "error" in cell:
        return cell["error"]
    ms = cell["ms"]
    text = f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"
    if cell["runs"] < cell.get("repeat", cell["runs"]):
        text += f" ({cell['runs']} run{'s' if cell['runs'] > 1 else ''})"
    return text


def fmt_mem(cell: dict | None) -> str:
    if cell is None:
        return "-"
    if "error" in cell:
        return cell["error"]
    return f"{cell['peak_extra_mb']:.1f} ({cell['peak_extra_fmaps']:.2f})"


def tables(results: list[dict], sizes: list[int]) -> str:
    lines = []
    for kind in KINDS:
        lines += [
            f"### {kind} (groups = {'C' if kind == 'depthwise' else '1'})",
            "",
            "| size | method | fwd ms | fwd+bwd ms | fwd peak extra MB (feature maps) "
            "| fwd+bwd peak extra MB (feature maps) |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for size in sizes:
            for r in results:
                if r["kind"] != kind or r["size"] != size:
                    continue
                t, m = r["time"], r["memory"]
                lines.append(
                    f"| {size} | {r['method']} | {fmt_ms(t.get('fwd'))} "
                    f"| {fmt_ms(t.get('fwdbwd'))} | {fmt_mem(m.get('fwd'))} "
                    f"| {fmt_mem(m.get('fwdbwd'))} |"
                )
        lines.append("")
    return "\n".join(lines)


def _value(results, kind, size, method, what, pass_, key):
    for r in results:
        if (r["kind"], r["size"], r["method"]) == (kind, size, method):
            cell = r[what].get(pass_)
            if cell and "error" not in cell:
                return cell[key]
    return None


def targets(results: list[dict], sizes: list[int]) -> list[dict]:
    """The acceptance targets, from the measured numbers (depthwise kernels).

    The memory targets are checked at the largest size; where a side of the comparison
    was skipped or failed there, at the largest size where both sides were measured
    (the description then says so). The time target is checked at 512 only.
    """
    largest = max(sizes)
    out = []

    def mem(method, pass_, key="peak_extra_bytes"):
        return lambda size: _value(results, "depthwise", size, method, "memory", pass_, key)

    def fwd_ms(method, pass_="fwd"):
        return lambda size: _value(results, "depthwise", size, method, "time", pass_, "ms")

    def one(size):
        return 1.0

    def add(name, num, den, limit, text, at=None):
        candidates = [at] if at is not None else sorted(sizes, reverse=True)
        size = ratio = None
        for s in candidates:
            if s in sizes and num(s) is not None and den(s) is not None:
                size, n, d = s, num(s), den(s)
                ratio = n / d if d > 0 else float("inf")
                break
        if size is None:
            where = at if at is not None else largest
            status = "N/A (not measured)"
        else:
            where = size
            status = "PASS" if ratio <= limit else "FAIL"
        note = ""
        if at is None and size is not None and size != largest:
            note = f" (largest size where both were measured; not measured at {largest})"
        out.append(
            {
                "target": name,
                "size": where,
                "description": f"size {where}, depthwise: {text}{note}",
                "ratio": ratio,
                "limit": limit,
                "status": status,
            }
        )

    add(
        "a1",
        mem("slice_conv", "fwd", "peak_extra_fmaps"),
        one,
        3.0,
        "slice_conv forward peak extra memory <= 3 feature maps (ratio = feature maps)",
    )
    add(
        "a2",
        mem("slice_conv", "fwd"),
        mem("slice_conv_reference", "fwd"),
        1 / 3,
        "slice_conv forward peak extra memory <= 1/3 of slice_conv_reference",
    )
    add(
        "b",
        fwd_ms("slice_conv"),
        fwd_ms("static"),
        3.0,
        "slice_conv forward time <= 3x static conv2d",
        at=512,
    )
    add(
        "d",
        fwd_ms("slice_conv", "fwdbwd"),
        fwd_ms("static", "fwdbwd"),
        3.0,
        "slice_conv forward+backward time <= 3x static conv2d forward+backward",
        at=512,
    )
    add(
        "c1",
        mem("malleconv_layer", "fwdbwd"),
        mem("perpixel_layer", "fwdbwd"),
        0.5,
        "MalleConv2d layer forward+backward peak extra memory <= 1/2 of the PerPixelConv2d layer's",
    )
    add(
        "c2",
        mem("slice_conv", "fwdbwd"),
        mem("per_pixel", "fwdbwd"),
        0.5,
        "slice_conv forward+backward peak extra memory <= 1/2 of the bare per-pixel application's",
    )
    return out


def targets_md(tg: list[dict]) -> str:
    lines = [
        "## Targets",
        "",
        "| target | check | measured ratio | limit | result |",
        "|---|---|---:|---:|---|",
    ]
    for t in tg:
        ratio = "-" if t["ratio"] is None else f"{t['ratio']:.3g}"
        lines.append(
            f"| {t['target']} | {t['description']} | {ratio} | {t['limit']:.3g} | {t['status']} |"
        )
    return "\n".join(lines) + "\n"


def command_line() -> str:
    exe = sys.executable
    try:
        rel = os.path.relpath(exe)
        if not rel.startswith(".."):
            exe = rel
    except ValueError:
        pass
    return shlex.join([exe, *sys.argv])


# --------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument(
        "--max-gb",
        type=float,
        default=12.0,
        help="skip cases estimated to need more memory than this (default 12)",
    )
    p.add_argument(
        "--case-timeout",
        type=float,
        default=300.0,
        help="seconds per memory subprocess, and the budget for the timed runs of a case, "
        "which are then fewer than --repeat (default 300)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: torch's default, all cores)",
    )
    p.add_argument(
        "--tune-allocator",
        action="store_true",
        help="call malleconv.runtime.tune_allocator() first (as the malleconv command does): "
        "freed memory is reused instead of being unmapped, so timings exclude page faults",
    )
    p.add_argument("--no-memory", action="store_true", help="timings only")
    p.add_argument("--_child", nargs=5, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.tune_allocator:
        from malleconv.runtime import tune_allocator

        tune_allocator()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args._child:
        method, kind, size, channels, pass_ = args._child
        print(json.dumps(child_memory(method, kind, int(size), int(channels), pass_)))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    if args.channels < 1:
        print("error: --channels must be positive", file=sys.stderr)
        return 2
    sizes = sorted(set(args.sizes))
    c = args.channels
    load = os.getloadavg()
    ncpu = os.cpu_count() or 1
    if load[0] > 0.25 * ncpu:
        print(
            f"warning: load average {load[0]:.2f} on {ncpu} CPUs: the machine is not idle, "
            "timings will be noisy",
            file=sys.stderr,
        )
    meta = {
        "command": command_line(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": args.device,
        "device_name": (torch.cuda.get_device_name() if args.device == "cuda" else cpu_name()),
        "cpu": cpu_name(),
        "cpu_count": ncpu,
        "threads": torch.get_num_threads(),
        "tune_allocator": args.tune_allocator,
        "load_average_at_start": list(load),
        "channels": c,
        "kernel_size": K,
        "grid_stride": GRID_STRIDE,
        "batch": 1,
        "dtype": "float32",
        "repeat": args.repeat,
        "warmup": max(1, args.warmup),
        "sizes": sizes,
        "max_gb": args.max_gb,
        "case_timeout_s": args.case_timeout,
        "feature_map": "C*H*W*4 bytes",
        "memory_method": (
            "torch.cuda.max_memory_allocated - memory_allocated, after reset_peak_memory_stats"
            if args.device == "cuda"
            else "fresh subprocess per case: VmHWM after one run - VmRSS before it "
            "(inputs allocated and touched, VmHWM reset via /proc/self/clear_refs)"
        ),
    }
    results = []
    for size in sizes:
        fmap = c * size * size * 4
        for kind in args.kinds:
            for method in args.methods:
                row = {"size": size, "kind": kind, "method": method, "time": {}, "memory": {}}
                results.append(row)
                for pass_ in PASSES:
                    need = estimate_bytes(method, kind, size, c, pass_)
                    if need > args.max_gb * 1e9:
                        skip = {"error": f"skipped: needs ~{need / 1e9:.0f} GB"}
                        row["time"][pass_] = row["memory"][pass_] = skip
                        print(
                            f"{size:5d} {kind:9s} {method:20s} {pass_:6s} {skip['error']}",
                            file=sys.stderr,
                            flush=True,
                        )
                        continue
                    t = time_case(
                        method,
                        kind,
                        size,
                        c,
                        args.device,
                        pass_,
                        args.repeat,
                        args.case_timeout,
                        args.warmup,
                    )
                    row["time"][pass_] = t
                    msg = f"{t['ms']:10.2f} ms"
                    if not args.no_memory:
                        m = memory_case(
                            method, kind, size, c, pass_, args.device, args.case_timeout
                        )
                        if "error" not in m:
                            m["peak_extra_mb"] = m["peak_extra_bytes"] / 2**20
                            m["peak_extra_fmaps"] = m["peak_extra_bytes"] / fmap
                            msg += (
                                f"  {m['peak_extra_mb']:9.1f} MB ({m['peak_extra_fmaps']:.2f} fm)"
                            )
                        else:
                            msg += f"  {m['error']}"
                        row["memory"][pass_] = m
                    print(
                        f"{size:5d} {kind:9s} {method:20s} {pass_:6s} {msg}",
                        file=sys.stderr,
                        flush=True,
                    )
    tg = targets(results, sizes)
    notes = [
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']}",
        f"- torch {meta['torch']}, Python {meta['python']}, device {args.device} "
        f"({meta['device_name']})",
        f"- CPU: {meta['cpu']}, {ncpu} logical CPUs, torch threads: {meta['threads']}, "
        f"load average at start: {load[0]:.2f}",
        "- Allocator: "
        + (
            "`tune_allocator()` (freed memory reused, no page faults in the timings)"
            if args.tune_allocator
            else "glibc default (every block over 32 MB is a fresh mmap: page faults count)"
        ),
        f"- C = {c}, k = {K}, batch 1, float32, grid stride {GRID_STRIDE}; times are the "
        f"median of {args.repeat} runs after {max(1, args.warmup)} warm-up run(s) (fewer "
        "where marked: runs that "
        f"would exceed {args.case_timeout:g} s per case), all in one process, one case "
        "after the other; forward under `torch.no_grad`, forward+backward with "
        "`out.sum().backward()`, all inputs, grids and parameters requiring grad.",
        "- Peak extra memory: " + meta["memory_method"] + "; it includes the output (and, "
        "for forward+backward, the gradients). One feature map = C*H*W*4 bytes.",
        "- `per_pixel` is the application of a given per-pixel kernel tensor (the core of "
        "`PerPixelConv2d.forward`); `perpixel_layer` and `malleconv_layer` are the full "
        "layers with their predictors (eval mode for forward, train mode for forward+backward).",
        f"- Cases estimated to need more than {args.max_gb:g} GB are skipped; memory "
        f"subprocesses time out after {args.case_timeout:g} s.",
    ]
    load_end = os.getloadavg()
    meta["load_average_at_end"] = list(load_end)
    if max(load[0], load_end[0]) > 0.25 * ncpu:
        notes.append(
            f"- WARNING: the machine was not idle (load average {load[0]:.2f} at start, "
            f"{load_end[0]:.2f} at end, {ncpu} CPUs): timings are unreliable, rerun idle."
        )
    if args.device == "cpu" and not args.no_memory:
        resets = [
            m.get("hwm_reset") for r in results for m in r["memory"].values() if "error" not in m
        ]
        if resets and not all(resets):
            notes.append(
                "- WARNING: VmHWM could not be reset in some subprocesses; their "
                "peak is an upper bound."
            )
    md = "\n".join(
        [
            "# Operator benchmark: slice-and-conv",
            "",
            *notes,
            "",
            "## Results",
            "",
            tables(results, sizes),
            targets_md(tg),
        ]
    )
    print(tables(results, sizes))
    print(targets_md(tg))
    written = write_report(
        args.out, "slice_conv_speed", {"meta": meta, "results": results, "targets": tg}, md
    )
    print(f"wrote {written[1]} and {written[0]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
