"""Smoke tests of benchmark scripts that docs/ figures come from (tiny sizes, no timing claims)."""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from malleconv.cli.options import add_camera_noise_option
from malleconv.data.camera_noise import CameraNoiseRanges

ROOT = Path(__file__).resolve().parents[1]


def _load_benchmark(name: str, folder: str = "benchmarks"):
    """The module of ``<folder>/<name>.py`` (benchmarks and scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peer_speed_writes_a_row_per_model_with_mallenet_s_first(tmp_path):
    # Our own models only: the peers need spandrel, an optional extra.
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "peer_speed.py"),
        "--models",
        "mallenet-s",
        "dncnn-c",
        "--size",
        "16",
        "--repeat",
        "1",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
    ]
    # The recorded command is the one to rerun, with the data root as the variable.
    env = {**os.environ, "MALLECONV_DATA": str(tmp_path)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "peer_speed_16.json").read_text())
    assert data["meta"]["command"] == (
        "python benchmarks/peer_speed.py --models mallenet-s dncnn-c --size 16 --repeat 1 "
        "--threads 1 --out $MALLECONV_DATA"
    )
    assert [r["model"] for r in data["rows"]] == ["mallenet-s", "dncnn-c"]
    for row in data["rows"]:
        assert row["seconds"] > 0 and row["gflops"] > 0 and row["params_m"] > 0
        assert row["peak_rss_mb"] >= row["base_rss_mb"] > 0
    table = (tmp_path / "peer_speed_16.md").read_text()
    assert "| mallenet-s |" in table and "| 1.0x |" in table
    assert data["meta"]["size"] == 16


def test_peer_speed_rejects_bad_arguments(tmp_path):
    script = str(ROOT / "benchmarks" / "peer_speed.py")
    bad = [(["--models", "nope"], "--models"), (["--size", "12"], "--size")]
    if not torch.cuda.is_available():
        bad.append((["--device", "cuda"], "--device"))
    for args, word in bad:
        done = subprocess.run(
            [sys.executable, script, *args, "--out", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and word in done.stderr
    assert not list(tmp_path.glob("peer_speed*"))


def test_inference_speed_writes_every_setting_side_by_side(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "inference_speed.py")]
    cmd += ["--models", "mallenet-tiny", "--size", "32", "--repeat", "1", "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "inference_speed.json").read_text())
    (row,) = data["rows"]
    for setting in ("plain NCHW", "NCHW", "channels-last", "channels-last bf16"):
        assert row[setting] > 0
    assert isinstance(data["meta"]["native_bf16"], bool) and data["meta"]["cpu"]
    assert "| mallenet-tiny |" in (tmp_path / "inference_speed.md").read_text()
    # The command's allocator setting by default (glibc on Linux), glibc's own on request.
    opted_out = {"MALLECONV_NO_MALLOC_TUNING", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"}
    if sys.platform.startswith("linux") and not opted_out & set(os.environ):
        assert data["meta"]["allocator"] == "tune_allocator()"
    done = subprocess.run(
        cmd + ["--no-tune-allocator"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "inference_speed.json").read_text())
    assert data["meta"]["allocator"] == "glibc default"
    assert "allocator: glibc default" in (tmp_path / "inference_speed.md").read_text()


def test_denoise_memory_runs_each_precision_in_its_own_child(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "denoise_memory.py"), "--megapixels", "0.01"]
    cmd += ["--tile", "64", "--precision", "float32", "bfloat16", "--out", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny tiles: threads only contend
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "denoise_memory.json").read_text())
    assert [r["precision"] for r in data["runs"]] == ["float32", "bfloat16"]
    for run in data["runs"]:
        assert run["seconds"] > 0 and 0.05 < run["peak_rss_gb"] < 2 and run["status"] == "PASS"
    assert "| bfloat16 |" in (tmp_path / "denoise_memory.md").read_text()


def test_readme_headline_table_matches_the_measured_and_published_files():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "headline.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_headline_check_fails_on_a_hand_edited_table(tmp_path):
    readme = (ROOT / "README.md").read_text()
    edited = tmp_path / "README.md"
    edited.write_text(
        readme.replace("| **mallenet-s** (ours) | 1.14 M |", "| **mallenet-s** (ours) | 1.00 M |")
    )
    assert edited.read_text() != readme
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "headline.py"),
            "--check",
            "--readme",
            str(edited),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "out of date" in done.stderr


def test_noise_routing_picks_the_threshold_that_scores_best():
    routing = _load_benchmark("noise_routing")
    # White noise reads about 1 and is denoised better by the white model; camera noise
    # reads about 3 and is denoised better by the blind model; clean crops are not scored.
    rows = [
        {"kind": "white 15", "ratio": 1.05, "white": 34.0, "blind": 33.0},
        {"kind": "white 15", "ratio": 1.35, "white": 33.0, "blind": 32.5},
        {"kind": "camera", "ratio": 3.0, "white": 30.0, "blind": 35.0},
        {"kind": "camera", "ratio": 1.45, "white": 34.0, "blind": 34.5},
        {"kind": "clean", "ratio": 2.2, "white": 50.0, "blind": 40.0},
    ]
    text, best = routing.table(rows)
    assert best == 1.4  # both white rows to the white model, both camera rows to the blind
    assert "| 1.4 | 33.50 | 34.75 | 40.00 | 33.50 | 34.12 | 40% |" in text


def test_noise_routing_splits_camera_noise_by_level():
    routing = _load_benchmark("noise_routing")
    rows = [
        {"kind": "camera", "ratio": 3.0, "level": 4.0, "white": 36.0, "blind": 38.0},
        {"kind": "camera", "ratio": 1.1, "level": 5.0, "white": 37.0, "blind": 36.0},
        {"kind": "camera", "ratio": 3.0, "level": 20.0, "white": 25.0, "blind": 30.0},
        {"kind": "white 15", "ratio": 1.0, "level": 15.0, "white": 34.0, "blind": 33.0},
    ]
    text = routing.camera_bands(rows, 1.3)
    # The mild band: one crop to the blind model (38), one to the white model (37).
    assert "| 0-6 | 2 | 37.50 | 37.00 | 36.50 |" in text
    assert "| 12 and above | 1 | 30.00 | 30.00 | 25.00 |" in text
    assert "6-12" not in text  # no crop in that band
    assert routing.camera_bands([{k: v for k, v in rows[0].items() if k != "level"}], 1.3) == ""


def test_cc15_levels_scans_oracle_levels_and_strengths(tmp_path):
    from malleconv.io import write_image

    levels = _load_benchmark("cc15_levels", "research")
    folder = tmp_path / "real" / "CC15"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(40, 200, 48, dtype=np.float64), (48, 1))[..., None].repeat(3, 2)
    noise = rng.normal(0, 8, clean.shape)
    write_image(folder / "cam_1_mean.png", clean.astype(np.uint8))
    write_image(folder / "cam_1_real.png", np.clip(clean + noise, 0, 255).round().astype(np.uint8))

    rows = levels.scan(tmp_path, "mallenet-s-real", [0.5, 1.0], [1.0], [1.0], 4.0)
    (row,) = rows
    assert 7 < row["std"] < 9
    # The oracle column is the best of the constant levels, and a level near the truth
    # denoises this flat ramp far beyond its noisy input; so does the per-pixel oracle map.
    assert row["oracle"] == max(row["x0.5"], row["x1"])
    assert row["x1"] > row["input"] + 3
    assert row["l1"] > row["input"] + 3
    text = levels.table(rows, "python research/cc15_levels.py --x", [0.5, 1.0], [1.0], [1.0])
    assert "| **mean** |" in text and "cam_1" in text and "map 1 x local RMS" in text
    assert "Made by `python research/cc15_levels.py --x`" in text


def test_validation_benchmarks_reject_unknown_or_bad_camera_noise_settings():
    for script in (
        "benchmarks/blind_validation.py",
        "benchmarks/noise_routing.py",
        "research/noise_stats.py",
    ):
        done = subprocess.run(
            [sys.executable, str(ROOT / script), "--data", "x"] + ["--camera-noise", "jpeg_prob=2"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, script
        assert "--camera-noise" in done.stderr and "jpeg_prob" in done.stderr


def test_camera_noise_option_parses_settings_into_ranges_and_names_bad_values(capsys):
    ap = argparse.ArgumentParser(prog="x")
    add_camera_noise_option(ap, example="jpeg_prob=0.5")
    assert ap.parse_args([]).camera_noise == CameraNoiseRanges()
    ranges = ap.parse_args(["--camera-noise", "jpeg_prob=0.5", "smooth_sigma=[0.5,1.5]"])
    assert ranges.camera_noise.jpeg_prob == 0.5
    assert ranges.camera_noise.smooth_sigma == (0.5, 1.5)
    for bad, named in (
        ("smooth_sigma=[1,", "smooth_sigma"),
        ("no_such=1", "no_such"),
        ("jpeg_prob", "name=value"),
    ):
        with pytest.raises(SystemExit):
            ap.parse_args(["--camera-noise", bad])
        err = capsys.readouterr().err
        assert "--camera-noise" in err and named in err, err


def test_pixel_shuffle_check_denoises_the_four_sub_images_and_reassembles_them():
    check = _load_benchmark("pixel_shuffle_check", "research")
    noisy = torch.rand(1, 3, 8, 6)

    def width(x):  # tells which size each call saw
        return torch.full_like(x, float(x.shape[-1]))

    out = check.four_ways(width, noisy)
    assert torch.equal(out["direct"], torch.full_like(noisy, 6.0))
    assert torch.equal(out["sub-images"], torch.full_like(noisy, 3.0))
    assert torch.equal(out["mean of both"], torch.full_like(noisy, 4.5))
    # Half of the low band (6) replaced by the half-resolution pass's (3).
    assert torch.allclose(out["half-res low band"], torch.full_like(noisy, 4.5))
    identity = check.four_ways(lambda x: x, noisy)
    assert torch.equal(identity["sub-images"], noisy)
    # A model that changes nothing leaves the image as it is: the two low bands cancel.
    assert torch.allclose(identity["half-res low band"], noisy)
    assert check.to_tensor(np.zeros((7, 5, 3), np.uint8)).shape == (1, 3, 6, 4)


def test_noise_stats_reads_white_noise_as_white_and_grain_as_coarse():
    stats = _load_benchmark("noise_stats", "research")
    rng = np.random.default_rng(0)
    clean = np.full((128, 128, 3), 128.0)
    white = clean + rng.normal(0, 5, clean.shape)
    std, corr1, _, _, _, luma8, balance = stats.noise_stats(white, clean)
    assert abs(std - 5) < 0.2 and abs(corr1) < 0.05
    assert 0.85 < luma8 < 1.15 and 0.2 < balance < 0.3
    # Grain two pixels wide (values repeated over 2x2 blocks) over weak white noise.
    grain = white + np.kron(rng.normal(0, 10, (64, 64, 1)), np.ones((2, 2, 3)))
    _, corr1, _, _, _, _, balance = stats.noise_stats(grain, clean)
    assert 0.35 < corr1 < 0.45 and balance > 5  # half the neighbours share a block: 0.4
    # A scene's finest-scale share: white noise reads 4; the same softened far less.
    speckle = np.clip(white + rng.normal(0, 40, clean.shape), 0, 255).astype(np.uint8)
    assert 3.6 < stats.scene_sharpness(speckle) < 4.4
    tmp = np.kron(speckle[::2, ::2], np.ones((2, 2, 1), np.uint8))  # 2-pixel blocks: no 1-px detail
    assert stats.scene_sharpness(tmp) < 0.01


def test_blind_validation_reports_the_level_read_against_the_noise_std():
    validation = _load_benchmark("blind_validation")

    class ReadsTheStd(torch.nn.Module):
        """Returns its input, and as the level map the image's std (8-bit units): on a
        flat crop that is the std of the noise added to it."""

        def forward(self, noisy, sigma=None, *, strength=1.0, return_level=False):
            level = torch.full_like(noisy[:, :1], float(noisy.std()) * 255 * strength)
            return (noisy, level) if return_level else noisy

    crops = [(f"flat{i}", np.full((32, 32, 3), 60 + 40 * i, np.uint8)) for i in range(3)]
    r = validation.score(ReadsTheStd(), crops, draws=2)
    assert r["clean level"] < 1e-3
    assert r["camera std"] > 0
    assert abs(r["camera level"] - r["camera std"]) < 0.05 * r["camera std"]
    assert r["camera level corr"] > 0.99


def test_slice_conv_ab_loads_a_second_copy_of_the_operator_package():
    ab = _load_benchmark("slice_conv_ab", "research")
    copy = ab._load(ROOT / ab.OPERATOR, "malleconv_ops_copy")
    from malleconv import slice_conv

    assert copy.slice_conv is not slice_conv
    x = torch.rand(1, 2, 9, 7)
    grid = torch.rand(1, 2, 1, 3, 3, 2, 3)
    assert torch.equal(copy.slice_conv(x, grid, groups=2), slice_conv(x, grid, groups=2))


def test_batch_speed_reports_loaders_needed_per_recipe(tmp_path, image_folder):
    speed = _load_benchmark("batch_speed", "research")
    white = tmp_path / "white.yaml"
    white.write_text("data: {patch_size: 32, batch_size: 4, workers: 2}\n")
    camera = tmp_path / "camera.yaml"
    camera.write_text("data: {patch_size: 32, batch_size: 4, camera_noise_prob: 1.0}\n")
    out = tmp_path / "out"
    argv = ["--data", str(image_folder), "--configs", str(white), str(camera), "--batches", "2"]
    assert speed.main([*argv, "--step-seconds", "1e-6", "--out", str(out)]) == 0
    rows = json.loads((out / "batch_speed.json").read_text())["rows"]
    assert [r["camera_noise_prob"] for r in rows] == [0.0, 1.0]
    assert [r["workers_set"] for r in rows] == [2, 0]
    for r in rows:
        pixels = 4 * 32 * 32
        assert r["pixels_per_second"] == pytest.approx(pixels / r["seconds_per_batch"], rel=0.01)
        # A step this short needs a loader per microsecond of batch making.
        assert r["workers_needed"] == pytest.approx(r["seconds_per_batch"] * 1e6, rel=0.01)
    assert "| loaders set | loaders needed |" in (out / "batch_speed.md").read_text()
    with pytest.raises(SystemExit):
        speed.main([*argv, "--step-seconds", "0", "--out", str(out)])


def test_cc15_levels_local_noise_rms_follows_where_the_noise_is():
    levels = _load_benchmark("cc15_levels", "research")
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 2, (64, 96, 3))
    noise[:, 48:] *= 5  # std 2 on the left half, 10 on the right
    rms = levels.local_noise_rms(noise, 3.0)[0, 0].numpy()
    assert rms.shape == (64, 96)
    assert 1.5 < rms[:, :30].mean() < 2.5
    assert 9 < rms[:, 66:].mean() < 11


def test_strength_tradeoff_scores_noisy_and_clean_photos_per_strength(tmp_path):
    from malleconv.io import write_image

    tradeoff = _load_benchmark("strength_tradeoff", "research")
    rng = np.random.default_rng(2)
    clean = np.tile(np.linspace(40, 200, 48), (48, 1))[..., None].repeat(3, 2)
    cc15 = tmp_path / "real" / "CC15"
    cc15.mkdir(parents=True)
    write_image(cc15 / "cam_1_mean.png", clean.astype(np.uint8))
    noisy = np.clip(clean + rng.normal(0, 8, clean.shape), 0, 255).round().astype(np.uint8)
    write_image(cc15 / "cam_1_real.png", noisy)
    for name in tradeoff.CLEAN_SETS:
        (tmp_path / "test" / name).mkdir(parents=True)
        write_image(tmp_path / "test" / name / "a.png", clean.astype(np.uint8))

    rows = tradeoff.scan(tmp_path, "mallenet-s-real", [0.5, 2.0])
    assert [r["strength"] for r in rows] == [0.5, 2.0]
    for r in rows:
        assert r["clean_min"] <= r["clean"] and r["references_min"] <= r["references"]
    # More strength removes more: of the noise, and of a clean photo's own detail (this
    # ramp's flat areas have no grain at all, which says nothing of noise: no floor cap).
    assert rows[1]["cc15"] > rows[0]["cc15"]
    assert rows[1]["clean"] < rows[0]["clean"]
    text = tradeoff.table(rows, "python research/strength_tradeoff.py --x")
    assert "| 0.5 |" in text and "| 2 |" in text
    assert "Made by `python research/strength_tradeoff.py --x`" in text


def test_photo_mode_runs_every_check_and_writes_its_report(tmp_path):
    from malleconv.io import write_image

    photo_mode = _load_benchmark("photo_mode")
    rng = np.random.default_rng(3)
    clean = np.tile(np.linspace(40, 200, 64), (64, 1))[..., None].repeat(3, 2)
    clean = (clean + rng.normal(0, 0.8, clean.shape)).round().clip(0, 255).astype(np.uint8)
    noisy = np.clip(clean + rng.normal(0, 8, clean.shape), 0, 255).round().astype(np.uint8)
    cc15 = tmp_path / "real" / "CC15"
    cc15.mkdir(parents=True)
    write_image(cc15 / "cam_1_mean.png", clean)
    write_image(cc15 / "cam_1_real.png", noisy)
    for name in ("CBSD68", "CleanPhotos", "Kodak24", "McMaster"):
        (tmp_path / "test" / name).mkdir(parents=True)
        write_image(tmp_path / "test" / name / "a.png", clean)
    out = tmp_path / "report"
    argv = ["--data", str(tmp_path), "--sigmas", "25", "--repeat", "1", "--size", "64"]
    assert photo_mode.main([*argv, "--out", str(out)]) == 0
    text = (out / "photo_mode.md").read_text()
    assert "| CleanPhotos: output against input, mean |" in text
    assert "| film scans | 2 |" in text and "CleanPhotos/a.png" in text
    res = json.loads((out / "photo_mode.json").read_text())
    assert res["clean"]["clean photos"]["per_image"][0]["noise"] == "clean"


def test_onnx_parity_calibration_feeds_every_input_of_both_graphs(tmp_path):
    """The int8-static variant calibrates on feeds that must name every graph input."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import onnx
    from PIL import Image

    import malleconv

    parity = _load_benchmark("onnx_parity")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(images / "a.png")
    for name, blind in (("mallenet-s", False), ("mallenet-s-real", True)):
        path = tmp_path / f"{name}.onnx"
        malleconv.export_onnx(malleconv.load_model(name), path)
        inputs = [i.name for i in onnx.load(str(path)).graph.input]
        reader = parity._calibration_reader(images, inputs, blind, count=1)
        feed = reader.get_next()
        assert sorted(feed) == sorted(inputs), name
        assert reader.get_next() is None


