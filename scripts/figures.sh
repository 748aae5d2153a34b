#!/usr/bin/env bash
# Re-measures every figure in docs/ (run on an otherwise idle machine):
#   docs/benchmarks/slice_conv_speed.{md,json}         slice_conv speed and memory
#   docs/benchmarks/tuned/slice_conv_speed.{md,json}   the same timings without page-fault costs
#   docs/benchmarks/train_speed.{md,json}      training pixels/s
#   docs/benchmarks/prelu/train_speed.*        malleconv's PReLU against torch's
#   docs/benchmarks/inference_speed.*          denoising time per model
#   docs/benchmarks/peer_speed.{md,json}       against DnCNN, DRUNet, SwinIR (needs spandrel,
#                                              see benchmarks/peer_speed.py; skipped without)
#   (docs/benchmarks/peer_speed_cuda*.* need a GPU: peer_speed.py --device cuda, not run here)
#   docs/research/allocator.{md,json}          glibc default against tune_allocator()
#   docs/benchmarks/denoise_memory.{md,json}   24-megapixel photo: peak RSS and time
#   docs/research/chroma_subsampling.md        what 4:2:0 chroma costs each test set
#   docs/results/cc15-*/                       real camera noise (CC15), models and BM3D
#   docs/results/<model>/, docs/results/cbm3d/ evaluation (docs/models.md); BM3D takes
#                                              about an hour (skip with SKIP_BM3D=1)
# Needs the datasets: MALLECONV_DATA=/path/to/datasets (train/, test/).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${MALLECONV_DATA:?set MALLECONV_DATA to the folder holding train/ and test/}"
PY=.venv/bin/python
$PY benchmarks/slice_conv_speed.py --sizes 256 512 1024 --kinds depthwise --max-gb 18 \
    --case-timeout 200 --out docs/benchmarks
$PY benchmarks/slice_conv_speed.py --sizes 512 --kinds depthwise --methods slice_conv static \
    --no-memory --tune-allocator --warmup 3 --repeat 7 --out docs/benchmarks/tuned
$PY benchmarks/train_speed.py --models mallenet-s mallenet-l dncnn-c --out docs/benchmarks
$PY benchmarks/train_speed.py --models mallenet-s --variants "fp32 channels-last" \
    --torch-prelu-too --patch 128 --steps 20 --out docs/benchmarks/prelu
$PY benchmarks/inference_speed.py --models mallenet-s dncnn-c --repeat 3 \
    --out docs/benchmarks
if $PY -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('spandrel') and u.find_spec('einops')))"; then
  $PY benchmarks/peer_speed.py --out docs/benchmarks
fi
$PY research/allocator.py --out docs/research
$PY benchmarks/denoise_memory.py --precision float32 bfloat16 --out docs/benchmarks
$PY research/chroma_subsampling.py --data "$MALLECONV_DATA/test/CBSD68" \
    "$MALLECONV_DATA/test/Kodak24" "$MALLECONV_DATA/test/McMaster" \
    --train "$MALLECONV_DATA/train/CBSD432" --out docs/research/chroma_subsampling.md
.venv/bin/malleconv eval --model mallenet-s --data CBSD68 Kodak24 McMaster \
    --sigma 15 25 50 --out docs/results/mallenet-s --no-progress --overwrite
.venv/bin/malleconv eval --model mallenet-s --self-ensemble --data CBSD68 Kodak24 McMaster \
    --sigma 15 25 50 --out docs/results/mallenet-s-x8 --no-progress --overwrite
.venv/bin/malleconv eval --model mallenet-s --precision bfloat16 --data CBSD68 Kodak24 McMaster \
    --sigma 15 25 50 --out docs/results/mallenet-s-bf16 --no-progress --overwrite
.venv/bin/malleconv eval --model mallenet-s --real --data CC15 --sigma auto 5 10 15 20 \
    --out docs/results/cc15-mallenet-s --no-progress --overwrite
.venv/bin/malleconv eval --model mallenet-s-gray --data Set12 BSD68 \
    --sigma 15 25 50 --out docs/results/mallenet-s-gray --no-progress --overwrite
if [ -z "${SKIP_BM3D:-}" ]; then
  .venv/bin/malleconv eval --method bm3d --data McMaster Kodak24 --sigma 15 25 50 \
      --threads 1 --out docs/results/cbm3d --no-progress --overwrite
  .venv/bin/malleconv eval --method bm3d --real --data CC15 --sigma auto 10 15 \
      --threads 1 --out docs/results/cc15-bm3d --no-progress --overwrite
  .venv/bin/malleconv eval --method bm3d --data Set12 --gray --sigma 15 25 50 \
      --out docs/results/bm3d-gray --no-progress --overwrite
  .venv/bin/malleconv eval --method bm3d --data BSD68 --gray --sigma 15 25 50 \
      --out docs/results/bm3d-gray-bsd68 --no-progress --overwrite
fi
$PY scripts/compare_results.py docs/results/mallenet-s-gray docs/results/bm3d-gray \
    --names mallenet-s-gray BM3D --datasets Set12 --out docs/results/mallenet-s-gray-vs-bm3d.md
$PY scripts/compare_results.py docs/results/mallenet-s-gray docs/results/bm3d-gray-bsd68 \
    --names mallenet-s-gray BM3D --datasets BSD68 \
    --out docs/results/mallenet-s-gray-vs-bm3d-bsd68.md
$PY scripts/compare_results.py docs/results/mallenet-s docs/results/cbm3d \
    --names mallenet-s CBM3D --datasets Kodak24 McMaster \
    --out docs/results/mallenet-s-vs-cbm3d.md
