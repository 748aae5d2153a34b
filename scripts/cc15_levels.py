"""Which noise level would CC15 need? A diagnostic of the blind model on real camera noise.

    python scripts/cc15_levels.py --data $MALLECONV_DATA [--model mallenet-s-real]
        [--out docs/benchmarks/cc15_levels.md]

Each CC15 photo is denoised by the blind model twice over:

- with a constant level of ``m`` times the standard deviation of the photo's true noise
  (noisy minus reference, 8-bit units), for each multiplier ``m`` of ``--multipliers``:
  what the denoiser can do when the level is known (an oracle, since it reads the reference);
- with the model's own level map times each ``--strength`` (the ``--strength`` option of
  ``malleconv denoise``): what a better-calibrated estimate would give.

The per-image best of the first scan bounds what any estimate of one level per photo can
reach with this denoiser. Nothing is chosen on these figures: CC15 only reports
(issue 22), and the shipped defaults stay those chosen on the held-out synthetic split.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from malleconv import denoise
from malleconv.evaluation.metrics import psnr
from malleconv.evaluation.real import find_pairs
from malleconv.io import atomic_write_text, read_image
from malleconv.runtime import command_line, tune_allocator


def scan(root: Path, model: str, multipliers: list[float], strengths: list[float]) -> list[dict]:
    """One row per CC15 photo: its noise std and the PSNR (dB) of every setting."""
    rows = []
    for scene, noisy_path, clean_path in find_pairs(root / "real" / "CC15"):
        noisy = read_image(noisy_path).pixels
        clean = read_image(clean_path).pixels
        std = float((noisy.astype(np.float64) - clean.astype(np.float64)).std())
        row = {"scene": scene, "std": std, "input": psnr(noisy, clean)}
        for m in multipliers:
            row[f"x{m:g}"] = psnr(denoise(noisy, sigma=m * std, model=model), clean)
        for s in strengths:
            decided: dict = {}
            out = denoise(noisy, model=model, strength=s, report=decided)
            row[f"s{s:g}"] = psnr(out, clean)
            if s == 1.0:
                row["estimate"] = float(np.mean(decided["sigma"]))
        row["oracle"] = max(row[f"x{m:g}"] for m in multipliers)
        rows.append(row)
        print(f"{scene}: done", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict], command: str, multipliers: list[float], strengths: list[float]) -> str:
    keys = [f"x{m:g}" for m in multipliers] + [f"s{s:g}" for s in strengths]
    heads = [f"level {m:g} x std" for m in multipliers] + [f"strength {s:g}" for s in strengths]
    lines = [
        "| scene | noise std | estimate | noisy | " + " | ".join(heads) + " | best level |",
        "| --- | " + " | ".join(["---"] * (len(heads) + 4)) + " |",
    ]
    for r in rows:
        cells = [f"{r[k]:.2f}" for k in keys]
        lines.append(
            f"| {r['scene']} | {r['std']:.2f} | {r['estimate']:.2f} | {r['input']:.2f} | "
            + " | ".join(cells)
            + f" | {r['oracle']:.2f} |"
        )
    columns = [*keys, "std", "estimate", "input", "oracle"]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in columns}
    lines.append(
        f"| **mean** | {mean['std']:.2f} | {mean['estimate']:.2f} | {mean['input']:.2f} | "
        + " | ".join(f"**{mean[k]:.2f}**" for k in keys)
        + f" | **{mean['oracle']:.2f}** |"
    )
    return (
        "# CC15: the level the blind model would need\n\n"
        f"Made by `{command}` "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads). PSNR dB against the "
        "references. `level m x std`: a constant level of m times the true noise std of the "
        "photo (an oracle: it reads the reference); `strength s`: the model's own level map "
        "times s; `best level`: the per-photo best of the oracle levels. A diagnostic only: "
        "nothing is chosen on CC15.\n\n" + "\n".join(lines) + "\n"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("MALLECONV_DATA"), help="dataset root")
    p.add_argument("--model", default="mallenet-s-real", help="a blind model")
    p.add_argument("--multipliers", nargs="+", type=float, default=[0.75, 1, 1.25, 1.5, 2, 2.5])
    p.add_argument("--strength", nargs="+", type=float, default=[0.75, 1, 1.25, 1.5, 2])
    p.add_argument("--out", help="also write the table to this markdown file")
    args = p.parse_args(argv)
    if not args.data:
        p.error("--data (or MALLECONV_DATA) is required")
    if 1.0 not in args.strength:
        args.strength.append(1.0)
    tune_allocator()
    rows = scan(Path(args.data), args.model, args.multipliers, args.strength)
    command = command_line("scripts/cc15_levels.py", argv)
    text = table(rows, command, args.multipliers, args.strength)
    print(text)
    if args.out:
        atomic_write_text(Path(args.out), text, overwrite=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