def test_coarse_grain_chooses_the_largest_free_gain_and_writes_its_report(tmp_path, image_folder):
    coarse_grain = _load_benchmark("coarse_grain")
    result = {
        "clean": {"none": 50.0, "a": 50.0, "b": 50.0, "c": 49.9},
        "camera": {"none": 33.0, "a": 32.9, "b": 33.0, "c": 34.0},
        "upscaled": {"none": 30.0, "a": 31.5, "b": 30.5, "c": 31.0},
    }
    # a costs camera 0.1 dB, c costs the clean crops 0.1 dB: b, the only free gain.
    assert coarse_grain.choose(result, ["a", "b", "c"]) == "b"
    assert coarse_grain.choose({k: {"none": 1.0, "a": 1.0} for k in result}, ["a"]) is None
    out = tmp_path / "report"
    argv = ["--data", str(image_folder), "--holdout", "2", "--crop", "64", "--draws", "1",
            "--ratio", "2", "5", "--out", str(out)]
    assert coarse_grain.main(argv) == 0
    res = json.loads((out / "coarse_grain.json").read_text())
    assert set(res["result"]) >= {"clean", "camera", "camera, upscaled heavy", "white 25"}
    assert res["ratios"] == [2.0, 5.0]
    assert "| camera, upscaled heavy |" in (out / "coarse_grain.md").read_text()


