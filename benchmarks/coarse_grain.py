"""When the automatic mode adds its half-resolution pass, chosen on the held-out training
split (not on the test sets).

    python benchmarks/coarse_grain.py --data $MALLECONV_DATA/train/CBSD432 \
        $MALLECONV_DATA/train/OpenPhotos [--holdout 8] [--crop 384] [--draws 2] \
        [--ratio 4 4.5 5 5.5 6 6.5 7] [--out docs/benchmarks]

A denoiser of pixel-scale noise leaves grain that is several pixels wide (a small, noisy,
compressed photo or video frame shown enlarged) at any level it is given; at half
resolution that grain is pixel-scale again. So on images given the lower bound on their
level map (coarse grain, :func:`~malleconv.inference.auto.level_bound`), the automatic mode
can also run the blind model on the image's 2x2 block means (with the cap and bound read
there, :class:`~malleconv.inference.auto.HalfPass`) and take the output's low band from that
pass (:func:`~malleconv.inference.auto.merge_half`). It helps on grain wider than a pixel and
hurts on finer camera noise, so it is gated on the noise reading's coarse / fine ratio
(:func:`~malleconv.inference.noise_level.read_noise`).

Inputs: the last ``--holdout`` training images as ``--crop`` centre crops (clean: output
against input), ``--draws`` draws each of the camera-noise kinds of
``benchmarks/noise_floor_cap.py`` (sharp, softened, coarse, upscaled) and of heavy upscaled
grain (heavy camera noise, JPEG at quality 50-80, drawn on the image halved and enlarged 2x),
and white noise of 5, 15 and 25; each routed as the automatic mode routes it, with the
shipped cap and bound. Columns: no half-resolution pass, and the pass on bound images whose
ratio is at least each ``--ratio``. The chosen ratio is the one that raises the noisy inputs
most on average while costing no kind, clean included, more than 0.02 dB.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from malleconv.data.noise import SIGMA_MAX
from malleconv.inference.auto import (
    WHITE_MAX_RATIO,
    HalfPass,
    half_resolution,
    level_bound,
    level_cap,
    merge_half,
)
from malleconv.inference.noise_floor import read_noise_floor
from malleconv.inference.noise_level import read_noise
from malleconv.io import list_images
from malleconv.models import load_model
from malleconv.runtime import command_line, tune_allocator, write_report
from malleconv.training.validation import load_val_images, psnr8

sys.path.insert(0, str(Path(__file__).resolve().parent))
from noise_floor_cap import cases  # noqa: E402  (the same inputs, one definition)


@torch.no_grad()
def measure(blind, white, crops, draws: int, ratios: list[float]) -> dict:
    """Per kind: mean PSNR with no half-resolution pass (``"none"``) and with the pass from
    each ratio of ``ratios`` on; the share of inputs given the pass at the lowest ratio
    (``"pass"``), their mean reading ratio (``"ratio"``)."""
    rows: dict[str, dict[str, list[float]]] = {}
    for kind, reference, noisy in cases(crops, draws, heavy=True):
        row = rows.setdefault(kind, {})
        reading, floor = read_noise(noisy), read_noise_floor(noisy)
        cap = level_cap(floor)
        bound = None
        if reading.ratio < WHITE_MAX_RATIO:
            base = white(noisy, min(reading.sigma, cap, SIGMA_MAX))
        else:
            bound = level_bound(floor)
            base = blind(noisy, max_level=cap, min_level=bound)
        merged = base
        if bound is not None:
            half = HalfPass.of(noisy)
            low = blind(half_resolution(noisy), max_level=half.cap, min_level=half.bound)
            merged = merge_half(base, low)
        plain, with_pass = psnr8(base, reference), psnr8(merged, reference)
        row.setdefault("none", []).append(plain)
        row.setdefault("ratio", []).append(min(reading.ratio, 99.0))
        row.setdefault("pass", []).append(float(bound is not None and reading.ratio >= min(ratios)))
        for r in ratios:
            on = bound is not None and reading.ratio >= r
            row.setdefault(column(r), []).append(with_pass if on else plain)
        print(kind, f"ratio {reading.ratio:.2f} none {plain:.2f} pass {with_pass:.2f}",
              flush=True)
    return {kind: {k: float(np.mean(v)) for k, v in row.items()} for kind, row in rows.items()}


def column(ratio: float) -> str:
    return f"pass at ratio >= {ratio:g}"


def choose(result: dict, columns: list[str], tolerance: float = 0.02) -> str | None:
    """The column with the largest mean gain over ``"none"`` on the noisy kinds that costs
    no kind, clean included, more than ``tolerance`` dB; None when none gains."""
    noisy = [kind for kind in result if kind != "clean"]
    best, best_gain = None, 0.0
    for col in columns:
        if any(result[kind]["none"] - result[kind][col] > tolerance for kind in result):
            continue
        gain = float(np.mean([result[kind][col] - result[kind]["none"] for kind in noisy]))
        if gain > best_gain:
            best, best_gain = col, gain
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="the training folders, in order")
    ap.add_argument("--model", default="mallenet-s-real", help="the blind model")
    ap.add_argument("--white-model", default="mallenet-s")
    ap.add_argument("--holdout", type=int, default=8)
    ap.add_argument("--crop", type=int, default=384)
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--ratio", type=float, nargs="+", default=[4, 4.5, 5, 5.5, 6, 6.5, 7])
    ap.add_argument("--out", help="folder for coarse_grain.md / .json")
    args = ap.parse_args(argv)
    tune_allocator()
    blind = load_model(args.model).float().eval()
    white = load_model(args.white_model).float().eval()
    # The last --holdout images of the training folders, as the trainer holds them out.
    files = [file for file, _ in list_images([Path(f) for f in args.data])][-args.holdout :]
    crops = load_val_images(files, args.holdout, args.crop, gray=False)
    ratios = sorted(args.ratio)
    result = measure(blind, white, crops, args.draws, ratios)
    columns = [column(r) for r in ratios]
    chosen = choose(result, columns)
    header = ["input", "reading ratio", f"given the pass at >= {ratios[0]:g}", "no pass",
              *[f">= {r:g}" for r in ratios]]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for kind, r in result.items():
        cells = [kind, f"{r['ratio']:.2f}", f"{r['pass']:.2f}"]
        cells += [f"{r[c]:.2f}" for c in ["none", *columns]]
        lines.append("| " + " | ".join(cells) + " |")
    noisy = [k for k in result if k != "clean"]
    means = [f"{np.mean([result[k][c] for k in noisy]):.3f}" for c in ["none", *columns]]
    lines.append("| noisy inputs, mean | | | " + " | ".join(means) + " |")
    table = "\n".join(lines)
    print(table)
    print(f"chosen: {chosen}")
    if args.out:
        cmd = command_line("benchmarks/coarse_grain.py", argv)
        md = (
            "# The automatic mode's half-resolution pass\n\n"
            f"Made by `{cmd}`: the last {args.holdout} training images, {args.crop}² centre "
            f"crops, {args.draws} draws of each kind of noise, routed as the automatic mode "
            f"routes them (`{args.model}` with the shipped cap and bound, white noise to "
            f"`{args.white_model}`). Mean PSNR (dB) against the reference (clean: output "
            "against input) with no half-resolution pass and with the pass on images given "
            "the lower bound whose noise reading's coarse / fine ratio is at least each value; "
            "reading ratio: its mean (capped at 99 per input); given the pass: the share of "
            "inputs that get it at the lowest ratio.\n\n"
            f"{table}\n\nThe ratio that raises the noisy inputs most on average while costing "
            f"no input, clean included, more than 0.02 dB: **{chosen or 'none'}**.\n"
        )
        report = {"result": result, "ratios": ratios, "chosen": chosen}
        write_report(args.out, "coarse_grain", report, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
