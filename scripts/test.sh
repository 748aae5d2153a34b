#!/usr/bin/env bash
# Sets everything up in .venv (CPU PyTorch) and runs the linter and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[test,gpu,onnx,openvino]"
.venv/bin/ruff check src tests benchmarks research scripts
# The browser test (tests/test_web.py): Debian's chromium (no browser can be downloaded),
# the page's npm packages from its lock file, the exported model. Each step is skipped
# when already done, so reruns cost seconds. Once set up here (or in CI), the test must
# run: MALLECONV_WEB_TEST=required turns its skips into failures.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if command -v npm >/dev/null && ! { [ -f web/vendor/ort/ort.wasm.min.mjs ] &&
    cmp -s web/package-lock.json web/node_modules/.malleconv-ci-lock; }; then
  npm ci --prefix web --no-audit --no-fund --loglevel=error >/dev/null
  cp web/package-lock.json web/node_modules/.malleconv-ci-lock
fi
if [ -n "${CI:-}" ] || { [ -x /usr/bin/chromium ] && [ -f web/vendor/ort/ort.wasm.min.mjs ] &&
    .venv/bin/python -c "import onnx, onnxruntime" 2>/dev/null; }; then
  .venv/bin/malleconv web --prepare >/dev/null
  export MALLECONV_WEB_TEST=required
fi
.venv/bin/python -m pytest "$@"
