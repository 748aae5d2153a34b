"""Every committed training config and lineage loads, validates and names a model that
builds: a config written for a GPU lease is often run once, unattended, and a lineage is the
record of how the shipped weights were made, so a typo must fail here, not there."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from malleconv.models.registry import weights_dir
from malleconv.training.config import build_model, load_config
from malleconv.training.lineage import LineageError, load_lineage, set_value, train_args

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
LINEAGES = sorted((ROOT / "configs" / "lineage").glob("*.yaml"))


def test_configs_folder_is_not_empty():
    assert len(CONFIGS) >= 5


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_committed_config_loads_and_builds_its_model(path):
    cfg = load_config(path)
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert cfg["data"]["batch_size"] >= 1 and cfg["data"]["patch_size"] >= 8


def test_every_shipped_model_has_a_lineage():
    shipped = {p.stem for p in weights_dir().glob("*.safetensors")}
    assert shipped <= {p.stem for p in LINEAGES}


@pytest.mark.parametrize("path", LINEAGES, ids=lambda p: p.name)
def test_lineage_stages_resolve_and_build_their_models(path):
    lineage = load_lineage(path)
    assert lineage.model == path.stem and lineage.stages[-1].model == lineage.model
    for stage in lineage.stages:
        # Recipes sit in configs/ itself, where the test above loads every one.
        assert (ROOT / stage.recipe).parent == ROOT / "configs", stage.recipe
        assert stage.hardware and stage.result, stage.name
        assert stage.config == load_config(ROOT / stage.recipe, stage.set_args())
        assert sum(p.numel() for p in build_model(stage.config).parameters()) > 0
    # The record starts from scratch: no stage leans on whatever is shipped today.
    assert lineage.stages[0].init is None
    assert all(s.init in lineage.names() for s in lineage.stages[1:])


def test_stages_shared_between_lineages_are_the_same():
    # mallenet-s-gray and mallenet-s-real repeat mallenet-s's stages: the copies must agree.
    seen = {}
    for path in LINEAGES:
        for stage in load_lineage(path).stages:
            if stage.name in seen:
                assert stage == seen[stage.name], (path.name, stage.name)
            seen[stage.name] = stage


def test_reproduce_dry_run_prints_each_stage_command():
    script = ROOT / "scripts" / "reproduce.py"
    lineage = ROOT / "configs" / "lineage" / "mallenet-s-gray.yaml"
    res = subprocess.run(
        [sys.executable, str(script), str(lineage), "--data", "/data", "--runs", "out",
         "--from", "mallenet-s-s23", "--dry-run"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    commands = [line for line in res.stdout.splitlines() if not line.startswith("#")]
    # Stages that ran on a clock replay by their recorded steps, the budget turned off.
    replay = "--set train.minutes=null --set optim.cosine_from_start=true"
    assert commands == [
        "malleconv train --config configs/chroma-mix-cpu.yaml --set train.seed=23 "
        f"--set train.steps=2237 {replay} --init out/mallenet-s-s20/mallenet-s.safetensors "
        "--data /data/train/CBSD432 --out out/mallenet-s-s23",
        "malleconv train --config configs/chroma-mix-cpu.yaml --set model.name=mallenet-s-gray "
        f"--set train.seed=31 --set train.steps=1477 {replay} "
        "--init out/mallenet-s-s23/mallenet-s.safetensors "
        "--data /data/train/CBSD432 --out out/mallenet-s-gray-s3",
    ]
    comments = [line for line in res.stdout.splitlines() if line.startswith("#")]
    assert comments[0].startswith("# mallenet-s-s23: 2,237 steps, replayed by count")
    bad = subprocess.run(
        [sys.executable, str(script), str(lineage), "--data", "/data", "--from", "s9"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "no stage 's9'" in bad.stderr and "mallenet-s-s1" in bad.stderr


def test_reproduce_stops_when_the_init_weights_are_missing(tmp_path):
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reproduce.py"),
         str(ROOT / "configs" / "lineage" / "mallenet-s-real.yaml"), "--data", str(tmp_path),
         "--runs", str(tmp_path / "runs"), "--from", "mallenet-s-real-s6"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2 and "run stage mallenet-s-real-s1 first" in res.stderr
    assert not (tmp_path / "runs").exists()


def _write(tmp_path, stages: str) -> Path:
    (tmp_path / "configs").mkdir(exist_ok=True)
    (tmp_path / "configs" / "r.yaml").write_text("model: {name: mallenet-tiny}\n")
    path = tmp_path / "configs" / "lineage.yaml"
    path.write_text("model: mallenet-tiny\nstages:\n" + stages)
    return path


GOOD = """\
  - {name: a, recipe: configs/r.yaml, init: none, data: [train/X], hardware: cpu,
     steps: 10000}
  - {name: b, recipe: configs/r.yaml, overrides: {optim.lr: 2.0e-4, train.seed: 4},
     init: a, data: [train/X, train/Y], hardware: cpu, steps: 10000}
