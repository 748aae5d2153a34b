"""How the automatic mode caps the learned level map with the noise floor, chosen on the
held-out training split (not on the test sets).

    python benchmarks/noise_floor_cap.py --data $MALLECONV_DATA/train/CBSD432 \
        $MALLECONV_DATA/train/OpenPhotos [--holdout 8] [--crop 384] [--draws 2] \
        [--cap 2.5 4] [--min-floor 0 0.5] [--baseline 0] [--bound 1 --bound-ratio 2.5] \
        [--route] [--reference 4/0.5/0] [--out docs/benchmarks]

The blind model (``mallenet-s-real``) reads fine texture as noise, so on clean, sharp
photos it smooths detail away. The noise floor (:mod:`malleconv.inference.noise_floor`)
reads the noise in the flattest parts of an image, which texture does not raise. Here the
blind model runs on the last ``--holdout`` training images (modern photos, downscaled, so
clean) as ``--crop`` centre crops, with the estimated map capped at ``k`` times the floor for
each ``k`` of ``--cap`` (and uncapped), on:

- the clean crops (output against input: a clean photo should come back unchanged);
- camera-like noise (``--draws`` draws per crop,
  :func:`~malleconv.data.camera_noise.camera_noise_draw`), on the sharp scene, on the
  softened scene (``optics_prob`` 1, as a camera's lens and demosaicking soften it),
  coarse (smoothed beyond the blind model's training range, then JPEG at quality 50-80:
  the blotchy noise of old or heavily processed photos), and upscaled (drawn on the image
  halved, then enlarged 2x: the blotches two pixels wide of a small photo or video frame
  shown larger);
- white Gaussian noise of 5, 15 and 25 (level not told).

Each factor runs with no cap below each ``--min-floor`` (a floor that low says nothing of
the noise) and for each ``--baseline`` ``b``: the floor a clean photo reads from its own
texture and 8-bit steps, taken out in quadrature before the factor applies (cap
``k sqrt(max(floor^2 - b^2, 0))``, as noise and that baseline add in variance). The chosen
setting is the first (factors ascending, then baselines descending: the one that lowers the
level most first) that costs no noisy kind more than 0.02 dB on average: it keeps the
denoiser's level wherever there is noise, and lowers it where there is only texture.

``--bound m`` also tries a lower bound on the map, ``m`` times the coarse floor, on images
whose noise is coarse (coarse floor at least ``--bound-ratio`` times the fine one) and that
are not read as clean: the learned map under-reads blotchy noise. The chosen bound is the
one that raises the noisy inputs most on average and costs no input, clean included, more
than 0.02 dB against the chosen cap. Also printed: what the floor, its coarse / fine ratio
and the learned map read on each kind of input.

``--reference COLUMN`` (a setting as the table names it, e.g. ``4/0.5/0``: the setting in
use) also picks, of all settings tried, the one that leaves the clean crops most unchanged
while its mean over the noisy inputs is no lower than the reference's: a setting that does
not cost noisy photos on average, though it may trade between kinds (the table's last row
gives that mean).

``--route`` runs each input as the automatic mode does: inputs whose noise reading
(:func:`~malleconv.inference.noise_level.read_noise`) has a coarse / fine ratio below
``WHITE_MAX_RATIO`` go to the white-noise model (``--white-model``) at the level read, at
most the cap; only the others go to the blind model, and only they get the lower bound.
The ``white route`` column is the share of each kind sent to the white-noise model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from malleconv.data.camera_noise import CameraNoiseRanges, camera_noise_draw
from malleconv.data.datasets import downscale_half
from malleconv.data.noise import SIGMA_MAX
from malleconv.evaluation.protocol import make_noisy
from malleconv.inference.auto import (
    FLOOR_BASELINE,
    MIN_FLOOR,
    WHITE_MAX_RATIO,
    level_bound,
    level_cap,
)
from malleconv.inference.noise_floor import read_noise_floor
from malleconv.inference.noise_level import read_noise
from malleconv.io import list_images
from malleconv.models import load_model
from malleconv.models.blind import BlindMalleNet
from malleconv.runtime import command_line, tune_allocator, write_report
from malleconv.training.validation import load_val_images, psnr8

WHITE_SIGMAS = (5, 15, 25)


# Camera noise smoothed more than the blind model was trained on, then JPEG-compressed: the
# coarse, blotchy noise of old and heavily processed photos (RNI15's Singer, Boy, Window).
COARSE = CameraNoiseRanges(
    smooth_prob=1.0, smooth_sigma=(1.2, 2.0), jpeg_prob=1.0, jpeg_quality=(50, 80)
)


# Heavy camera noise (shot noise in the upper quarter of the default range, on a log scale),
# JPEG-compressed at quality 50-80: with upscaled_draw, the grain of a small, noisy, heavily
# compressed photo or video frame shown enlarged.
_SHOT = CameraNoiseRanges().log_shot
HEAVY = CameraNoiseRanges(
    log_shot=(_SHOT[0] + 0.75 * (_SHOT[1] - _SHOT[0]), _SHOT[1]),
    jpeg_prob=1.0,
    jpeg_quality=(50, 80),
)


def upscaled_draw(
    clean: np.ndarray, name: str, draw: int, ranges: CameraNoiseRanges | None = None
) -> tuple[np.ndarray, torch.Tensor]:
    """Camera noise (``ranges``, default the training synthesis's) drawn on the image
    halved, then both scene and noisy image enlarged 2x (bicubic): the noise of a small
    photo or video frame shown larger, blotches two pixels wide (RNI15's Singer). Returns
    ``(reference uint8 H x W x 3, noisy (1, 3, H, W))``."""
    h, w = clean.shape[0] // 2 * 2, clean.shape[1] // 2 * 2
    reference, noisy = camera_noise_draw(
        downscale_half(clean), f"{name}:half", draw, ranges or CameraNoiseRanges()
    )
    scene = torch.from_numpy(reference.astype(np.float32) / 255).permute(2, 0, 1)[None]
    up = [F.interpolate(t, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
          for t in (scene, noisy)]
    reference = (up[0][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return reference, up[1]


def cases(crops, draws: int, heavy: bool = False):
    """``(kind, reference uint8 H x W x 3, noisy (1, 3, H, W))`` for every crop; ``heavy``
    adds the kind "camera, upscaled heavy" (:data:`HEAVY`, upscaled)."""
    sharp, soft = CameraNoiseRanges(optics_prob=0.0), CameraNoiseRanges(optics_prob=1.0)
    camera = (("camera", sharp), ("camera, softened", soft), ("camera, coarse", COARSE))
    for name, clean in crops:
        x = torch.from_numpy(clean.astype(np.float32) / 255).permute(2, 0, 1)[None]
        yield "clean", clean, x
        for draw in range(draws):
            for kind, ranges in camera:
                reference, noisy = camera_noise_draw(clean, name, draw, ranges)
                yield kind, reference, noisy
            yield "camera, upscaled", *upscaled_draw(clean, name, draw)
            if heavy:
                yield "camera, upscaled heavy", *upscaled_draw(clean, name, draw, HEAVY)
        for sigma in WHITE_SIGMAS:
            yield f"white {sigma}", clean, make_noisy(clean, name, float(sigma))


@torch.no_grad()
def measure(
    model: BlindMalleNet, crops, draws: int, columns: list[tuple], white: torch.nn.Module = None
) -> dict:
    """Per kind: mean PSNR uncapped and per ``(cap factor, least floor capped, baseline,
    bound multiple, bound ratio)`` of ``columns``; mean floor, coarse / fine floor ratio
    and mean map level. With a ``white`` model, inputs the automatic mode would read as
    white noise run on it at the level read (capped; no bound) instead: ``white`` is the
    share of such inputs and ``map`` their level read."""
    rows: dict[str, dict[str, list[float]]] = {}
    for kind, reference, noisy in cases(crops, draws):
        row = rows.setdefault(kind, {})
        floor = read_noise_floor(noisy)
        reading = read_noise(noisy) if white is not None else None
        # The white route's level is the one read; the blind route finds its own map.
        level_read = reading.sigma if reading and reading.ratio < WHITE_MAX_RATIO else None
        if level_read is None:
            out, level = model(noisy, return_level=True)
            mean_level = float(level.mean())
        else:
            out, mean_level = _run(model, white, noisy, level_read, None, None), level_read
        row.setdefault("white", []).append(float(level_read is not None))
        row.setdefault("none", []).append(psnr8(out, reference))
        row.setdefault("floor", []).append(floor.level)
        row.setdefault("map", []).append(mean_level)
        row.setdefault("ratio", []).append(floor.coarse / max(floor.fine, 1e-6))
        for k, least, base, m, r in columns:
            cap, bound = level_cap(floor, k, least, base), level_bound(floor, m, r)
            out = _run(model, white, noisy, level_read, cap, bound)
            row.setdefault(column_name(k, least, base, m, r), []).append(psnr8(out, reference))
        print(kind, f"floor {floor.level:.2f} map {mean_level:.2f}", flush=True)
    return {kind: {k: float(np.mean(v)) for k, v in row.items()} for kind, row in rows.items()}


def _run(model, white, noisy, level_read, cap, bound):
    """The blind model with the cap and bound, or (``level_read`` given: the white route)
    the white-noise model at the level read, at most the cap and 75, with no bound."""
    if level_read is None:
        return model(noisy, max_level=cap, min_level=bound)
    return white(noisy, min(level_read, SIGMA_MAX if cap is None else cap, SIGMA_MAX))


def column_name(factor, min_floor, baseline, multiple=0.0, ratio=0.0) -> str:
    name = f"{factor:g}/{min_floor:g}/{baseline:g}"
    return name + (f" + {multiple:g}x coarse at {ratio:g}" if multiple else "")


def choose(result: dict, columns: list[str], tolerance: float = 0.02) -> str | None:
    """The first column (factors ascending, then baselines descending) that costs no noisy
    kind more than ``tolerance`` dB, or None."""
    noisy = [kind for kind in result if kind != "clean"]
    for col in columns:
        if all(result[kind]["none"] - result[kind][col] <= tolerance for kind in noisy):
            return col
    return None


def choose_bound(result: dict, base: str, columns: list[str], tolerance: float = 0.02):
    """Of the bound ``columns`` (on the cap column ``base``), the one with the largest mean
    gain over ``base`` on the noisy kinds that costs no kind, clean included, more than
    ``tolerance`` dB against ``base``; None when none gains."""
    noisy = [kind for kind in result if kind != "clean"]
    best, best_gain = None, 0.0
    for col in columns:
        if any(result[kind][base] - result[kind][col] > tolerance for kind in result):
            continue
        gain = float(np.mean([result[kind][col] - result[kind][base] for kind in noisy]))
        if gain > best_gain:
            best, best_gain = col, gain
    return best


def noisy_mean(result: dict, column: str) -> float:
    """The mean of ``column`` over the noisy kinds (every kind but clean)."""
    return float(np.mean([r[column] for kind, r in result.items() if kind != "clean"]))


def choose_against(result: dict, columns: list[str], reference: str) -> str | None:
    """Of ``columns``, the one with the highest clean figure whose mean over the noisy kinds
    is at least ``reference``'s (None: no column qualifies)."""
    floor = noisy_mean(result, reference)
    qualified = [c for c in columns if noisy_mean(result, c) >= floor]
    return max(qualified, key=lambda c: result["clean"][c], default=None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="the training folders, in order")
    ap.add_argument("--model", default="mallenet-s-real")
    ap.add_argument("--holdout", type=int, default=8)
    ap.add_argument("--crop", type=int, default=384)
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--cap", type=float, nargs="+", default=[2.5, 4.0])
    ap.add_argument(
        "--min-floor", type=float, nargs="+", default=[0.0, MIN_FLOOR],
        help="floors below this get no cap (0: every image capped)",
    )
    ap.add_argument(
        "--baseline", type=float, nargs="+", default=[FLOOR_BASELINE],
        help="the floor of a clean photo, taken out of the floor in quadrature",
    )
    ap.add_argument(
        "--bound", type=float, nargs="*", default=[],
        help="lower bounds to try on the level map: this times the coarse floor where the "
        "noise is coarse (each with each --bound-ratio), on every cap setting",
    )
    ap.add_argument("--bound-ratio", type=float, nargs="+", default=[2.0])
    ap.add_argument(
        "--route", action="store_true",
        help="route each input as the automatic mode does (white noise to --white-model)",
    )
    ap.add_argument("--white-model", default="mallenet-s")
    ap.add_argument(
        "--reference", help="a setting as the table names it (factor/least floor/baseline"
        "[ + Mx coarse at R]): also choose the setting with the best clean figure whose mean "
        "over the noisy inputs is no lower than this one's",
    )
    ap.add_argument("--out", help="folder for noise_floor_cap.md / .json")
    args = ap.parse_args(argv)
    tune_allocator()
    model = load_model(args.model).float().eval()
    if not isinstance(model, BlindMalleNet):
        print(f"error: --model {args.model} is not a blind model", file=sys.stderr)
        return 2
    # The last --holdout images of the training folders, as the trainer holds them out.
    files = [file for file, _ in list_images([Path(f) for f in args.data])][-args.holdout :]
    crops = load_val_images(files, args.holdout, args.crop, gray=False)
    caps = [
        (k, least, base, 0.0, 0.0)
        for k in sorted(args.cap)
        for base in sorted(args.baseline, reverse=True)
        for least in args.min_floor
    ]
    bounds = [c[:3] + (m, r) for c in caps for m in args.bound for r in args.bound_ratio]
    settings = caps + bounds
    columns = [column_name(*c) for c in settings]
    if args.reference and args.reference not in columns:
        print(f"error: --reference {args.reference!r} is not a setting tried: {columns}",
              file=sys.stderr)
        return 2
    white = load_model(args.white_model).float().eval() if args.route else None
    result = measure(model, crops, args.draws, settings, white)
    chosen = choose(result, columns[: len(caps)])
    # The bounds tried on the chosen cap setting (same factor, least floor and baseline).
    bound_columns = [column_name(*c) for c in bounds if chosen and column_name(*c[:3]) == chosen]
    chosen_bound = choose_bound(result, chosen, bound_columns) if chosen else None
    against = choose_against(result, columns, args.reference) if args.reference else None
    stats = ["floor", "ratio", "map"] + (["white"] if args.route else [])
    header = ["input", "floor", "coarse / fine", "map"]
    header += (["white route"] if args.route else []) + ["uncapped"]
    header += [
        f"cap {k:g}x floor{f' less {base:g} in quadrature' if base else ''}, none below {least:g}"
        + (f", at least {m:g}x coarse floor where coarse >= {r:g}x fine" if m else "")
        for k, least, base, m, r in settings
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for kind, r in result.items():
        cells = [kind] + [f"{r[c]:.2f}" for c in [*stats, "none", *columns]]
        lines.append("| " + " | ".join(cells) + " |")
    means = [f"{noisy_mean(result, c):.3f}" for c in ["none", *columns]]
    blank = " |" * len(stats)
    lines.append(f"| noisy inputs, mean |{blank} " + " | ".join(means) + " |")
    table = "\n".join(lines)
    print(table)
    print(f"chosen cap factor: {chosen}; lower bound: {chosen_bound}")
    if args.reference:
        print(f"best clean figure, noisy mean no lower than {args.reference}: {against}")
    if args.out:
        cmd = command_line("benchmarks/noise_floor_cap.py", argv)
        md = (
            "# The noise floor's cap on the learned level map\n\n"
            f"Made by `{cmd}`: the last {args.holdout} training images, {args.crop}² centre "
            f"crops, {args.draws} camera-noise draws each (sharp and softened "
            "scenes; coarse: smoothed beyond the training range and JPEG-compressed; upscaled: "
            "drawn on the image halved, then enlarged 2x); "
            f"`{args.model}` with its level map capped at k times the noise floor (less a "
            "clean photo's own floor b, in quadrature, where b is given)"
            + (
                f"; routed as the automatic mode routes (white noise to `{args.white_model}` "
                "at the level read, capped alike, no lower bound)"
                if args.route
                else ""
            )
            + ". Mean PSNR "
            "(dB) against the reference (clean: output against input); floor and map: mean "
            "levels read (8-bit units).\n\n"
            f"{table}\n\nThe first setting (factor, least floor capped, b) that costs no noisy "
            f"input more than 0.02 dB on average: **{chosen}**.\n"
        )
        if bound_columns:
            md += (
                "\nOf the lower bounds on that setting, the one that raises the noisy inputs "
                "most on average while costing no input, clean included, more than 0.02 dB: "
                f"**{chosen_bound or 'none'}**.\n"
            )
        if args.reference:
            md += (
                "\nOf all settings, the one that leaves the clean crops most unchanged while its "
                f"mean over the noisy inputs is no lower than `{args.reference}`'s: "
                f"**{against or 'none'}**.\n"
            )
        report = {"result": result, "chosen": chosen, "chosen_bound": chosen_bound,
                  "reference": args.reference, "chosen_against_reference": against}
        write_report(args.out, "noise_floor_cap", report, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
