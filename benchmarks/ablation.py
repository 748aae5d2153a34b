"""Does MalleConv earn its place? The ablation study of docs/ablation.md.

    pip install -e ".[plots]"
    python benchmarks/ablation.py --data $MALLECONV_DATA [--runs runs/ablation] [--jobs 2]
        [--seeds 0] [--only mallenet-s static] [--stages train eval measure report]

Every variant of ``configs/ablation/variants.yaml`` is trained with the one recipe
``configs/ablation/recipe.yaml`` (same data order, seed, schedule and step count) on
``train/CBSD432``, then:

* **eval**: ``malleconv eval`` on CBSD68 and McMaster at sigma 15 / 25 / 50;
* **measure** (side by side in one process): parameters, FLOPs at 256x256
  (``malleconv.models.model_stats``), CPU seconds per 512x512 image as ``malleconv
  denoise`` runs the model (BatchNorm folded, channels-last, the allocator tuned; the
  median of ``--repeat`` interleaved rounds), and the peak training memory: the growth
  of the resident memory of a fresh process over 3 training steps of the recipe's batch;
* **report**: the tables between the markers of ``docs/ablation.md`` (mean and spread over
  the seeds run) and ``docs/figures/ablation.png``, PSNR against CPU time.

Stages skip work already done (a run's weights, its ``eval/summary.json``), so the study
resumes after an interruption and ``--seeds 1 2`` adds seeds to it. Training and evaluation
run ``--jobs`` subprocesses of one thread each: on 2 cores two single-thread runs train
about 1.2x faster together than one run on two threads.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "configs" / "ablation" / "recipe.yaml"
VARIANTS = ROOT / "configs" / "ablation" / "variants.yaml"
DATASETS = ("CBSD68", "McMaster")
SIGMAS = (15, 25, 50)
MARK_BEGIN = "<!-- ablation tables: begin (written by benchmarks/ablation.py) -->"
MARK_END = "<!-- ablation tables: end -->"


@dataclass
class Variant:
    name: str
    group: str
    model: str
    about: str
    overrides: dict = field(default_factory=dict)

    def settings(self) -> list[str]:
        """``--set`` overrides that make the recipe train this variant."""
        return [
            f"model.name={self.model}",
            f"model.overrides={json.dumps(self.overrides)}",
        ]


def load_variants(path: Path = VARIANTS) -> dict[str, Variant]:
    raw = yaml.safe_load(path.read_text())
    return {name: Variant(name=name, **spec) for name, spec in raw.items()}


def run_dir(runs: Path, variant: Variant, seed: int) -> Path:
    return runs / variant.name / f"seed{seed}"


def weights_of(runs: Path, variant: Variant, seed: int) -> Path:
    return run_dir(runs, variant, seed) / f"{variant.model}.safetensors"


def recipe_steps(extra: list[str] = ()) -> int:
    """The training steps of a finished run: the recipe's, after ``--set`` overrides."""
    from malleconv.training.config import load_config

    return int(load_config(RECIPE, list(extra))["train"]["steps"])


def is_trained(weights: Path, steps: int) -> bool:
    """Whether ``weights`` are those of a finished run.

    An interrupted run saves its weights too, with the step it reached in the JSON
    sidecar's ``meta``; only the recipe's last step counts as done.
    """
    sidecar = weights.with_suffix(".json")
    if not (weights.is_file() and sidecar.is_file()):
        return False
    return json.loads(sidecar.read_text()).get("meta", {}).get("steps") == steps


def _run_jobs(jobs: list[tuple[str, list[str], Path]], parallel: int) -> list[str]:
    """Run ``(label, argv, log)`` subprocesses, ``parallel`` at a time; the failed labels."""
    pending, running, failed = list(jobs), [], []
    while pending or running:
        while pending and len(running) < parallel:
            label, argv, log = pending.pop(0)
            log.parent.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            fh = log.open("a")
            fh.write(f"$ {shlex.join(argv)}\n")
            fh.flush()
            print(f"[{time.strftime('%H:%M:%S')}] start {label}", flush=True)
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env)
            running.append((label, proc, fh, time.perf_counter()))
        time.sleep(2)
        for item in list(running):
            label, proc, fh, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            fh.close()
            took = (time.perf_counter() - t0) / 60
            status = "done" if proc.returncode == 0 else f"FAILED (rc {proc.returncode})"
            print(f"[{time.strftime('%H:%M:%S')}] {status} {label} in {took:.1f} min", flush=True)
            if proc.returncode:
                failed.append(label)
    return failed


