"""Evaluation: PSNR/SSIM metrics, the synthetic-noise protocol and real-noise pairs."""

from malleconv.evaluation.metrics import gaussian_window, psnr, ssim
from malleconv.evaluation.protocol import (
    NLM_H_COLOR,
    NLM_H_GRAY,
    Denoiser,
    classical_denoiser,
    evaluate,
    format_table,
    load_test_image,
    make_noisy,
    sigma_label,
)
from malleconv.evaluation.real import evaluate_real, find_pairs, format_real_table

__all__ = [
    "NLM_H_COLOR",
    "NLM_H_GRAY",
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
