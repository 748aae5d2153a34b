#!/usr/bin/env bash
# Re-measures every figure in docs/ (run on an otherwise idle machine):
#   docs/benchmarks/operator.{md,json}     slice_conv speed and memory
#   docs/benchmarks/train_speed.{md,json}  training pixels/s
#   docs/results/<model>/            evaluation of the shipped models (docs/models.md)
# Needs the datasets: MALLECONV_DATA=/path/to/datasets (train/, test/).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${MALLECONV_DATA:?set MALLECONV_DATA to the folder holding train/ and test/}"
PY=.venv/bin/python
$PY benchmarks/operator.py --sizes 256 512 1024 --out docs/benchmarks
$PY benchmarks/train_speed.py --models mallenet-s mallenet-l dncnn-c --out docs/benchmarks
for model in mallenet-s; do
  .venv/bin/malleconv eval --model "$model" --data CBSD68 Kodak24 McMaster \
      --sigma 15 25 50 --out "docs/results/$model" --no-progress
done
