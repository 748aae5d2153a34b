"""Side-by-side PSNR table from ``malleconv eval --out`` folders.

    python scripts/compare_results.py docs/results/mallenet-s docs/results/cbm3d \
        [--names mallenet-s CBM3D] [--datasets Kodak24 McMaster] [--out table.md]

Reads each folder's ``summary.json`` and prints a Markdown table with one row per
(dataset, sigma) present in all folders: the PSNR of each, the difference of the first
against the others, and the seconds per image. Numbers are read, never typed in.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load(folder: Path) -> dict:
    path = folder / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (make it with `malleconv eval --out`)")
    return json.loads(path.read_text())["results"]


def table(results: list[dict], names: list[str], datasets: list[str] | None) -> str:
    first = results[0]
    header = ["dataset", "sigma"] + [f"{n} PSNR" for n in names]
    header += [f"{names[0]} - {n}" for n in names[1:]] + [f"{n} s/img" for n in names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for ds in first:
        if datasets and ds not in datasets:
            continue
        for sigma in sorted(first[ds], key=float):
            cells = [r.get(ds, {}).get(sigma) for r in results]
            if any(c is None for c in cells):
                continue
            psnr = [c["psnr"] for c in cells]
            row = [ds, sigma] + [f"{p:.2f}" for p in psnr]
            row += [f"{psnr[0] - p:+.2f}" for p in psnr[1:]]
            row += [f"{c['seconds_per_image']:.2f}" for c in cells]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--names", nargs="+", help="column names (default: folder names)")
    ap.add_argument("--datasets", nargs="+", help="only these datasets")
    ap.add_argument("--out", type=Path, help="also write the table to this file")
    args = ap.parse_args(argv)
    names = args.names or [f.name for f in args.folders]
    if len(names) != len(args.folders):
        ap.error(f"--names has {len(names)} names for {len(args.folders)} folders")
    try:
        results = [load(f) for f in args.folders]
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = table(results, names, args.datasets)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
