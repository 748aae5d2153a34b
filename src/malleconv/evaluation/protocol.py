"""The synthetic-noise evaluation protocol used to report denoising results.

For every test set, noise level ``sigma`` and image:

1. read the clean image as 8-bit (16-bit files are rounded to 8 bits) and scale to ``[0, 1]``;
   colour evaluation uses RGB (gray files replicated), gray evaluation one channel (BT.601
   luminance of colour files); alpha is dropped;
2. add white Gaussian noise of standard deviation ``sigma / 255`` drawn from a
   ``torch.Generator`` seeded with :func:`~malleconv.data.noise.seed_for` ``(name, sigma)``,
   ``name`` being the image path relative to its test-set folder (e.g. ``"0001.png"``); the
   noisy input is *not* clipped;
3. denoise, clip the output to ``[0, 1]`` and round it to 8 bits;
4. compute PSNR and SSIM (:mod:`malleconv.evaluation.metrics`) against the clean 8-bit image
   on all channels, without cropping borders, and average over the set.

Seeds depend only on the image name and sigma, so results are reproducible across runs,
machines and orderings, and every method sees exactly the same noisy images.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from malleconv.data.datasets import load_clean
from malleconv.data.noise import add_gaussian_noise, check_sigma, seed_for
from malleconv.evaluation.metrics import SSIM_WINDOW, psnr, ssim
from malleconv.io import atomic_write_text, from_float, list_images, to_float, write_image
from malleconv.io.atomic import make_folder

__all__ = [
    "Denoiser",
    "evaluate",
    "format_table",
    "load_test_image",
    "make_noisy",
    "sigma_label",
]

Denoiser = Callable[[torch.Tensor, float | None], torch.Tensor]
"""``denoiser(noisy, sigma)``: ``noisy`` is a float32 ``1 x C x H x W`` tensor (values roughly
in ``[0, 1]``, not clipped), ``sigma`` the noise level in 8-bit units, or None when the
denoiser is to find it itself (``tell_sigma=False``, real noise with ``"auto"``); returns
``1 x C x H x W``. A denoiser may expose ``last_sigma``, the level it used on its last call."""


def output_names(names: list[str]) -> dict[str, str]:
    """PNG file names for saved outputs: ``name``'s stem plus ``.png``, or, where two inputs
    share a stem (``a.png``, ``a.jpg``), the whole name plus ``.png``, so none replaces
    another."""
    stems = Counter(Path(n).with_suffix("").as_posix() for n in names)
    return {n: (Path(n).with_suffix("").as_posix() if stems[Path(n).with_suffix("").as_posix()]
                == 1 else n) + ".png" for n in names}


def check_ssim_size(image: np.ndarray, file) -> None:
    """A ValueError naming ``file`` when ``image`` is too small for SSIM's window: said
    before any image of the set is denoised, not after."""
    h, w = image.shape[:2]
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"{file}: {w}x{h} pixels; SSIM needs images of at least "
                         f"{SSIM_WINDOW} x {SSIM_WINDOW}")


def load_test_image(path: str | os.PathLike[str], *, gray: bool = False) -> np.ndarray:
    """Read a clean test image as uint8 ``H x W x C`` (``C = 1`` if ``gray`` else 3).

    16-bit images are rounded to 8 bits; alpha is dropped.
    """
    pixels = load_clean(path, gray=gray)
    if pixels.dtype != np.uint8:
        pixels = from_float(to_float(pixels), np.uint8)
    if not gray and pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return pixels


def make_noisy(clean8: np.ndarray, name: str, sigma: float) -> torch.Tensor:
    """The protocol's noisy input for a clean uint8 ``H x W x C`` image.

    Returns:
        float32 ``1 x C x H x W`` tensor, ``clean / 255 + N(0, (sigma/255)^2)``, not clipped,
        with the noise seeded by ``seed_for(name, sigma)``.
    """
    clean = torch.from_numpy(np.ascontiguousarray(to_float(clean8).transpose(2, 0, 1)))[None]
    generator = torch.Generator().manual_seed(seed_for(name, sigma))
    return add_gaussian_noise(clean, sigma, generator)


def sigma_label(sigma: float) -> str:
    """``25.0`` -> ``"25"``, ``12.5`` -> ``"12.5"`` (folder names, table headers, JSON keys)."""
    value = float(sigma)
    return str(int(value)) if value.is_integer() else repr(value)


def _dataset_names(data_dirs: Sequence[Path]) -> list[str]:
    names = [Path(d).resolve().name for d in data_dirs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"test sets must have distinct folder names, got {', '.join(duplicates)} twice"
        )
    return names


def _finite_or_none(value: float) -> float | None:
    # PSNR of a perfect output is inf, which strict JSON cannot represent.
    return value if math.isfinite(value) else None


def evaluate(
    denoiser: Denoiser,
    data_dirs: Sequence[str | os.PathLike[str]],
    sigmas: Sequence[float],
    *,
    gray: bool = False,
    out_dir: str | os.PathLike[str] | None = None,
    save_images: str | os.PathLike[str] | None = None,
    progress: bool = True,
    tell_sigma: bool = True,
) -> dict[str, dict[float, dict[str, float]]]:
    """Run the evaluation protocol (see the module docstring) of ``denoiser``.

    With ``tell_sigma=False`` the noise is added as usual but the denoiser gets ``None``
    and must find the level itself (the default mode of ``malleconv denoise``).

    Args:
        denoiser: ``denoiser(noisy, sigma) -> denoised``, tensors ``1 x C x H x W`` float32
            (see :data:`Denoiser`); called under ``torch.inference_mode()``. It may return a
            tensor on another device; the copy back to the CPU is part of the timing.
        data_dirs: Test-set folders (images directly inside; subfolders are not searched). The
            folder name is the test-set name and must be unique.
        sigmas: Noise levels in 8-bit units, each in ``[0, 75]``.
        gray: Evaluate one-channel images (luminance of colour files) instead of RGB.
        out_dir: If given, write ``per_image.csv`` (dataset, image, sigma, psnr, ssim, seconds)
            and ``summary.json`` there (atomically, replacing earlier results).
        save_images: If given, save each uint8 output as PNG under
            ``save_images/<dataset>/<sigma>/<image stem>.png`` (existing files are replaced;
            images whose stems coincide, ``a.png`` and ``a.jpg``, keep their extension:
            ``a.png.png``, ``a.jpg.png``).
        progress: Show a progress bar on stderr.

    Returns:
        ``{dataset: {sigma: {"psnr": mean dB, "ssim": mean, "images": n,
        "seconds_per_image": mean seconds}}}`` with ``sigma`` as float keys.

    Raises:
        ValueError: a sigma outside ``[0, 75]``, duplicate test-set names, an empty folder, or a
            denoiser output of the wrong shape.
    """
    from tqdm.auto import tqdm

    sigma_values = list(dict.fromkeys(float(s) for s in sigmas))  # each once, in order
    for s in sigma_values:
        check_sigma(s)
    if not sigma_values:
        raise ValueError("sigmas is empty")
    dirs = [Path(d) for d in data_dirs]
    if not dirs:
        raise ValueError("data_dirs is empty")
    names = _dataset_names(dirs)
    if out_dir is not None:
        make_folder(out_dir)  # before the work: a file in the way fails now, not at the end

    summary: dict[str, dict[float, dict[str, float]]] = {}
    rows: list[dict[str, object]] = []
    for dataset, folder in zip(names, dirs):
        entries = list_images([folder], recursive=False)
        clean_images = [(rel.as_posix(), load_test_image(f, gray=gray)) for f, rel in entries]
        for (file, _), (_, clean8) in zip(entries, clean_images):
            check_ssim_size(clean8, file)
        outputs = output_names([name for name, _ in clean_images])
        summary[dataset] = {}
        bar = tqdm(total=len(clean_images) * len(sigma_values), desc=dataset, disable=not progress)
        for sigma in sigma_values:
            scores = []
            for name, clean8 in clean_images:
                bar.set_postfix_str(f"sigma={sigma_label(sigma)} {name}", refresh=False)
                output8, seconds = _denoise_one(denoiser, clean8, name, sigma, tell_sigma)
                p = psnr(output8, clean8)
                s = ssim(output8, clean8)
                scores.append((p, s, seconds))
                rows.append(
                    {
                        "dataset": dataset,
                        "image": name,
                        "sigma": sigma_label(sigma),
                        "psnr": p,
                        "ssim": s,
                        "seconds": seconds,
                    }
                )
                if save_images is not None:
                    target = Path(save_images) / dataset / sigma_label(sigma) / outputs[name]
                    write_image(target, output8, overwrite=True)
                bar.update(1)
            p_all, s_all, t_all = zip(*scores)
            summary[dataset][sigma] = {
                "psnr": float(np.mean(p_all)),
                "ssim": float(np.mean(s_all)),
                "images": len(scores),
                "seconds_per_image": float(np.mean(t_all)),
            }
        bar.close()

    if out_dir is not None:
        _write_results(Path(out_dir), rows, summary, gray=gray)
    return summary


def _denoise_one(
    denoiser: Denoiser, clean8: np.ndarray, name: str, sigma: float, tell_sigma: bool = True
) -> tuple[np.ndarray, float]:
    """Denoise the protocol's noisy version of ``clean8``; return the uint8 output and time."""
    noisy = make_noisy(clean8, name, sigma)
    return run_denoiser(denoiser, noisy, sigma if tell_sigma else None, name)


