"""The in-browser denoiser (web/) in headless Chromium, against ``malleconv denoise``.

The page runs the automatic mode, as ``malleconv denoise`` does with no ``--sigma`` and no
``--model``. One browser session (web/tests/drive.mjs, playwright-core driving the
system's chromium) loads the page from the same server ``malleconv web`` runs, gives it a
file that is not an image and one that is too large (a message each, and the page keeps
working), then the bundled noisy photo (tests/data/web-noisy-256.png, camera noise,
scripts/web_fixture.py), downloads the result, moves the strength slider, downloads
again; reloads the page for a photo with white noise (web-white-256.png) and a clean one
(web-clean-256.png); and reloads it with 128-pixel tiles to denoise the noisy photo in 9
blended tiles. The decisions (model, kind, noise floor, level cap) and the outputs are
compared with ``malleconv denoise --backend onnxruntime`` on the same file with the same
options. The automatic mode's readings (web/src/noise.js) are also checked against
Python's on arrays, in node (web/tests/noise_check.mjs).

Needs node, chromium (``MALLECONV_CHROMIUM``, default /usr/bin/chromium), ``npm ci`` in
web/ and ``malleconv export``: skipped with the reason where one is missing, unless
``MALLECONV_WEB_TEST=required`` (scripts/test.sh sets it in CI), where that fails.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
PHOTO = ROOT / "tests" / "data" / "web-noisy-256.png"
WHITE = ROOT / "tests" / "data" / "web-white-256.png"  # white noise, std 15
CLEAN_PHOTO = ROOT / "tests" / "data" / "web-clean-256.png"  # no noise: its own reference
GRAIN = ROOT / "tests" / "data" / "web-grain-256.png"  # grain 2 px wide: the half pass
CLEAN = ROOT / "src" / "malleconv" / "assets" / "sample.png"
CHROMIUM = os.environ.get("MALLECONV_CHROMIUM", "/usr/bin/chromium")
REQUIRED = os.environ.get("MALLECONV_WEB_TEST") == "required"


def _missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    from malleconv.cli import web

    if shutil.which("node") is None:
        return "node is not installed"
    if not Path(CHROMIUM).is_file():
        return f"no chromium at {CHROMIUM} (apt-get install chromium; scripts/test.sh does)"
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        return "web/node_modules is missing: run `npm ci --prefix web`"
    try:
        web.check_built(WEB)
    except FileNotFoundError as err:
        return str(err)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed (the ONNX extra)"
    try:
        web.prepare(WEB)
    except OSError as err:
        return f"the models could not be exported: {err}"
    return None


@pytest.fixture(scope="module")
def page_server():
    why = _missing()
    if why is not None:
        if REQUIRED:
            pytest.fail(f"MALLECONV_WEB_TEST=required but {why}")
        pytest.skip(why)
    from malleconv.cli import web

    server, url = web.serve_in_background(WEB)
    yield url
    server.shutdown()
    server.server_close()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@functools.cache
def _backend_option() -> list[str]:
    """``--backend onnxruntime`` where ``malleconv denoise`` has it (the page runs the
    same ONNX graph), else nothing: the torch model, and only the dB tolerance holds."""
    help_text = subprocess.run(
        [sys.executable, "-m", "malleconv", "denoise", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return ["--backend", "onnxruntime"] if "--backend" in help_text else []


# What `malleconv denoise` prints for an image in the automatic mode.
_DECISION = re.compile(
    r"\(sigma (?P<sigma>[\d.]+), (?P<text>(?P<kind>clean|white noise|camera noise): "
    r"(?P<model>[\w.-]+), (?P<how>[^,]+), noise floor (?P<floor>[\d.]+) "
    r"\(level at most (?P<cap>[\d.]+)(?:, at least (?P<bound>[\d.]+))?\)"
    r"(?P<half>; low band from a half-resolution pass)?)"
)


def _command(out: Path, *options: str, photo: Path = PHOTO) -> np.ndarray:
    return _command_decided(out, *options, photo=photo)[0]


def _command_decided(out: Path, *options: str, photo: Path = PHOTO):
    """``malleconv denoise`` in its automatic mode (no --sigma, no --model) on ``photo``:
    (its output, what it printed of its decision as a regex match)."""
    cmd = [sys.executable, "-m", "malleconv", "denoise", str(photo), "-o", str(out)]
    cmd += ["--no-progress", *_backend_option(), *options]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    decided = _DECISION.search(done.stdout)
    assert decided is not None, done.stdout
    return _rgb(out), decided


@pytest.fixture(scope="module")
def session(page_server, tmp_path_factory):
    """One browser session through every step; returns (driver output, folder)."""
    from malleconv.cli import web

    tmp = tmp_path_factory.mktemp("web")
    (tmp / "notes.txt").write_text("not a photo\n")
    (tmp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # header, no image
    # 60 MP, over the page's 50 MP limit, yet a small file: one flat colour.
    Image.new("L", (10000, 6000), 128).save(tmp / "huge.png")
    steps = [
        {"open": str(tmp / "notes.txt")},
        {"waitMessage": True},
        {"open": str(tmp / "broken.png")},
        {"waitMessage": True},
        {"open": str(tmp / "huge.png")},
        {"waitMessage": True},
        {"open": str(PHOTO)},
        {"waitRuns": 1},
        {"eval": "document.getElementById('message').hidden"},
        {"download": str(tmp / "page_s1.png")},
        {"strength": 0.5},
        {"waitRuns": 2},
        {"download": str(tmp / "page_s05.png")},
        {"eval": "window.malleconv.runs"},  # steps[13]: the runs of this page
        # A fresh page for the white-noise and the clean photo (strength 1).
        {"goto": page_server},
        {"open": str(WHITE)},
        {"waitRuns": 1},
        {"download": str(tmp / "page_white.png")},
        {"eval": "document.getElementById('decision').textContent"},  # steps[18]
        {"open": str(CLEAN_PHOTO)},
        {"waitRuns": 2},
        {"download": str(tmp / "page_clean.png")},
        {"eval": "document.getElementById('decision').textContent"},  # steps[22]
        {"eval": "window.malleconv.runs"},  # steps[23]
        {"goto": page_server + "?tile=128&overlap=32"},
        {"open": str(PHOTO)},
        {"waitRuns": 1},
        {"download": str(tmp / "page_t128.png")},
        {"eval": "window.malleconv.runs"},  # steps[28]
        # A fresh page for coarse grain (the half-resolution pass).
        {"goto": page_server},
        {"open": str(GRAIN)},
        {"waitRuns": 1},
        {"download": str(tmp / "page_grain.png")},
        {"eval": "document.getElementById('decision').textContent"},  # steps[-2]
        {"eval": "window.malleconv.runs"},  # steps[-1]
    ]
    start = time.perf_counter()
    result = web.drive({"url": page_server, "chromium": CHROMIUM, "steps": steps}, timeout=300)
    result["seconds"] = time.perf_counter() - start
    result["first_runs"], result["tiled_runs"] = result["steps"][13], result["steps"][28]
    white_run, clean_run = result["steps"][23]
    result["auto"] = {
        "white": (white_run, result["steps"][18], tmp / "page_white.png"),
        "clean": (clean_run, result["steps"][22], tmp / "page_clean.png"),
        "grain": (result["steps"][-1][0], result["steps"][-2], tmp / "page_grain.png"),
    }
    return result, tmp


def test_bad_files_get_a_message_and_the_page_keeps_working(session):
    result, _ = session
    not_image, broken, huge = result["steps"][1], result["steps"][3], result["steps"][5]
    assert "notes.txt" in not_image and "JPEG, PNG or WebP" in not_image
    assert "broken.png could not be decoded" in broken
    assert "10000x6000" in huge and "50 MP" in huge
    # After three refusals the photo still runs, and the message is cleared.
    assert result["steps"][7] == "done" and result["steps"][8] is True


def test_page_matches_the_command(session, tmp_path):
    result, tmp = session
    page = _rgb(tmp / "page_s1.png")
    cli = _command(tmp_path / "cli.png")  # default tiles: one for this photo, as the page
    clean = _rgb(CLEAN)
    noisy = _rgb(PHOTO)
    run = result["first_runs"][0]
    assert run["tiles"] == 1 and run["backend"] == "wasm"
    same = float(np.mean(page == cli))
    print(
        f"page {_psnr(page, clean):.3f} dB, command {_psnr(cli, clean):.3f} dB, noisy "
        f"{_psnr(noisy, clean):.3f} dB; identical bytes {same:.4%}, max difference "
        f"{np.abs(page.astype(int) - cli.astype(int)).max()}; page {run['seconds']:.2f} s "
        f"({run['threads']} threads), browser session {result['seconds']:.1f} s"
    )
    assert abs(_psnr(page, clean) - _psnr(cli, clean)) < 0.5
    assert _psnr(page, clean) > _psnr(noisy, clean) + 1.0  # it did denoise
    if _backend_option():  # the same graph: identical but for float rounding
        assert same > 0.999 and _psnr(page, cli) > 50


def _check_decision(run: dict, decided: re.Match, photo: Path) -> None:
    """The page's automatic-mode decision on ``photo`` (``run["decision"]``) equals the
    command's printed one (``decided``) and Python's readings of the file."""
    from malleconv.inference.auto import HalfPass, level_bound, level_cap
    from malleconv.inference.noise_floor import read_noise_floor
    from malleconv.inference.noise_level import read_noise
    from malleconv.io import read_image

    page = run["decision"]
    assert (page["model"], page["kind"]) == (decided["model"], decided["kind"])
    pixels = read_image(photo).pixels
    reading, floor = read_noise(pixels), read_noise_floor(pixels)
    expected = {
        "sigma": reading.sigma,
        "coarseSigma": reading.coarse_sigma,
        "floor": floor.level,
        "floorFine": floor.fine,
        "floorCoarse": floor.coarse,
        "cap": level_cap(floor),
        "minLevel": level_bound(floor) or 0.0,
    }
    half = HalfPass.of(pixels) if page["halfPass"] else None
    if half is not None:
        expected.update(halfMaxLevel=half.cap, halfMinLevel=half.bound or 0.0)
    assert page["halfPass"] == (decided["half"] is not None)
    for key, value in expected.items():
        assert page[key] == pytest.approx(value, abs=1e-3), key
    # The command prints two decimals.
    assert page["floor"] == pytest.approx(float(decided["floor"]), abs=0.0051)
    assert page["cap"] == pytest.approx(float(decided["cap"]), abs=0.0051)
    assert page["minLevel"] == pytest.approx(float(decided["bound"] or 0.0), abs=0.0051)
    assert run["level"] == pytest.approx(float(decided["sigma"]), abs=0.0051)


def test_page_decides_as_the_command(session, tmp_path):
    """The noisy photo: camera noise, mallenet-s-real with the floor's cap, as the command."""
    result, _ = session
    _, decided = _command_decided(tmp_path / "cli.png")
    assert (decided["model"], decided["kind"]) == ("mallenet-s-real", "camera noise")
    _check_decision(result["first_runs"][0], decided, PHOTO)


