"""The default (automatic) mode of ``malleconv denoise`` on photos, against its targets.

    python benchmarks/photo_mode.py [--data $MALLECONV_DATA] [--blind-model mallenet-s-real]
        [--white-model mallenet-s] [--repeat 7] [--out docs/benchmarks]

Four measurements, side by side in one process, each model run through ``malleconv.denoise``
exactly as the command runs it (BatchNorm folded, channels-last, allocator tuned):

1. **Real camera noise** (``real/CC15``): each noisy photo denoised with no level given,
   PSNR against its reference; for context the white-noise model with its wavelet estimate
   and with a hand-picked sigma 15.
2. **White noise, level not told** (``test/CBSD68``, sigma 15 / 25 / 50, the standard
   protocol): the automatic mode against the white-noise model told the true sigma.
3. **Clean photos**, the output of the automatic mode against its input, which a denoiser
   should leave nearly unchanged: ``test/CleanPhotos`` (sharp modern photos, downscaled so
   they carry no sensor noise) and CC15's references (means of many shots of each scene),
   with the noise floor and the level read on each. Kodak24 and McMaster, film scans whose
   grain is real noise (as strong as CC15's camera noise in the flattest parts of the
   images), have their own row and are not judged as clean.
4. **Speed**: the first CC15 photo (512x512, real camera noise, so the automatic mode's
   slower route: the blind model), automatic mode against the white-noise model with a
   given sigma, alternating runs, median seconds.

Writes ``photo_mode.md`` / ``.json`` with every figure and its target.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from malleconv import denoise
from malleconv.evaluation.metrics import psnr
from malleconv.evaluation.protocol import evaluate, load_test_image
from malleconv.evaluation.real import find_pairs
from malleconv.inference.prepare import AUTO_MODEL, DEFAULT_BLIND_MODEL, DEFAULT_MODEL, prepare_auto
from malleconv.io import list_images, read_image
from malleconv.runtime import command_line, cpu_name, tune_allocator, write_report

TARGETS = {
    "cc15_psnr": 37.42,
    "cc15_stretch": 37.9,
    "white_gap_db": 0.3,
    "clean_mean_db": 42.0,
    "clean_min_db": 37.0,
    "reference_mean_db": 43.7,
    "reference_min_db": 40.8,
    "speed_ratio": 1.3,
}
CLEAN_SETS = {"clean photos": ["CleanPhotos"], "film scans": ["Kodak24", "McMaster"]}


def api_denoiser(model):
    """A protocol denoiser (``(1, C, H, W)`` float, sigma or None) on ``malleconv.denoise``."""

    def run(noisy: torch.Tensor, sigma):
        decided: dict = {}
        out = denoise(noisy, sigma=sigma, model=model, report=decided)
        run.last_sigma = decided["sigma"]
        return out

    run.last_sigma = None
    return run


def real_noise(root: Path, auto, white: str) -> dict:
    pairs = find_pairs(root / "real" / "CC15")
    settings = {
        "auto": (auto, None),
        "white_auto": (white, None),
        "white_sigma15": (white, 15.0),
    }
    rows = []
    for scene, noisy_path, clean_path in pairs:
        noisy = read_image(noisy_path).pixels
        clean = read_image(clean_path).pixels
        row = {"scene": scene, "input": psnr(noisy, clean)}
        for key, (model, sigma) in settings.items():
            decided: dict = {}
            out = denoise(noisy, sigma=sigma, model=model, report=decided)
            row[key] = psnr(out, clean)
            row[f"{key}_sigma"] = float(np.mean(decided["sigma"]))
            if "noise" in decided:
                row[f"{key}_noise"] = decided["noise"]
                row[f"{key}_floor"] = float(decided["floor"])
        # The reference (the mean of many shots) is a clean camera photo: how much of it
        # does the automatic mode change?
        decided = {}
        row["reference_auto"] = psnr(denoise(clean, model=auto, report=decided), clean)
        row["reference_auto_sigma"] = float(np.mean(decided["sigma"]))
        row["reference_floor"] = float(decided.get("floor", float("nan")))
        row["reference_noise"] = decided.get("noise", "-")
        rows.append(row)
    summary = {k: float(np.mean([r[k] for r in rows])) for k in ["input", *settings]}
    summary["worst_gain_auto"] = float(min(r["auto"] - r["input"] for r in rows))
    summary["mean_level_auto"] = float(np.mean([r["auto_sigma"] for r in rows]))
    summary["white_routes_auto"] = sum(r.get("auto_noise") == "white noise" for r in rows)
    summary["reference_mean"] = float(np.mean([r["reference_auto"] for r in rows]))
    summary["reference_min"] = float(min(r["reference_auto"] for r in rows))
    summary["reference_level"] = float(np.mean([r["reference_auto_sigma"] for r in rows]))
    summary["reference_floor"] = float(np.mean([r["reference_floor"] for r in rows]))
    summary["floor_auto"] = float(np.mean([r["auto_floor"] for r in rows]))
    return {"summary": summary, "per_image": rows}


def white_noise(root: Path, auto, white: str, sigmas) -> dict:
    folder = [root / "test" / "CBSD68"]
    told = evaluate(api_denoiser(white), folder, sigmas, progress=False)["CBSD68"]
    auto = evaluate(api_denoiser(auto), folder, sigmas, progress=False, tell_sigma=False)
    auto = auto["CBSD68"]
    return {
        f"{s:g}": {"told": told[s]["psnr"], "auto": auto[s]["psnr"]} for s in map(float, sigmas)
    }


def clean_photos(root: Path, auto) -> dict:
    """Per set of :data:`CLEAN_SETS`: output against input, the floor and level read."""
    result = {}
    for label, names in CLEAN_SETS.items():
        rows = []
        for name in names:
            for file, rel in list_images([root / "test" / name]):
                clean = load_test_image(file)
                decided: dict = {}
                out = denoise(clean, model=auto, report=decided)
                rows.append(
                    {"image": f"{name}/{rel.as_posix()}", "psnr": psnr(out, clean), **decided}
                )
        routes = [r.get("noise") for r in rows]
        worst = min(rows, key=lambda r: r["psnr"])
        result[label] = {
            "mean": float(np.mean([r["psnr"] for r in rows])),
            "min": float(worst["psnr"]),
            "min_image": worst["image"],
            "floor": float(np.mean([r["floor"] for r in rows])),
            "level": float(np.mean([r["sigma"] for r in rows])),
            "routes": {kind: routes.count(kind) for kind in sorted(set(map(str, routes)))},
            "per_image": rows,
        }
    return result


def speed(root: Path, auto, white: str, size: int, repeat: int) -> dict:
    # A real noisy photo (the first CC15 crop, 512x512), which the automatic mode sends to
    # the blind model: its slower route, estimator included.
    _, noisy_path, _ = find_pairs(root / "real" / "CC15")[0]
    image = read_image(noisy_path).pixels[:size, :size]
    runs = {"auto": (auto, None), "told": (white, 25.0)}
    for model, sigma in runs.values():  # load, fold and warm up both
        denoise(image, sigma=sigma, model=model)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeat):
        for key, (model, sigma) in runs.items():
            t0 = time.perf_counter()
            denoise(image, sigma=sigma, model=model)
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    decided: dict = {}
    denoise(image, model=auto, report=decided)
    return {
        "size": list(image.shape[:2]),
        "image": noisy_path.name,
        "route": decided.get("noise", "-"),
        "repeat": repeat,
        **med,
        "ratio": med["auto"] / med["told"],
    }


def _mark(ok: bool) -> str:
    return "met" if ok else "**not met**"


def report_markdown(res: dict, command: str) -> str:
    """photo_mode.md: each check against its target, then the sets and images behind it."""
    real, white, spd = res["real"]["summary"], res["white"], res["speed"]
    photos = res["clean"]["clean photos"]
    lines = [
        "# Automatic mode on photos",
        "",
        f"Made by `{command}` on {res['date']}, {res['cpu']}, torch {res['torch']}, "
        f"{res['threads']} threads. Automatic mode: each image read "
        "(`malleconv.inference.read_noise`), white noise to the white-noise model "
        f"`{res['white_model']}` with the level read, other noise to the blind model "
        f"`{res['blind']}` (docs/benchmarks/noise_routing.md); either model's level capped "
        "at a multiple of the image's noise floor (`malleconv.inference.read_noise_floor`, "
        "docs/benchmarks/noise_floor_cap.md).",
        "",
        "| check | measured | target | |",
        "| --- | --- | --- | --- |",
        f"| CC15, no level given: mean PSNR | {real['auto']:.2f} dB | >= "
        f"{TARGETS['cc15_psnr']} (stretch {TARGETS['cc15_stretch']}) | "
        f"{_mark(real['auto'] >= TARGETS['cc15_psnr'])} |",
        f"| CC15: worst gain over the noisy input | {real['worst_gain_auto']:+.2f} dB | > 0 | "
        f"{_mark(real['worst_gain_auto'] > 0)} |",
    ]
    for s, v in white.items():
        gap = v["told"] - v["auto"]
        lines.append(
            f"| CBSD68 sigma {s}, level not told against told | {v['auto']:.2f} against "
            f"{v['told']:.2f} dB ({-gap:+.2f}) | within {TARGETS['white_gap_db']} | "
            f"{_mark(gap <= TARGETS['white_gap_db'])} |"
        )
    lines += [
        f"| CleanPhotos: output against input, mean | {photos['mean']:.2f} dB | >= "
        f"{TARGETS['clean_mean_db']} | {_mark(photos['mean'] >= TARGETS['clean_mean_db'])} |",
        f"| the same, worst image ({photos['min_image']}) | {photos['min']:.2f} dB | >= "
        f"{TARGETS['clean_min_db']} | {_mark(photos['min'] >= TARGETS['clean_min_db'])} |",
        f"| CC15's references: output against input, mean | {real['reference_mean']:.2f} dB | "
        f">= {TARGETS['reference_mean_db']} | "
        f"{_mark(real['reference_mean'] >= TARGETS['reference_mean_db'])} |",
        f"| the same, worst image | {real['reference_min']:.2f} dB | >= "
        f"{TARGETS['reference_min_db']} | "
        f"{_mark(real['reference_min'] >= TARGETS['reference_min_db'])} |",
        f"| time on {spd['image']} ({spd['size'][1]}x{spd['size'][0]}, read as "
        f"{spd['route']}), automatic against sigma given | "
        f"{spd['auto']:.3f} against {spd['told']:.3f} s ({spd['ratio']:.2f}x) | <= "
        f"{TARGETS['speed_ratio']}x | {_mark(spd['ratio'] <= TARGETS['speed_ratio'])} |",
        "",
        "## Clean photos and film scans",
        "",
        "Output against input (PSNR, dB); floor: the noise floor read (8-bit units); level: the "
        "level the model got (for the blind model the mean of its map); routes: what the "
        "automatic mode decided. Kodak24 and McMaster are film scans whose grain is real "
        "noise: removing it is denoising, so they are not judged as clean.",
        "",
        "| set | images | mean | worst (image) | mean floor | mean level | routes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    sets = [*res["clean"].items()]
    sets.append(("CC15 references", None))
    for label, r in sets:
        if r is None:
            routes = {}
            for row in res["real"]["per_image"]:
                routes[row["reference_noise"]] = routes.get(row["reference_noise"], 0) + 1
            cells = [
                label, str(len(res["real"]["per_image"])), f"{real['reference_mean']:.2f}",
                f"{real['reference_min']:.2f}", f"{real['reference_floor']:.2f}",
                f"{real['reference_level']:.2f}",
            ]
        else:
            routes = r["routes"]
            cells = [
                label, str(len(r["per_image"])), f"{r['mean']:.2f}",
                f"{r['min']:.2f} ({r['min_image']})", f"{r['floor']:.2f}", f"{r['level']:.2f}",
            ]
        cells.append(", ".join(f"{k} {v}" for k, v in sorted(routes.items())))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "CC15 in context (mean PSNR, dB): noisy input "
        f"{real['input']:.2f}; `{res['white_model']}` with its white-noise estimate "
        f"{real['white_auto']:.2f}, with a hand-picked sigma 15 {real['white_sigma15']:.2f}; "
        f"automatic mode {real['auto']:.2f} (mean level {real['mean_level_auto']:.1f}, mean "
        f"floor {real['floor_auto']:.2f}; {real['white_routes_auto']} of "
        f"{len(res['real']['per_image'])} photos read as white noise). Published figures "
        "on CC15: CBDNet 36.44, Restormer (SIDD) 36.27, Self2Self 37.52, FFDNet+ with "
        "hand-tuned maps 37.63, TWSC 37.81.",
        "",
        "## CC15 per image",
        "",
        "| scene | noisy | automatic (level, floor, noise read) | white model, auto | "
        "white model, sigma 15 | reference through the automatic mode (level, floor) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["real"]["per_image"]:
        lines.append(
            f"| {r['scene']} | {r['input']:.2f} | {r['auto']:.2f} ({r['auto_sigma']:.1f}, "
            f"{r.get('auto_floor', float('nan')):.2f}, {r.get('auto_noise', '-')}) | "
            f"{r['white_auto']:.2f} | {r['white_sigma15']:.2f} | {r['reference_auto']:.2f} "
            f"({r['reference_auto_sigma']:.1f}, {r['reference_floor']:.2f}) |"
        )
    lines += [
        "",
        "## CleanPhotos per image",
        "",
        "| image | output against input | floor | level | decided |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in photos["per_image"]:
        lines.append(
            f"| {r['image']} | {r['psnr']:.2f} | {r['floor']:.2f} | {r['sigma']:.2f} | "
            f"{r.get('noise', '-')} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("MALLECONV_DATA"), help="dataset root")
    p.add_argument(
        "--blind-model",
        default=DEFAULT_BLIND_MODEL,
        help="name or .safetensors: the automatic mode's model for camera noise",
    )
    p.add_argument(
        "--white-model",
        default=DEFAULT_MODEL,
        help="name or .safetensors: the automatic mode's model for white noise, and the "
        "model told the level",
    )
    p.add_argument("--sigmas", nargs="+", type=float, default=[15.0, 25.0, 50.0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--skip", nargs="*", default=[], choices=["real", "white", "clean", "speed"])
    p.add_argument("--out", default="docs/benchmarks")
    args = p.parse_args(argv)
    if not args.data:
        p.error("--data is required (or set MALLECONV_DATA)")
    tune_allocator()
    root = Path(args.data)
    res = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blind": args.blind_model,
        "white_model": args.white_model,
        "targets": TARGETS,
    }
    # The automatic mode as `malleconv denoise` runs it without --sigma and --model; with
    # other models, the same mode made of them (candidates before they ship).
    defaults = (args.white_model, args.blind_model) == (DEFAULT_MODEL, DEFAULT_BLIND_MODEL)
    auto = AUTO_MODEL if defaults else prepare_auto(args.white_model, args.blind_model)
    steps = {
        "real": lambda: real_noise(root, auto, args.white_model),
        "white": lambda: white_noise(root, auto, args.white_model, args.sigmas),
        "clean": lambda: clean_photos(root, auto),
        "speed": lambda: speed(root, auto, args.white_model, args.size, args.repeat),
    }
    for key, step in steps.items():
        if key in args.skip:
            continue
        t0 = time.perf_counter()
        res[key] = step()
        summary = res[key].get("summary", res[key]) if isinstance(res[key], dict) else res[key]
        brief = {k: v for k, v in summary.items() if not isinstance(v, list)}
        print(f"{key} ({time.perf_counter() - t0:.0f} s): {json.dumps(brief)[:600]}", flush=True)
    if not args.skip:
        command = command_line("benchmarks/photo_mode.py", argv)
        write_report(args.out, "photo_mode", res, report_markdown(res, command))
        print(f"wrote {Path(args.out) / 'photo_mode.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