def run_denoiser(
    denoiser: Denoiser, noisy: torch.Tensor, sigma: float | None, name: str
) -> tuple[np.ndarray, float]:
    """``denoiser(noisy, sigma)`` on a ``1 x C x H x W`` input: the output clipped and rounded
    to uint8 ``H x W x C``, and the seconds it took (the copy back to the CPU included).

    Raises:
        ValueError: the output's shape differs from the input's (``name`` says which image).
    """
    start = time.perf_counter()
    with torch.inference_mode():
        output = denoiser(noisy, sigma)
        output = torch.as_tensor(output).detach().to("cpu", torch.float32)
    seconds = time.perf_counter() - start
    if tuple(output.shape) != tuple(noisy.shape):
        raise ValueError(
            f"denoiser returned shape {tuple(output.shape)} for input {tuple(noisy.shape)} "
            f"({name}, sigma={'auto' if sigma is None else sigma_label(sigma)})"
        )
    output8 = from_float(output[0].permute(1, 2, 0).numpy(), np.uint8)
    return output8, seconds


def _write_results(
    out_dir: Path,
    rows: list[dict[str, object]],
    summary: dict[str, dict[float, dict[str, float]]],
    *,
    gray: bool,
) -> None:
    write_results(
        out_dir,
        rows,
        {
            dataset: {sigma_label(sigma): stats for sigma, stats in per_sigma.items()}
            for dataset, per_sigma in summary.items()
        },
        protocol=(
            "AWGN std sigma/255 seeded by seed_for(image name, sigma), unclipped input; "
            "output clipped to [0,1] and rounded to 8 bits; PSNR/SSIM on 8-bit values, "
            "all channels, no border crop"
        ),
        gray=gray,
    )


