"""Do clean photos from a set the project never saw come back unchanged in automatic mode?

    python research/clean_folders.py FOLDER [FOLDER ...] [--out docs/research]

Every image of the folders (PNG, JPEG, TIFF, ...) goes through ``malleconv.denoise`` with no
options, as ``malleconv denoise photo.png`` runs it; the output is scored against the input
(PSNR, 8-bit), with what the automatic mode decided (noise kind, floor, cap, bound, level).
A clean photo should come back at a high figure; a low one is a photo the mode smooths. The
images need not be clean: a folder of photos with real grain or noise shows how much the
mode takes out. One set used so far: scikit-image's bundled samples (``pip download
scikit-image --no-deps``, then the ``skimage/data`` folder of the wheel), none of which the
project trained or chose anything on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import malleconv
from malleconv.evaluation.metrics import psnr
from malleconv.io import ImageReadError, drop_alpha, list_images, read_image
from malleconv.runtime import command_line, write_report


def check(path: Path) -> dict:
    """The automatic mode on one image: output against input, and what it decided."""
    # Alpha is carried through untouched: score the colour.
    pixels = drop_alpha(read_image(path).pixels)
    decided: dict = {}
    out = malleconv.denoise(pixels, report=decided)
    peak = 255.0 if pixels.dtype == np.uint8 else 65535.0
    return {
        "image": path.name,
        "size": f"{pixels.shape[1]}x{pixels.shape[0]}",
        # An image returned bit for bit (infinite PSNR) counts as 100 dB.
        "psnr": min(float(psnr(out, pixels, data_range=peak)), 100.0),
        "noise": decided.get("noise"),
        "floor": decided.get("floor"),
        "cap": decided.get("cap"),
        "bound": decided.get("bound"),
        "level": decided.get("sigma"),
        "half_pass": bool(decided.get("half_pass")),
    }


def table(rows: list[dict]) -> str:
    lines = ["| image | size | output against input (dB) | read as | floor | cap | bound | level |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        bound = "" if r["bound"] is None else f"{r['bound']:.2f}"
        half = " + half pass" if r["half_pass"] else ""
        lines.append(f"| {r['image']} | {r['size']} | {r['psnr']:.2f} | {r['noise']}{half} | "
                     f"{r['floor']:.2f} | {r['cap']:.2f} | {bound} | {r['level']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("folders", nargs="+", help="folders of images")
    ap.add_argument("--out", help="folder for clean_folders.md / .json")
    args = ap.parse_args(argv)
    rows, failed = [], []
    for file, _ in list_images([Path(f) for f in args.folders]):
        try:
            rows.append(check(file))
        except (ImageReadError, ValueError) as err:
            failed.append(f"{file.name}: {err}")
            print(f"skipped {file}: {err}", file=sys.stderr)
            continue
        print(f"{rows[-1]['image']}: {rows[-1]['psnr']:.2f} dB ({rows[-1]['noise']})", flush=True)
    if not rows:
        print("error: no image could be read", file=sys.stderr)
        return 1
    values = [r["psnr"] for r in rows]
    worst = min(rows, key=lambda r: r["psnr"])
    summary = (f"{len(rows)} images: mean {np.mean(values):.2f} dB, median "
               f"{np.median(values):.2f}, worst {worst['psnr']:.2f} ({worst['image']})")
    print(table(rows))
    print(summary)
    if args.out:
        cmd = command_line("research/clean_folders.py", argv)
        md = (
            "# The automatic mode on photos the project never saw\n\n"
            f"Made by `{cmd}`: each image through `malleconv.denoise` with no options (the "
            "automatic mode), output against input (PSNR, dB), with what the mode decided: "
            "the noise it read, the noise floor, the cap and lower bound on the level, and the "
            "level the model got (for the blind model the mean of its map).\n\n"
            f"{table(rows)}\n\n{summary}.\n"
            + (f"\nSkipped: {'; '.join(failed)}.\n" if failed else "")
        )
        write_report(args.out, "clean_folders", {"rows": rows, "skipped": failed}, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
