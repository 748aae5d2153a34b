"""Named model configurations, creation, export and loading of weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..io.atomic import atomic_write_text, temporary_path
from .blind import BlindMalleNet
from .dncnn import DnCNN
from .mallenet import MalleNet, MalleNetConfig
from .plain import PlainDenoiser

__all__ = [
    "MODEL_CONFIGS",
    "available_models",
    "create_model",
    "load_model",
    "save_model",
    "model_stats",
    "weights_dir",
]

# name -> (architecture, keyword arguments). Widths of mallenet-s were chosen so that a
# 512x512 colour image runs faster on a 2-core CPU than DnCNN-C (20 layers, 64 channels);
# mallenet-l uses the paper-scale widths of the authors' code.
MODEL_CONFIGS: dict[str, tuple[str, dict]] = {
    "mallenet-s": (
        "mallenet",
        dict(widths=(16, 32, 64, 128), expand=4, encoder_blocks=1, decoder_blocks=1),
    ),
    "mallenet-s-gray": (
        "mallenet",
        dict(in_channels=1, widths=(16, 32, 64, 128), expand=4, encoder_blocks=1, decoder_blocks=1),
    ),
    # mallenet-s with its full-resolution level twice as wide, grown from mallenet-s by
    # models.widen.widen_mallenet. No weights shipped (docs/training-log.md says why); they
    # are in git history: `git restore --source=292c1a7 -- experiments/weights`.
    "mallenet-m": (
        "mallenet",
        dict(widths=(32, 32, 64, 128), expand=4, encoder_blocks=1, decoder_blocks=1),
    ),
    "mallenet-l": ("mallenet", dict(widths=(64, 64, 128, 256), expand=5, decoder_blocks=2)),
    "mallenet-l-gray": (
        "mallenet",
        dict(in_channels=1, widths=(64, 64, 128, 256), expand=5, decoder_blocks=2),
    ),
    # The authors' MalleConv form: per-channel affine (1x1 depthwise kernel + bias) in a
    # bilateral grid sliced by each channel's own feature, at paper-scale widths.
    "mallenet-paper": (
        "mallenet",
        dict(
            widths=(64, 64, 128, 256),
            expand=5,
            decoder_blocks=2,
            malle_kernel=1,
            malle_guided=True,
            malle_guide="self",
            malle_grid_depth=8,
            malle_grid_stride=8,
        ),
    ),
    "mallenet-tiny": (
        "mallenet",
        dict(
            widths=(8, 16, 16, 32),
            expand=2,
            encoder_blocks=1,
            decoder_blocks=1,
            malle_predictor_width=8,
        ),
    ),
    "dncnn-c": ("dncnn", dict(in_channels=3, depth=20, width=64)),
    # A noise-level-conditioned DnCNN-style backbone (10 convs of 48 channels), with
    # ``middle="malle"`` or ``"perpixel"`` one dynamic conv in the middle: the plain-backbone
    # arm of the ablation study (docs/ablation.md).
    "plain-cnn": ("plain", dict(in_channels=3, depth=10, width=48)),
    # mallenet-s with a learned noise-level map (models.blind), trained on white and
    # camera-like noise: the default for photos when no sigma is given.
    "mallenet-s-real": (
        "blind-mallenet",
        dict(
            denoiser=dict(widths=(16, 32, 64, 128), expand=4, encoder_blocks=1, decoder_blocks=1),
            estimator=dict(width=32),
        ),
    ),
}

_ARCHS = {"mallenet": MalleNet, "dncnn": DnCNN, "plain": PlainDenoiser}


def weights_dir() -> Path:
    """Folder of the weights shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "weights"


def available_models() -> list[str]:
    return sorted(MODEL_CONFIGS)


def _build(arch: str, kwargs: dict) -> nn.Module:
    if arch == "mallenet":
        return MalleNet(MalleNetConfig(**kwargs))
    if arch == "blind-mallenet":
        return BlindMalleNet.from_spec(kwargs)
    if arch in _ARCHS:
        return _ARCHS[arch](**kwargs)
    raise ValueError(f"unknown architecture {arch!r}; known: {sorted(_ARCHS)}")


def create_model(name: str, **overrides) -> nn.Module:
    """A randomly initialised model of a registered configuration, with keyword overrides."""
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(available_models())}")
    arch, kwargs = MODEL_CONFIGS[name]
    model = _build(arch, {**kwargs, **overrides})
    model.model_name = name
    model.arch = arch
    return model


def model_spec(model: nn.Module) -> dict:
    """What is needed to rebuild ``model``: architecture and constructor arguments."""
    default = {MalleNet: "mallenet", BlindMalleNet: "blind-mallenet"}.get(type(model), "dncnn")
    arch = getattr(model, "arch", default)
    if isinstance(model, MalleNet):
        kwargs = model.config.to_dict()
    elif isinstance(model, BlindMalleNet):
        kwargs = model.spec_config()
    else:
        kwargs = dict(getattr(model, "init_kwargs", {}))
    return {"arch": arch, "name": getattr(model, "model_name", arch), "config": kwargs}


