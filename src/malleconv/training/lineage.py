"""Lineages: how a shipped model's weights were made, stage by stage.

A lineage file (``configs/lineage/NAME.yaml``) lists the training stages behind one shipped
model, in the order they ran. Each stage names a recipe (a training config), the ``--set``
overrides that made the run differ from it, the stage whose weights it started from, its
data and hardware, and what it measured::

    model: mallenet-s          # the shipped model the last stage made
    stages:
      - name: mallenet-s-s1    # also the run folder: RUNS/mallenet-s-s1
        recipe: configs/mallenet-s.yaml
        init: none             # none, an earlier stage, or a shipped model name
        data: [train/CBSD432]  # relative to $MALLECONV_DATA
        hardware: 2-core CPU
        steps: 8000            # the optimiser steps it trained
      - name: mallenet-s-s23
        recipe: configs/chroma-mix-cpu.yaml
        overrides: {train.minutes: 80, train.seed: 23}   # a wall-clock budget
        init: mallenet-s-s20
        steps: 2237            # what those 80 minutes gave on its host
        ...
        export: {map_variation: 0.25}  # blind models: written into the weights after training

:func:`load_lineage` checks the file and resolves every stage to its full config (the
recipe through :func:`~malleconv.training.config.load_config` with the overrides as
``--set`` strings, so a stage resolves exactly as its command will); :func:`train_args`
gives the ``malleconv train`` arguments that rerun a stage.

**A stage is replayed by its step count.** ``steps`` is the number of optimiser steps the
run trained. A stage that ran for a step count replays exactly as it ran. A stage that ran
on a wall-clock budget (``train.minutes``) trained as many steps as its host allowed and
followed a cosine over the clock; its replay (:meth:`Stage.replay_overrides`) turns the
budget off and trains the recorded steps, its cosine counted per step from step 0 as the
clock counted from the start (``optim.cosine_from_start``). Batches are a function of
``(seed, step)``, so a replay trains the same steps on the same batches on any machine.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..models.registry import MODEL_CONFIGS, weights_dir
from .config import load_config

__all__ = [
    "LineageError", "Stage", "Lineage", "apply_export", "load_lineage", "set_value", "train_args"
]  # fmt: skip

_STAGE_KEYS = {
    "name", "recipe", "overrides", "init", "data", "hardware", "steps", "export", "result",
    "notes",
}  # fmt: skip
# Settings a stage may write into its weights after training (``export``): stored in the
# weights' JSON, not learned, chosen on validation after the run.
_EXPORT_KEYS = {"map_variation": "blind-mallenet"}
_REQUIRED = ("name", "recipe", "init", "data", "hardware", "steps")


class LineageError(ValueError):
    """A lineage file that does not load; the message names the file and the stage."""


@dataclass(frozen=True)
class Stage:
    """One training run of a lineage.

    ``recipe`` is the config path as written (relative to the repository root),
    ``overrides`` maps dotted config keys to values, ``init`` is None, the name of an
    earlier stage or a shipped model name, ``data`` the training folders relative to the
    data root, ``steps`` the optimiser steps the run trained, and ``config`` the resolved
    config dict of the run as it ran (as ``load_config`` returns it).
    """

    name: str
    recipe: str
    overrides: dict[str, Any]
    init: str | None
    data: tuple[str, ...]
    hardware: str
    steps: int
    config: dict = field(repr=False)
    result: str | None = None
    notes: str | None = None
    export: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> str:
        """Registered name of the network this stage trains (its weights file's name)."""
        return self.config["model"]["name"]

    def set_args(self) -> list[str]:
        """The overrides as ``malleconv train --set`` values, ``["train.seed=3", ...]``."""
        return _set_args(self.overrides)

    @property
    def on_clock(self) -> bool:
        """True when the run was on a wall-clock budget (``train.minutes``)."""
        return self.config["train"].get("minutes") is not None

    def replay_overrides(self) -> dict[str, Any]:
        """The overrides that replay this stage by its recorded step count.

        Always ``train.steps: N`` (so that a later change to a recipe's step count cannot
        change the replay). A stage that ran on a clock gets ``train.minutes: null`` (the
        budget would end the run at another step on another host) and
        ``optim.cosine_from_start: true``: its cosine then falls over the N steps as it
        fell over the clock, which counted from step 0.
        """
        replaced = {"train.steps"}
        if self.on_clock:
            replaced |= {"train.minutes", "optim.cosine_from_start"}
        replay = {k: v for k, v in self.overrides.items() if k not in replaced}
        replay["train.steps"] = self.steps
        if self.on_clock:
            replay.update({"train.minutes": None, "optim.cosine_from_start": True})
        return replay

    def replay_args(self) -> list[str]:
        """:meth:`replay_overrides` as ``--set`` values."""
        return _set_args(self.replay_overrides())


@dataclass(frozen=True)
class Lineage:
    """A shipped model's stages in the order they ran; ``root`` is the folder recipe
    paths are relative to (the repository root)."""

    path: Path
    model: str
    stages: tuple[Stage, ...]
    root: Path

    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def index(self, name: str) -> int:
        """Position of the stage called ``name``; a LineageError listing the names if none."""
        for i, stage in enumerate(self.stages):
            if stage.name == name:
                return i
        raise LineageError(f"{self.path}: no stage {name!r}; stages: {', '.join(self.names())}")

    def weights(self, name: str, runs: str | os.PathLike) -> Path:
        """Where a rerun of stage ``name`` under ``runs`` leaves its exported weights:
        ``RUNS/NAME/MODEL.safetensors`` (the trainer names the file after the model)."""
        stage = self.stages[self.index(name)]
        return Path(runs) / stage.name / f"{stage.model}.safetensors"


def set_value(value: Any) -> str:
    """``value`` written so that ``yaml.safe_load`` (how ``--set`` parses) gives it back.

    PyYAML reads ``1e-06`` as a string, so floats always carry a point (``1.0e-06``);
    strings stay bare unless YAML would read them as something else.
    """
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, str) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)


