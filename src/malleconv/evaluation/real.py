"""Evaluation on real camera noise: pairs of a noisy shot and a clean reference.

Sets such as CC15 (Nam et al., CVPR 2016) hold, per scene, one noisy photo
(``NAME_real.png``) and the mean of many shots of the same static scene
(``NAME_mean.png``) as the clean reference. For every pair and every requested noise level:

1. read both images as 8-bit RGB (or BT.601 luminance with ``gray``) and scale the noisy
   one to ``[0, 1]``;
2. denoise it with the given ``sigma`` (8-bit units), or with ``"auto"``: the denoiser gets
   ``None`` and finds the level itself (a blind model's estimated noise-level map, or for
   other models :func:`malleconv.inference.estimate_sigma` of the noisy image); the level
   used is recorded (for a map, its mean);
3. clip the output to ``[0, 1]``, round it to 8 bits, and compute PSNR and SSIM against the
   reference on all channels without a border crop, as the synthetic protocol does
   (:mod:`malleconv.evaluation.protocol`).

The noisy input's own PSNR / SSIM is reported beside the results as ``"input"``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from malleconv.data.noise import check_sigma
from malleconv.evaluation.metrics import psnr, ssim
from malleconv.evaluation.protocol import (
    Denoiser,
    _dataset_names,
    check_ssim_size,
    load_test_image,
    run_denoiser,
    sigma_label,
    write_results,
)
from malleconv.io import list_images, to_float, write_image
from malleconv.io.atomic import make_folder

__all__ = ["evaluate_real", "find_pairs", "format_real_table"]

INPUT = "input"
"""Summary key of the noisy input's own scores."""


def find_pairs(
    folder: str | os.PathLike[str], noisy_suffix: str = "_real", clean_suffix: str = "_mean"
) -> list[tuple[str, Path, Path]]:
    """``(scene, noisy file, clean file)`` for every ``SCENE<noisy_suffix>.*`` image in
    ``folder`` that has a ``SCENE<clean_suffix>.*`` partner, sorted by scene name.

    Raises:
        ValueError: a noisy image without its reference, two files of one name (other
            extensions), or no pair at all.
    """
    folder = Path(folder)
    by_stem: dict[str, Path] = {}
    for f, _ in list_images([folder], recursive=False):
        if f.stem in by_stem:  # s_real.png beside s_real.jpg: which one is the photo?
            raise ValueError(f"{folder}: {by_stem[f.stem].name} and {f.name} share a name; "
                             "keep one of them")
        by_stem[f.stem] = f
    pairs, missing = [], []
    for stem in sorted(by_stem):
        if not stem.endswith(noisy_suffix):
            continue
        scene = stem[: -len(noisy_suffix)]
        clean = by_stem.get(scene + clean_suffix)
        if clean is None:
            missing.append(by_stem[stem].name)
        else:
            pairs.append((scene, by_stem[stem], clean))
    if missing:
        raise ValueError(
            f"{folder}: no {clean_suffix!r} reference for {', '.join(missing)} "
            f"(pairs are SCENE{noisy_suffix}.* and SCENE{clean_suffix}.*)"
        )
    if not pairs:
        raise ValueError(
            f"{folder}: no image pairs SCENE{noisy_suffix}.* / SCENE{clean_suffix}.* found"
        )
    return pairs


def _label(sigma: float | str) -> str:
    return "auto" if sigma == "auto" else sigma_label(float(sigma))


