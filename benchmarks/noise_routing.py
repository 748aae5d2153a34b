"""The automatic mode's threshold: when an image goes to the white-noise model.

    python benchmarks/noise_routing.py --data $MALLECONV_DATA/train/CBSD432 \
        $MALLECONV_DATA/train/OpenPhotos [--blind-model mallenet-s-real] \
        [--white-model mallenet-s] [--holdout 8] [--crop 384] [--draws 3] \
        [--out docs/benchmarks/noise_routing.md]

On the split that training holds out (the last ``--holdout`` images of ``--data``, never
trained on), four corner crops per image, each with: no noise, white Gaussian noise of
5 / 10 / 15 / 25 / 50, and ``--draws`` draws of camera-like noise
(:mod:`malleconv.data.camera_noise`). Each noisy crop is read with
:func:`~malleconv.inference.read_noise` and denoised both ways: the white-noise model
given the level read, and the blind model finding its own level map. The table gives the
mean PSNR (clean: output against input) of the automatic mode for each threshold on the
reading's coarse / fine ratio, from "always the blind model" to "always the white-noise
model"; the threshold with the best score (the mean of the white-noise and camera-noise
figures, :func:`table`) is the one to use (:data:`malleconv.inference.auto.WHITE_MAX_RATIO`).
A second table splits the camera figures by the noise's level (:func:`camera_bands`), as a
mean over all draws can hide a loss on the mild noise that most photos carry.
Test sets are not used. ``--rows FILE`` keeps the per-crop figures (JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from malleconv.cli.options import add_camera_noise_option
from malleconv.data.camera_noise import CameraNoiseRanges, camera_noise_draw
from malleconv.evaluation.protocol import make_noisy
from malleconv.inference import denoise, read_noise
from malleconv.inference.auto import WHITE_MAX_RATIO
from malleconv.io import atomic_write_text, list_images, read_image
from malleconv.runtime import command_line, tune_allocator
from malleconv.training.validation import psnr8

WHITE_SIGMAS = (5, 10, 15, 25, 50)
THRESHOLDS = (0.0, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 2.0, 2.5, float("inf"))


def corner_crops(folders, holdout: int, crop: int) -> list[tuple[str, np.ndarray]]:
    """``(name, crop x crop x 3 uint8)``: the four corner crops of each held-out image."""
    files = [file for file, _ in list_images([Path(f) for f in folders])][-holdout:]
    crops = []
    for file in files:
        pixels = read_image(file).pixels
        if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] < 3:
            raise ValueError(f"{file}: expected an 8-bit RGB image")
        h, w = pixels.shape[:2]
        for y, x in ((0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop)):
            crops.append(
                (
                    f"{file.stem}@{y},{x}",
                    np.ascontiguousarray(pixels[y : y + crop, x : x + crop, :3]),
                )
            )
    return crops


def measure(
    crops, white: str, blind: str, draws: int, ranges: CameraNoiseRanges | None = None
) -> list[dict]:
    """One row per noisy crop: kind, reading, and PSNR of both models."""
    ranges = ranges or CameraNoiseRanges()
    rows = []
    for name, clean in crops:
        x = torch.from_numpy(clean.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        cases = [("clean", clean, x)]
        cases += [(f"white {s}", clean, make_noisy(clean, name, float(s))) for s in WHITE_SIGMAS]
        for draw in range(draws):
            cases.append(("camera", *camera_noise_draw(clean, name, draw, ranges)))
        for kind, reference, noisy in cases:
            reading = read_noise(noisy)
            rows.append(
                {
                    "kind": kind,
                    "ratio": reading.ratio,
                    "level": float((noisy[0].permute(1, 2, 0).numpy() * 255 - reference).std()),
                    "white": psnr8(denoise(noisy, sigma=reading.sigma, model=white), reference),
                    "blind": psnr8(denoise(noisy, model=blind), reference),
                }
            )
        print(f"{name}: done", flush=True)
    return rows


def table(rows: list[dict]) -> tuple[str, float]:
    """The markdown table of mean PSNR per kind for each threshold, and the best one.

    Best: the highest mean of two figures, white noise (the mean over its levels) and
    camera noise, the two kinds the choice is between. Clean crops are reported, not
    scored: both models read a clean photo as weak noise, and which of them leaves it
    more nearly unchanged says nothing about the kind of noise.
    """
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    header = ["white if ratio below", *kinds, "white noise", "score", "sent to white"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    best, best_score = None, -np.inf
    for t in THRESHOLDS:
        per_kind = {}
        for kind in kinds:
            vals = [r["white"] if r["ratio"] < t else r["blind"] for r in rows if r["kind"] == kind]
            per_kind[kind] = float(np.mean(vals))
        white = float(np.mean([v for k, v in per_kind.items() if k.startswith("white")]))
        score = (white + per_kind["camera"]) / 2
        share = np.mean([r["ratio"] < t for r in rows])
        label = {0.0: "0 (always blind)", float("inf"): "inf (always white)"}.get(t, f"{t:g}")
        cells = [label, *(f"{v:.2f}" for v in per_kind.values())]
        cells += [f"{white:.2f}", f"{score:.2f}", f"{share:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
        if score > best_score + 1e-9:
            best, best_score = t, score
    return "\n".join(lines), best


# Camera photos mostly carry mild noise (CC15's are 3.6-8.3 in 8-bit std), while the
# synthetic draws reach 17 and more; a mean over all draws can hide a loss on the mild ones.
LEVEL_BANDS = ((0.0, 6.0), (6.0, 12.0), (12.0, float("inf")))


def camera_bands(rows: list[dict], threshold: float) -> str:
    """The camera-noise figures of the automatic mode at ``threshold``, by noise level.

    Rows need ``"level"`` (the std of the synthetic noise, 8-bit units); rows measured
    before it was recorded give an empty string.
    """
    camera = [r for r in rows if r["kind"] == "camera" and "level" in r]
    if not camera:
        return ""
    lines = [
        "| noise std | crops | automatic mode | blind model | white-noise model |",
        "| --- | --- | --- | --- | --- |",
    ]
    for lo, hi in LEVEL_BANDS:
        band = [r for r in camera if lo <= r["level"] < hi]
        if not band:
            continue
        auto = np.mean([r["white"] if r["ratio"] < threshold else r["blind"] for r in band])
        label = f"{lo:g} and above" if hi == float("inf") else f"{lo:g}-{hi:g}"
        lines.append(
            f"| {label} | {len(band)} | {auto:.2f} | {np.mean([r['blind'] for r in band]):.2f}"
            f" | {np.mean([r['white'] for r in band]):.2f} |"
        )
    return "\n".join(lines)


def report(rows: list[dict]) -> str:
    """The threshold table, the best threshold, the camera figures by noise level and
    the spread of the ratios per kind."""
    text, best = table(rows)
    bands = camera_bands(rows, WHITE_MAX_RATIO)
    if bands:
        bands = (
            f"Camera noise by its level (std, 8-bit units), the automatic mode at "
            f"{WHITE_MAX_RATIO:g}:\n\n{bands}\n\n"
        )
    kinds = dict.fromkeys(r["kind"] for r in rows)
    spread = "\n".join(
        f"| {k} | {min(r['ratio'] for r in rows if r['kind'] == k):.2f} | "
        f"{max(r['ratio'] for r in rows if r['kind'] == k):.2f} |"
        for k in kinds
    )
    return (
        f"{text}\n\nScore: the mean of the white-noise column (mean over its levels) and "
        f"the camera column; clean crops are reported, not scored. Best: below {best:g} "
        f"(malleconv.inference.auto.WHITE_MAX_RATIO is {WHITE_MAX_RATIO:g}).\n\n{bands}"
        "Coarse / fine ratio of the readings:\n\n| kind | min | max |\n| --- | --- | --- |\n"
        f"{spread}\n"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", nargs="+", help="the training folders, in order")
    ap.add_argument("--blind-model", default="mallenet-s-real")
    ap.add_argument("--white-model", default="mallenet-s")
    ap.add_argument("--holdout", type=int, default=8)
    ap.add_argument("--crop", type=int, default=384)
    ap.add_argument("--draws", type=int, default=3)
    add_camera_noise_option(ap, example="'jpeg_quality=[90,98]'")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--out", help="also write the table to this markdown file")
    ap.add_argument("--rows", help="also write the measurements to this JSON file")
    ap.add_argument(
        "--from-rows", help="tabulate the measurements of a --rows file instead of measuring"
    )
    args = ap.parse_args(argv)
    ranges = args.camera_noise
    if args.from_rows:
        run = json.loads(Path(args.from_rows).read_text())
    else:
        if not args.data:
            ap.error("--data is required (or --from-rows)")
        if args.threads:
            torch.set_num_threads(args.threads)
        tune_allocator()
        crops = corner_crops(args.data, args.holdout, args.crop)
        run = {
            "command": command_line("benchmarks/noise_routing.py", argv),
            "description": (
                f"white-noise model `{args.white_model}` (given the level read) or blind model "
                f"`{args.blind_model}` per image, on the {len(crops)} corner crops "
                f"({args.crop}²) of the last {args.holdout} training images (held out from "
                f"training), {args.draws} camera-noise draws each"
            ),
            "rows": measure(crops, args.white_model, args.blind_model, args.draws, ranges),
        }
        if args.rows:
            atomic_write_text(args.rows, json.dumps(run), overwrite=True)
    text = report(run["rows"])
    print(text)
    if args.out:
        atomic_write_text(
            args.out,
            f"# The automatic mode's choice of model\n\nMeasured by `{run['command']}`: "
            f"{run['description']}; mean PSNR (dB), clean: output against input.\n\n{text}",
            overwrite=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
