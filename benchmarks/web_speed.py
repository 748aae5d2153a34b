"""Time per megapixel and memory of the in-browser denoiser (web/) on a 12-megapixel photo,
in headless Chromium, beside ``malleconv denoise`` on the same file.

    python benchmarks/web_speed.py [--megapixels 12.2] [--out docs/benchmarks]
        [--chromium /usr/bin/chromium] [--backends torch onnxruntime] [--tiles 384 512]

Makes a 4:3 photo of about ``--megapixels`` (the bundled sample upscaled, with camera-like
noise, saved as a JPEG, as a phone would), opens the page (served as ``malleconv web``
serves it, cross-origin isolated, so WebAssembly runs multi-threaded) in headless Chromium
(web/tests/drive.mjs), gives it the photo and waits for the result, sampling the progress
bar on the way; then downloads the result. The page's time is its worker's, from the
first tile to the last (the model is loaded before); the browser's memory is the peak of
the summed PSS of all its processes (shared pages counted once). The command runs the same
automatic mode (no options but the backend, default tiles) in a child process per
``--backends``,
timed from start to exit, its peak the process's own ``VmHWM``. With ``--tiles``, page and
command run once at each tile side (``?tile=N``, ``--tile N``), one side after the other, so
that the sides are compared in one run; without it, at their defaults. Writes
``web_speed.md`` / ``.json``.
Needs the page built (``npm ci --prefix web``) and chromium.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from malleconv.cli import web
from malleconv.data.camera_noise import add_camera_noise
from malleconv.runtime import command_line, cpu_name, write_report

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "malleconv" / "assets" / "sample.png"


def make_photo(path: Path, megapixels: float) -> tuple[int, int]:
    """A 4:3 JPEG of about ``megapixels``: the sample upscaled, with camera noise."""
    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5 / 8)) * 8
    h = w * 3 // 4
    clean = Image.open(SAMPLE).convert("RGB").resize((w, h), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(clean, np.float32) / 255.0).permute(2, 0, 1)[None]
    noisy = add_camera_noise(x.contiguous(), torch.Generator().manual_seed(12))[0]
    pixels = np.clip(np.rint(noisy.permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return w, h


# Runs the command's main() and then reports the process's own peak RSS: the child's
# ru_maxrss from wait4 also counts the parent's pages it shared between fork and exec.
_PEAK = (
    "import sys\n"
    "from malleconv.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "status = open('/proc/self/status').read()\n"
    "print('VmHWM_kB', status.split('VmHWM:')[1].split()[0], file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def run_command(photo: Path, out: Path, backend: str, tile: int | None = None) -> dict:
    """``malleconv denoise`` in a child process: wall time and peak RSS (``VmHWM``)."""
    cmd = [sys.executable, "-c", _PEAK, "denoise", str(photo), "-o", str(out)]
    # The automatic mode, as the page runs it (the same decision and level cap).
    cmd += ["--no-progress", "--overwrite"]
    if backend != "torch":
        cmd += ["--backend", backend]
    if tile is not None:
        cmd += ["--tile", str(tile)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed: {proc.stderr[-800:]}")
    peak_kb = int(proc.stderr.rsplit("VmHWM_kB", 1)[1].split()[0])
    return {
        "backend": backend,
        "command": "malleconv " + shlex.join(cmd[3:]).replace(str(photo.parent) + "/", ""),
        "seconds": seconds,
        "peak_rss_mb": peak_kb / 1024,
    }


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def run_page(
    root: Path, url: str, photo: Path, result_png: Path, chromium: str, megapixels: float
) -> dict:
    """The page in headless Chromium on ``photo``: its worker's time, progress and peak PSS;
    the result downloaded to ``result_png``."""
    steps = [
        {"open": str(photo)},
        # Mid-run: the progress bar has moved but not finished.
        {"waitFor": "(([d, n]) => d > 0 && d < n ? [d, n] : false)"
         "(window.malleconv.progress)", "timeout": 1_800_000},
        {"waitRuns": 1, "timeout": 3_600_000},
        {"eval": "window.malleconv.progress"},
        {"download": str(result_png)},
    ]  # fmt: skip
    spec = {"url": url, "chromium": chromium, "steps": steps, "timeout": 600_000}
    spec["sampleMemory"] = 1000  # ms
    result = web.drive(spec, root, timeout=3_900)
    run = result["runs"][0]
    return {
        "seconds": run["seconds"],
        "seconds_per_mp": run["seconds"] / megapixels,
        "wall_seconds": result["times"][2] - result["times"][0],
        "backend": run["backend"],
        "threads": run["threads"],
        "cross_origin_isolated": run["crossOriginIsolated"],
        "tiles": run["tiles"],
        "tile": run["tile"],
        "progress_mid_run": result["steps"][1],
        "progress_end": result["steps"][3],
        "peak_pss_mb": result["peakPssMB"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--megapixels", type=float, default=12.2)
    ap.add_argument("--chromium", default=os.environ.get("MALLECONV_CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--backends", nargs="*", default=["torch", "onnxruntime"])
    ap.add_argument("--tiles", nargs="*", type=int, default=[],
                    help="tile sides to compare (page ?tile=N, command --tile N); "
                    "default: each at its own default")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"))
    ap.add_argument("--note", default="", help="a line for the report (e.g. the load)")
    args = ap.parse_args(argv)
    if any(t < 16 for t in args.tiles):
        ap.error(f"--tiles: each side must be at least 16, got {args.tiles}")

    root = web.default_root()
    web.check_built(root)
    web.prepare(root)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        photo = tmp / "photo.jpg"
        w, h = make_photo(photo, args.megapixels)
        mp = w * h / 1e6
        print(f"photo {w}x{h} ({mp:.1f} MP), {photo.stat().st_size / 1e6:.1f} MB", flush=True)
        data = {
            "date": datetime.date.today().isoformat(),
            "command": command_line("benchmarks/web_speed.py", argv),
            "cpu": cpu_name(),
            "cpus": os.cpu_count(),
            "chromium": subprocess.run(
                [args.chromium, "--version"], capture_output=True, text=True
            ).stdout.strip(),
            "note": args.note,
            "photo": {"width": w, "height": h, "megapixels": mp, "format": "JPEG q95"},
            "runs": [],
        }
        server, url = web.serve_in_background(root)
        try:
            for tile in args.tiles or [None]:
                page_png = tmp / f"page-{tile}.png"
                page_url = url if tile is None else f"{url}?tile={tile}"
                page = run_page(root, page_url, photo, page_png, args.chromium, mp)
                print(f"page: {page}", flush=True)
                page_px = np.asarray(Image.open(page_png).convert("RGB"))
                commands: list[dict] = []
                data["runs"].append({"tile": tile, "page": page, "commands": commands})
                # Written now and after each command: a long run stopped early keeps its rows.
                write_report(args.out, "web_speed", data, markdown(data))
                for backend in args.backends:
                    out_png = tmp / f"cli-{backend}.png"
                    cmd = run_command(photo, out_png, backend, tile)
                    cmd["seconds_per_mp"] = cmd["seconds"] / mp
                    cli_px = np.asarray(Image.open(out_png).convert("RGB"))
                    cmd["psnr_page_vs_command"] = psnr(page_px, cli_px)
                    cmd["identical_bytes"] = float(np.mean(page_px == cli_px))
                    print(f"command: {cmd}", flush=True)
                    commands.append(cmd)
                    write_report(args.out, "web_speed", data, markdown(data))
        finally:
            server.shutdown()
            server.server_close()
    print(f"wrote {args.out}/web_speed.md")
    return 0


def markdown(d: dict) -> str:
    photo = d["photo"]
    lines = [
        "# The in-browser denoiser on a 12-megapixel photo",
        "",
        f"Command: `{d['command']}` ({d['date']}, {d['cpu']}, {d['cpus']} CPUs, "
        f"{d['chromium']} headless).",
        "",
        f"A {photo['width']}x{photo['height']} ({photo['megapixels']:.1f} MP) JPEG with "
        "camera-like noise, denoised in the automatic mode by the page (web/, served as "
        "`malleconv web` serves it) and by `malleconv denoise` on the same file. The "
        "page's time is its worker's, first tile to last (model loaded "
        "before); its memory the peak summed PSS of all the browser's processes. The "
        "command's time is the whole process (start-up, decoding, writing the PNG), its "
        "memory the peak RSS.",
        "",
        "| | time | s / MP | peak memory | tiles | output against the page |",
        "|---|---|---|---|---|---|",
    ]
    for r in d["runs"]:
        p = r["page"]
        threads = "WebGPU" if p["backend"] == "webgpu" else f"WebAssembly, {p['threads']} threads"
        where = "page" if r["tile"] is None else f"page `?tile={r['tile']}`"
        lines.append(
            f"| {where} ({threads}, cross-origin isolated: {p['cross_origin_isolated']}) | "
            f"{p['seconds']:.1f} s | {p['seconds_per_mp']:.2f} | "
            f"{p['peak_pss_mb'] / 1024:.2f} GB | {p['tiles']} of {p['tile']} px | |"
        )
        for c in r["commands"]:
            lines.append(
                f"| `{c['command']}` | {c['seconds']:.1f} s | {c['seconds_per_mp']:.2f} | "
                f"{c['peak_rss_mb'] / 1024:.2f} GB | | {c['psnr_page_vs_command']:.1f} dB PSNR, "
                f"{c['identical_bytes']:.2%} identical bytes |"
            )
    lines.append("")
    for r in d["runs"]:
        p = r["page"]
        at = "The" if r["tile"] is None else f"At tile {r['tile']}, the"
        lines.append(
            f"{at} progress bar stood at {p['progress_mid_run'][0]} of "
            f"{p['progress_mid_run'][1]} tiles mid-run and at {p['progress_end'][0]} of "
            f"{p['progress_end'][1]} at the end; from choosing the file to the result: "
            f"{p['wall_seconds']:.1f} s (decoding and loading the model included)."
        )
    if d["note"]:
        lines += ["", d["note"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