"""


def test_lineage_resolves_overrides_and_init_weights(tmp_path):
    lineage = load_lineage(_write(tmp_path, GOOD), root=tmp_path)
    b = lineage.stages[1]
    assert b.config["optim"]["lr"] == 2e-4 and b.config["train"]["seed"] == 4
    args = train_args(lineage, "b", "/d", "R")
    assert args[args.index("--init") + 1] == os.path.join("R", "a", "mallenet-tiny.safetensors")
    assert args[args.index("--data") + 1 : args.index("--out")] == ["/d/train/X", "/d/train/Y"]


@pytest.mark.parametrize(
    "stages, message",
    [
        (GOOD.replace("train.seed: 4", "train.sed: 4"), r"stage 'b': unknown config key"),
        (GOOD.replace("init: a,", "init: c,"), r"stage 'b': init 'c' is neither"),
        (GOOD.replace("2.0e-4", "2e-4"), r"stage 'b': override optim.lr: '2e-4' is a string"),
        (GOOD.replace("hardware: cpu,\n", "\n", 1), r"stage 'a': missing hardware"),
        (GOOD.replace("steps: 10000}", "steps: 9000}", 1), r"stage 'a': steps 9000, but"),
        (GOOD.replace("steps: 10000}", "steps: 2.5}", 1), r"stage 'a': 'steps' must be"),
        (GOOD.replace(", hardware: cpu, steps: 10000}", ", hardware: cpu}"), r"missing steps"),
        (GOOD.replace("configs/r.yaml, init: none", "configs/q.yaml, init: none"), r"q.yaml"),
        (
            GOOD + "  - {name: a, recipe: configs/r.yaml, init: b, data: [x], hardware: cpu,\n"
            "     steps: 10000}\n",
            r"stage 'a': the name is used",
        ),
    ],
)
def test_lineage_errors_name_the_file_and_stage(tmp_path, stages, message):
    with pytest.raises(LineageError, match=message) as err:
        load_lineage(_write(tmp_path, stages), root=tmp_path)
    assert "lineage.yaml" in str(err.value)


def test_lineage_export_settings_are_checked_and_written_into_the_weights(tmp_path):
    from malleconv.models import create_model, load_model, save_model
    from malleconv.training.lineage import apply_export

    blind = GOOD + (
        "  - {name: c, recipe: configs/real.yaml, init: b, data: [train/X], hardware: cpu,\n"
        "     steps: 10000, export: {map_variation: 0.25}}\n"
    )
    path = _write(tmp_path, blind)
    (tmp_path / "configs" / "real.yaml").write_text("model: {name: mallenet-s-real}\n")
    path.write_text(path.read_text().replace("model: mallenet-tiny", "model: mallenet-s-real"))
    stage = load_lineage(path, root=tmp_path).stages[-1]
    assert stage.export == {"map_variation": 0.25}
    weights = save_model(
        create_model("mallenet-s-real"), tmp_path / "w.safetensors", meta={"steps": 9}
    )
    apply_export(stage, weights)
    assert load_model(weights).map_variation == 0.25
    assert json.loads(weights.with_suffix(".json").read_text())["meta"] == {"steps": 9}
    for bad, message in [
        ("{map_variation: 2}", "must be a number in"),
        ("{blend: 0.5}", "known settings"),
    ]:
        path.write_text(path.read_text().replace("{map_variation: 0.25}", bad))
        with pytest.raises(LineageError, match=f"stage 'c': export .*{message}"):
            load_lineage(path, root=tmp_path)
        path.write_text(path.read_text().replace(bad, "{map_variation: 0.25}"))
    with pytest.raises(LineageError, match="stage 'a': export 'map_variation' needs a blind"):
        load_lineage(
            _write(
                tmp_path,
                GOOD.replace("steps: 10000}", "steps: 10000, export: {map_variation: 1}}", 1),
            ),
            root=tmp_path,
        )


@pytest.mark.parametrize("value", [3e-4, 1e-6, 1e20, 7, True, None, [5, 30], "mallenet-s", "1"])
def test_set_value_round_trips_through_yaml(value):
    import yaml

    assert yaml.safe_load(set_value(value)) == value


def test_schedule_from_start_counts_the_warm_up_as_a_clock_does():
    from malleconv.training.schedule import warmup_cosine

    clock = warmup_cosine(2, 10, 0.0, progress=lambda: 0.5)
    per_step = warmup_cosine(2, 10, 0.0, from_start=True)
    assert per_step(5) == pytest.approx(clock(5)) == pytest.approx(0.5)
    assert per_step(10) == pytest.approx(0.0) and per_step(0) == pytest.approx(0.5)


def test_replayed_clock_stage_trains_its_recorded_steps(tmp_path, image_folder):
    """A stage that ran on a wall-clock budget replays by its recorded step count: the
    budget is off (30 minutes would run far past 3 steps), the cosine ends on the last
    recorded step, and the next stage starts from its weights."""
    import csv

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "clock.yaml").write_text(
        "model: {name: mallenet-tiny}\n"
        "data: {patch_size: 32, batch_size: 2, val_holdout: 0}\n"
        "optim: {lr: 1.0e-3, min_lr: 1.0e-5, warmup_steps: 1}\n"
        "train: {steps: 100000, minutes: 30, threads: 1, val_every: 0, log_every: 1,\n"
        "        ckpt_every: 100000}\n"
    )
    lineage = tmp_path / "configs" / "lineage" / "mallenet-tiny.yaml"
    lineage.parent.mkdir()
    folder = f"[{image_folder.name}]"
    lineage.write_text(
        "model: mallenet-tiny\nstages:\n"
        f"  - {{name: a, recipe: configs/clock.yaml, init: none, data: {folder},\n"
        "     hardware: 'a slow host, 30 min', steps: 3}\n"
        f"  - {{name: b, recipe: configs/clock.yaml, init: a, data: {folder},\n"
        "     overrides: {train.minutes: 20, train.seed: 2}, hardware: cpu, steps: 2}\n"
    )
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reproduce.py"), str(lineage),
         "--data", str(image_folder.parent), "--runs", str(tmp_path / "runs")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "# a: 3 steps, replayed by count (ran on a budget of 30 min)" in res.stdout
    for name, steps in (("a", 3), ("b", 2)):
        run = tmp_path / "runs" / name
        meta = json.loads((run / "mallenet-tiny.json").read_text())["meta"]
        assert meta["steps"] == steps, name
        with open(run / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [int(r["step"]) for r in rows] == list(range(1, steps + 1)), name
        # The cosine spans the recorded steps: the last one is at min_lr.
        assert float(rows[-1]["lr"]) == pytest.approx(1e-5), name


def test_training_run_metrics_belong_to_lineage_stages_and_end_at_their_steps():
    """docs/training-runs/STAGE.csv: the metrics of a stage of a shipped lineage, whose
    last logged step is the stage's recorded step count (to within one log interval)."""
    import csv

    stages = {s.name: s for path in LINEAGES for s in load_lineage(path).stages}
    runs = sorted((ROOT / "docs" / "training-runs").glob("*.csv"))
    assert runs
    for path in runs:
        stage = stages.get(path.stem)
        assert stage is not None, f"{path.name} names no stage of a shipped lineage"
        with open(path, newline="") as f:
            last = max(int(row["step"]) for row in csv.DictReader(f))
        assert 0 <= stage.steps - last < int(stage.config["train"]["log_every"]), path.name
