"""Training configuration: YAML files with dotted command-line overrides."""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from ..data.camera_noise import CameraNoiseRanges
from ..data.noise import SIGMA_MAX, SIGMA_MIN
from ..models.registry import create_model

__all__ = ["DEFAULT_CONFIG", "load_config", "apply_overrides", "merge", "build_model"]

DEFAULT_CONFIG: dict[str, Any] = {
    "model": {"name": "mallenet-s", "overrides": {}},
    "data": {
        "patch_size": 64,
        "batch_size": 16,
        "sigma": [SIGMA_MIN, SIGMA_MAX],
        "gray": False,
        "workers": 0,
        "skip_corrupt": False,
        # Without --val, the last N training images (sorted by name) are held out for
        # validation and never trained on.
        "val_holdout": 8,
        # Probability of cutting a patch from the image halved in size (sharp chroma for
        # JPEG 4:2:0 training images; see data.datasets.downscale_half).
        "downscale_prob": 0.0,
        # Probability of a patch being a 2x2 mosaic of crops of images reduced to a quarter
        # size (the chroma of 4:2:0 JPEG only gets as detailed as its luma at about 1/4).
        "quarter_prob": 0.0,
        # Probability of a colour jitter per patch (colour training only): a random order of
        # the RGB channels and chroma scaled by a factor uniform in [1, saturation_max] around
        # each pixel's gray level, then clipped to [0, 1]. More saturated and more varied hues
        # than CBSD432's; noise is added afterwards, so the noise model is unchanged.
        "color_jitter_prob": 0.0,
        "saturation_max": 1.5,
        # With probability sigma_focus_prob a patch's sigma is drawn uniformly from the range
        # sigma_focus instead of from sigma: more training on a band of noise levels.
        "sigma_focus": None,
        "sigma_focus_prob": 0.0,
        # Probability of a patch being a synthetic dead-leaves image (data.dead_leaves) coloured
        # with its training image's pixels: sharp colour edges at every scale, which
        # CBSD432's 4:2:0 JPEG chroma lacks. Not counted as full size (no soft chroma).
        "dead_leaves_prob": 0.0,
        # Probability of a patch carrying synthetic camera noise (data.camera_noise) instead
        # of white Gaussian noise, and of a patch left clean (noise level 0). With either
        # above 0 the noise level is a per-pixel map (the local std of the noise).
        "camera_noise_prob": 0.0,
        "clean_prob": 0.0,
        # The camera noise's parameter ranges (data.camera_noise.CameraNoiseRanges, with the
        # published sources of each default), e.g. data.camera_noise.smooth_sigma=[0.3,2.0].
        "camera_noise": CameraNoiseRanges().as_mapping(),
        # Probability of a full-size or halved patch being the busiest of a few random crops
        # of its image (training.batches.TEXTURE_CANDIDATES): more texture, clean or noisy.
        "texture_prob": 0.0,
        # Keep the training images on the training device and make the batches there
        # (StepBatches.on_device): no loader workers, for GPUs. Same batches on the CPU.
        "on_device": False,
    },
    "optim": {
        "lr": 1.0e-3,
        "weight_decay": 1.0e-4,
        "betas": [0.9, 0.99],
        "warmup_steps": 500,
        "min_lr": 1.0e-6,
        "grad_clip": 1.0,
        # Count the cosine's progress from step 0 (t = step / train.steps), as a
        # train.minutes budget counts its clock from the start, warm-up included; off, it
        # runs from the end of the warm-up. A lineage replays a stage that ran on a clock by
        # its recorded step count with this on (training/lineage.py).
        "cosine_from_start": False,
    },
    "train": {
        "steps": 10000,
        "loss": "charbonnier",
        # psnr/mse only: measure the chroma error of full-size patches after a 2x2 average,
        # where 4:2:0 JPEG targets (CBSD432) know their colour (see per_patch_mse).
        "soft_chroma": False,
        # EMA of the weights (0 = off). With BatchNorm the averaged model needs its
        # statistics re-estimated (done automatically); see docs/training.md.
        "ema": 0.0,
        "seed": 0,
        "channels_last": True,
        "bf16": False,
        # torch.compile the training forward (and so its backward): Inductor fuses the
        # BatchNorm and PReLU passes that take most of a CPU step (docs/training.md,
        # Throughput). Compiling takes minutes, once per run; results equal eager's to float
        # rounding (tests/test_training.py).
        "compile": False,
        "log_every": 20,
        "val_every": 1000,
        "val_sigmas": [15, 25, 50],
        "val_max_images": 8,
        "val_crop": 256,
        "ckpt_every": 500,
        "ckpt_minutes": 5.0,
        "threads": 0,
        # Wall-clock budget in minutes (None: off). When set, the cosine decay follows the
        # elapsed training time instead of the step count and training stops when the
        # budget is spent, so a run fits a lease of fixed length whatever the hardware
        # (warm-up stays in steps; train.steps becomes a cap).
        "minutes": None,
        # Blind models (models.blind): weight of the noise-level estimator's loss.
        "level_loss_weight": 1.0,
        # Weight of its under-estimates (over-estimates get 1 minus it): above 0.5 the
        # estimator leans high, as CBDNet's does; 0.5 is a plain squared error.
        "level_under_weight": 0.7,
        # Share of samples whose denoiser gets the estimated level, not the true one, with
        # the reconstruction loss reaching the estimator (end-to-end blind training).
        "blind_prob": 0.0,
        # Stop that loss at the estimate: the denoiser learns the estimator's errors, the
        # estimator keeps only its level loss.
        "blind_detach": False,
        # Submodules (dotted names, e.g. "denoiser") whose weights do not train; frozen
        # modules also keep their BatchNorm statistics. A blind model with its denoiser
        # frozen, and no reconstruction loss reaching the estimator, trains its estimator
        # alone without running the denoiser.
        "frozen": [],
    },
}