def test_onnx_int8_variants_leave_their_group_and_the_glue_in_float32():
    """Each partial variant of research/onnx_int8.py keeps in float32 the nodes of its group
    and the graph's glue outside the network's modules, nothing else (node names as the
    exporter writes them)."""
    from types import SimpleNamespace

    int8 = _load_benchmark("onnx_int8", "research")

    def node(name, op="Conv"):
        return SimpleNamespace(name=name, op_type=op)

    glue = [node("/net/Concat", "Concat"), node("/Mul", "Mul"), node("/net/Slice", "Slice")]
    head0 = node("/net/heads.0/Conv")
    expand0 = node("/net/encoders.0/encoders.0.0/body/body.0/Conv")
    residual0 = node("/net/encoders.0/encoders.0.0/Add", "Add")
    resize0 = node("/net/decoders.0/body/body.1/conv/Resize", "Resize")
    grid1 = node("/net/decoders.1/body/body.1/conv/to_grid/Conv")
    expand1 = node("/net/encoders.1/encoders.1.0/body/body.0/Conv")
    fuse2 = node("/net/fuse.2/Conv")
    last = node("/net/tail/tail.1/Conv")
    graph = SimpleNamespace(node=[*glue, head0, expand0, residual0, resize0, grid1, expand1,
                                  fuse2, last])
    expected = {
        "MalleConv layers (slice-and-conv and predictors)": [resize0, grid1],
        "first and last convolutions (heads, tail)": [head0, last],
        "level 0 (full resolution)": [head0, expand0, residual0, resize0, last],
        "levels 1-3": [grid1, expand1, fuse2],
        "level 0's additions": [residual0],
        "level 0's MalleConv": [resize0],
    }
    assert set(expected) == set(int8.GROUPS)
    for group, nodes in expected.items():
        kept = sorted(n.name for n in [*glue, *nodes])
        assert sorted(int8._excluded(graph, group)) == kept, group
