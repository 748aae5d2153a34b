"""slice_conv forward+backward of this tree against another git revision, side by side.

    python research/slice_conv_ab.py --base REV [--repeat 5] [--threads 2]

Loads the operator package ``src/malleconv/ops`` of the working tree and of ``REV``
(checked out into a temporary worktree) as two packages in one process and times
``slice_conv(x, grid).backward(g)`` for depthwise grids of the shapes MalleNet trains on
and at 512x512 with 64 channels, in interleaved rounds (drift hits both alike), with
:func:`malleconv.runtime.tune_allocator`. Prints the median times and their ratio: how a
change to the operator is measured before it lands.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from malleconv.runtime import cpu_name, tune_allocator

ROOT = Path(__file__).resolve().parent.parent
OPERATOR = Path("src/malleconv/ops")
# (batch, channels, size, grid stride, channels-last): MalleNet's levels 0 and 1 at batch
# 32 of 128x128 (training), and one 512x512 map of 64 channels in both layouts.
CASES = [
    (32, 16, 128, 8, True),
    (32, 32, 64, 8, True),
    (1, 64, 512, 16, False),
    (1, 64, 512, 16, True),
]


def _load(package: Path, name: str):
    """The package at ``package`` imported under ``name`` (its relative imports resolve
    inside it, so two copies of the operator load side by side)."""
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="git revision to compare with")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_allocator()
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "base"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(worktree), args.base],
            check=True,
        )
        try:
            base = _load(worktree / OPERATOR, "slice_conv_base")
            here = _load(ROOT / OPERATOR, "slice_conv_here")
            print(f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}")
            print(f"| shape | {args.base} ms | this tree ms | this / {args.base} |")
            print("|---|---:|---:|---:|")
            for b, c, size, stride, channels_last in CASES:
                x = torch.randn(b, c, size, size)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                grid = torch.randn(b, c, 1, 3, 3, size // stride, size // stride) * 0.1
                grad = torch.randn_like(x)
                x.requires_grad_()
                grid.requires_grad_()

                def run(module, x=x, grid=grid, c=c, grad=grad):
                    module.slice_conv(x, grid, groups=c).backward(grad)

                times = {"base": [], "here": []}
                for module in (base, here):
                    run(module)  # warm-up
                for _ in range(args.repeat):
                    for key, module in (("base", base), ("here", here)):
                        t = time.perf_counter()
                        run(module)
                        times[key].append(time.perf_counter() - t)
                old, new = (statistics.median(times[k]) for k in ("base", "here"))
                layout = "channels-last" if channels_last else "NCHW"
                shape = f"{b}x{c}x{size}x{size} {layout}, grid stride {stride}"
                print(f"| {shape} | {old * 1e3:.0f} | {new * 1e3:.0f} | {new / old:.2f} |")
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                check=False,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
