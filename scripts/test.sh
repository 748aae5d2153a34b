#!/usr/bin/env bash
# Sets everything up in .venv (CPU PyTorch) and runs the linter and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[test,gpu]"
.venv/bin/ruff check src tests benchmarks
.venv/bin/python -m pytest "$@"
