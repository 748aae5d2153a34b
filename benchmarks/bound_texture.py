"""Where the automatic mode's lower bound stops: the fine-floor limit, chosen on the held-out
training split and its most textured windows (not on the test sets).

    python benchmarks/bound_texture.py --data $MALLECONV_DATA/train/CBSD432 \
        $MALLECONV_DATA/train/OpenPhotos [--holdout 8] [--crop 384] [--draws 2] \
        [--window 192] [--max-fine 3 4 5 6 8] [--out docs/benchmarks]

The lower bound (:func:`~malleconv.inference.auto.level_bound`) gives an image whose coarse
floor reads well above its fine one (grain wider than a pixel, which the learned map
under-reads) at least that coarse floor. On a photo with no flat area at all (gravel, grass,
foliage filling the frame) even the flattest blocks carry texture, and texture too reads
higher at half resolution: there the bound sets a level of 20 or more on a clean image and
paints it over. So the bound applies only where the fine floor reads below a limit.

Inputs: the held-out crops of ``benchmarks/noise_floor_cap.py`` (the last ``--holdout``
training images as ``--crop`` centre crops: clean; camera noise on the sharp, softened,
coarse, upscaled and heavy upscaled scene, ``--draws`` draws each; white noise of 5, 15 and
25) and, from each held-out image, its most textured window: of the ``--window``-pixel
windows on a grid of a third of that, the one whose fine floor reads highest; clean, and with
camera noise on the sharp and softened scene (``--draws`` draws). Each is routed as the
automatic mode routes it: white noise to ``mallenet-s`` at the level read, the rest to the
blind model with the shipped cap, the bound where each column gives it, and the
half-resolution pass where the mode adds it (its own bound limited alike). Columns: no bound,
the bound with no limit (the setting before), and the bound only where the fine floor reads
below each ``--max-fine``. The chosen limit: the one with the highest mean over every kind,
clean and textured included; ties go to the highest limit, which changes the fewest images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from malleconv.data.camera_noise import CameraNoiseRanges, camera_noise_draw
from malleconv.data.noise import SIGMA_MAX
from malleconv.evaluation.protocol import load_test_image
from malleconv.inference.auto import (
    HALF_PASS_RATIO,
    WHITE_MAX_RATIO,
    half_resolution,
    level_bound,
    level_cap,
    merge_half,
)
from malleconv.inference.noise_floor import read_half_floor, read_noise_floor
from malleconv.inference.noise_level import read_noise
from malleconv.io import list_images
from malleconv.models import load_model
from malleconv.runtime import command_line, tune_allocator, write_report
from malleconv.training.validation import load_val_images, psnr8

sys.path.insert(0, str(Path(__file__).resolve().parent))
from noise_floor_cap import cases  # noqa: E402  (the same inputs, one definition)

NO_LIMIT = float("inf")


def textured_window(image: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` window of ``image`` (``H x W x 3`` uint8), on a grid of
    ``size // 3``, whose fine noise floor reads highest: the busiest part of the photo."""
    step = max(size // 3, 1)
    best, best_floor = None, -1.0
    for y in range(0, image.shape[0] - size + 1, step):
        for x in range(0, image.shape[1] - size + 1, step):
            window = image[y : y + size, x : x + size]
            fine = read_noise_floor(window).fine
            if fine > best_floor:
                best, best_floor = window, fine
    if best is None:
        raise ValueError(f"textured_window: the image {image.shape[:2]} is smaller than {size}")
    return np.ascontiguousarray(best)


def textured_cases(files, size: int, draws: int):
    """``(kind, reference uint8, noisy (1, 3, H, W))`` for the most textured window of each
    file: clean, and with camera noise on the sharp and softened scene."""
    kinds = (("texture, camera", CameraNoiseRanges(optics_prob=0.0)),
             ("texture, camera softened", CameraNoiseRanges(optics_prob=1.0)))
    for file in files:
        window = textured_window(load_test_image(file, gray=False), size)
        name = f"{Path(file).stem}:texture"
        clean = torch.from_numpy(window / np.float32(255)).permute(2, 0, 1)[None]
        yield "texture, clean", window, clean
        for draw in range(draws):
            for kind, ranges in kinds:
                yield (kind, *camera_noise_draw(window, name, draw, ranges))


@torch.no_grad()
def measure(blind, white, inputs, limits: list[float]) -> dict:
    """Per kind: mean PSNR with no bound (``"none"``) and with the bound where the fine floor
    reads below each of ``limits``; the share of inputs given the bound with no limit
    (``"bound"``) and the mean fine floor of those (``"fine"``)."""
    rows: dict[str, dict[str, list[float]]] = {}
    for kind, reference, noisy in inputs:
        row = rows.setdefault(kind, {})
        reading, floor = read_noise(noisy), read_noise_floor(noisy)
        cap = level_cap(floor)
        if reading.ratio < WHITE_MAX_RATIO:
            plain = psnr8(white(noisy, min(reading.sigma, cap, SIGMA_MAX)), reference)
            outputs = dict.fromkeys([None, *limits], plain)
            row.setdefault("bound", []).append(0.0)
        else:
            half_floor = read_half_floor(noisy) if reading.ratio >= HALF_PASS_RATIO else None
            # One blind run per distinct (bound, half bound): most limits share them.
            runs: dict = {}
            outputs = {}
            for limit in [None, *limits]:
                bound = None if limit is None else level_bound(floor, max_fine=limit)
                half = None
                if half_floor is not None and bound is not None:
                    half = level_bound(half_floor, max_fine=limit)
                if (bound, half) not in runs:
                    out = _routed(blind, noisy, cap, bound, half_floor, half)
                    runs[bound, half] = psnr8(out, reference)
                outputs[limit] = runs[bound, half]
            given = level_bound(floor, max_fine=NO_LIMIT) is not None
            row.setdefault("bound", []).append(float(given))
            if given:
                row.setdefault("fine", []).append(floor.fine)
        row.setdefault("none", []).append(outputs[None])
        for limit in limits:
            row.setdefault(column(limit), []).append(outputs[limit])
        print(kind, f"floor {floor.fine:.2f} / {floor.coarse:.2f}",
              " ".join(f"{v:.2f}" for v in outputs.values()), flush=True)
    return {kind: {k: float(np.mean(v)) for k, v in row.items()} for kind, row in rows.items()}


def _routed(blind, noisy, cap, bound, half_floor, half_bound) -> torch.Tensor:
    """The blind model with the cap and ``bound``, and the half-resolution pass where the
    automatic mode adds it (a bound given and ``half_floor`` read: the reading's ratio is
    at least ``HALF_PASS_RATIO``)."""
    out = blind(noisy, max_level=cap, min_level=bound)
    if bound is not None and half_floor is not None:
        low = blind(half_resolution(noisy), max_level=level_cap(half_floor), min_level=half_bound)
        out = merge_half(out, low)
    return out


def column(limit: float) -> str:
    return "bound, no limit" if limit == NO_LIMIT else f"bound where fine < {limit:g}"


def choose(result: dict, limits: list[float]) -> float:
    """The limit with the highest mean over every kind; ties (to 0.001 dB) go to the highest."""
    means = {limit: round(float(np.mean([r[column(limit)] for r in result.values()])), 3)
             for limit in limits}
    best = max(means.values())
    return max(limit for limit, mean in means.items() if mean == best)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="the training folders, in order")
    ap.add_argument("--model", default="mallenet-s-real", help="the blind model")
    ap.add_argument("--white-model", default="mallenet-s")
    ap.add_argument("--holdout", type=int, default=8)
    ap.add_argument("--crop", type=int, default=384)
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--window", type=int, default=192, help="side of the textured windows")
    ap.add_argument("--max-fine", type=float, nargs="+", default=[3, 4, 5, 6, 8],
                    help="fine-floor limits to try (the bound applies below the limit)")
    ap.add_argument("--out", help="folder for bound_texture.md / .json")
    args = ap.parse_args(argv)
    tune_allocator()
    blind = load_model(args.model).float().eval()
    white = load_model(args.white_model).float().eval()
    # The last --holdout images of the training folders, as the trainer holds them out.
    files = [file for file, _ in list_images([Path(f) for f in args.data])][-args.holdout :]
    crops = load_val_images(files, args.holdout, args.crop, gray=False)
    limits = [*sorted(args.max_fine), NO_LIMIT]
    inputs = [*cases(crops, args.draws, heavy=True),
              *textured_cases(files, args.window, args.draws)]
    result = measure(blind, white, inputs, limits)
    chosen = choose(result, limits)
    columns = ["none", *[column(limit) for limit in limits]]
    header = ["input", "given the bound", "their fine floor", "no bound", *columns[1:]]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for kind, r in result.items():
        fine = f"{r['fine']:.2f}" if "fine" in r else ""
        cells = [kind, f"{r['bound']:.2f}", fine, *[f"{r[c]:.2f}" for c in columns]]
        lines.append("| " + " | ".join(cells) + " |")
    means = [f"{np.mean([r[c] for r in result.values()]):.3f}" for c in columns]
    lines.append("| every kind, mean | | | " + " | ".join(means) + " |")
    table = "\n".join(lines)
    print(table)
    print(f"chosen: {column(chosen)}")
    if args.out:
        cmd = command_line("benchmarks/bound_texture.py", argv)
        md = (
            "# Where the lower bound stops: photos with no flat area\n\n"
            f"Made by `{cmd}`: the last {args.holdout} training images as {args.crop}² centre "
            f"crops (the inputs of noise_floor_cap.py and coarse_grain.py) and the most "
            f"textured {args.window}² window of each (clean, and with camera noise on the "
            f"sharp and softened scene), {args.draws} draws of each kind of noise, routed as "
            f"the automatic mode routes them (`{args.model}` with the shipped cap and the "
            f"half-resolution pass, white noise to `{args.white_model}`). Mean PSNR (dB) "
            "against the reference (clean: output against input) with no lower bound, with "
            "the bound wherever it applied before (no limit), and with the bound only where "
            "the fine floor reads below each limit; given the bound: the share of inputs it "
            "applies to with no limit, and their mean fine floor.\n\n"
            f"{table}\n\nThe limit with the highest mean over every kind (ties to the highest "
            f"limit): **{column(chosen)}**.\n"
        )
        report = {"result": result, "limits": [None if np.isinf(x) else x for x in limits],
                  "chosen": None if np.isinf(chosen) else chosen}
        write_report(args.out, "bound_texture", report, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