def stage_train(
    variants, seeds, runs: Path, data: Path, parallel: int, extra: list[str]
) -> list[str]:
    jobs, steps = [], recipe_steps(extra)
    for v in variants.values():
        for seed in seeds:
            if is_trained(weights_of(runs, v, seed), steps):
                continue
            out = run_dir(runs, v, seed)
            argv = [sys.executable, "-m", "malleconv", "train", "--config", str(RECIPE)]
            argv += ["--data", str(data / "train" / "CBSD432"), "--out", str(out)]
            for s in v.settings() + [f"train.seed={seed}"] + extra:
                argv += ["--set", s]
            argv.append("--no-progress")
            if (out / "checkpoints" / "last.pt").is_file():
                argv.append("--resume")
            jobs.append((f"train {v.name} seed {seed}", argv, out / "train.log"))
    return _run_jobs(jobs, parallel)


def stage_eval(
    variants, seeds, runs: Path, data: Path, parallel: int, extra: list[str]
) -> list[str]:
    jobs, steps = [], recipe_steps(extra)
    for v in variants.values():
        for seed in seeds:
            weights, out = weights_of(runs, v, seed), run_dir(runs, v, seed) / "eval"
            if not is_trained(weights, steps) or (out / "summary.json").is_file():
                continue
            argv = [sys.executable, "-m", "malleconv", "eval", "--model", str(weights)]
            argv += ["--data", *(str(data / "test" / d) for d in DATASETS)]
            argv += ["--sigma", *map(str, SIGMAS), "--out", str(out), "--threads", "1"]
            argv.append("--no-progress")
            jobs.append((f"eval {v.name} seed {seed}", argv, out.parent / "eval.log"))
    return _run_jobs(jobs, parallel)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def probe_training_memory(variant: Variant) -> dict:
    """Run in a fresh process: peak resident-memory growth over 3 training steps."""
    import resource

    import torch

    from malleconv.training.config import build_model, load_config
    from malleconv.training.losses import make_loss

    torch.set_num_threads(1)
    cfg = load_config(RECIPE, variant.settings())
    b, p = int(cfg["data"]["batch_size"]), int(cfg["data"]["patch_size"])
    model = build_model(cfg).train().to(memory_format=torch.channels_last)
    loss_fn = make_loss(cfg["train"]["loss"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(b, 3, p, p, generator=gen).contiguous(memory_format=torch.channels_last)
    sigma = torch.full((b,), 25.0)
    noisy = clean + torch.randn(clean.shape, generator=gen) * 25 / 255
    before = _rss_bytes()
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(noisy, sigma), clean)
        loss.backward()
        opt.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"train_peak_mb": (peak - before) / 2**20, "batch": f"{b}x{p}x{p}"}