def save_model(model: nn.Module, path: str | os.PathLike, *, half: bool = True, meta=None) -> Path:
    """Export weights to ``path`` (``.safetensors``) and the spec to ``path`` with ``.json``.

    Both files are written atomically. ``half`` stores float16 weights (release size).
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"weights path must end in .safetensors, got {path}")
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if half and v.is_floating_point():
            v = v.half()
        state[k] = v.contiguous()
    spec = model_spec(model)
    if meta:
        spec["meta"] = meta
    tmp = temporary_path(path)  # creates the folder; a name of its own, never a user's file
    try:
        save_file(state, str(tmp), metadata={"format": "pt"})
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_text(path.with_suffix(".json"), json.dumps(spec, indent=2) + "\n",
                      overwrite=True)
    return path


def _resolve(name_or_path: str | os.PathLike) -> tuple[Path | None, str | None]:
    """``(weights file or None, registry name or None)``."""
    s = str(name_or_path)
    p = Path(s)
    if p.suffix == ".safetensors" or p.is_dir() or os.sep in s or "/" in s:
        if p.is_dir():
            cands = sorted(p.glob("*.safetensors"))
            if not cands:
                raise FileNotFoundError(f"{p}: no .safetensors weights in folder")
            p = cands[0]
        if not p.is_file():
            raise FileNotFoundError(f"model file not found: {p}")
        return p, None
    if s not in MODEL_CONFIGS:
        raise ValueError(
            f"unknown model {s!r}: give a registered name ({', '.join(available_models())}) "
            "or a path to a .safetensors file"
        )
    shipped = weights_dir() / f"{s}.safetensors"
    return (shipped if shipped.is_file() else None), s


def load_model(
    name_or_path: str | os.PathLike = "mallenet-s",
    device: str | torch.device = "cpu",
    *,
    pretrained: bool = True,
) -> nn.Module:
    """A model in eval mode, by registered name (shipped weights) or weights path.

    ``pretrained=False`` returns a randomly initialised registered model. The first call in
    a process tunes the allocator for inference (:func:`malleconv.runtime.tune_allocator_once`:
    freed memory is reused, up to 2-3x faster on big images; opt out with
    ``MALLECONV_NO_MALLOC_TUNING=1``).
    """
    from safetensors.torch import load_file

    from ..runtime import tune_allocator_once

    tune_allocator_once()

    weights, name = _resolve(name_or_path)
    if name is not None and not pretrained:
        return create_model(name).to(device).eval()
    if weights is None:
        raise FileNotFoundError(
            f"no pretrained weights are shipped for {name!r} (looked for "
            f"{weights_dir() / (name + '.safetensors')}); train one with `malleconv train`"
        )
    spec_path = weights.with_suffix(".json")
    if spec_path.is_file():
        model = _from_description(spec_path)
    elif name is not None:
        model = create_model(name)
    else:
        raise FileNotFoundError(f"{weights}: missing model description {spec_path}")
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error type for a damaged file
        raise ValueError(f"{weights}: not a safetensors weights file ({err})") from None
    ref = model.state_dict()
    state = {k: v.to(ref[k].dtype) if k in ref else v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        # The first lines say which tensors are missing, unexpected or of another shape.
        reason = " ".join(str(err).split())[:400]
        raise ValueError(
            f"{weights}: the weights do not fit the network that {spec_path.name} "
            f"describes ({reason})"
        ) from None
    return model.to(device).eval()


def _from_description(spec_path: Path) -> nn.Module:
    """The untrained network a weights file's JSON description names (``arch``, ``config``);
    a ValueError naming the file when the description cannot be read."""
    try:
        spec = json.loads(spec_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{spec_path}: not a model description (invalid JSON: {err})") from None
    if not isinstance(spec, dict) or "arch" not in spec or "config" not in spec:
        raise ValueError(f"{spec_path}: a model description needs \"arch\" and \"config\"")
    try:
        model = _build(spec["arch"], spec["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{spec_path}: cannot build {spec['arch']!r} ({err})") from None
    model.model_name = spec.get("name", spec["arch"])
    model.arch = spec["arch"]
    return model


def model_stats(model: nn.Module, size: int = 256) -> dict:
    """Parameter count and forward FLOPs on a ``size x size`` input (batch 1).

    FLOPs count 2 per multiply-add of every convolution and matrix product (PyTorch's
    flop counter) plus the application of the per-pixel kernels of dynamic layers
    (:class:`~malleconv.layers.MalleConv2d`, :class:`~malleconv.layers.PerPixelConv2d`),
    which run as elementwise products the counter does not see. The interpolation of
    MalleConv's kernel grid is not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from ..layers.malleconv import MalleConv2d, PerPixelConv2d

    config = getattr(model, "config", None)
    kwargs = getattr(model, "init_kwargs", {})
    channels = getattr(config, "in_channels", None) or kwargs.get("in_channels", 3)
    x = torch.rand(1, channels, size, size)
    dynamic_flops = []

    def count_dynamic(layer, _inputs, out):
        per_output = layer.in_channels // layer.groups * layer.kernel_size**2
        dynamic_flops.append(2 * out.numel() * per_output)

    hooks = [
        m.register_forward_hook(count_dynamic)
        for m in model.modules()
        if isinstance(m, (MalleConv2d, PerPixelConv2d))
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x, 25.0)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": (counter.get_total_flops() + sum(dynamic_flops)) / 1e9,
    }
