"""Tests for malleconv.evaluation.protocol: the synthetic-noise benchmark."""

from __future__ import annotations

import csv
import json
import math
import sys

import numpy as np
import pytest
import torch

from malleconv.data import seed_for
from malleconv.evaluation import classical_denoiser, evaluate, format_table
from malleconv.io import read_image, write_image

H, W = 32, 48


def _smooth_rgb(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    base = 128 + 90 * np.sin(x / 7.0 + seed)[:, :, None] * np.cos(y / 5.0)[:, :, None]
    image = base + rng.normal(0, 5, size=(H, W, 3)) + np.array([0, 20, -20])
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@pytest.fixture
def sets(tmp_path):
    """Two tiny test sets: 'colour' (two RGB PNGs) and 'mixed' (gray 16-bit PNG + RGB BMP)."""
    colour = tmp_path / "colour"
    write_image(colour / "im1.png", _smooth_rgb(1))
    write_image(colour / "im2.png", _smooth_rgb(2))
    mixed = tmp_path / "mixed"
    write_image(mixed / "g16.png", _smooth_rgb(3)[:, :, 0].astype(np.uint16) * 257)
    write_image(mixed / "rgb.bmp", _smooth_rgb(4))
    return [colour, mixed]


def identity(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
    return noisy


def gaussian_blur(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
    """A fixed 5 x 5 Gaussian blur per channel (replicate padding)."""
    g = torch.exp(-((torch.arange(5, dtype=torch.float32) - 2) ** 2) / 2.0)
    kernel = (g[:, None] * g[None, :]) / g.sum() ** 2
    c = noisy.shape[1]
    padded = torch.nn.functional.pad(noisy, (2, 2, 2, 2), mode="replicate")
    return torch.nn.functional.conv2d(padded, kernel.expand(c, 1, 5, 5).contiguous(), groups=c)


def _figures(summary):
    return {
        (d, s): (v["psnr"], v["ssim"], v["images"])
        for d, per_sigma in summary.items()
        for s, v in per_sigma.items()
    }


def test_evaluation_is_deterministic(sets):
    first = evaluate(gaussian_blur, sets, [15, 25, 50], progress=False)
    second = evaluate(gaussian_blur, sets, [15, 25, 50], progress=False)
    assert _figures(first) == _figures(second)
    assert set(first) == {"colour", "mixed"}
    assert list(first["colour"]) == [15.0, 25.0, 50.0]
    stats = first["colour"][25]
    assert stats["images"] == 2 and stats["seconds_per_image"] >= 0
    assert 20 < stats["psnr"] < 40 and 0 < stats["ssim"] < 1
    # More noise, worse result.
    assert first["colour"][15]["psnr"] > first["colour"][25]["psnr"] > first["colour"][50]["psnr"]


def test_protocol_steps_match_independent_computation(sets):
    seen = {}

    def spy(noisy, sigma):
        seen[len(seen)] = noisy.clone()
        return identity(noisy, sigma)

    summary = evaluate(spy, sets[:1], [25], progress=False)
    scores = []
    for k, name in enumerate(["im1.png", "im2.png"]):
        clean8 = _smooth_rgb(k + 1)
        clean = torch.from_numpy(clean8.transpose(2, 0, 1).astype(np.float32) / 255)[None]
        gen = torch.Generator().manual_seed(seed_for(name, 25))
        expected_noisy = clean + torch.randn(clean.shape, generator=gen) * (25 / 255)
        assert torch.allclose(seen[k], expected_noisy, atol=1e-6)
        assert seen[k].min() < 0 or seen[k].max() > 1  # the input is not clipped
        out8 = np.rint(np.clip(expected_noisy[0].permute(1, 2, 0).numpy(), 0, 1) * 255)
        mse = np.mean((out8.astype(np.float64) - clean8) ** 2)
        scores.append(10 * math.log10(255**2 / mse))
    assert summary["colour"][25]["psnr"] == pytest.approx(np.mean(scores), abs=1e-4)


def test_outputs_written(sets, tmp_path):
    out_dir = tmp_path / "results"
    saved = tmp_path / "saved"
    summary = evaluate(
        gaussian_blur, sets, [25, 12.5], out_dir=out_dir, save_images=saved, progress=False
    )
    assert sorted(p.name for p in out_dir.iterdir()) == ["per_image.csv", "summary.json"]
    with open(out_dir / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    assert list(rows[0]) == ["dataset", "image", "sigma", "psnr", "ssim", "seconds"]
    assert {(r["dataset"], r["image"], r["sigma"]) for r in rows} >= {
        ("colour", "im1.png", "25"),
        ("mixed", "rgb.bmp", "12.5"),
    }
    document = json.loads((out_dir / "summary.json").read_text())
    assert document["results"]["colour"]["25"]["psnr"] == pytest.approx(
        summary["colour"][25]["psnr"]
    )
    assert document["results"]["mixed"]["12.5"]["images"] == 2

    output = read_image(saved / "mixed" / "12.5" / "rgb.png").pixels
    assert output.dtype == np.uint8 and output.shape == (H, W, 3)
    assert (saved / "colour" / "25" / "im2.png").is_file()
    # Re-running replaces earlier results instead of failing.
    evaluate(gaussian_blur, sets, [25], out_dir=out_dir, save_images=saved, progress=False)
    assert sorted(p.name for p in out_dir.iterdir()) == ["per_image.csv", "summary.json"]


def test_gray_evaluation(sets):
    channels = set()

    def spy(noisy, sigma):
        channels.add(noisy.shape[1])
        return gaussian_blur(noisy, sigma)

    gray = evaluate(spy, sets, [25], gray=True, progress=False)
    assert channels == {1}
    assert gray["mixed"][25]["images"] == 2
    channels.clear()
    evaluate(spy, sets, [25], progress=False)
    assert channels == {3}


def test_perfect_denoiser_gives_infinite_psnr(sets, tmp_path):
    summary = evaluate(identity, sets[:1], [0], out_dir=tmp_path / "r", progress=False)
    assert summary["colour"][0]["psnr"] == math.inf
    assert summary["colour"][0]["ssim"] == pytest.approx(1.0)
    document = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert document["results"]["colour"]["0"]["psnr"] is None  # strict JSON has no inf
    assert "| colour | inf / 1.0000 |" in format_table(summary)


def test_evaluation_errors(sets, tmp_path):
    with pytest.raises(ValueError, match="sigma"):
        evaluate(identity, sets, [80], progress=False)
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda x, s: x[:, :, 1:], sets, [25], progress=False)
    twin = tmp_path / "other" / "colour"
    write_image(twin / "x.png", _smooth_rgb(5))
    with pytest.raises(ValueError, match="colour"):
        evaluate(identity, [sets[0], twin], [25], progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        evaluate(identity, [tmp_path / "empty"], [25], progress=False)


def test_outputs_of_one_stem_keep_their_names_and_sigmas_count_once(sets, tmp_path):
    """``a.png`` and ``a.jpg`` are saved apart; a repeated sigma is scored once."""
    twins = tmp_path / "twins"
    write_image(twins / "a.png", _smooth_rgb(6))
    write_image(twins / "a.bmp", _smooth_rgb(7))
    write_image(twins / "b.png", _smooth_rgb(8))
    saved = tmp_path / "saved"
    summary = evaluate(gaussian_blur, [twins], [25, 25.0], out_dir=tmp_path / "res",
                       save_images=saved, progress=False)
    assert list(summary["twins"]) == [25.0]
    names = sorted(p.name for p in (saved / "twins" / "25").iterdir())
    assert names == ["a.bmp.png", "a.png.png", "b.png"]
    rows = (tmp_path / "res" / "per_image.csv").read_text().splitlines()
    assert len(rows) == 1 + 3


def test_evaluation_refuses_before_any_work(sets, tmp_path):
    """A result folder that is a file, or an image too small for SSIM, fails at once,
    naming it, before a single image is denoised."""
    calls = []

    def counting(noisy, sigma):
        calls.append(1)
        return noisy

    (tmp_path / "taken").write_text("x")
    with pytest.raises(NotADirectoryError, match="taken is a file"):
        evaluate(counting, sets, [25], out_dir=tmp_path / "taken", progress=False)
    small = tmp_path / "small"
    write_image(small / "a.png", _smooth_rgb(9))
    write_image(small / "z.png", _smooth_rgb(10)[:7])
    with pytest.raises(ValueError, match=r"z\.png: 48x7 pixels; SSIM needs"):
        evaluate(counting, [small], [25], progress=False)
    assert not calls


def test_eval_command_usage_errors(sets, capsys, monkeypatch):
    from malleconv.cli.main import main

    assert main(["eval", "--data", str(sets[0]), "--sigma", "25", "--threads", "-1"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "bm3d", None)
    assert main(["eval", "--method", "bm3d", "--data", str(sets[0]), "--sigma", "25"]) == 2
    assert "--method bm3d" in capsys.readouterr().err
    assert main(["info", "--model", "mallenet-tiny", "--size", "0"]) == 2
    assert "--size must be at least 1" in capsys.readouterr().err
    assert main(["eval", "--model", "mallenet-s", "--gray", "--data", str(sets[0]),
                 "--sigma", "25", "--no-progress"]) == 2
    assert "mallenet-s is a colour model" in capsys.readouterr().err


def test_format_table():
    summary = {
        "Set12": {15.0: {"psnr": 32.456, "ssim": 0.89123, "images": 12, "seconds_per_image": 0}},
        "BSD68": {
            15.0: {"psnr": 31.7, "ssim": 0.8901, "images": 68, "seconds_per_image": 0},
            25.0: {"psnr": 29.2, "ssim": 0.8276, "images": 68, "seconds_per_image": 0},
        },
    }
    assert format_table(summary).splitlines() == [
        "| Dataset | sigma=15 | sigma=25 |",
        "|---|---|---|",
        "| Set12 | 32.46 / 0.8912 | - |",
        "| BSD68 | 31.70 / 0.8901 | 29.20 / 0.8276 |",
    ]


@pytest.mark.parametrize(
    ("method", "module", "package"),
    [
        ("bm3d", "bm3d", "pip install bm3d"),
        ("nlm", "cv2", "pip install opencv-python-headless"),
    ],
)
def test_classical_denoiser_missing_package(monkeypatch, method, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ImportError, match=package):
        classical_denoiser(method)


def test_classical_denoiser_unknown():
    with pytest.raises(ValueError, match="bm3d"):
        classical_denoiser("wiener")


@pytest.mark.parametrize("method", ["bm3d", "nlm"])
def test_classical_denoisers_improve_psnr(sets, method):
    pytest.importorskip("bm3d" if method == "bm3d" else "cv2")
    denoiser = classical_denoiser(method)
    for gray in (False, True):
        noisy = evaluate(identity, sets[:1], [25], gray=gray, progress=False)
        denoised = evaluate(denoiser, sets[:1], [25], gray=gray, progress=False)
        assert denoised["colour"][25]["psnr"] > noisy["colour"][25]["psnr"] + 2


def test_eval_command_with_self_ensemble_and_precision(sets, tmp_path, capsys):
    """``malleconv eval --model PATH`` with ``--self-ensemble`` (the x8 ensemble) or
    ``--precision bfloat16`` runs end to end and changes the figures."""
    from malleconv.cli.main import main
    from malleconv.models import create_model, save_model

    torch.manual_seed(0)
    model = create_model("mallenet-tiny")
    with torch.no_grad():
        torch.nn.init.normal_(model.tail[-1].weight, std=0.05)
    weights = save_model(model, tmp_path / "tiny.safetensors", half=False)
    results = {}
    for flag in ([], ["--self-ensemble"], ["--precision", "bfloat16"]):
        out = tmp_path / ("-".join(flag) or "plain")
        code = main(
            [
                "eval",
                "--model",
                str(weights),
                "--data",
                str(sets[0]),
                "--sigma",
                "25",
                "--out",
                str(out),
                "--no-progress",
                "--threads",
                "1",
                *flag,
            ]
        )
        assert code == 0
        results[tuple(flag)] = json.loads((out / "summary.json").read_text())
    printed = capsys.readouterr().out
    assert "x8 self-ensemble" in printed and "(bfloat16)" in printed
    # An earlier run's results are replaced only when asked, and refused before any work.
    again = ["eval", "--model", str(weights), "--data", str(sets[0]), "--sigma", "25",
             "--out", str(tmp_path / "plain"), "--no-progress", "--threads", "1"]
    before = (tmp_path / "plain" / "summary.json").stat().st_mtime_ns
    assert main(again) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "plain" / "summary.json").stat().st_mtime_ns == before
    assert main([*again, "--overwrite"]) == 0
    capsys.readouterr()
    assert results[("--self-ensemble",)] != results[()]
    assert results[("--precision", "bfloat16")] != results[()]
    assert main(["eval", "--method", "nlm", "--data", str(sets[0]), "--self-ensemble"]) != 0
    assert "--self-ensemble applies to models" in capsys.readouterr().err
    assert main(["eval", "--method", "nlm", "--data", str(sets[0]), "--precision", "bfloat16"])
    assert "--precision applies to models" in capsys.readouterr().err


def test_eval_runs_a_model_exactly_as_denoise_does(tmp_path):
    """``malleconv eval``'s denoiser and ``denoise`` prepare the model by the same function:
    same outputs, with or without self-ensemble and bfloat16."""
    from malleconv.cli.evaluate import model_denoiser
    from malleconv.inference import denoise
    from malleconv.models import create_model, save_model

    torch.manual_seed(0)
    model = create_model("mallenet-tiny")
    with torch.no_grad():
        torch.nn.init.normal_(model.tail[-1].weight, std=0.05)
    weights = str(save_model(model, tmp_path / "tiny.safetensors", half=False))
    noisy = torch.rand(1, 3, H, W)
    for options in ({}, {"self_ensemble": True}, {"precision": "bfloat16"}):
        run = model_denoiser(weights, **options)
        with torch.inference_mode():
            got = run(noisy, 25.0).clamp(0, 1)
        assert torch.equal(got, denoise(noisy, 25, weights, **options))


def test_eval_strength_scales_the_level_as_denoise_does(sets, tmp_path, capsys):
    from malleconv.cli.evaluate import model_denoiser
    from malleconv.cli.main import main
    from malleconv.inference import denoise
    from malleconv.models import create_model, save_model

    torch.manual_seed(0)
    model = create_model("mallenet-tiny")
    with torch.no_grad():
        torch.nn.init.normal_(model.tail[-1].weight, std=0.05)
    weights = str(save_model(model, tmp_path / "tiny.safetensors", half=False))
    blind = str(save_model(create_model("mallenet-s-real"), tmp_path / "b.safetensors"))
    noisy = torch.rand(1, 3, H, W)
    with torch.inference_mode():
        got = model_denoiser(weights, strength=1.5)(noisy, 20.0).clamp(0, 1)
        auto = model_denoiser(blind, strength=0.5)(noisy, None).clamp(0, 1)
    assert torch.equal(got, denoise(noisy, 20, weights, strength=1.5))
    assert torch.equal(auto, denoise(noisy, None, blind, strength=0.5))
    args = ["eval", "--model", weights, "--data", str(sets[0]), "--sigma", "25"]
    assert main([*args, "--strength", "1.5", "--no-progress", "--threads", "1"]) == 0
    assert "strength 1.5" in capsys.readouterr().out
    assert main([*args, "--strength", "0"]) != 0
    assert main(["eval", "--method", "nlm", "--data", str(sets[0]), "--strength", "2"]) != 0


def test_eval_auto_with_a_blind_model_under_self_ensemble(sets, tmp_path, capsys):
    from malleconv.cli.main import main
    from malleconv.models import create_model, save_model

    torch.manual_seed(0)
    weights = save_model(create_model("mallenet-s-real"), tmp_path / "b.safetensors", half=False)
    args = ["eval", "--model", str(weights), "--data", str(sets[0]), "--sigma", "25", "--auto"]
    args += ["--self-ensemble", "--no-progress", "--threads", "1"]
    assert main(args) == 0
    assert "level not told" in capsys.readouterr().out


def test_classical_denoisers_share_the_denoiser_interface():
    pytest.importorskip("cv2")
    nlm = classical_denoiser("nlm")
    assert isinstance(nlm, torch.nn.Module)
    gen = torch.Generator().manual_seed(0)
    clean = torch.full((1, 3, 32, 32), 0.5)
    noisy = clean + torch.randn(clean.shape, generator=gen) * (20 / 255)
    told = nlm(noisy, 20.0)
    found = nlm(noisy, None)  # the level estimated from the input
    assert 15 < nlm.last_sigma < 25
    assert told.shape == found.shape == noisy.shape
    assert torch.equal(nlm(noisy, 0.0), noisy)