def merge(base: dict, update: dict, path: str = "") -> dict:
    """Recursively merge ``update`` into a copy of ``base``; unknown keys are an error."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        where = f"{path}{key}"
        if key not in out:
            raise ValueError(f"unknown config key {where!r}; known: {sorted(out)}")
        if isinstance(out[key], dict) and key != "overrides":
            if not isinstance(value, dict):
                raise ValueError(f"config key {where!r} must be a mapping")
            out[key] = merge(out[key], value, where + ".")
        else:
            out[key] = value
    return out


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` overrides (values parsed as YAML)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.key=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = cfg
        for i, key in enumerate(keys[:-1]):
            if key not in node or not isinstance(node[key], dict):
                raise ValueError(f"unknown config key {'.'.join(keys[: i + 1])!r}")
            node = node[key]
        last = keys[-1]
        # model.overrides takes any of the model's constructor arguments; nothing else is new.
        if last not in node and keys[:2] != ["model", "overrides"]:
            raise ValueError(f"unknown config key {dotted!r}; known: {sorted(node)}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ValueError(f"override {item!r}: the value is not valid YAML ({err})") from None
        if isinstance(node.get(last), dict) and last != "overrides" and not isinstance(value, dict):
            raise ValueError(f"config key {dotted!r} is a section: set its keys "
                             f"({dotted}.KEY=VALUE)")
        node[last] = value
    return cfg


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> dict:
    """Defaults, updated by the YAML file at ``path`` and then by ``overrides``."""
    cfg = DEFAULT_CONFIG
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{p}: invalid YAML: {err}") from err
        if not isinstance(loaded, dict):
            raise ValueError(f"{p}: a config must be a mapping")
        cfg = merge(cfg, loaded)
    cfg = apply_overrides(cfg, overrides or [])
    _validate(cfg)
    return cfg


def build_model(cfg: dict) -> nn.Module:
    """A fresh, randomly initialised network as ``cfg["model"]`` names it (registered name
    plus ``overrides``)."""
    return create_model(cfg["model"]["name"], **(cfg["model"].get("overrides") or {}))


def _check_types(cfg: dict, default: dict, path: str = "") -> None:
    """Every value of a type its default allows: numbers where the default is a number (whole
    numbers where it is an int; never booleans), booleans, strings, lists of numbers as long
    as the default's (``data.sigma``, ``optim.betas``) or of any length (``train.val_sigmas``);
    keys whose default is None or a mapping of free keys are checked elsewhere. A number given
    as a string (YAML 1.1 reads ``1e-4``, with no dot, as one) is converted in ``cfg``."""
    for key, ref in default.items():
        where, value = f"{path}{key}", cfg[key]
        if ref is None or key in ("overrides", "camera_noise"):
            continue
        if isinstance(ref, dict):
            _check_types(value, ref, where + ".")
            continue
        if isinstance(ref, bool):
            ok = isinstance(value, bool)
            want = "true or false"
        elif isinstance(ref, (int, float)):
            if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
                try:
                    value = cfg[key] = float(value)
                except ValueError:
                    pass
            ok = _is_number(value) and (isinstance(ref, float) or float(value).is_integer())
            want = "a number" if isinstance(ref, float) else "a whole number"
        elif isinstance(ref, str):
            ok, want = isinstance(value, str), "a string"
        elif isinstance(ref, list) and ref and all(_is_number(v) for v in ref):
            fixed = key in ("sigma", "betas")
            ok = isinstance(value, list) and all(_is_number(v) for v in value) and (
                len(value) == len(ref) if fixed else len(value) > 0)
            want = f"a list of {len(ref)} numbers" if fixed else "a list of numbers"
        elif isinstance(ref, list):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            want = "a list of strings"
        else:
            continue
        if not ok:
            raise ValueError(f"{where} must be {want}, got {value!r}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate(cfg: dict) -> None:
    _check_types(cfg, DEFAULT_CONFIG)
    o, t, d = cfg["optim"], cfg["train"], cfg["data"]
    if not o["lr"] > 0:
        raise ValueError(f"optim.lr must be positive, got {o['lr']}")
    for key in ("min_lr", "weight_decay", "grad_clip", "warmup_steps"):
        if o[key] < 0:
            raise ValueError(f"optim.{key} must be at least 0, got {o[key]}")
    if not all(0 <= b < 1 for b in o["betas"]):
        raise ValueError(f"optim.betas must lie in [0, 1), got {o['betas']}")
    if not 0 <= t["ema"] < 1:
        raise ValueError(f"train.ema must be in [0, 1) (0: off), got {t['ema']}")
    if d["val_holdout"] < 0:
        raise ValueError(f"data.val_holdout must be at least 0, got {d['val_holdout']}")
    if not all(SIGMA_MIN <= v <= SIGMA_MAX for v in t["val_sigmas"]):
        raise ValueError(f"train.val_sigmas must lie in [{SIGMA_MIN:g}, {SIGMA_MAX:g}], "
                         f"got {t['val_sigmas']}")
    within = f"[{SIGMA_MIN:g}, {SIGMA_MAX:g}]"
    lo, hi = (float(v) for v in cfg["data"]["sigma"])
    if not (SIGMA_MIN <= lo <= hi <= SIGMA_MAX):
        raise ValueError(f"data.sigma must be a range within {within}, got {[lo, hi]}")
    focus, focus_prob = cfg["data"]["sigma_focus"], float(cfg["data"]["sigma_focus_prob"])
    if not 0.0 <= focus_prob <= 1.0:
        raise ValueError(f"data.sigma_focus_prob must be in [0, 1], got {focus_prob}")
    if focus is not None:
        flo, fhi = (float(v) for v in focus)
        if not (SIGMA_MIN <= flo <= fhi <= SIGMA_MAX):
            raise ValueError(f"data.sigma_focus must be a range within {within}, got {focus}")
    elif focus_prob > 0:
        raise ValueError("data.sigma_focus_prob > 0 needs a data.sigma_focus range")
    dead_leaves_prob = float(cfg["data"]["dead_leaves_prob"])
    if not 0.0 <= dead_leaves_prob <= 1.0:
        raise ValueError(f"data.dead_leaves_prob must be in [0, 1], got {dead_leaves_prob}")
    for key in ("camera_noise_prob", "clean_prob", "texture_prob"):
        if not 0.0 <= float(cfg["data"][key]) <= 1.0:
            raise ValueError(f"data.{key} must be in [0, 1], got {cfg['data'][key]}")
    if float(cfg["data"]["camera_noise_prob"]) + float(cfg["data"]["clean_prob"]) > 1.0:
        raise ValueError("data.camera_noise_prob + data.clean_prob must be at most 1")
    try:
        CameraNoiseRanges.from_mapping(cfg["data"]["camera_noise"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"data.camera_noise: {err}") from None
    for key in ("blind_prob", "level_under_weight"):
        if not 0.0 <= float(cfg["train"][key]) <= 1.0:
            raise ValueError(f"train.{key} must be in [0, 1], got {cfg['train'][key]}")
    frozen = cfg["train"]["frozen"]
    if not isinstance(frozen, (list, tuple)) or not all(isinstance(n, str) for n in frozen):
        raise ValueError(f"train.frozen must be a list of submodule names, got {frozen!r}")
    if cfg["train"]["loss"] not in ("l1", "charbonnier", "mse", "psnr"):
        raise ValueError(
            f"train.loss must be l1, charbonnier, mse or psnr, got {cfg['train']['loss']!r}"
        )
    if cfg["train"]["soft_chroma"] and cfg["train"]["loss"] not in ("mse", "psnr"):
        raise ValueError(f"train.soft_chroma needs loss mse or psnr, got {cfg['train']['loss']!r}")
    if cfg["train"]["soft_chroma"] and int(cfg["data"]["patch_size"]) % 2:
        raise ValueError("train.soft_chroma needs an even data.patch_size")
    if not 0.0 <= float(cfg["data"]["downscale_prob"]) <= 1.0:
        raise ValueError(
            f"data.downscale_prob must be in [0, 1], got {cfg['data']['downscale_prob']}"
        )
    if not 0.0 <= float(cfg["data"]["quarter_prob"]) <= 1.0:
        raise ValueError(f"data.quarter_prob must be in [0, 1], got {cfg['data']['quarter_prob']}")
    if float(cfg["data"]["downscale_prob"]) + float(cfg["data"]["quarter_prob"]) > 1.0:
        raise ValueError("data.downscale_prob + data.quarter_prob must be at most 1")
    if float(cfg["data"]["quarter_prob"]) > 0 and int(cfg["data"]["patch_size"]) % 2:
        raise ValueError("data.quarter_prob needs an even data.patch_size")
    if not 0.0 <= float(cfg["data"]["color_jitter_prob"]) <= 1.0:
        raise ValueError(
            f"data.color_jitter_prob must be in [0, 1], got {cfg['data']['color_jitter_prob']}"
        )
    if float(cfg["data"]["saturation_max"]) < 1.0:
        raise ValueError(
            f"data.saturation_max must be at least 1, got {cfg['data']['saturation_max']}"
        )
    if cfg["data"]["on_device"] and int(cfg["data"]["workers"]):
        raise ValueError("data.on_device makes the batches on the device: set data.workers=0")
    for key in ("patch_size", "batch_size"):
        if int(cfg["data"][key]) < 1:
            raise ValueError(f"data.{key} must be positive")
    if int(cfg["train"]["steps"]) < 1:
        raise ValueError("train.steps must be positive")
    minutes = cfg["train"]["minutes"]
    if minutes is not None and not float(minutes) > 0:
        raise ValueError(f"train.minutes must be positive (or null), got {minutes}")
