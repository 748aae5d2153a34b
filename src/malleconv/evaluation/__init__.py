"""Evaluation: PSNR/SSIM metrics, the synthetic-noise protocol, real-noise pairs and the
classical baselines."""

from malleconv.evaluation.baselines import (
    BM3D,
    NLM_H_COLOR,
    NLM_H_GRAY,
    NonLocalMeans,
    classical_denoiser,
)
from malleconv.evaluation.metrics import gaussian_window, psnr, ssim
from malleconv.evaluation.protocol import (
    Denoiser,
    evaluate,
    format_table,
    load_test_image,
    make_noisy,
    sigma_label,
)
from malleconv.evaluation.real import evaluate_real, find_pairs, format_real_table

__all__ = [
    "BM3D",
    "NLM_H_COLOR",
    "NLM_H_GRAY",
    "NonLocalMeans",
    "Denoiser",
    "classical_denoiser",
    "evaluate",
    "evaluate_real",
    "find_pairs",
    "format_real_table",
    "format_table",
    "gaussian_window",
    "load_test_image",
    "make_noisy",
    "psnr",
    "sigma_label",
    "ssim",
]
