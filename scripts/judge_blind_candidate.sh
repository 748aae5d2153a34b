#!/usr/bin/env bash
# Judges a candidate blind model (a new mallenet-s-real stage) the way shipped stages were
# judged, on the held-out synthetic split first and CC15 only reported after:
#
#   scripts/judge_blind_candidate.sh WEIGHTS OUT [--threads N]
#
#   OUT/split.md      benchmarks/blind_validation.py, --blend 0.25, strength 1 and 1.25:
#                     camera noise, white 15 / 25 / 50 (level not told and told), clean crops,
#                     the level the estimator reads
#   OUT/soft.md       the same on softened scenes (--camera-noise optics_prob=1), the check
#                     that pointed the right way first on estimator changes
#   OUT/routing.md    benchmarks/noise_routing.py --blind-model: the automatic mode's split,
#                     which decides (camera, white noise, clean; the threshold)
#   OUT/photo/        benchmarks/photo_mode.py --blind-model --skip speed: CC15, CBSD68's gaps,
#                     clean Kodak24 + McMaster, reported after the decision
#
# Run the shipped model through it too (WEIGHTS = mallenet-s-real) for figures measured
# side by side. Needs MALLECONV_DATA (train/, test/, real/). About 25 minutes on 2 cores.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 WEIGHTS OUT [--threads N]" >&2
    exit 2
fi
WEIGHTS=$1 OUT=$2
shift 2
if [ -z "${MALLECONV_DATA:-}" ]; then
    echo "$0: set MALLECONV_DATA to the datasets folder (train/, test/, real/)" >&2
    exit 2
fi
PY=${PYTHON:-python3}
TRAIN=("$MALLECONV_DATA/train/CBSD432" "$MALLECONV_DATA/train/OpenPhotos")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
"$PY" "$ROOT/benchmarks/blind_validation.py" --data "${TRAIN[@]}" --model "$WEIGHTS" --blend 0.25 \
    --strength 1 1.25 --out "$OUT/split.md" "$@"
"$PY" "$ROOT/benchmarks/blind_validation.py" --data "${TRAIN[@]}" --model "$WEIGHTS" --blend 0.25 \
    --strength 1 1.25 --camera-noise optics_prob=1 --out "$OUT/soft.md" "$@"
"$PY" "$ROOT/benchmarks/noise_routing.py" --data "${TRAIN[@]}" --blind-model "$WEIGHTS" \
    --out "$OUT/routing.md" --rows "$OUT/routing_rows.json" "$@"
"$PY" "$ROOT/benchmarks/photo_mode.py" --data "$MALLECONV_DATA" --blind-model "$WEIGHTS" --skip speed \
    --out "$OUT/photo"
echo "wrote $OUT/split.md $OUT/soft.md $OUT/routing.md $OUT/photo/"
