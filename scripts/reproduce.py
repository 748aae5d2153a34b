"""Retrain a shipped model from its lineage: one ``malleconv train`` per stage, in order.

    python scripts/reproduce.py configs/lineage/mallenet-s.yaml --data $MALLECONV_DATA \\
        --runs runs [--from STAGE] [--to STAGE] [--dry-run]

Each stage trains into RUNS/STAGE, warm-started from the weights its init stage left
there, for the number of steps the lineage records for it (``steps``): a stage that ran on
a wall-clock budget is replayed by its step count with its cosine per step, so the replay
does not depend on this machine's speed. --dry-run prints the commands (and each stage's
steps) without running them; --from starts at a stage whose init stage's weights are
already under RUNS (e.g. after another lineage that shares those stages, or to redo a
stage: remove its folder first, as ``malleconv train`` refuses to replace a run). Stages
whose run folder holds a checkpoint are not resumed automatically: rerun the printed
command with --resume. A stage's ``export``
settings (such as ``map_variation``, chosen on validation after the run) are then written
into its weights.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

from malleconv.training.lineage import LineageError, apply_export, load_lineage, train_args


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("lineage", help="lineage file (configs/lineage/NAME.yaml)")
    ap.add_argument(
        "--data",
        default=os.environ.get("MALLECONV_DATA"),
        help="data root the stages' folders are relative to (default: $MALLECONV_DATA)",
    )
    ap.add_argument("--runs", default="runs", help="where the stages' run folders go")
    ap.add_argument("--from", dest="first", metavar="STAGE", help="first stage to run")
    ap.add_argument("--to", dest="last", metavar="STAGE", help="last stage to run")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = ap.parse_args(argv)
    try:
        lineage = load_lineage(args.lineage)
        first = lineage.index(args.first) if args.first else 0
        last = lineage.index(args.last) if args.last else len(lineage.stages) - 1
    except LineageError as err:
        print(f"reproduce: error: {err}", file=sys.stderr)
        return 2
    if not args.data:
        print("reproduce: error: --data is required (or set MALLECONV_DATA)", file=sys.stderr)
        return 2
    if first > last:
        print(f"reproduce: error: stage {args.first} runs after {args.last}", file=sys.stderr)
        return 2

    for stage in lineage.stages[first : last + 1]:
        cmd = train_args(lineage, stage.name, args.data, args.runs)
        budget = stage.config["train"]["minutes"]
        how = f", replayed by count (ran on a budget of {budget:g} min)" if stage.on_clock else ""
        print(f"# {stage.name}: {stage.steps:,} steps{how}; {stage.hardware}", flush=True)
        print(shlex.join(["malleconv", *cmd]), flush=True)
        if stage.export:
            print(f"# then written into its weights: {stage.export}", flush=True)
        if args.dry_run:
            continue
        # The first stage run may start from weights left by an earlier invocation: say
        # which stage makes them rather than letting the trainer fail on a path.
        if stage.init in lineage.names():
            weights = lineage.weights(stage.init, args.runs)
            if not weights.is_file():
                print(
                    f"reproduce: error: {stage.name} starts from {weights}, which does not "
                    f"exist: run stage {stage.init} first (--from {stage.init})",
                    file=sys.stderr,
                )
                return 2
        # The interpreter running this script, so the command uses the same install.
        rc = subprocess.call([sys.executable, "-m", "malleconv", *cmd])
        if rc != 0:
            print(f"reproduce: stage {stage.name} failed (exit {rc})", file=sys.stderr)
            return rc
        if stage.export:
            apply_export(stage, lineage.weights(stage.name, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
