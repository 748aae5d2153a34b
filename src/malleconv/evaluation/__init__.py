"""Evaluation: PSNR/SSIM metrics and the synthetic-noise benchmark protocol."""

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

__all__ = [
    "NLM_H_COLOR",
    "NLM_H_GRAY",
    "Denoiser",
    "classical_denoiser",
    "evaluate",
    "format_table",
    "gaussian_window",
    "load_test_image",
    "make_noisy",
    "psnr",
    "sigma_label",
    "ssim",
]
