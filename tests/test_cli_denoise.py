"""Tests of ``malleconv denoise`` (run in-process through ``malleconv.cli.main``).

They exercise the command, not the shipped weights (tests/test_pretrained.py does that), so
a small random ``mallenet-tiny`` is exported to a temporary ``.safetensors`` file and passed
with ``--model``: it runs in milliseconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_image
from PIL import Image as PILImage

from malleconv.cli import main
from malleconv.io import read_image, write_image
from malleconv.models import create_model, save_model


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread (small shared test machines; see tests/test_inference.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model("mallenet-tiny")
    with torch.no_grad():  # a fresh MalleNet is the identity: make it change the image
        torch.nn.init.normal_(model.tail[-1].weight, std=0.05)
    return save_model(model, tmp_path_factory.mktemp("model") / "tiny.safetensors", half=False)


def _noisy(seed: int = 0, h: int = 40, w: int = 48, dtype=np.uint8) -> np.ndarray:
    clean = synthetic_image(seed, h, w).astype(np.float64) / 255
    noisy = clean + np.random.default_rng(seed).normal(0, 20 / 255, clean.shape)
    top = np.iinfo(dtype).max
    return np.clip(np.rint(noisy * top), 0, top).astype(dtype)


def _save(path: Path, pixels: np.ndarray | None = None, **kw) -> Path:
    write_image(path, _noisy() if pixels is None else pixels, **kw)
    return path


def _run(capsys, weights: Path, *args: str) -> tuple[int, str, str]:
    code = main(["denoise", *map(str, args), "--model", str(weights)])
    out, err = capsys.readouterr()
    return code, out, err


def test_single_file_to_explicit_path(tmp_path, capsys, weights):
    src = _save(tmp_path / "in.png")
    dst = tmp_path / "result" / "clean.png"
    code, out, err = _run(capsys, weights, src, "-o", dst)
    assert code == 0, err
    img = read_image(dst)
    assert img.pixels.shape == (40, 48, 3) and img.pixels.dtype == np.uint8
    assert not np.array_equal(img.pixels, _noisy())
    assert "estimated" in out and "sigma" in out  # auto sigma is printed per file
    assert "done 1, failed 0, skipped 0" in out


def test_fixed_sigma_and_threads(tmp_path, capsys, weights):
    src = _save(tmp_path / "in.png")
    code, out, err = _run(
        capsys, weights, src, "-o", tmp_path / "out", "--sigma", "15", "--threads", "1"
    )
    assert code == 0, err
    assert "sigma 15.00, given" in out
    assert torch.get_num_threads() == 1
    assert (tmp_path / "out" / "in_denoised.png").is_file()


def test_corrupt_file_is_reported_and_others_processed(tmp_path, capsys, weights):
    folder = tmp_path / "in"
    _save(folder / "a.png")
    (folder / "b_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    _save(folder / "c.jpg")
    code, out, err = _run(capsys, weights, folder, "-o", tmp_path / "out")
    assert code == 1
    assert "b_corrupt.png" in err
    assert (tmp_path / "out" / "a_denoised.png").is_file()
    assert (tmp_path / "out" / "c_denoised.jpg").is_file()
    assert not (tmp_path / "out" / "b_corrupt_denoised.png").exists()
    assert "done 2, failed 1" in out


def test_missing_file(tmp_path, capsys, weights):
    good = _save(tmp_path / "good.png")
    code, out, err = _run(capsys, weights, good, tmp_path / "missing.png", "-o", tmp_path / "out")
    assert code == 1
    assert "missing.png" in err
    assert (tmp_path / "out" / "good_denoised.png").is_file()
    code, out, err = _run(capsys, weights, tmp_path / "missing.png", "-o", tmp_path / "out2")
    assert code == 2
    assert "missing.png" in err and "no input image" in err


def test_existing_output_needs_overwrite(tmp_path, capsys, weights):
    src = _save(tmp_path / "in.png")
    dst = tmp_path / "out" / "in_denoised.png"
    dst.parent.mkdir()
    dst.write_bytes(b"keep me")
    code, out, err = _run(capsys, weights, src, "-o", tmp_path / "out")
    assert code != 0
    assert dst.read_bytes() == b"keep me"
    assert "--overwrite" in err and "skipped 1" in out

    code, out, err = _run(capsys, weights, src, "-o", tmp_path / "out", "--overwrite")
    assert code == 0, err
    assert read_image(dst).pixels.shape == (40, 48, 3)


def test_existing_explicit_output_file(tmp_path, capsys, weights):
    src = _save(tmp_path / "in.png")
    dst = _save(tmp_path / "out.png", np.zeros((4, 4), np.uint8))
    code, _, _ = _run(capsys, weights, src, "-o", dst)
    assert code == 1
    assert read_image(dst).pixels.shape == (4, 4)
    code, _, err = _run(capsys, weights, src, "-o", dst, "--overwrite")
    assert code == 0, err
    assert read_image(dst).pixels.shape == (40, 48, 3)


@pytest.mark.parametrize("sigma", ["80", "-1", "nan", "loud"])
def test_sigma_out_of_range_is_a_usage_error(tmp_path, capsys, weights, sigma):
    src = _save(tmp_path / "in.png")
    code, out, err = _run(capsys, weights, src, "-o", tmp_path / "out.png", "--sigma", sigma)
    assert code == 2
    assert "sigma" in err and "[0, 75]" in err
    assert not (tmp_path / "out.png").exists()


def test_missing_model_file_is_a_usage_error(tmp_path, capsys):
    src = _save(tmp_path / "in.png")
    missing = tmp_path / "nope.safetensors"
    code = main(["denoise", str(src), "-o", str(tmp_path / "o.png"), "--model", str(missing)])
    err = capsys.readouterr().err
    assert code == 2
    assert "nope.safetensors" in err


def test_damaged_or_mismatched_model_files_are_usage_errors(tmp_path, capsys, weights):
    """A model file that cannot be loaded gets one line naming it, exit 2, no traceback."""
    src = _save(tmp_path / "in.png")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not weights")
    junk.with_suffix(".json").write_text(weights.with_suffix(".json").read_text())
    other = save_model(create_model("plain-cnn"), tmp_path / "other.safetensors", half=False)
    other.with_suffix(".json").write_text(weights.with_suffix(".json").read_text())
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(weights.read_bytes())
    broken.with_suffix(".json").write_text("{not json")
    for model, reason in ((junk, "not a safetensors weights file"),
                          (other, "the weights do not fit the network"),
                          (broken, "not a model description")):
        code = main(["denoise", str(src), "-o", str(tmp_path / "o.png"), "--model", str(model)])
        err = capsys.readouterr().err
        assert code == 2, err
        assert f"{model.stem}." in err and reason in err and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_output_through_a_link_onto_the_input_is_refused(tmp_path, capsys, weights):
    """The same file reached through a linked folder or a hard link is the input."""
    real = tmp_path / "real"
    src = _save(real / "in.png")
    before = src.read_bytes()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    os.link(src, tmp_path / "hard.png")
    for out in (tmp_path / "link" / "in.png", tmp_path / "hard.png"):
        code, _, err = _run(capsys, weights, src, "-o", out, "--overwrite")
        assert code == 1 and "refusing to write the output onto the input file" in err
    assert src.read_bytes() == before


def test_reading_and_writing_warnings_are_the_commands(tmp_path, capsys, weights):
    """Warnings of reading or writing a file come as the command's own lines, naming it."""
    import tifffile

    pages = np.stack([_noisy(i)[..., 0] for i in range(2)])
    tifffile.imwrite(tmp_path / "pages.tif", pages, photometric="minisblack")
    code, _, err = _run(capsys, weights, tmp_path / "pages.tif", "-o", tmp_path / "out.tif")
    assert code == 0
    assert "malleconv denoise: warning: " in err and "pages.tif: holds 2 frames" in err
    assert "UserWarning" not in err
    np.testing.assert_array_equal(read_image(tmp_path / "out.tif").pixels.shape, pages[0].shape)


