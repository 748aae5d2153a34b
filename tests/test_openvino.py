"""The OpenVINO backend (the ``malleconv[openvino]`` extra): exported graphs compiled by
OpenVINO's CPU plugin, one compiled model per input shape.

Skipped without openvino. Every shipped model is compared with PyTorch at 1x1, 37x53 and
64x96 (float32); the 512x512 and 1024x768 checks, the PSNR on CBSD68 and CC15 and the
bfloat16 cost are in ``benchmarks/onnx_parity.py``.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from conftest import synthetic_image

SHIPPED = ["mallenet-s", "mallenet-s-gray", "mallenet-s-real"]
SIZES = [(1, 1), (37, 53), (64, 96)]


@pytest.fixture(scope="module")
def openvino():
    pytest.importorskip("onnx")
    return pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def cache(tmp_path_factory, openvino):
    """A fresh export cache for this module's tests (each shipped model exported once)."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("openvino-cache")
    mp.setenv("MALLECONV_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(autouse=True)
def _two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def graphs(cache):
    from malleconv.inference import prepare_model

    torch.set_num_threads(2)
    return {name: prepare_model(name, backend="openvino") for name in SHIPPED}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_matches_pytorch(name, graphs):
    from malleconv.models import load_model

    net, graph = load_model(name), graphs[name]
    assert graph.backend == "openvino"
    channels = 1 if name.endswith("gray") else 3
    g = torch.Generator().manual_seed(1)
    for h, w in SIZES:
        x = torch.rand(2, channels, h, w, generator=g)
        with torch.no_grad():
            if name == "mallenet-s-real":
                cap = torch.tensor([75.0, 4.0])
                want, level = net(x, None, strength=0.8, max_level=cap, return_level=True)
                got, got_level = graph(x, None, strength=0.8, max_level=cap, return_level=True)
                torch.testing.assert_close(got_level, level, rtol=1e-5, atol=1e-4)
                if (h, w) == (37, 53):  # a given sigma runs the denoiser, as in PyTorch
                    torch.testing.assert_close(graph(x, 20.0), net(x, 20.0), rtol=0, atol=1e-4)
            else:
                sigma = torch.tensor([25.0, 60.0])
                want, got = net(x, sigma), graph(x, sigma)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4, msg=f"{name} at {h}x{w}")


def test_graph_is_the_openvino_target_with_its_metadata(graphs):
    from malleconv.inference.onnx_backend import exported_graph

    path = exported_graph("mallenet-s", target="openvino")  # cached by the graphs fixture
    assert path.name.endswith("-openvino.onnx")
    meta = graphs["mallenet-s"].metadata  # read back by OpenVINO from the ONNX file
    assert meta["target"] == "openvino" and meta["name"] == "mallenet-s"
    assert meta["sigma_units"] == "8-bit (0-255)" and len(meta["weights_sha256"]) == 64


def test_outputs_are_not_overwritten_and_compiled_shapes_are_bounded(graphs, monkeypatch):
    from malleconv.inference import openvino_backend

    monkeypatch.setattr(openvino_backend, "COMPILED_SHAPES", 2)
    net = graphs["mallenet-s"]
    x = torch.rand(1, 3, 24, 24)
    first = net(x, 10.0)
    kept = first.clone()
    net(torch.rand(1, 3, 24, 24), 40.0)  # same shape: the same compiled model runs
    torch.testing.assert_close(first, kept, rtol=0, atol=0)
    for side in (8, 9, 10):
        net(torch.rand(1, 3, side, side), 10.0)
    assert [shape[0][1] for shape in net.session._compiled] == [(1, 3, 9, 9), (1, 3, 10, 10)]


def test_denoise_with_openvino_matches_torch(graphs):
    import malleconv

    img = synthetic_image(3, 70, 90)
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 20, img.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    for options in [{}, {"sigma": 20, "tile": 48, "overlap": 8}, {"strength": 0.6}]:
        want, got = {}, {}
        a = malleconv.denoise(noisy, report=want, **options)
        b = malleconv.denoise(noisy, report=got, backend="openvino", **options)
        assert want == got, options
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, options


def test_bfloat16_is_close_to_float32(graphs):
    import malleconv
    from malleconv.evaluation.metrics import psnr

    img = synthetic_image(4, 64, 80)
    noisy = np.clip(img + np.random.default_rng(1).normal(0, 25, img.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    f32 = malleconv.denoise(noisy, 25, backend="openvino")
    bf16 = malleconv.denoise(noisy, 25, backend="openvino", precision="bfloat16")
    # Rounding the activations to 8 significant bits moves a few output levels, no more
    # than the denoising itself changes the image (the cost on test sets: onnx_parity.py).
    assert psnr(bf16, f32, data_range=255) > 40
    assert psnr(bf16, img, data_range=255) > psnr(noisy, img, data_range=255) + 3


def test_cli_denoise_with_openvino(graphs, tmp_path, capsys):
    from malleconv.cli import main
    from malleconv.io import read_image, write_image

    rng = np.random.default_rng(0)
    rgb = synthetic_image(5, 40, 56).astype(np.uint16) * 257
    noisy = np.clip(rgb + rng.normal(0, 3000, rgb.shape), 0, 65535).astype(np.uint16)
    alpha = rng.integers(0, 65536, (40, 56, 1), dtype=np.uint16)
    src = tmp_path / "in.png"
    write_image(src, np.concatenate([noisy, alpha], axis=2))
    outs = {}
    for backend in ("torch", "openvino"):
        dst = tmp_path / f"{backend}.png"
        argv = ["denoise", str(src), "-o", str(dst), "--backend", backend, "--no-progress"]
        assert main(argv + ["--tile", "32", "--tile-overlap", "8"]) == 0
        outs[backend] = read_image(dst).pixels
    a, b = outs["torch"], outs["openvino"]
    assert b.dtype == np.uint16 and b.shape == (40, 56, 4)
    assert np.array_equal(b[..., 3], alpha[..., 0])
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2
    bad = ["denoise", str(src), "-o", str(tmp_path / "x.png"), "--no-progress"]
    assert main(bad + ["--backend", "onnxruntime", "--precision", "bfloat16"]) == 2
    assert "runs precision float32" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_missing_extra_is_named(monkeypatch):
    from malleconv.inference import prepare_model

    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"malleconv\[openvino\]"):
        prepare_model("mallenet-s", backend="openvino")


def test_info_lists_the_backend(openvino, capsys):
    from malleconv.cli import main

    assert main(["info"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("backends"))
    assert "torch" in line and f"openvino {openvino.__version__.split('-')[0]}" in line