def write_results(
    out_dir: Path,
    rows: list[dict[str, object]],
    results: dict[str, dict[str, dict[str, float]]],
    *,
    protocol: str,
    gray: bool,
) -> None:
    """Write ``per_image.csv`` (one line per row, floats to 6 decimals) and ``summary.json``
    (``results`` keyed by set and label, infinite PSNR as null) atomically into ``out_dir``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()})
    atomic_write_text(out_dir / "per_image.csv", buffer.getvalue(), overwrite=True)
    document = {
        "protocol": protocol,
        "gray": gray,
        "torch_version": torch.__version__,
        "results": {
            dataset: {
                key: {**stats, "psnr": _finite_or_none(stats["psnr"])} for key, stats in per.items()
            }
            for dataset, per in results.items()
        },
    }
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    atomic_write_text(out_dir / "summary.json", text, overwrite=True)


def format_table(summary: dict[str, dict[float, dict[str, float]]]) -> str:
    """Render an :func:`evaluate` summary as a markdown table.

    One row per dataset, one column per sigma (all sigmas of all datasets, ascending), cells
    ``"PSNR / SSIM"`` (``"32.45 / 0.8912"``); ``-`` where a dataset lacks a sigma.
    """
    sigmas = sorted({float(s) for per_sigma in summary.values() for s in per_sigma})
    header = "| Dataset | " + " | ".join(f"sigma={sigma_label(s)}" for s in sigmas) + " |"
    rule = "|---|" + "---|" * len(sigmas)
    lines = [header, rule]
    for dataset, per_sigma in summary.items():
        by_value = {float(s): stats for s, stats in per_sigma.items()}
        cells = []
        for s in sigmas:
            stats = by_value.get(s)
            if stats is None:
                cells.append("-")
                continue
            p = stats["psnr"]
            p_text = "inf" if p is None or math.isinf(p) else f"{p:.2f}"
            cells.append(f"{p_text} / {stats['ssim']:.4f}")
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
