"""Which noise level would CC15 need? A diagnostic of the blind model on real camera noise.

    python research/cc15_levels.py --data $MALLECONV_DATA [--model mallenet-s-real]
        [--out docs/research/cc15_levels.md]

Each CC15 photo is denoised by the blind model twice over:

- with a constant level of ``m`` times the standard deviation of the photo's true noise
  (noisy minus reference, 8-bit units), for each multiplier ``m`` of ``--multipliers``:
  what the denoiser can do when the level is known (an oracle, since it reads the reference);
- with a per-pixel level map of ``m`` times the true noise's local RMS (its square, averaged
  over the channels, smoothed by a Gaussian of ``--local-radius`` pixels), for each ``m`` of
  ``--local-multipliers``: what an estimator that followed the noise's signal dependence
  and spatial variation exactly would give (an oracle too);
- with the model's own level map times each ``--strength`` (the ``--strength`` option of
  ``malleconv denoise``): what a better-calibrated estimate would give.

The per-image best of the first scan bounds what any estimate of one level per photo can
reach with this denoiser; the second scan asks the same of level maps. Nothing is chosen on
these figures: CC15 only reports (issue 22), and the shipped defaults stay those chosen on
the held-out synthetic split.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from malleconv import denoise, load_model
from malleconv.evaluation.metrics import psnr
from malleconv.evaluation.real import find_pairs
from malleconv.io import atomic_write_text, read_image
from malleconv.runtime import command_line, tune_allocator


def local_noise_rms(noise: np.ndarray, radius: float) -> torch.Tensor:
    """``(H, W, C)`` noise in 8-bit units -> ``(1, 1, H, W)`` local RMS: the channel mean of
    its square, smoothed by a separable Gaussian of std ``radius`` pixels (reflect padding)."""
    power = torch.from_numpy(np.square(noise).mean(axis=2, dtype=np.float64)).float()[None, None]
    half = int(3 * radius)
    taps = torch.exp(-torch.arange(-half, half + 1, dtype=torch.float32).pow(2) / (2 * radius**2))
    taps = taps / taps.sum()
    power = F.pad(power, (half, half, half, half), mode="reflect")
    power = F.conv2d(F.conv2d(power, taps.view(1, 1, 1, -1)), taps.view(1, 1, -1, 1))
    return power.sqrt()


def denoise_with_map(net, noisy: np.ndarray, level: torch.Tensor) -> np.ndarray:
    """``(H, W, 3)`` uint8 and a ``(1, 1, H, W)`` level map (8-bit units) -> ``(H, W, 3)``
    uint8, through the blind model's denoiser with that map in place of its estimate."""
    x = torch.from_numpy(noisy).permute(2, 0, 1)[None].float() / 255.0
    with torch.inference_mode():
        out = net(x, sigma=level).clamp(0, 1)
    return (out[0].permute(1, 2, 0) * 255.0).round().to(torch.uint8).numpy()


def scan(
    root: Path,
    model: str,
    multipliers: list[float],
    strengths: list[float],
    local_multipliers: list[float],
    local_radius: float,
) -> list[dict]:
    """One row per CC15 photo: its noise std and the PSNR (dB) of every setting."""
    net = load_model(model) if local_multipliers else None
    rows = []
    for scene, noisy_path, clean_path in find_pairs(root / "real" / "CC15"):
        noisy = read_image(noisy_path).pixels
        clean = read_image(clean_path).pixels
        noise = noisy.astype(np.float64) - clean.astype(np.float64)
        std = float(noise.std())
        row = {"scene": scene, "std": std, "input": psnr(noisy, clean)}
        for m in multipliers:
            row[f"x{m:g}"] = psnr(denoise(noisy, sigma=m * std, model=model), clean)
        if local_multipliers:
            rms = local_noise_rms(noise, local_radius)
            for m in local_multipliers:
                row[f"l{m:g}"] = psnr(denoise_with_map(net, noisy, m * rms), clean)
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


def table(
    rows: list[dict],
    command: str,
    multipliers: list[float],
    strengths: list[float],
    local_multipliers: list[float],
) -> str:
    keys = (
        [f"x{m:g}" for m in multipliers]
        + [f"l{m:g}" for m in local_multipliers]
        + [f"s{s:g}" for s in strengths]
    )
    heads = (
        [f"level {m:g} x std" for m in multipliers]
        + [f"map {m:g} x local RMS" for m in local_multipliers]
        + [f"strength {s:g}" for s in strengths]
    )
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
        "photo (an oracle: it reads the reference); `map m x local RMS`: a per-pixel level "
        "map of m times the true noise's local RMS (an oracle as well); `strength s`: the "
        "model's own level map times s; `best level`: the per-photo best of the constant "
        "oracle levels. A diagnostic only: nothing is chosen on CC15.\n\n" + "\n".join(lines) + "\n"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("MALLECONV_DATA"), help="dataset root")
    p.add_argument("--model", default="mallenet-s-real", help="a blind model")
    p.add_argument("--multipliers", nargs="+", type=float, default=[0.75, 1, 1.25, 1.5, 2, 2.5])
    p.add_argument("--strength", nargs="+", type=float, default=[0.75, 1, 1.25, 1.5, 2])
    p.add_argument(
        "--local-multipliers",
        nargs="*",
        type=float,
        default=[1, 1.25, 1.5],
        help="multipliers of the per-pixel oracle map (none: skip it)",
    )
    p.add_argument(
        "--local-radius",
        type=float,
        default=8.0,
        help="std in pixels of the Gaussian that smooths the noise power into a map",
    )
    p.add_argument("--out", help="also write the table to this markdown file")
    args = p.parse_args(argv)
    if not args.data:
        p.error("--data (or MALLECONV_DATA) is required")
    if 1.0 not in args.strength:
        args.strength.append(1.0)
    tune_allocator()
    if args.local_radius <= 0:
        p.error(f"--local-radius must be > 0, got {args.local_radius}")
    rows = scan(
        Path(args.data),
        args.model,
        args.multipliers,
        args.strength,
        args.local_multipliers,
        args.local_radius,
    )
    command = command_line("research/cc15_levels.py", argv)
    text = table(rows, command, args.multipliers, args.strength, args.local_multipliers)
    print(text)
    if args.out:
        atomic_write_text(Path(args.out), text, overwrite=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
