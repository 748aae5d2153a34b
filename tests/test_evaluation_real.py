"""Tests for malleconv.evaluation.real: real noisy photos scored against clean references."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from malleconv.evaluation import evaluate_real, find_pairs, format_real_table
from malleconv.evaluation.metrics import psnr
from malleconv.inference import estimate_sigma
from malleconv.io import read_image, write_image


def _scene(seed: int, h: int = 40, w: int = 56) -> tuple[np.ndarray, np.ndarray]:
    """A smooth clean image and a noisy shot of it (noise std 8 in 8-bit units)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    clean = 128 + 80 * np.sin(x / 6.0 + seed)[:, :, None] * np.cos(y / 9.0)[:, :, None]
    clean = np.clip(np.rint(clean + np.array([0, 15, -15])), 0, 255).astype(np.uint8)
    noisy = np.clip(np.rint(clean + rng.normal(0, 8, clean.shape)), 0, 255).astype(np.uint8)
    return noisy, clean


@pytest.fixture
def pairs_dir(tmp_path):
    folder = tmp_path / "CCtest"
    for i, scene in enumerate(("b_scene", "a_scene")):
        noisy, clean = _scene(i)
        write_image(folder / f"{scene}_real.png", noisy)
        write_image(folder / f"{scene}_mean.png", clean)
    return folder


def box3(noisy: torch.Tensor, sigma: float | None) -> torch.Tensor:
    """3 x 3 box filter per channel when sigma > 0 (None: estimated), else the identity."""
    if sigma is None:
        sigma = estimate_sigma(noisy)
    if sigma <= 0:
        return noisy
    c = noisy.shape[1]
    padded = torch.nn.functional.pad(noisy, (1, 1, 1, 1), mode="replicate")
    return torch.nn.functional.conv2d(padded, torch.full((c, 1, 3, 3), 1 / 9), groups=c)


def test_find_pairs_sorted_and_errors(pairs_dir, tmp_path):
    pairs = find_pairs(pairs_dir)
    assert [scene for scene, _, _ in pairs] == ["a_scene", "b_scene"]
    assert all(n.name == f"{s}_real.png" and c.name == f"{s}_mean.png" for s, n, c in pairs)
    write_image(pairs_dir / "lonely_real.png", _scene(5)[0])
    with pytest.raises(ValueError, match="lonely_real.png"):
        find_pairs(pairs_dir)
    (tmp_path / "empty").mkdir()
    write_image(tmp_path / "empty" / "x.png", _scene(6)[0])
    with pytest.raises(ValueError, match="no image pairs"):
        find_pairs(tmp_path / "empty")
    # Two files of one name: which is the photo? Said, not one silently dropped.
    (pairs_dir / "lonely_real.png").unlink()
    write_image(pairs_dir / "a_scene_real.bmp", _scene(7)[0])
    with pytest.raises(ValueError, match=r"a_scene_real\.(bmp|png) and a_scene_real\.(bmp|png)"):
        find_pairs(pairs_dir)


def test_scores_match_an_independent_computation(pairs_dir, tmp_path):
    out = tmp_path / "out"
    summary = evaluate_real(box3, [pairs_dir], ["auto", 0, 10], out_dir=out, progress=False)
    per = summary["CCtest"]
    images = [(read_image(n).pixels, read_image(c).pixels) for _, n, c in find_pairs(pairs_dir)]
    assert per["input"]["psnr"] == pytest.approx(np.mean([psnr(n, c) for n, c in images]))
    # sigma 0 is the identity here: the output is the noisy input itself.
    assert per["0"]["psnr"] == pytest.approx(per["input"]["psnr"])
    assert per["10"]["psnr"] > per["input"]["psnr"] + 2  # a box filter helps on smooth scenes
    want_auto = np.mean([estimate_sigma(n.astype(np.float32) / 255) for n, _ in images])
    assert per["auto"]["sigma_mean"] == pytest.approx(want_auto, rel=1e-5)
    assert 5 < per["auto"]["sigma_mean"] < 12  # the noise is white, std 8
    saved = json.loads((out / "summary.json").read_text())["results"]["CCtest"]
    assert saved["10"]["psnr"] == pytest.approx(per["10"]["psnr"])
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(rows) == 6 and {r["sigma"] for r in rows} == {"auto", "0", "10"}
    table = format_real_table(summary)
    assert "| CCtest |" in table and "sigma=auto" in table and "mean sigma" in table


def test_bad_arguments(pairs_dir):
    with pytest.raises(ValueError):
        evaluate_real(box3, [pairs_dir], [80], progress=False)
    with pytest.raises(ValueError, match="empty"):
        evaluate_real(box3, [pairs_dir], [], progress=False)
    write_image(pairs_dir / "c_real.png", _scene(3, 40, 56)[0])
    write_image(pairs_dir / "c_mean.png", _scene(3, 40, 50)[1])
    with pytest.raises(ValueError, match="differ in size"):
        evaluate_real(box3, [pairs_dir], [10], progress=False)


def test_eval_command_real(pairs_dir, tmp_path, capsys, monkeypatch):
    from malleconv.cli.main import main
    from malleconv.models import create_model, save_model

    torch.manual_seed(0)
    model = create_model("mallenet-tiny")
    with torch.no_grad():
        torch.nn.init.normal_(model.tail[-1].weight, std=0.05)
    weights = save_model(model, tmp_path / "tiny.safetensors", half=False)
    monkeypatch.setenv("MALLECONV_DATA", str(tmp_path / "data"))
    (tmp_path / "data" / "real").mkdir(parents=True)
    pairs_dir.rename(tmp_path / "data" / "real" / "CCtest")  # found by its bare name
    args = ["eval", "--model", str(weights), "--real", "--data", "CCtest", "--threads", "1"]
    code = main([*args, "--sigma", "auto", "10", "--no-progress", "--out", str(tmp_path / "o")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "noisy input" in printed and "sigma=auto" in printed and "sigma=10" in printed
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["results"]["CCtest"]["10"]
    assert main(["eval", "--model", str(weights), "--data", "CCtest", "--sigma", "auto"]) == 2
    assert "--sigma auto needs --real" in capsys.readouterr().err