@pytest.mark.parametrize(
    ("name", "photo", "reference", "model", "kind"),
    [
        ("white", WHITE, CLEAN, "mallenet-s", "white noise"),
        ("clean", CLEAN_PHOTO, CLEAN_PHOTO, "mallenet-s", "clean"),
        ("grain", GRAIN, CLEAN, "mallenet-s-real", "camera noise"),
    ],
)
def test_page_runs_the_automatic_mode(session, tmp_path, name, photo, reference, model, kind):
    """White noise goes to mallenet-s, a clean photo comes back nearly unchanged: the
    page decides and denoises as the command does."""
    result, _ = session
    run, text, path = result["auto"][name]
    cli, decided = _command_decided(tmp_path / "cli.png", photo=photo)
    assert (decided["model"], decided["kind"]) == (model, kind)  # the fixture is what it is
    _check_decision(run, decided, photo)
    assert decided["text"] in text, (text, decided["text"])  # shown as the command prints it
    page, ref = _rgb(path), _rgb(reference)
    same = float(np.mean(page == cli))
    print(
        f"{name}: {text} page {_psnr(page, ref):.3f} dB, command {_psnr(cli, ref):.3f} dB, "
        f"input {_psnr(_rgb(photo), ref):.3f} dB; identical bytes {same:.4%}"
    )
    if same < 1.0:
        assert abs(_psnr(page, ref) - _psnr(cli, ref)) < 0.5
    if _backend_option():
        assert same > 0.999 and _psnr(page, cli) > 50
    if name == "white":
        assert _psnr(page, ref) > _psnr(_rgb(photo), ref) + 3.0  # it did denoise
    elif name == "grain":
        assert run["decision"]["halfPass"] and decided["half"] is not None
        assert _psnr(page, ref) > _psnr(_rgb(photo), ref) + 1.0  # it did denoise
    else:
        assert _psnr(page, ref) > 40  # and left the clean photo nearly as it was


