#!/usr/bin/env bash
# Sets everything up in .venv (CPU PyTorch) and denoises the bundled sample image:
# writes out/sample_noisy.png, out/sample_denoised.png, out/sample_comparison.png.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e .
.venv/bin/malleconv demo --out out --overwrite "$@"