def test_bad_tile_and_device_are_usage_errors(tmp_path, capsys, weights):
    src = _save(tmp_path / "in.png")
    assert _run(capsys, weights, src, "-o", tmp_path / "o.png", "--tile", "8")[0] == 2
    assert _run(capsys, weights, src, "-o", tmp_path / "o.png", "--tile-overlap", "300")[0] == 2
    assert _run(capsys, weights, src, "-o", tmp_path / "o.png", "--device", "nonsense")[0] == 2


def test_folder_recursion_keeps_relative_paths(tmp_path, capsys, weights):
    root = tmp_path / "in"
    _save(root / "top.png")
    _save(root / "a" / "x.png")
    _save(root / "a" / "b" / "y.tif")
    code, out, err = _run(capsys, weights, root, "-o", tmp_path / "out", "--recursive")
    assert code == 0, err
    for rel in ("top_denoised.png", "a/x_denoised.png", "a/b/y_denoised.tif"):
        assert (tmp_path / "out" / rel).is_file(), rel

    code, out, err = _run(capsys, weights, root, "-o", tmp_path / "flat")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "flat").rglob("*")) == ["top_denoised.png"]


def test_glob_format_and_suffix(tmp_path, capsys, weights):
    _save(tmp_path / "in" / "p.jpg")
    _save(tmp_path / "in" / "q.bmp")
    _save(tmp_path / "in" / "skip.png")
    pattern = str(tmp_path / "in" / "[pq].*")
    code, out, err = _run(
        capsys, weights, pattern, "-o", tmp_path / "out", "--format", "png", "--suffix", "_dn"
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p_dn.png", "q_dn.png"]


def test_sixteen_bit_png_round_trip(tmp_path, capsys, weights):
    rgb16 = _save(tmp_path / "rgb16.png", _noisy(dtype=np.uint16))
    gray16 = _save(tmp_path / "gray16.png", _noisy(dtype=np.uint16)[..., 0])
    code, out, err = _run(capsys, weights, rgb16, gray16, "-o", tmp_path / "out")
    assert code == 0, err
    rgb = read_image(tmp_path / "out" / "rgb16_denoised.png").pixels
    gray = read_image(tmp_path / "out" / "gray16_denoised.png").pixels
    assert rgb.dtype == np.uint16 and rgb.shape == (40, 48, 3)
    assert gray.dtype == np.uint16 and gray.shape == (40, 48)
    assert np.unique(rgb % 257).size > 1  # real 16-bit values, not 8-bit ones scaled up


def test_rgba_alpha_and_icc_profile_kept(tmp_path, capsys, weights):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgba = np.dstack([_noisy(), np.linspace(0, 255, 40 * 48).reshape(40, 48).astype(np.uint8)])
    src = _save(tmp_path / "rgba.png", rgba, icc_profile=icc)
    code, out, err = _run(capsys, weights, src, "-o", tmp_path / "o.png")
    assert code == 0, err
    res = read_image(tmp_path / "o.png")
    np.testing.assert_array_equal(res.pixels[..., 3], rgba[..., 3])
    assert res.icc_profile == icc


def test_palette_image(tmp_path, capsys, weights):
    src = tmp_path / "pal.png"
    PILImage.fromarray(_noisy()).convert("P", palette=PILImage.Palette.ADAPTIVE).save(src)
    code, out, err = _run(capsys, weights, src, "-o", tmp_path / "o.png")
    assert code == 0, err
    assert read_image(tmp_path / "o.png").pixels.shape == (40, 48, 3)


def test_tiled_big_image(tmp_path, capsys, weights):
    src = _save(tmp_path / "big.png", _noisy(h=100, w=90))
    code, out, err = _run(
        capsys, weights, src, "-o", tmp_path / "o.png", "--tile", "48", "--tile-overlap", "8"
    )
    assert code == 0, err
    assert read_image(tmp_path / "o.png").pixels.shape == (100, 90, 3)
    assert "tiles" in err  # progress bar over tiles


def test_image_named_output_with_many_inputs_is_an_error(tmp_path, capsys, weights):
    a, b = _save(tmp_path / "a.png"), _save(tmp_path / "b.png")
    code, out, err = _run(capsys, weights, a, b, "-o", tmp_path / "out.png")
    assert code == 2
    assert "folder" in err


def test_help_subprocess():
    exe = Path(sys.executable).parent / "malleconv"  # .venv/bin/malleconv
    if not exe.is_file():
        pytest.skip(f"console script not installed next to {sys.executable}")
    res = subprocess.run(
        [str(exe), "denoise", "--help"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0
    for option in ("--sigma", "--model", "--tile", "--overwrite", "--recursive", "--format"):
        assert option in res.stdout


def test_self_ensemble_flag(tmp_path, capsys, weights):
    src = _save(tmp_path / "in.png")
    code, _, err = _run(capsys, weights, src, "-o", tmp_path / "a.png", "--sigma", "20")
    assert code == 0, err
    code, _, err = _run(
        capsys, weights, src, "-o", tmp_path / "b.png", "--sigma", "20", "--self-ensemble"
    )
    assert code == 0, err
    a, b = (read_image(tmp_path / n).pixels for n in ("a.png", "b.png"))
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_precision_flag(tmp_path, capsys, weights):
    src = _save(tmp_path / "in.png")
    code, _, err = _run(capsys, weights, src, "-o", tmp_path / "a.png", "--sigma", "20")
    assert code == 0, err
    code, _, err = _run(
        capsys, weights, src, "-o", tmp_path / "b.png", "--sigma", "20", "--precision", "bfloat16"
    )
    assert code == 0, err
    a, b = (read_image(tmp_path / n).pixels.astype(int) for n in ("a.png", "b.png"))
    assert a.shape == b.shape and 0 < np.abs(a - b).max() <= 3
    with pytest.raises(SystemExit) as exc:
        main(["denoise", str(src), "-o", str(tmp_path / "c.png"), "--precision", "fp16"])
    assert exc.value.code == 2 and "--precision" in capsys.readouterr().err


def test_cli_runs_the_model_as_the_api_does(tmp_path, capsys, weights):
    """The command folds BatchNorm and uses channels-last like denoise(model=NAME): same
    pixels as the API, where a plain load_model() module would be much slower."""
    from malleconv.inference import denoise

    pixels = _noisy(h=48, w=64)
    src = _save(tmp_path / "in.png", pixels)
    code, _, err = _run(capsys, weights, src, "-o", tmp_path / "out.png", "--sigma", "20")
    assert code == 0, err
    np.testing.assert_array_equal(
        read_image(tmp_path / "out.png").pixels, denoise(pixels, 20, str(weights))
    )


def test_low_auto_estimate_gets_a_camera_noise_hint(tmp_path, capsys, weights):
    clean = synthetic_image(3, 40, 48)  # no noise: auto reads close to 0
    _save(tmp_path / "clean.png", clean)
    _save(tmp_path / "noisy.png")  # sigma 20 white noise: auto reads about 20
    code, out, err = _run(capsys, weights, tmp_path / "clean.png", "-o", tmp_path / "a")
    assert code == 0, err
    assert "read below 3 on 1 image(s)" in err and "mallenet-s-real" in err
    code, out, err = _run(capsys, weights, tmp_path / "noisy.png", "-o", tmp_path / "b")
    assert code == 0, err
    assert "read below" not in err
    code, out, err = _run(
        capsys, weights, tmp_path / "clean.png", "-o", tmp_path / "c", "--sigma", "1"
    )
    assert code == 0, err
    assert "read below" not in err  # a given sigma is the user's choice: no hint


def test_default_mode_prints_each_images_choice(tmp_path, capsys):
    import torch

    from malleconv.data.camera_noise import add_camera_noise

    white = _save(tmp_path / "white.png", _noisy(h=96, w=96))  # white noise of 20
    clean = torch.from_numpy(synthetic_image(1, 96, 96).astype(np.float32) / 255)
    camera = add_camera_noise(clean.permute(2, 0, 1)[None], torch.Generator().manual_seed(0))
    pixels = (camera[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    cam = _save(tmp_path / "camera.png", pixels)
    code = main(["denoise", str(white), str(cam), "-o", str(tmp_path / "out"), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = {line.split(" -> ")[0]: line for line in out.splitlines() if " -> " in line}
    assert "white noise: mallenet-s, estimated" in lines[str(white)]
    assert "camera noise: mallenet-s-real" in lines[str(cam)]