def stage_measure(variants, runs: Path, size: int, repeat: int) -> dict:
    import torch

    from malleconv.inference import prepare_model
    from malleconv.models import model_stats
    from malleconv.training.config import build_model, load_config

    measured = {}
    for v in variants.values():
        model = build_model(load_config(RECIPE, v.settings()))
        stats = model_stats(model, 256)
        argv = [sys.executable, str(Path(__file__).resolve()), "--probe-memory", v.name]
        out = subprocess.run(argv, capture_output=True, text=True, check=True)
        measured[v.name] = {**stats, **json.loads(out.stdout.strip().splitlines()[-1])}
    # Prepared as denoise does; a variant not trained yet is timed with random weights (the
    # time does not depend on their values).
    untrained = tempfile.TemporaryDirectory()
    nets = {
        name: prepare_model(_weights_for_timing(runs, v, Path(untrained.name)))
        for name, v in variants.items()
    }
    from malleconv.runtime import tune_allocator

    tune_allocator()  # as the malleconv command does: freed memory is reused
    x = torch.rand(1, 3, size, size).contiguous(memory_format=torch.channels_last)
    times = {name: [] for name in nets}
    with torch.inference_mode():
        for net in nets.values():
            net(x, 25.0)
        for _ in range(repeat):  # interleaved rounds: drift hits every variant alike
            for name, net in nets.items():
                t = time.perf_counter()
                net(x, 25.0)
                times[name].append(time.perf_counter() - t)
    for name in nets:
        measured[name]["seconds"] = statistics.median(times[name])
    from malleconv.runtime import cpu_name

    info = {
        "size": size,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }
    result = {"info": info, "variants": measured}
    (runs / "measure.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _weights_for_timing(runs: Path, v: Variant, scratch: Path) -> Path:
    """Weights of any trained seed, else of a freshly initialised model."""
    from malleconv.models import save_model
    from malleconv.training.config import build_model, load_config

    found = sorted((runs / v.name).glob(f"seed*/{v.model}.safetensors"))
    if found:
        return found[0]
    return save_model(
        build_model(load_config(RECIPE, v.settings())), scratch / f"{v.name}.safetensors"
    )


def collect_psnr(variants, runs: Path) -> dict:
    """``{variant: {(dataset, sigma): [psnr per seed]}}`` over the evaluated seeds."""
    table = {}
    for v in variants.values():
        per = {}
        for summary in sorted((runs / v.name).glob("seed*/eval/summary.json")):
            results = json.loads(summary.read_text())["results"]
            for dataset, by_sigma in results.items():
                for sigma, r in by_sigma.items():
                    per.setdefault((dataset, int(sigma)), []).append(r["psnr"])
        table[v.name] = per
    return table


def _mean_spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (max(values) - min(values)) if len(values) > 1 else 0.0


def _fmt(values: list[float] | None) -> str:
    if not values:
        return "-"
    mean, spread = _mean_spread(values)
    return f"{mean:.2f}" if len(values) == 1 else f"{mean:.2f} ±{spread / 2:.2f}"


def report_tables(variants, psnr: dict, measured: dict, recipe: dict) -> str:
    info = measured["info"]
    lines = [
        f"Training: `configs/ablation/recipe.yaml`, {recipe['train']['steps']} steps of "
        f"{recipe['data']['batch_size']}x{recipe['data']['patch_size']}x"
        f"{recipe['data']['patch_size']} CBSD432 patches, sigma uniform in "
        f"{recipe['data']['sigma']}, from scratch. PSNR: `malleconv eval`, colour, the mean "
        "over the seeds run and, for more than one, ± half the range. Time: CPU seconds per "
        f"{info['size']}x{info['size']} image, {info['threads']} threads, {info['cpu']}, "
        f"torch {info['torch']}, median of interleaved rounds, {info['date']}. Training "
        "memory: resident-memory growth over 3 training steps of the recipe's batch, one "
        "thread.",
        "",
    ]
    columns = [f"{d} {s}" for d in DATASETS for s in SIGMAS]
    for group, title in (("mallenet", "Inside MalleNet"), ("plain", "In a plain backbone")):
        members = [v for v in variants.values() if v.group == group]
        if not members:
            continue
        base = members[0].name
        lines += [f"### {title}", ""]
        lines.append(
            "| variant | seeds | params | GFLOPs 256² | CPU s 512² | train MB | "
            + " | ".join(columns)
            + f" | mean Δ vs {base} |"
        )
        lines.append("|---" * (7 + len(columns)) + "|")
        for v in members:
            m = measured["variants"].get(v.name, {})
            per = psnr.get(v.name, {})
            seeds = len(next(iter(per.values()), []))
            cells = [_fmt(per.get((d, s))) for d in DATASETS for s in SIGMAS]
            deltas = [
                statistics.fmean(per[k]) - statistics.fmean(psnr[base][k])
                for k in per
                if k in psnr.get(base, {})
            ]
            delta = f"{statistics.fmean(deltas):+.2f}" if deltas and v.name != base else ""
            if not per:
                delta = "not trained yet"
            lines.append(
                f"| `{v.name}` | {seeds} | {m.get('params', 0) / 1e3:,.0f}k | "
                f"{m.get('gflops', float('nan')):.2f} | {m.get('seconds', float('nan')):.3f} | "
                f"{m.get('train_peak_mb', float('nan')):.0f} | "
                + " | ".join(cells)
                + f" | {delta} |"
            )
        lines.append("")
        lines += [f"- `{v.name}`: {v.about}" for v in members]
        lines.append("")
    return "\n".join(lines)


def write_report(variants, runs: Path, docs: Path) -> None:
    measured_path = runs / "measure.json"
    if not measured_path.is_file():
        raise SystemExit(f"{measured_path} is missing: run --stages measure first")
    measured = json.loads(measured_path.read_text())
    psnr = collect_psnr(variants, runs)
    recipe = yaml.safe_load(RECIPE.read_text())
    tables = report_tables(variants, psnr, measured, recipe)
    doc = docs / "ablation.md"
    text = doc.read_text() if doc.is_file() else f"# Ablation\n\n{MARK_BEGIN}\n{MARK_END}\n"
    if MARK_BEGIN not in text or MARK_END not in text:
        raise SystemExit(f"{doc}: the table markers are missing")
    head, rest = text.split(MARK_BEGIN, 1)
    tail = rest.split(MARK_END, 1)[1]
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_name(doc.name + ".tmp")
    tmp.write_text(f"{head}{MARK_BEGIN}\n{tables}\n{MARK_END}{tail}")
    os.replace(tmp, doc)
    print(tables)
    plot(variants, psnr, measured, docs / "figures" / "ablation.png")


def plot(variants, psnr: dict, measured: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[plots]'): no plot written")
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, group, title in zip(
        axes, ("mallenet", "plain"), ("Inside MalleNet", "In a plain backbone")
    ):
        for v in variants.values():
            per = psnr.get(v.name, {})
            m = measured["variants"].get(v.name)
            if v.group != group or not per or not m:
                continue
            # The y value the tables' "mean Δ" compares: each seed's mean over every
            # dataset and sigma, then the mean and range over the seeds.
            seeds = min(len(values) for values in per.values())
            per_seed = [
                statistics.fmean(values[i] for values in per.values()) for i in range(seeds)
            ]
            mean, spread = _mean_spread(per_seed)
            ax.errorbar(
                m["seconds"],
                mean,
                yerr=spread / 2 or None,
                fmt="o",
                capsize=3,
                label=f"{v.name} ({seeds} seed{'s' if seeds > 1 else ''})",
            )
        ax.set_title(title)
        ax.set_xlabel(f"CPU seconds per {measured['info']['size']}² image")
        ax.set_ylabel("mean PSNR, CBSD68 + McMaster at 15/25/50 (dB)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    fig.suptitle("Ablation at one training budget (docs/ablation.md)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    print(f"wrote {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("MALLECONV_DATA"), help="dataset root")
    ap.add_argument("--runs", default="runs/ablation", help="folder of the study's runs")
    ap.add_argument("--docs", default=str(ROOT / "docs"), help="where ablation.md lives")
    ap.add_argument("--jobs", type=int, default=2, help="parallel single-thread runs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--only", nargs="+", default=None, metavar="VARIANT")
    ap.add_argument(
        "--stages",
        nargs="+",
        default=["train", "eval", "measure", "report"],
        choices=["train", "eval", "measure", "report"],
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra training overrides (a smoke test: --set train.steps=20 with its own --runs)",
    )
    ap.add_argument("--size", type=int, default=512, help="image side for the time column")
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds")
    ap.add_argument("--probe-memory", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    variants = load_variants()
    if args.probe_memory:
        print(json.dumps(probe_training_memory(variants[args.probe_memory])))
        return 0
    if args.only:
        unknown = sorted(set(args.only) - set(variants))
        if unknown:
            raise SystemExit(f"--only: unknown variants {unknown}; known: {sorted(variants)}")
        variants = {k: v for k, v in variants.items() if k in args.only}
    runs = Path(args.runs)
    needs_data = {"train", "eval"} & set(args.stages)
    if needs_data and not args.data:
        raise SystemExit("--data is required for training and evaluation (or MALLECONV_DATA)")
    failed = []
    if "train" in args.stages:
        failed += stage_train(variants, args.seeds, runs, Path(args.data), args.jobs, args.set)
    if "eval" in args.stages:
        failed += stage_eval(variants, args.seeds, runs, Path(args.data), args.jobs, args.set)
    if "measure" in args.stages:
        stage_measure(variants, runs, args.size, args.repeat)
    if "report" in args.stages:
        write_report(load_variants(), runs, Path(args.docs))
    if failed:
        print(f"failed: {', '.join(failed)} (see the logs under {runs})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
