"""Every committed training config loads, validates and names a model that builds: a config
written for a GPU lease is often run once, unattended, so a typo must fail here, not there."""

from pathlib import Path

import pytest

from malleconv.training.config import build_model, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_configs_folder_is_not_empty():
    assert len(CONFIGS) > 10


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_committed_config_loads_and_builds_its_model(path):
    cfg = load_config(path)
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert cfg["data"]["batch_size"] >= 1 and cfg["data"]["patch_size"] >= 8
