"""Reading a training checkpoint back: the file checked, and its model settings against the
run's, before anything is loaded into the run (:meth:`~malleconv.training.trainer.Trainer.
load_checkpoint`)."""

from __future__ import annotations

import os

import torch

__all__ = ["one_line", "read_checkpoint"]


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut at ``limit`` characters."""
    return " ".join(str(err).split())[:limit]


def _plain(value):
    """A YAML list and a tuple of the same values are the same setting."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _model_differences(saved: dict, current: dict) -> list[str]:
    """``model.name`` and ``model.overrides`` keys whose values differ between a checkpoint's
    config and the run's, as ``"key: saved -> current"``."""
    out = []
    if saved.get("name") != current.get("name"):
        out.append(f"model.name: {saved.get('name')!r} -> {current.get('name')!r}")
    old, new = saved.get("overrides") or {}, current.get("overrides") or {}
    for key in sorted(set(old) | set(new)):
        if _plain(old.get(key)) != _plain(new.get(key)):
            out.append(f"model.overrides.{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return out


def read_checkpoint(path: str | os.PathLike, device, model_cfg: dict) -> dict:
    """The state saved by :meth:`~malleconv.training.trainer.Trainer.save_checkpoint`, on
    ``device``; a ValueError naming the file when it is damaged, lacks a part, or was saved
    with other ``model`` settings (``model_cfg``: the run's ``model`` section)."""
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as err:  # unpickling raises many types on a damaged file
        raise ValueError(f"{path}: not a training checkpoint ({type(err).__name__}: "
                         f"{one_line(err, 200)})") from None
    if not isinstance(state, dict) or not {"model", "optim", "sched", "step"} <= set(state):
        raise ValueError(f"{path}: not a training checkpoint (no model, optimiser, schedule "
                         "and step)")
    saved = (state.get("config") or {}).get("model")
    differences = _model_differences(saved, model_cfg) if isinstance(saved, dict) else []
    if differences:
        # Weights of the same shapes can belong to another model (an activation without
        # weights, say): loading them would continue a different network silently.
        raise ValueError(f"{path}: a checkpoint of another model configuration "
                         f"({'; '.join(differences)}); resume with the run's own model settings")
    return state
