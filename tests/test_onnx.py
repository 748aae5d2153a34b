"""The ONNX export and the ONNX backends: ONNX Runtime (the ``malleconv[onnx]`` extra) and
OpenVINO (``malleconv[openvino]``).

The export path of slice_conv is checked against the fast paths without ONNX; the tests of
a backend are skipped without its runtime. Every shipped model is exported once per target
into a temporary cache (``MALLECONV_CACHE``) and compared with PyTorch at 1x1, 37x53 and
64x96 by each backend; the 512x512 and 1024x768 checks, the PSNR on CBSD68 and CC15 and
OpenVINO's bfloat16 cost are in ``benchmarks/onnx_parity.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_image

from malleconv.ops import export_mode, slice_conv

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["mallenet-s", "mallenet-s-gray", "mallenet-s-real"]
BACKENDS = ["onnxruntime", "openvino"]
SIZES = [(1, 1), (37, 53), (64, 96)]


@pytest.mark.parametrize(
    "c_in, c_out, groups, size, cells",
    [
        (16, 16, 16, (37, 53), (5, 7)),  # depthwise, MalleNet's case
        (8, 16, 8, (33, 17), (3, 2)),  # depthwise with a channel multiplier
        (4, 6, 1, (37, 53), (5, 7)),  # dense
        (4, 6, 2, (19, 23), (4, 3)),  # grouped
        (5, 5, 5, (1, 1), (1, 1)),
        (8, 8, 8, (361, 363), (46, 46)),  # the banded forward of large inputs
    ],
)
def test_export_path_of_slice_conv_equals_slice_conv(c_in, c_out, groups, size, cells):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, c_in, *size, generator=g)
    grid = torch.randn(1, c_out, c_in // groups, 3, 3, *cells, generator=g) * 0.3
    bias = torch.randn(1, c_out, *cells, generator=g)
    want = slice_conv(x, grid, bias, groups=groups)
    with export_mode():
        got = slice_conv(x, grid, bias, groups=groups)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (7, 8), (8, 8), (9, 21), (16, 13)])
@pytest.mark.parametrize("reflect", [True, False])
def test_export_padding_equals_f_pad(size, reflect):
    """The graph's padding to whole multiples is the models' F.pad: reflect where every
    padded index reflects inside the image, else replicate on both axes."""
    from malleconv.ops import gather_pad_to_multiple

    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    h, w = size
    ph, pw = -h % 8, -w % 8
    mode = "reflect" if reflect and ph < h and pw < w else "replicate"
    want = torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode) if ph or pw else x
    assert torch.equal(gather_pad_to_multiple(x, 8, reflect=reflect), want)


@pytest.mark.parametrize("target", ["cpu", "web", "openvino"])
@pytest.mark.parametrize("top", [1.0, 1.5])
def test_export_forms_of_prelu_equal_prelu(target, top):
    from malleconv.layers.blocks import PReLU

    g = torch.Generator().manual_seed(0)
    act = PReLU(16)
    with torch.no_grad():  # slopes below 0, in (0, 1), at 1, and above 1 for top 1.5
        act.weight.copy_(torch.linspace(-0.5, top, 16))
    x = torch.randn(2, 16, 9, 7, generator=g) * 3
    with torch.no_grad():
        want = torch.nn.functional.prelu(x, act.weight)
        with export_mode(target):
            got = act(x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    if target != "cpu":  # PRelu itself (web), or x or a x as PReLU computes them (openvino)
        assert torch.equal(got, want)


def test_traced_graphs_hold_at_other_sizes():
    """torch.jit.trace records the export path, so a traced MalleConv2d or MalleNet is right
    at sizes other than the example's (the fast paths' size-dependent loops would be recorded
    as constants), and PReLU stays TorchScript's own."""
    from malleconv.layers import MalleConv2d
    from malleconv.models import create_model

    torch.manual_seed(0)
    layer = MalleConv2d(8, 8, 3, groups=8).eval()
    with torch.no_grad():  # a grid that varies over the image
        layer.to_grid.weight.normal_(0, 0.2)
    net = create_model("mallenet-tiny").eval()
    sigma = torch.tensor([20.0])
    with torch.no_grad():
        traced_layer = torch.jit.trace(layer, torch.rand(1, 8, 32, 40), check_trace=False)
        traced_net = torch.jit.trace(net, (torch.rand(1, 3, 32, 40), sigma), check_trace=False)
        for size in ((48, 24), (37, 53), (9, 130)):
            x = torch.rand(1, 8, *size)
            torch.testing.assert_close(traced_layer(x), layer(x), rtol=1e-5, atol=1e-5)
            y = torch.rand(1, 3, *size)
            torch.testing.assert_close(traced_net(y, sigma), net(y, sigma), rtol=1e-5, atol=1e-5)
    assert "prelu" in str(traced_net.inlined_graph)