def evaluate_real(
    denoiser: Denoiser,
    data_dirs: Sequence[str | os.PathLike[str]],
    sigmas: Sequence[float | str] = ("auto",),
    *,
    gray: bool = False,
    noisy_suffix: str = "_real",
    clean_suffix: str = "_mean",
    out_dir: str | os.PathLike[str] | None = None,
    save_images: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, dict[str, dict[str, float]]]:
    """Denoise the real noisy photos of each folder and score them against the references.

    Args:
        denoiser: ``denoiser(noisy, sigma) -> denoised`` on ``1 x C x H x W`` float32 tensors
            (:data:`~malleconv.evaluation.protocol.Denoiser`).
        data_dirs: Folders of image pairs (see :func:`find_pairs`); the folder name is the
            set's name and must be unique.
        sigmas: Noise levels to denoise with: numbers in ``[0, 75]`` (8-bit units) and/or
            ``"auto"`` (per-image estimate).
        gray: Score one-channel luminance instead of RGB.
        noisy_suffix, clean_suffix: How the two images of a pair are named.
        out_dir: If given, write ``per_image.csv`` and ``summary.json`` there (atomically).
        save_images: If given, save each output as ``save_images/<set>/<sigma>/<scene>.png``.
        progress: Show a progress bar on stderr.

    Returns:
        ``{set: {"input": {"psnr", "ssim", "images"}, "<sigma>": {"psnr", "ssim", "images",
        "seconds_per_image", "sigma_mean"}}}`` with ``"auto"`` or :func:`sigma_label` keys;
        ``sigma_mean`` is the mean noise level the denoiser was given.

    Raises:
        ValueError: a bad sigma, duplicate set names, unpaired images, or a denoiser output
            of the wrong shape.
    """
    from tqdm.auto import tqdm

    from malleconv.inference import estimate_sigma

    levels: list[float | str] = []
    for s in sigmas:
        if isinstance(s, str) and s.strip().lower() == "auto":
            level: float | str = "auto"
        else:
            check_sigma(float(s))
            level = float(s)
        if level not in levels:  # each once: a repeat would score the same images twice
            levels.append(level)
    if not levels:
        raise ValueError("sigmas is empty")
    dirs = [Path(d) for d in data_dirs]
    if not dirs:
        raise ValueError("data_dirs is empty")
    names = _dataset_names(dirs)
    if out_dir is not None:
        make_folder(out_dir)  # before the work: a file in the way fails now, not at the end

    summary: dict[str, dict[str, dict[str, float]]] = {}
    rows: list[dict[str, object]] = []
    for dataset, folder in zip(names, dirs):
        files = find_pairs(folder, noisy_suffix, clean_suffix)
        pairs = [
            (scene, load_test_image(noisy, gray=gray), load_test_image(clean, gray=gray))
            for scene, noisy, clean in files
        ]
        for (_, noisy_file, _), (scene, noisy8, clean8) in zip(files, pairs):
            check_ssim_size(noisy8, noisy_file)
            if noisy8.shape != clean8.shape:
                raise ValueError(
                    f"{folder}: {scene}: noisy {noisy8.shape} and reference {clean8.shape} "
                    "differ in size"
                )
        summary[dataset] = {
            INPUT: {
                "psnr": float(np.mean([psnr(n, c) for _, n, c in pairs])),
                "ssim": float(np.mean([ssim(n, c) for _, n, c in pairs])),
                "images": len(pairs),
            }
        }
        bar = tqdm(total=len(pairs) * len(levels), desc=dataset, disable=not progress)
        for level in levels:
            scores = []
            for scene, noisy8, clean8 in pairs:
                noisy = torch.from_numpy(np.ascontiguousarray(to_float(noisy8).transpose(2, 0, 1)))
                noisy = noisy[None]
                told = None if level == "auto" else float(level)
                output8, seconds = run_denoiser(denoiser, noisy, told, scene)
                sigma = getattr(denoiser, "last_sigma", None) if told is None else told
                if sigma is None:  # a denoiser that does not say what it found
                    sigma = estimate_sigma(noisy)
                p, s = psnr(output8, clean8), ssim(output8, clean8)
                scores.append((p, s, seconds, sigma))
                rows.append(
                    {
                        "dataset": dataset,
                        "image": scene,
                        "sigma": _label(level),
                        "sigma_used": sigma,
                        "psnr": p,
                        "ssim": s,
                        "seconds": seconds,
                    }
                )
                if save_images is not None:
                    target = Path(save_images) / dataset / _label(level) / f"{scene}.png"
                    write_image(target, output8, overwrite=True)
                bar.update(1)
            p_all, s_all, t_all, sig_all = zip(*scores)
            summary[dataset][_label(level)] = {
                "psnr": float(np.mean(p_all)),
                "ssim": float(np.mean(s_all)),
                "images": len(scores),
                "seconds_per_image": float(np.mean(t_all)),
                "sigma_mean": float(np.mean(sig_all)),
            }
        bar.close()

    if out_dir is not None:
        write_results(
            Path(out_dir),
            rows,
            summary,
            protocol=(
                "real noisy photo against its clean reference; denoised with the given sigma "
                "or, for 'auto', the level the denoiser found itself; output clipped to [0,1] "
                "and rounded to 8 bits; PSNR/SSIM on 8-bit values, all channels, no border crop"
            ),
            gray=gray,
        )
    return summary


def format_real_table(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    """An :func:`evaluate_real` summary as a markdown table: one row per set, the noisy
    input first, then one column per sigma (``"PSNR / SSIM"``; auto with its mean sigma)."""
    keys = list(dict.fromkeys(k for per in summary.values() for k in per if k != INPUT))
    header = "| Dataset | noisy input | " + " | ".join(
        "sigma=auto" if k == "auto" else f"sigma={k}" for k in keys
    )
    lines = [header + " |", "|---|---|" + "---|" * len(keys)]
    for dataset, per in summary.items():
        cells = [f"{per[INPUT]['psnr']:.2f} / {per[INPUT]['ssim']:.4f}"]
        for k in keys:
            stats = per.get(k)
            if stats is None:
                cells.append("-")
                continue
            cell = f"{stats['psnr']:.2f} / {stats['ssim']:.4f}"
            if k == "auto":
                cell += f" (mean sigma {stats['sigma_mean']:.1f})"
            cells.append(cell)
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
