#!/usr/bin/env bash
# Train mallenet-s stage 17, mallenet-m stage 3 and mallenet-w side by side on one GPU,
# each for its config's train.minutes, then pack each run's weights, metrics and log.
#
#   scripts/train_gpu_lease.sh DATA RUNS PACKED [--set KEY=VALUE ...]
#
# DATA: the CBSD432 folder; RUNS: where the run folders go; PACKED: where one
# NAME.tar.gz per run goes (weights, spec, metrics.csv, log; no checkpoints). Extra
# arguments go to every `malleconv train` (e.g. --set train.minutes=0.1 for a smoke run).
# Written for a 15-minute GPU lease: every run ends on its own clock and exports its
# weights even when another run fails.
set -u
if [ $# -lt 3 ]; then
    echo "usage: $0 DATA RUNS PACKED [--set KEY=VALUE ...]" >&2
    exit 2
fi
DATA=$1 RUNS=$2 PACKED=$3
shift 3
PY=${PYTHON:-python3}
mkdir -p "$RUNS" "$PACKED"

declare -A CONFIG=(
    [mallenet-s-s17]=configs/mallenet-s-stage17-gpu.yaml
    [mallenet-m-s3]=configs/mallenet-m-stage3-gpu.yaml
    [mallenet-w]=configs/mallenet-w-gpu.yaml
)
declare -A INIT=(
    [mallenet-s-s17]=mallenet-s
    [mallenet-m-s3]=experiments/weights/mallenet-m-stage2.safetensors
    [mallenet-w]=experiments/weights/mallenet-m-stage2.safetensors
)
RUN_NAMES="mallenet-s-s17 mallenet-m-s3 mallenet-w"

pids=()
for name in $RUN_NAMES; do
    "$PY" -m malleconv train --config "${CONFIG[$name]}" --init "${INIT[$name]}" \
        --data "$DATA" --out "$RUNS/$name" --no-progress "$@" >"$RUNS/$name.log" 2>&1 &
    pids+=($!)
done

# A line per run every minute while any runs: the last logged step, loss and pixels/s.
tick=0
while jobs -r | grep -q .; do
    sleep 5
    tick=$((tick + 1))
    [ $((tick % 12)) -eq 0 ] || continue
    for name in $RUN_NAMES; do
        last=$(tail -n 1 "$RUNS/$name/metrics.csv" 2>/dev/null)
        echo "$(date +%T) $name: ${last:-no metrics yet}"
    done
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
    fi
done

status=0
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || status=1
done
for name in $RUN_NAMES; do
    echo "== $name"
    tail -c 1500 "$RUNS/$name.log"
    cp "$RUNS/$name.log" "$RUNS/$name/train.log" 2>/dev/null
    tar czf "$PACKED/$name.tar.gz" -C "$RUNS" --exclude checkpoints --exclude tensorboard "$name"
done
exit $status
