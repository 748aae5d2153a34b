"""Real camera noise against grainy "clean" photos: the automatic mode at several strengths.

    python research/strength_tradeoff.py --data $MALLECONV_DATA
        [--strength 0.25 0.5 0.75 1 1.25 1.5] [--out docs/research/strength_tradeoff.md]

Issue 22 asks the automatic mode for two things at once: CC15's noisy photos cleaned (at least
37.9 dB against their references) and Kodak24 + McMaster, with no noise added, returned nearly
unchanged (at least 40 dB on average against themselves, none below 35). The one knob a user
has on the automatic mode, ``--strength`` (a multiplier on the level it reads), moves both;
this scan shows where each setting lands on both checks, and on CC15's references (clean
camera photos) beside them. A diagnostic only: the default strength stays 1, chosen on the
held-out synthetic split; CC15 only reports.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from malleconv import denoise
from malleconv.data.noise import check_strength
from malleconv.evaluation.metrics import psnr
from malleconv.evaluation.protocol import load_test_image
from malleconv.evaluation.real import find_pairs
from malleconv.inference.prepare import DEFAULT_BLIND_MODEL, DEFAULT_MODEL, prepare_auto
from malleconv.io import atomic_write_text, list_images, read_image
from malleconv.runtime import command_line, tune_allocator

CLEAN_SETS = ("Kodak24", "McMaster")


def scan(root: Path, blind_model: str, strengths: list[float]) -> list[dict]:
    """One row per strength: CC15 (noisy against reference), CC15's references and the
    clean test photos (output against input), PSNR dB, through the automatic mode of
    ``mallenet-s`` and ``blind_model`` (what ``malleconv denoise --strength S`` runs)."""
    pairs = [
        (read_image(noisy).pixels, read_image(clean).pixels)
        for _, noisy, clean in find_pairs(root / "real" / "CC15")
    ]
    photos = [
        load_test_image(file)
        for name in CLEAN_SETS
        for file, _ in list_images([root / "test" / name])
    ]
    rows = []
    for s in strengths:
        auto = prepare_auto(DEFAULT_MODEL, blind_model, strength=s)
        cc15 = [psnr(denoise(noisy, model=auto), clean) for noisy, clean in pairs]
        gains = [p - psnr(noisy, clean) for p, (noisy, clean) in zip(cc15, pairs, strict=True)]
        refs = [psnr(denoise(clean, model=auto), clean) for _, clean in pairs]
        kept = [psnr(denoise(photo, model=auto), photo) for photo in photos]
        rows.append(
            {
                "strength": s,
                "cc15": float(np.mean(cc15)),
                "cc15_worst_gain": float(min(gains)),
                "references": float(np.mean(refs)),
                "references_min": float(min(refs)),
                "clean": float(np.mean(kept)),
                "clean_min": float(min(kept)),
            }
        )
        print(f"strength {s:g}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict], command: str) -> str:
    lines = [
        "| strength | CC15 (target 37.9) | CC15 worst gain over its input | CC15 references kept "
        "(mean / worst) | Kodak24 + McMaster kept (mean / worst; target 40 / 35) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['strength']:g} | {r['cc15']:.2f} | {r['cc15_worst_gain']:+.2f} | "
            f"{r['references']:.2f} / {r['references_min']:.2f} | "
            f"{r['clean']:.2f} / {r['clean_min']:.2f} |"
        )
    return (
        "# Strength: real camera noise against grainy clean photos\n\n"
        f"Made by `{command}` (torch {torch.__version__}, {torch.get_num_threads()} threads). "
        "The automatic mode (`malleconv denoise` with no `--sigma`) at each `--strength`. CC15: "
        "PSNR dB of the output against the reference (the mean of many shots); CC15 "
        "references, Kodak24 and McMaster: each photo denoised as it is, output against input "
        "(how much of a clean photo survives). A diagnostic only: nothing is chosen on these "
        "figures.\n\n" + "\n".join(lines) + "\n"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("MALLECONV_DATA"), help="dataset root")
    p.add_argument(
        "--blind-model", default=DEFAULT_BLIND_MODEL, help="name or .safetensors of the blind model"
    )
    p.add_argument("--strength", nargs="+", type=float, default=[0.25, 0.5, 0.75, 1, 1.25, 1.5])
    p.add_argument("--out", help="also write the table to this markdown file")
    args = p.parse_args(argv)
    if not args.data:
        p.error("--data (or MALLECONV_DATA) is required")
    try:
        args.strength = [check_strength(s) for s in args.strength]
    except ValueError as err:
        p.error(f"--strength: {err}")
    tune_allocator()
    rows = scan(Path(args.data), args.blind_model, args.strength)
    text = table(rows, command_line("research/strength_tradeoff.py", argv))
    print(text)
    if args.out:
        atomic_write_text(Path(args.out), text, overwrite=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