def _readings_in_node(
    cases: list[np.ndarray], tmp: Path, strength: float, merges=()
) -> dict:
    """web/src/noise.js on each array (float ``H x W x C`` or uint8 ``H x W x 3``, the
    latter as the page's RGBA bytes), and web/src/half.js on each ``(full, half)`` pair of
    float32 ``(C, H, W)`` / ``(C, ceil(H / 2), ceil(W / 2))`` arrays of ``merges``, through
    web/tests/noise_check.mjs."""
    from malleconv.cli import web

    spec = {"settings": web.auto_settings(), "strength": strength, "cases": [], "merges": []}
    for i, (full, half) in enumerate(merges):
        paths = [tmp / f"merge{i}_{k}.f32" for k in ("full", "half")]
        for path, a in zip(paths, (full, half), strict=True):
            path.write_bytes(np.ascontiguousarray(a, np.float32).tobytes())
        c, h, w = full.shape
        spec["merges"].append(
            {"file": str(paths[0]), "half": str(paths[1]), "channels": c, "height": h, "width": w}
        )
    for i, a in enumerate(cases):
        h, w, c = a.shape
        path = tmp / f"case{i}.bin"
        if a.dtype == np.uint8:
            rgba = np.concatenate([a, np.full((h, w, 1), 255, np.uint8)], axis=-1)
            path.write_bytes(rgba.tobytes())
            spec["cases"].append({"file": str(path), "width": w, "height": h, "rgba": True})
        else:
            path.write_bytes(np.ascontiguousarray(a.transpose(2, 0, 1), np.float32).tobytes())
            spec["cases"].append({"file": str(path), "width": w, "height": h, "channels": c})
    done = subprocess.run(
        ["node", str(WEB / "tests" / "noise_check.mjs"), "-"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_noise_readings_match_python(tmp_path):
    """web/src/noise.js against read_noise, read_noise_floor and the routing of
    malleconv.inference.auto, in node: odd and tiny sizes, flat blocks at the dark and
    bright limits, photos, and a big array (numpy's float32 block sums)."""
    if shutil.which("node") is None:
        if REQUIRED:
            pytest.fail("MALLECONV_WEB_TEST=required but node is not installed")
        pytest.skip("node is not installed")
    from torch import nn

    from malleconv.inference.auto import (
        HALF_PASS_RATIO,
        WHITE_MAX_RATIO,
        AutoDenoiser,
        HalfPass,
        Route,
        level_bound,
        level_cap,
    )
    from malleconv.inference.noise_floor import read_noise_floor
    from malleconv.inference.noise_level import read_noise

    rng = np.random.default_rng(3)
    cases = [rng.random(shape, dtype=np.float32) for shape in [
        (37, 53, 3), (1, 1, 3), (2, 2, 3), (3, 5, 3), (4, 4, 1), (7, 9, 3), (16, 16, 3),
        (17, 33, 3), (32, 32, 1),
    ]]  # fmt: skip
    cases.append(np.tile(np.linspace(0, 1, 64, dtype=np.float32), (48, 1))[..., None])
    for path in (PHOTO, WHITE, CLEAN_PHOTO, CLEAN):
        cases.append(_rgb(path))
    flat = np.full((96, 128, 3), 8, np.uint8)  # blocks exactly at the dark / bright limits
    flat[:, 64:] = 247
    flat[48:, :32] = 128
    cases += [flat, np.clip(flat + rng.integers(-1, 2, flat.shape), 0, 255).astype(np.uint8)]
    cases.append(
        np.clip(_rgb(CLEAN).astype(float) + rng.normal(0, 4, (256, 256, 3)), 0, 255)
        .round()
        .astype(np.uint8)
    )
    cases.append(rng.integers(0, 256, (600, 900, 3), dtype=np.uint8))
    # Noise two pixels wide (drawn at half size, enlarged): the blind route's lower bound.
    blotches = rng.normal(0, 8, (128, 128, 3)).repeat(2, axis=0).repeat(2, axis=1)
    cases.append(np.clip(_rgb(CLEAN).astype(float) + blotches, 0, 255).round().astype(np.uint8))
    # Grain wider still (smoothed, enlarged): the half-resolution pass.
    wide = rng.normal(0, 12, (64, 64, 3))
    wide = (wide + np.roll(wide, 1, 0) + np.roll(wide, 1, 1) + np.roll(wide, 1, (0, 1))) / 2
    wide = wide.repeat(4, axis=0).repeat(4, axis=1)
    cases.append(np.clip(_rgb(CLEAN).astype(float) + wide, 0, 255).round().astype(np.uint8))
    # Busy at every scale, no flat area (gravel): the fine floor withholds the bound.
    busy = rng.normal(0, 30, (128, 128, 3)).repeat(2, axis=0).repeat(2, axis=1)
    busy = 128 + busy + rng.normal(0, 7, busy.shape)
    cases.append(np.clip(busy, 0, 255).round().astype(np.uint8))
    strength = 0.8
    merges = [(rng.random((3, h, w), dtype=np.float32), rng.random((3, (h + 1) // 2, (w + 1) // 2),
              dtype=np.float32)) for h, w in ((1, 1), (5, 8), (17, 12))]
    js_all = _readings_in_node(cases, tmp_path, strength, merges)
    out = js_all["cases"]
    auto = AutoDenoiser(nn.Identity(), nn.Identity(), strength=strength)
    bounded = halved = withheld = 0
    for a, js in zip(cases, out, strict=True):
        reading, floor = read_noise(a), read_noise_floor(a)
        got = (js["sigma"], js["coarseSigma"], js["floor"]["fine"], js["floor"]["coarse"])
        want = (reading.sigma, reading.coarse_sigma, floor.fine, floor.coarse)
        assert got == pytest.approx(want, abs=1e-9, rel=1e-12), a.shape
        ratio = js["ratio"] if js["ratio"] is not None else float("inf")
        assert ratio == pytest.approx(reading.ratio, rel=1e-12)
        cap, bound = level_cap(floor), level_bound(floor)
        white = reading.ratio < WHITE_MAX_RATIO
        route = Route(None, "", reading.sigma if white else None, reading, floor, cap)
        chosen = js["route"]
        assert chosen["model"] == ("mallenet-s" if white else "mallenet-s-real")
        assert chosen["kind"] == route.kind
        assert chosen["cap"] == pytest.approx(cap, rel=1e-12)
        if white:
            assert chosen["sigma"] == pytest.approx(auto.white_level(route), rel=1e-12)
            assert chosen["strength"] == 1
        else:
            assert chosen["maxLevel"] == pytest.approx(cap, rel=1e-12)
            assert chosen["minLevel"] == pytest.approx(0.0 if bound is None else bound, rel=1e-12)
            assert chosen["strength"] == strength
            bounded += bound is not None
            withheld += bound is None and level_bound(floor, max_fine=np.inf) is not None
            passes = bound is not None and reading.ratio >= HALF_PASS_RATIO
            assert chosen["halfPass"] == passes
            halved += passes
        half = HalfPass.of(a)
        got = (js["halfFloor"]["fine"], js["halfFloor"]["coarse"])
        assert got == pytest.approx((half.floor.fine, half.floor.coarse), abs=1e-9, rel=1e-12)
        levels = (js["halfLevels"]["maxLevel"], js["halfLevels"]["minLevel"])
        assert levels == pytest.approx((half.cap, half.bound or 0.0), rel=1e-12)
    # The bound, its fine-floor limit and the half pass were each decided alike at least once.
    assert bounded and halved and withheld
    from malleconv.inference.auto import half_resolution, merge_half

    for (full, half), js in zip(merges, js_all["merges"], strict=True):
        f, hf = torch.from_numpy(full)[None], torch.from_numpy(half)[None]
        low = half_resolution(f)[0].numpy().ravel()
        np.testing.assert_allclose(js["low"], low, rtol=0, atol=1e-7)
        merged = merge_half(f, hf)[0].numpy().ravel()
        np.testing.assert_allclose(js["merged"], merged, rtol=0, atol=2e-6)


def test_the_page_tiles_as_the_command_does_by_default():
    """The page's default tiling is read from models/auto.json, which carries the command's
    defaults, so that both give the same pixels without options."""
    from malleconv.cli import web
    from malleconv.cli.main import build_parser
    from malleconv.inference.tiling import COMMAND_OVERLAP, COMMAND_TILE

    args = build_parser().parse_args(["denoise", "in.png", "-o", "out.png"])
    assert (args.tile, args.tile_overlap) == (COMMAND_TILE, COMMAND_OVERLAP)
    settings = web.auto_settings()
    assert (settings["tile"], settings["tile_overlap"]) == (COMMAND_TILE, COMMAND_OVERLAP)
    app = (web.default_root() / "src" / "app.js").read_text()
    assert 'intParam("tile", null, 16)' in app  # no default of its own: the worker's


def test_prepare_rewrites_the_settings_when_they_change(tmp_path, monkeypatch):
    """models/auto.json follows the Python constants: rewritten when one changes."""
    from malleconv.cli import web
    from malleconv.inference import auto

    path = web.ensure_auto(tmp_path)
    assert json.loads(path.read_text()) == web.auto_settings()
    assert json.loads(path.read_text())["floor_cap"] == auto.FLOOR_CAP
    stamp = path.stat().st_mtime_ns
    web.ensure_auto(tmp_path)  # unchanged: not rewritten
    assert path.stat().st_mtime_ns == stamp
    monkeypatch.setattr(auto, "FLOOR_CAP", auto.FLOOR_CAP + 1.0)
    web.ensure_auto(tmp_path)
    assert json.loads(path.read_text())["floor_cap"] == auto.FLOOR_CAP


def test_page_tiles_match_the_command(session, tmp_path):
    result, tmp = session
    page = _rgb(tmp / "page_t128.png")
    cli = _command(tmp_path / "cli_t128.png", "--tile", "128", "--tile-overlap", "32")
    clean = _rgb(CLEAN)
    assert result["tiled_runs"][0]["tiles"] == 9
    assert abs(_psnr(page, clean) - _psnr(cli, clean)) < 0.5
    if _backend_option():
        assert np.mean(page == cli) > 0.999 and _psnr(page, cli) > 50


def test_page_runs_on_webgpu(page_server, tmp_path):
    """The page's WebGPU path (onnxruntime-web's WebGPU build and execution provider), on
    the software WebGPU adapter Debian's chromium ships (SwiftShader): the output equals the
    command's as the WebAssembly path's does. Correctness only: SwiftShader is no measure of
    a GPU's speed. A small crop, since it runs about 60x slower than WebAssembly here."""
    from malleconv.cli import web

    crop = tmp_path / "crop.png"
    Image.fromarray(_rgb(PHOTO)[:96, :128]).save(crop)
    probe = "(async () => !!(navigator.gpu && await navigator.gpu.requestAdapter()))()"
    spec = {"url": page_server + "?backend=webgpu", "chromium": CHROMIUM, "webgpu": True}
    if not web.drive({**spec, "steps": [{"eval": probe}]}, timeout=120)["steps"][0]:
        if REQUIRED:
            pytest.fail("MALLECONV_WEB_TEST=required but chromium offers no WebGPU adapter")
        pytest.skip("chromium offers no WebGPU adapter here (no SwiftShader Vulkan)")
    steps = [{"open": str(crop)}, {"waitRuns": 1}, {"download": str(tmp_path / "page.png")},
             {"eval": "window.malleconv.runs"}]
    result = web.drive({**spec, "timeout": 300_000, "steps": steps}, timeout=400)
    run = result["steps"][-1][0]
    assert run["backend"] == "webgpu" and run["tiles"] == 1
    page = _rgb(tmp_path / "page.png")
    cli, decided = _command_decided(tmp_path / "cli.png", photo=crop)
    _check_decision(run, decided, crop)
    clean = _rgb(CLEAN)[:96, :128]
    same = float(np.mean(page == cli))
    print(f"WebGPU (SwiftShader): page {_psnr(page, clean):.3f} dB, command "
          f"{_psnr(cli, clean):.3f} dB; identical bytes {same:.4%}; {run['seconds']:.1f} s")
    assert abs(_psnr(page, clean) - _psnr(cli, clean)) < 0.5
    assert _psnr(page, clean) > _psnr(_rgb(crop), clean) + 1.0  # it did denoise
    if _backend_option():
        assert same > 0.999 and _psnr(page, cli) > 50


def test_strength_changes_the_output(session):
    result, tmp = session
    full, half = _rgb(tmp / "page_s1.png"), _rgb(tmp / "page_s05.png")
    noisy = _rgb(PHOTO)
    runs = result["first_runs"]
    assert [r["strength"] for r in runs] == [1.0, 0.5]
    assert runs[1]["level"] < runs[0]["level"]
    # Strength 0.5 keeps more of the input (grain) than strength 1.
    change = lambda out: np.abs(out.astype(int) - noisy.astype(int)).mean()  # noqa: E731
    assert change(half) < 0.8 * change(full)


def test_malleconv_web_serves_with_isolation_headers(page_server):
    """The command itself: starts, prints its address, sends COOP / COEP and wasm MIME."""
    import urllib.request

    proc = subprocess.Popen(
        [sys.executable, "-m", "malleconv", "web", "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[1]
        with urllib.request.urlopen(url + "vendor/ort/ort-wasm-simd-threaded.wasm") as r:
            assert r.headers["Content-Type"] == "application/wasm"
            assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        for name in ("mallenet-s-real.onnx", "mallenet-s.onnx", "auto.json"):
            with urllib.request.urlopen(url + "models/" + name) as r:
                assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
