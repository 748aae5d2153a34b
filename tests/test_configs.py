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
    # mallenet-s-gray and mallenet-w repeat mallenet-s's early stages: the copies must agree.
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
    assert commands == [
        "malleconv train --config configs/chroma-mix-cpu.yaml --set train.minutes=80 "
        "--set train.seed=23 --init out/mallenet-s-s20/mallenet-s.safetensors "
        "--data /data/train/CBSD432 --out out/mallenet-s-s23",
        "malleconv train --config configs/chroma-mix-cpu.yaml --set model.name=mallenet-s-gray "
        "--set train.minutes=90 --set train.seed=31 "
        "--init out/mallenet-s-s23/mallenet-s.safetensors "
        "--data /data/train/CBSD432 --out out/mallenet-s-gray-s3",
    ]
    bad = subprocess.run(
        [sys.executable, str(script), str(lineage), "--data", "/data", "--from", "s9"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "no stage 's9'" in bad.stderr and "mallenet-s-s1" in bad.stderr


def test_reproduce_stops_when_the_init_weights_are_missing(tmp_path):
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reproduce.py"),
         str(ROOT / "configs" / "lineage" / "mallenet-w.yaml"), "--data", str(tmp_path),
         "--runs", str(tmp_path / "runs"), "--from", "mallenet-w-s1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2 and "run stage mallenet-m-s2 first" in res.stderr
    assert not (tmp_path / "runs").exists()


def _write(tmp_path, stages: str) -> Path:
    (tmp_path / "configs").mkdir(exist_ok=True)
    (tmp_path / "configs" / "r.yaml").write_text("model: {name: mallenet-tiny}\n")
    path = tmp_path / "configs" / "lineage.yaml"
    path.write_text("model: mallenet-tiny\nstages:\n" + stages)
    return path


GOOD = """\
  - {name: a, recipe: configs/r.yaml, init: none, data: [train/X], hardware: cpu}
  - {name: b, recipe: configs/r.yaml, overrides: {optim.lr: 2.0e-4, train.seed: 4},
     init: a, data: [train/X, train/Y], hardware: cpu}
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
        (GOOD.replace("hardware: cpu}\n  - ", "}\n  - "), r"stage 'a': missing hardware"),
        (GOOD.replace("configs/r.yaml, init: none", "configs/q.yaml, init: none"), r"q.yaml"),
        (
            GOOD + "  - {name: a, recipe: configs/r.yaml, init: b, data: [x], hardware: cpu}\n",
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
        "     export: {map_variation: 0.25}}\n"
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
                GOOD.replace("hardware: cpu}", "hardware: cpu, export: {map_variation: 1}}", 1),
            ),
            root=tmp_path,
        )


@pytest.mark.parametrize("value", [3e-4, 1e-6, 1e20, 7, True, None, [5, 30], "mallenet-w", "1"])
def test_set_value_round_trips_through_yaml(value):
    import yaml

    assert yaml.safe_load(set_value(value)) == value