def test_export_mode_refuses_unknown_targets():
    with pytest.raises(ValueError, match="cpu, web"):
        with export_mode("gpu"):
            pass


def test_export_path_refuses_guided_grids():
    x = torch.rand(1, 4, 8, 8)
    grid = torch.randn(1, 4, 1, 1, 1, 2, 1, 1)
    with export_mode(), pytest.raises(ValueError, match="unguided"):
        slice_conv(x, grid, groups=4, guide=torch.rand(1, 1, 8, 8))


# ------------------------------------------------------------------------ with a runtime


@pytest.fixture(scope="module")
def ort():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh export cache for this module's tests (each shipped model exported once per
    target)."""
    pytest.importorskip("onnx")
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("onnx-cache")
    mp.setenv("MALLECONV_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    pytest.importorskip(request.param)
    return request.param


@pytest.fixture(autouse=True)
def _two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_onnx_runtime_resize_is_torch_bilinear(ort, tmp_path):
    """ORT's Resize as the exporter writes F.interpolate(bilinear, align_corners=False):
    the same half-pixel geometry, clamped at the borders; non-integer scales differ by
    the float rounding of the source coordinate (about 2e-6 on values of order 1)."""

    class Up(torch.nn.Module):
        def forward(self, grid, like):
            return torch.nn.functional.interpolate(
                grid, size=like.shape[-2:], mode="bilinear", align_corners=False
            )

    path = tmp_path / "up.onnx"
    grid, like = torch.randn(1, 3, 5, 7), torch.zeros(1, 1, 37, 53)
    torch.onnx.export(
        Up(), (grid, like), str(path), dynamo=False, opset_version=17,
        input_names=["grid", "like"],
        dynamic_axes={"grid": {2: "gh", 3: "gw"}, "like": {2: "H", 3: "W"}},
    )  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    cases = [((5, 7), (37, 53)), ((1, 1), (1, 1)), ((3, 2), (24, 16)), ((2, 9), (5, 70))]
    for cells, size in cases:
        grid, like = torch.randn(1, 3, *cells), torch.zeros(1, 1, *size)
        want = Up()(grid, like).numpy()
        (got,) = session.run(None, {"grid": grid.numpy(), "like": like.numpy()})
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def graphs(backend, cache):
    from malleconv.inference import prepare_model

    # Through prepare_model's cache, which the later tests then reuse.
    torch.set_num_threads(2)
    return {name: prepare_model(name, backend=backend) for name in SHIPPED}


@pytest.fixture(scope="module")
def sessions(ort, cache):
    """ONNX Runtime's graphs, for the tests of that backend alone."""
    from malleconv.inference import prepare_model

    torch.set_num_threads(2)
    return {name: prepare_model(name, backend="onnxruntime") for name in SHIPPED}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_matches_pytorch(name, backend, graphs):
    from malleconv.models import load_model

    net, graph = load_model(name), graphs[name]
    assert graph.backend == backend
    channels = 1 if name.endswith("gray") else 3
    g = torch.Generator().manual_seed(1)
    for h, w in SIZES:
        x = torch.rand(2, channels, h, w, generator=g)
        with torch.no_grad():
            if name == "mallenet-s-real":
                cap, low = torch.tensor([75.0, 4.0]), torch.tensor([12.0, 0.0])
                kw = {"strength": 0.8, "max_level": cap, "min_level": low, "return_level": True}
                want, level = net(x, None, **kw)
                got, got_level = graph(x, None, **kw)
                torch.testing.assert_close(got_level, level, rtol=1e-5, atol=1e-4)
                assert float(got_level[0].min()) >= 12.0 * 0.8 - 1e-4  # the bound held
                if (h, w) == (37, 53):  # a given sigma runs the denoiser, as in PyTorch
                    torch.testing.assert_close(graph(x, 20.0), net(x, 20.0), rtol=0, atol=1e-4)
            else:
                sigma = torch.tensor([25.0, 60.0])
                want, got = net(x, sigma), graph(x, sigma)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4, msg=f"{name} at {h}x{w}")


def test_metadata_of_the_exported_file(sessions):
    import onnx

    from malleconv.inference.onnx_backend import exported_graph

    path = exported_graph("mallenet-s-gray")  # cached by the sessions fixture
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    for key in ("name", "version", "training_data", "sigma_units", "inputs", "outputs"):
        assert meta.get(key), key
    assert meta["name"] == "mallenet-s-gray" and meta["sigma_units"] == "8-bit (0-255)"
    assert "CBSD432" in meta["training_data"] and len(meta["weights_sha256"]) == 64
    assert meta["target"] == "cpu"  # the backend's graphs are written for its CPU provider
    names = [i.name for i in model.graph.input]
    assert names == ["noisy", "sigma", "strength"]
    assert [o.name for o in model.graph.output] == ["denoised"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 1, "H", "W"]


