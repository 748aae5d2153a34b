"""The ablation study's variants (configs/ablation) and the models only it uses."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from malleconv.layers import MalleConv2d, PerPixelConv2d
from malleconv.models import PlainDenoiser, create_model, load_model, model_stats, save_model
from malleconv.models.fuse import fuse_batchnorm
from malleconv.training.config import build_model, load_config

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "benchmarks_ablation", ROOT / "benchmarks" / "ablation.py"
)
ablation = importlib.util.module_from_spec(spec)
sys.modules["benchmarks_ablation"] = ablation  # dataclasses look their module up by name
spec.loader.exec_module(ablation)


def test_every_variant_builds_from_the_one_recipe():
    variants = ablation.load_variants()
    assert {"mallenet-s", "static", "plain", "plain-malle", "plain-perpixel"} <= set(variants)
    recipe = load_config(ablation.RECIPE)
    for v in variants.values():
        cfg = load_config(ablation.RECIPE, v.settings())
        # Only the model differs between variants: data, schedule, steps and seed are shared.
        assert {k: cfg[k] for k in ("data", "optim", "train")} == {
            k: recipe[k] for k in ("data", "optim", "train")
        }
        model = build_model(cfg)
        x = torch.rand(2, 3, 16, 24)
        with torch.no_grad():
            assert model.eval()(x, 20.0).shape == x.shape
    # The first variant of each group is the one the others are compared with.
    groups = [v.group for v in variants.values()]
    assert groups[0] == "mallenet" and "plain" in groups


def test_static_variant_has_no_dynamic_layer_and_the_same_backbone():
    malle, static = (
        create_model("mallenet-tiny"),
        create_model("mallenet-tiny", malle_dynamic=False),
    )
    assert any(isinstance(m, MalleConv2d) for m in malle.modules())
    assert not any(isinstance(m, MalleConv2d) for m in static.modules())
    # Everything but the MalleConvs' predictors is shared, name for name.
    shared = {k for k in malle.state_dict() if ".conv.predictor" not in k and "to_grid" not in k}
    assert shared == set(static.state_dict())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(static.eval()(x, 25.0), x)  # gate and head start at 0


@pytest.mark.parametrize("middle", ["none", "malle", "perpixel"])
def test_plain_denoiser_starts_as_identity_and_trains(middle):
    torch.manual_seed(0)
    model = PlainDenoiser(depth=5, width=8, middle=middle)
    kinds = {type(m) for m in model.modules()}
    assert (MalleConv2d in kinds) == (middle == "malle")
    assert (PerPixelConv2d in kinds) == (middle == "perpixel")
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x, 25.0), x)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    clean = torch.rand(4, 3, 16, 16)
    noisy = clean + 0.1 * torch.randn_like(clean)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = (model(noisy, 25.5) - clean).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_plain_denoiser_rejects_bad_arguments():
    with pytest.raises(ValueError, match="middle"):
        PlainDenoiser(middle="dense")
    with pytest.raises(ValueError, match="sigma"):
        PlainDenoiser()(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        PlainDenoiser()(torch.rand(1, 1, 8, 8), 25.0)


def test_plain_denoiser_exports_reloads_and_folds_batchnorm(tmp_path):
    torch.manual_seed(0)
    model = create_model("plain-cnn", depth=5, width=8, middle="malle")
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    model.eval()
    path = save_model(model, tmp_path / "p.safetensors", half=False)
    assert json.loads(path.with_suffix(".json").read_text())["arch"] == "plain"
    loaded = load_model(path)
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        want = model(x, 30.0)
        torch.testing.assert_close(loaded(x, 30.0), want)
        torch.testing.assert_close(fuse_batchnorm(loaded)(x, 30.0), want, atol=1e-5, rtol=1e-4)


def test_model_stats_counts_the_dynamic_kernels_applied():
    plain = model_stats(PlainDenoiser(depth=5, width=8), 32)
    malle = model_stats(PlainDenoiser(depth=5, width=8, middle="malle"), 32)
    perpixel = model_stats(PlainDenoiser(depth=5, width=8, middle="perpixel"), 32)
    applied = 2 * 8 * 32 * 32 * 9 / 1e9  # depthwise 3x3 over 8 channels, 2 per multiply-add
    assert malle["gflops"] > plain["gflops"] + applied
    assert perpixel["gflops"] > plain["gflops"] + applied
    assert perpixel["params"] > plain["params"] and malle["params"] > plain["params"]


def test_report_fills_the_tables_between_the_markers(tmp_path):
    variants = {k: v for k, v in ablation.load_variants().items() if k in ("mallenet-s", "static")}
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    for name, psnr in (("mallenet-s", [30.0, 30.2]), ("static", [29.9])):
        for seed, value in enumerate(psnr):
            out = runs / name / f"seed{seed}" / "eval"
            out.mkdir(parents=True)
            results = {
                d: {str(s): {"psnr": value} for s in (15, 25, 50)} for d in ablation.DATASETS
            }
            (out / "summary.json").write_text(json.dumps({"results": results}))
    info = {"size": 512, "threads": 2, "cpu": "test", "torch": "x", "date": "today"}
    stats = {"params": 1000, "gflops": 1.0, "seconds": 0.5, "train_peak_mb": 10}
    (runs / "measure.json").write_text(
        json.dumps({"info": info, "variants": {"mallenet-s": stats, "static": stats}})
    )
    docs.mkdir()
    (docs / "ablation.md").write_text(
        f"# Study\n\nbefore\n\n{ablation.MARK_BEGIN}\nold\n{ablation.MARK_END}\n\nafter\n"
    )
    ablation.write_report(variants, runs, docs)
    text = (docs / "ablation.md").read_text()
    assert "old" not in text and text.startswith("# Study\n\nbefore") and text.endswith("after\n")
    row = next(line for line in text.splitlines() if line.startswith("| `mallenet-s`"))
    assert "| 2 |" in row and "30.10 ±0.10" in row
    row = next(line for line in text.splitlines() if line.startswith("| `static`"))
    assert "| 29.90 |" in row and row.rstrip().endswith("-0.20 |")


def test_only_a_run_that_reached_the_recipe_step_counts_as_trained(tmp_path):
    model = PlainDenoiser(depth=3, width=8)
    steps = ablation.recipe_steps()
    interrupted, finished = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_model(model, interrupted, meta={"steps": steps // 3})  # what an interrupted run saves
    save_model(model, finished, meta={"steps": steps})
    assert not ablation.is_trained(interrupted, steps)
    assert ablation.is_trained(finished, steps)
    assert not ablation.is_trained(tmp_path / "missing.safetensors", steps)
    assert ablation.recipe_steps(["train.steps=20"]) == 20
