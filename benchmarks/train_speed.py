"""Training throughput of the named models: pixels per second of forward + backward + step.

    python benchmarks/train_speed.py [--models mallenet-s dncnn-c] [--patch 96] [--batch 8]
        [--data DIR] [--steps 10] [--out docs/benchmarks]

Measures each model in fp32 NCHW, fp32 channels-last, bf16-autocast channels-last (only
where the CPU supports bf16 or on CUDA) and fp32 channels-last under ``torch.compile``
(``--variants`` picks; compiling takes minutes, in the warm-up), side by side in one process,
and writes ``train_speed.md`` / ``train_speed.json``. Without ``--data`` it trains on
generated images (the figure then excludes image decoding, which happens once anyway).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from malleconv.runtime import command_line, cpu_name, write_report
from malleconv.training.config import load_config
from malleconv.training.profile import measure

VARIANTS = {
    "fp32 NCHW": {"channels_last": False, "bf16": False},
    "fp32 channels-last": {"channels_last": True, "bf16": False},
    "bf16 channels-last": {"channels_last": True, "bf16": True},
    # torch.compile of the training forward (train.compile): minutes of compiling first.
    "fp32 channels-last compiled": {"channels_last": True, "bf16": False, "compile": True},
}


@contextlib.contextmanager
def _torch_prelu(enabled: bool):
    """Make malleconv's PReLU run torch's own ``nn.PReLU.forward`` (for comparison)."""
    from malleconv.layers.blocks import PReLU

    if not enabled:
        yield
        return
    ours = PReLU.forward
    PReLU.forward = torch.nn.PReLU.forward
    try:
        yield
    finally:
        PReLU.forward = ours


@contextlib.contextmanager
def _eager_prelu_backward(enabled: bool):
    """Make malleconv's PReLU backward run its eager passes instead of the compiled one
    (for comparison)."""
    from malleconv.layers import blocks

    if not enabled:
        yield
        return
    compiled = blocks._compiled_backward
    blocks._compiled_backward = False
    try:
        yield
    finally:
        blocks._compiled_backward = compiled


def _synthetic_folder(root: Path, n: int = 16, size: int = 256) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / f"{i:02d}.png")
    return root


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["mallenet-s", "mallenet-l", "dncnn-c"])
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="docs/benchmarks")
    ap.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=[v for v in VARIANTS if "compiled" not in v],
        metavar="V",
    )
    ap.add_argument(
        "--torch-prelu-too",
        action="store_true",
        help="also measure each variant with torch's own nn.PReLU forward/backward, "
        "side by side with malleconv's PReLU",
    )
    ap.add_argument(
        "--eager-prelu-too",
        action="store_true",
        help="also measure each variant with malleconv's PReLU backward in eager passes "
        "instead of compiled, side by side",
    )
    ap.add_argument(
        "--no-tune-allocator",
        action="store_true",
        help="keep glibc's default allocator (malleconv train tunes it; see malleconv.runtime)",
    )
    args = ap.parse_args(argv)
    if args.no_tune_allocator:
        os.environ["MALLECONV_NO_MALLOC_TUNING"] = "1"  # or load_model would tune it
    else:
        from malleconv.runtime import tune_allocator

        tune_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    data = args.data or _synthetic_folder(Path(tmp.name))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results: dict[str, dict[str, float]] = {}
    for name in args.models:
        cfg = load_config(
            None,
            [
                f"model.name={name}",
                f"data.patch_size={args.patch}",
                f"data.batch_size={args.batch}",
                "data.val_holdout=0",
                "train.val_every=0",
            ],
        )
        results[name] = {}
        for label in args.variants:
            prelus = ["ours"] + ["eager"] * args.eager_prelu_too + ["torch"] * args.torch_prelu_too
            for prelu in prelus:
                key = label + {"ours": "", "eager": ", eager PReLU backward",
                               "torch": ", torch PReLU"}[prelu]
                c = copy.deepcopy(cfg)
                c["train"].update(VARIANTS[label])
                try:
                    with _torch_prelu(prelu == "torch"), _eager_prelu_backward(prelu == "eager"):
                        results[name][key] = measure(c, data, steps=args.steps)
                except RuntimeError as err:  # e.g. bf16 unsupported
                    print(f"{name} {key}: {err}", file=sys.stderr)
                    continue
                print(f"{name:12s} {key:34s} {results[name][key]:>12,.0f} pixels/s", flush=True)
    columns = [k for k in dict.fromkeys(k for per in results.values() for k in per)]
    meta = {
        "command": command_line("benchmarks/train_speed.py", argv),
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
        "patch": args.patch,
        "batch": args.batch,
        "steps": args.steps,
        "allocator": "glibc default" if args.no_tune_allocator else "tune_allocator()",
    }
    lines = [
        "# Training throughput",
        "",
        f"Command: `{meta['command']}`  ",
        f"{meta['date']}, torch {meta['torch']}, {meta['device']}, {meta['threads']} threads, "
        f"batch {args.batch} x {args.patch}x{args.patch} patches, mean of {args.steps} steps "
        "after 3 warm-up steps (forward + backward + gradient clipping + AdamW step; EMA off); "
        f"allocator: {meta['allocator']}.",
        "",
        "| model | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, per in results.items():
        cells = [f"{per[v]:,.0f}" if v in per else "n/a" for v in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Pixels per second of training (higher is better).")
    write_report(args.out, "train_speed", {"meta": meta, "results": results}, "\n".join(lines))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