def test_denoise_matches_torch(backend, graphs):
    import malleconv

    img = synthetic_image(3, 70, 90)
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 20, img.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    for options in [{}, {"sigma": 20, "tile": 48, "overlap": 8}, {"strength": 0.6}]:
        want, got = {}, {}
        a = malleconv.denoise(noisy, report=want, **options)
        b = malleconv.denoise(noisy, report=got, backend=backend, **options)
        assert want == got, options
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, options


def test_half_resolution_pass(backend, graphs):
    """Coarse grain (the browser test's fixture) gets the half-resolution pass on every
    backend, as with PyTorch."""
    import malleconv
    from malleconv.io import read_image

    noisy = read_image(ROOT / "tests" / "data" / "web-grain-256.png").pixels
    want, got = {}, {}
    a = malleconv.denoise(noisy, report=want)
    b = malleconv.denoise(noisy, report=got, backend=backend)
    assert want == got and got["half_pass"] is True
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_blind_route_and_tiles(backend, graphs):
    from malleconv.inference import denoise_tensor, prepare_model

    x = torch.rand(1, 3, 80, 72)
    torch_net = prepare_model("mallenet-s-real", auto=True, strength=0.9)
    graph_net = prepare_model("mallenet-s-real", auto=True, strength=0.9, backend=backend)
    for tile in (None, 32):
        want = denoise_tensor(torch_net, x, 0.0, tile=tile, overlap=8)
        got = denoise_tensor(graph_net, x, 0.0, tile=tile, overlap=8)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def test_cli_denoise_16_bit_and_alpha(backend, graphs, tmp_path):
    from malleconv.cli import main
    from malleconv.io import read_image, write_image

    rng = np.random.default_rng(0)
    rgb = synthetic_image(5, 40, 56).astype(np.uint16) * 257
    noisy = np.clip(rgb + rng.normal(0, 3000, rgb.shape), 0, 65535).astype(np.uint16)
    alpha = rng.integers(0, 65536, (40, 56, 1), dtype=np.uint16)
    src = tmp_path / "in.png"
    write_image(src, np.concatenate([noisy, alpha], axis=2))
    outs = {}
    for name in ("torch", backend):
        dst = tmp_path / f"{name}.png"
        argv = ["denoise", str(src), "-o", str(dst), "--backend", name, "--no-progress"]
        assert main(argv + ["--tile", "32", "--tile-overlap", "8"]) == 0
        outs[name] = read_image(dst).pixels
    a, b = outs["torch"], outs[backend]
    assert b.dtype == np.uint16 and b.shape == (40, 56, 4)
    assert np.array_equal(b[..., 3], alpha[..., 0])
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def test_cli_export(cache, tmp_path, capsys):
    from malleconv.cli import main
    from malleconv.models import create_model, save_model

    weights = save_model(create_model("mallenet-tiny"), tmp_path / "tiny.safetensors")
    argv = ["export", "--model", str(weights), "-o"]
    assert main(argv + [str(tmp_path / "s.txt")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    out = tmp_path / "s.onnx"
    assert main(argv + [str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert main(argv + [str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    # The export's temporary file has a name of its own: a user's FILE.onnx.tmp is not touched.
    mine = tmp_path / "s.onnx.tmp"
    mine.write_text("mine")
    assert main(argv + [str(out), "--overwrite"]) == 0
    assert mine.read_text() == "mine"
    web, openvino = tmp_path / "web.onnx", tmp_path / "openvino.onnx"
    assert main(argv + [str(web), "--target", "web"]) == 0
    assert main(argv + [str(openvino), "--target", "openvino"]) == 0
    import onnx

    ops = {path: {node.op_type for node in onnx.load(path).graph.node}
           for path in (web, openvino, out)}
    # PReLU: ONNX PRelu for the page, Max and Mul for OpenVINO, 1x1 convolutions for ORT.
    assert "PRelu" in ops[web] and "Max" not in ops[web]
    assert "Max" in ops[openvino] and "PRelu" not in ops[openvino]
    assert not {"PRelu", "Max"} & ops[out]
    assert main(["export", "--model", "no-such-model", "-o", str(tmp_path / "x.onnx")]) == 2
    assert main(["export", "--model", "auto", "-o", str(tmp_path / "x.onnx")]) == 2
    assert "mallenet-s-real" in capsys.readouterr().err


def test_bad_inputs(sessions, tmp_path, capsys):
    import malleconv
    from malleconv.cli import main
    from malleconv.inference import prepare_model
    from malleconv.io import write_image

    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="backend must be one of"):
        malleconv.denoise(img, sigma=5, backend="tensorrt")
    with pytest.raises(ValueError, match="runs precision float32"):
        malleconv.denoise(img, sigma=5, backend="onnxruntime", precision="bfloat16")
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    write_image(src, synthetic_image(0, 16, 16))
    argv = ["denoise", str(src), "-o", str(dst), "--no-progress", "--backend", "onnxruntime"]
    assert main(argv + ["--precision", "bfloat16"]) == 2
    assert "runs precision float32" in capsys.readouterr().err and not dst.exists()
    with pytest.raises(ValueError, match="CPU|CUDA"):
        prepare_model("mallenet-s", "cuda", backend="onnxruntime")
    net = prepare_model("mallenet-s", backend="onnxruntime")
    with pytest.raises(ValueError, match="level maps need backend='torch'"):
        net(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8) * 20)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.rand(1, 1, 8, 8), 10.0)
    with pytest.raises(TypeError, match="MalleNet"):
        malleconv.export_onnx(malleconv.create_model("dncnn-c"), "x.onnx")


@pytest.mark.parametrize("backend, extra", [("onnxruntime", "onnx"), ("openvino", "openvino")])
def test_missing_extra_is_named(backend, extra, monkeypatch, tmp_path, capsys):
    from malleconv.cli import main
    from malleconv.inference import prepare_model

    monkeypatch.setitem(sys.modules, backend, None)
    with pytest.raises(ImportError, match=rf"malleconv\[{extra}\]"):
        prepare_model("mallenet-s", backend=backend)
    src = tmp_path / "in.png"
    from malleconv.io import write_image

    write_image(src, synthetic_image(0, 16, 16))
    code = main(["denoise", str(src), "-o", str(tmp_path / "o.png"), "--backend", backend])
    assert code == 2
    assert f"malleconv[{extra}]" in capsys.readouterr().err


# ------------------------------------------------------------------------ OpenVINO alone


@pytest.fixture(scope="module")
def openvino(cache):
    return pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def ov_graphs(openvino):
    from malleconv.inference import prepare_model

    return {"mallenet-s": prepare_model("mallenet-s", backend="openvino")}


def test_openvino_runs_its_target_and_reads_the_metadata(ov_graphs):
    from malleconv.inference.onnx_backend import exported_graph

    path = exported_graph("mallenet-s", target="openvino")  # cached by the fixture
    assert path.name.endswith("-openvino.onnx")
    meta = ov_graphs["mallenet-s"].metadata  # read back by OpenVINO from the ONNX file
    assert meta["target"] == "openvino" and meta["name"] == "mallenet-s"
    assert meta["sigma_units"] == "8-bit (0-255)" and len(meta["weights_sha256"]) == 64


def test_openvino_outputs_are_not_overwritten_and_compiled_shapes_are_bounded(
    ov_graphs, monkeypatch
):
    from malleconv.inference import openvino_backend

    monkeypatch.setattr(openvino_backend, "COMPILED_SHAPES", 2)
    net = ov_graphs["mallenet-s"]
    first = net(torch.rand(1, 3, 24, 24), 10.0)
    kept = first.clone()
    net(torch.rand(1, 3, 24, 24), 40.0)  # same shape: the same compiled model runs
    torch.testing.assert_close(first, kept, rtol=0, atol=0)
    for side in (8, 9, 10):
        net(torch.rand(1, 3, side, side), 10.0)
    assert [shape[0][1] for shape in net.session._compiled] == [(1, 3, 9, 9), (1, 3, 10, 10)]


def test_openvino_bfloat16_is_close_to_float32(ov_graphs):
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


@pytest.mark.parametrize("backend_name, effect", [
    ("openvino", "OpenVINO runs float32 on it"),
    ("torch", "may be slower than float32"),
])
def test_bfloat16_without_hardware_support_is_named(
    backend_name, effect, ov_graphs, monkeypatch, tmp_path, capsys
):
    from malleconv.cli import main
    from malleconv.io import write_image
    from malleconv.models import precision

    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    src = tmp_path / "in.png"
    write_image(src, synthetic_image(6, 24, 24))
    argv = ["denoise", str(src), "-o", str(tmp_path / "out.png"), "--sigma", "10"]
    argv += ["--backend", backend_name, "--precision", "bfloat16", "--no-progress"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "cpu has no hardware bfloat16" in err and effect in err


def test_info_lists_the_backends(openvino, capsys):
    from malleconv.cli import main

    assert main(["info"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("backends"))
    assert "torch" in line and f"openvino {openvino.__version__.split('-')[0]}" in line
