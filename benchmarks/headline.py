"""The README's headline: quality and speed against the peers, as a table and a plot.

    python benchmarks/headline.py [--check]

Reads what other commands measured and writes nothing it did not read:

* time, parameters: ``docs/benchmarks/peer_speed.json`` (``benchmarks/peer_speed.py``);
* our PSNR: ``docs/results/<model>/summary.json`` (``malleconv eval``);
* published PSNR: ``benchmarks/published.yaml`` (marked as published).

Writes the table between the markers in ``README.md`` and ``docs/figures/psnr-vs-time.png``
(CBSD68 PSNR at sigma 25 against CPU seconds per 256x256 image; needs matplotlib,
``pip install -e ".[plots]"``). ``--check`` writes nothing and exits 1 when the README's
table differs from what the files give (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MARK_BEGIN = "<!-- headline table: begin (written by benchmarks/headline.py) -->"
MARK_END = "<!-- headline table: end -->"
DATASET, PLOT_SIGMA = "CBSD68", 25
PEER_NAMES = {
    "dncnn-c": "DnCNN-C",
    "drunet": "DRUNet",
    "swinir": "SwinIR",
    "restormer": "Restormer",
    "nafnet": "NAFNet",
    "scunet": "SCUNet",
}


def collect(speed_path: Path, results: Path, published_path: Path) -> list[dict]:
    """One row per method: name, ours, params (M) and seconds or None, PSNR per sigma or None."""
    speed = json.loads(speed_path.read_text())
    timed = {r["model"]: r for r in speed["rows"]}
    published = yaml.safe_load(published_path.read_text())
    sigmas = [str(s) for s in published["sigmas"]]
    rows = []
    for name, r in timed.items():
        summary = results / name / "summary.json"
        if name in PEER_NAMES or not summary.is_file():
            continue
        ours = json.loads(summary.read_text())["results"].get(DATASET)
        if ours and all(s in ours for s in sigmas):
            psnr = [ours[s]["psnr"] for s in sigmas]
            rows.append(dict(name=name, ours=True, psnr=psnr, timing=r))
    named = set()
    for method, spec in published["methods"].items():
        network = spec.get("network")
        named.add(network)
        label = PEER_NAMES.get(network, method)
        rows.append(dict(name=label, ours=False, psnr=spec[DATASET], timing=timed.get(network)))
    for network, label in PEER_NAMES.items():
        if network in timed and network not in named:
            rows.append(dict(name=label, ours=False, psnr=None, timing=timed[network]))
    return rows


def table(rows: list[dict], speed_meta: dict) -> str:
    base = next((r["timing"] for r in rows if r["ours"]), None)
    lines = [
        f"| method | params | s / image, {speed_meta['size']}² | time / {base['model']} | "
        f"{DATASET}, sigma 15 / 25 / 50 (dB) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        t = r["timing"]
        name = f"**{r['name']}** (ours)" if r["ours"] else r["name"]
        if r["psnr"] is None:
            psnr = "no published figure on file"
        else:
            psnr = " / ".join(f"{v:.2f}" for v in r["psnr"])
            psnr += "" if r["ours"] else " (published)"
        params = f"{t['params_m']:.2f} M" if t else "-"
        seconds = f"{t['seconds']:.3g}" if t else "-"
        ratio = f"{t['seconds'] / base['seconds']:.1f}x" if t and base else "-"
        lines.append(f"| {name} | {params} | {seconds} | {ratio} | {psnr} |")
    return "\n".join(lines)


def plot(rows: list[dict], speed_meta: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sigma_index = [15, 25, 50].index(PLOT_SIGMA)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    unplotted = []
    for r in rows:
        if r["timing"] is None:
            continue
        if r["psnr"] is None:
            unplotted.append(f"{r['name']} {r['timing']['seconds']:.2g} s")
            continue
        x, y = r["timing"]["seconds"], r["psnr"][sigma_index]
        style = dict(color="C3", marker="o") if r["ours"] else dict(color="C0", marker="s")
        ax.scatter([x], [y], s=50, **style, zorder=3)
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(6, -4))
    ax.set_xscale("log")
    ax.margins(x=0.3)
    ax.set_xlabel(
        f"CPU seconds per {speed_meta['size']}x{speed_meta['size']} image "
        f"({speed_meta['threads']} threads, log scale)"
    )
    ax.set_ylabel(f"{DATASET} PSNR at sigma {PLOT_SIGMA} (dB)")
    ax.set_title("Ours measured (red), peers' published PSNR (blue)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    if unplotted:
        fig.text(0.01, 0.01, "Timed, no PSNR on file: " + ", ".join(unplotted), fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speed", default=str(ROOT / "docs/benchmarks/peer_speed.json"))
    ap.add_argument("--results", default=str(ROOT / "docs/results"))
    ap.add_argument("--published", default=str(ROOT / "benchmarks/published.yaml"))
    ap.add_argument("--readme", default=str(ROOT / "README.md"))
    ap.add_argument("--figure", default=str(ROOT / "docs/figures/psnr-vs-time.png"))
    ap.add_argument("--check", action="store_true", help="compare with the README only")
    args = ap.parse_args(argv)

    speed_meta = json.loads(Path(args.speed).read_text())["meta"]
    rows = collect(Path(args.speed), Path(args.results), Path(args.published))
    block = f"{MARK_BEGIN}\n{table(rows, speed_meta)}\n{MARK_END}"
    readme = Path(args.readme)
    text = readme.read_text()
    if MARK_BEGIN not in text or MARK_END not in text:
        print(f"{readme}: the headline table markers are missing", file=sys.stderr)
        return 1
    head, rest = text.split(MARK_BEGIN, 1)
    current = MARK_BEGIN + rest.split(MARK_END, 1)[0] + MARK_END
    if args.check:
        if current != block:
            print(f"{readme}: the headline table is out of date; run {__file__}", file=sys.stderr)
            return 1
        return 0
    tmp = readme.with_name(readme.name + ".tmp")
    tmp.write_text(text.replace(current, block))
    os.replace(tmp, readme)
    print(block)
    plot(rows, speed_meta, Path(args.figure))
    print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