def _set_args(overrides: dict[str, Any]) -> list[str]:
    return [f"{key}={set_value(value)}" for key, value in overrides.items()]


def _shipped(name: str) -> bool:
    return (weights_dir() / f"{name}.safetensors").is_file()


def load_lineage(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Lineage:
    """Load and check a lineage file; every stage's config is resolved and validated.

    ``root``: the folder recipe paths are relative to; by default the repository holding
    the lineage at ``ROOT/configs/lineage/NAME.yaml``. Raises :class:`LineageError` (a
    ``ValueError``) naming the file and stage on any problem: a missing or unknown key, a
    recipe that does not load, an override the config does not know, an ``init`` that is
    neither ``none``, an earlier stage nor a shipped model, or a last stage that does not
    train the lineage's model.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.resolve().parents[2]
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise LineageError(f"lineage file not found: {path}") from None
    except yaml.YAMLError as err:
        raise LineageError(f"{path}: invalid YAML: {err}") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("stages"), list) or not doc["stages"]:
        raise LineageError(f"{path}: a lineage is a mapping with 'model' and a list of 'stages'")
    if not isinstance(doc.get("model"), str):
        raise LineageError(f"{path}: 'model' (the shipped model's name) is missing")
    stages: list[Stage] = []
    for i, entry in enumerate(doc["stages"]):
        stages.append(_load_stage(path, root, i, entry, stages))
    if stages[-1].model != doc["model"]:
        raise LineageError(
            f"{path}: the last stage {stages[-1].name!r} trains {stages[-1].model!r}, "
            f"not the lineage's model {doc['model']!r}"
        )
    return Lineage(path=path, model=doc["model"], stages=tuple(stages), root=root)


def _load_stage(path: Path, root: Path, i: int, entry: Any, earlier: list[Stage]) -> Stage:
    name = entry.get("name") if isinstance(entry, dict) else None
    where = f"{path}: stage {name!r}" if isinstance(name, str) else f"{path}: stage #{i + 1}"

    def fail(msg: str) -> LineageError:
        return LineageError(f"{where}: {msg}")

    if not isinstance(entry, dict):
        raise fail("must be a mapping")
    unknown = set(entry) - _STAGE_KEYS
    if unknown:
        raise fail(f"unknown keys {sorted(unknown)}; known: {sorted(_STAGE_KEYS)}")
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise fail(f"missing {', '.join(missing)}")
    if not isinstance(name, str) or not name:
        raise fail("'name' must be a non-empty string")
    if any(s.name == name for s in earlier):
        raise fail("the name is used by an earlier stage")
    overrides = entry.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise fail("'overrides' must be a mapping of dotted config keys to values")
    data = entry["data"]
    if isinstance(data, str):
        data = [data]
    if not isinstance(data, list) or not data or not all(isinstance(d, str) for d in data):
        raise fail("'data' must list the training folders (relative to the data root)")

    # None and "none" both mean from scratch (YAML reads `none` as a string).
    init = entry["init"]
    if init is not None and not isinstance(init, str):
        raise fail("'init' must be none, an earlier stage's name or a shipped model name")
    if init == "none":
        init = None
    if init is not None and not any(s.name == init for s in earlier) and not _shipped(init):
        raise fail(
            f"init {init!r} is neither an earlier stage ({', '.join(s.name for s in earlier)}) "
            "nor a shipped model"
        )

    recipe = entry["recipe"]
    if not isinstance(recipe, str):
        raise fail("'recipe' must be a config path")
    base = _load(fail, root / recipe, [])
    for key, value in overrides.items():
        # A YAML 1.1 reader takes `3e-4` for a string: catch it here, not in the trainer.
        old = _get(base, str(key))
        if isinstance(value, str) and isinstance(old, (int, float)) and not isinstance(old, bool):
            raise fail(f"override {key}: {value!r} is a string where a number is expected")
    export = entry.get("export") or {}
    if not isinstance(export, dict):
        raise fail("'export' must be a mapping of settings to values")
    sets = _set_args(overrides)
    config = _load(fail, root / recipe, sets)
    arch = MODEL_CONFIGS.get(config["model"]["name"], ("?",))[0]
    for key, value in export.items():
        if key not in _EXPORT_KEYS:
            raise fail(f"export {key!r}: known settings: {sorted(_EXPORT_KEYS)}")
        if _EXPORT_KEYS[key] != arch:
            raise fail(f"export {key!r} needs a {_EXPORT_KEYS[key]} model, not {arch}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise fail(f"export {key!r} must be a number in [0, 1], got {value!r}")
    steps = entry["steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise fail(f"'steps' must be the number of optimiser steps the run trained, got {steps!r}")
    cap = int(config["train"]["steps"])
    if config["train"].get("minutes") is None and steps != cap:
        raise fail(
            f"steps {steps}, but without a clock budget its config trains exactly train.steps={cap}"
        )
    if steps > cap:
        raise fail(f"steps {steps} is more than its config's cap train.steps={cap}")
    return Stage(
        name=name,
        recipe=recipe,
        overrides=dict(overrides),
        init=init,
        data=tuple(data),
        hardware=str(entry["hardware"]),
        steps=steps,
        config=config,
        result=entry.get("result"),
        notes=entry.get("notes"),
        export=dict(export),
    )


def apply_export(stage: Stage, weights: str | os.PathLike) -> Path:
    """Write ``stage.export``'s settings into the stage's exported ``weights`` (float16,
    as the trainer exports them), keeping their metadata; returns the path."""
    from ..models.registry import load_model, save_model

    path = Path(weights)
    model = load_model(path)
    for key, value in stage.export.items():
        setattr(model, key, float(value))
    meta = json.loads(path.with_suffix(".json").read_text()).get("meta")
    return save_model(model, path, half=True, meta=meta)


def _load(fail, recipe: Path, sets: list[str]) -> dict:
    try:
        return load_config(recipe, sets)
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err)) from None


def _get(cfg: dict, dotted: str) -> Any:
    node: Any = cfg
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None  # load_config reports unknown keys with the known ones
        node = node[key]
    return node


def train_args(
    lineage: Lineage, name: str, data_root: str | os.PathLike, runs: str | os.PathLike
) -> list[str]:
    """Arguments of ``malleconv`` that rerun stage ``name``: ``["train", "--config", RECIPE,
    "--set", "K=V", ..., "--init", WEIGHTS, "--data", FOLDER..., "--out", RUNS/NAME]``,
    the ``--set`` values those of :meth:`Stage.replay_overrides` (its recorded steps).

    The recipe path is given relative to the current folder when it lies below it (as
    written in the lineage when run from the repository root); ``--init`` names the
    earlier stage's weights under ``runs`` or the shipped model.
    """
    stage = lineage.stages[lineage.index(name)]
    recipe = lineage.root / stage.recipe
    try:
        recipe = recipe.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass  # outside the current folder: keep the absolute path
    args = ["train", "--config", str(recipe)]
    for item in stage.replay_args():
        args += ["--set", item]
    if stage.init is not None:
        if stage.init in lineage.names():
            args += ["--init", str(lineage.weights(stage.init, runs))]
        else:
            args += ["--init", stage.init]
    args += ["--data", *(os.path.join(data_root, d) for d in stage.data)]
    args += ["--out", os.path.join(runs, stage.name)]
    return args
