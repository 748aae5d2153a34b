#!/usr/bin/env bash
# Train one or more runs side by side on one GPU, each for its config's train.minutes, then
# pack each run's weights, metrics and log.
#
#   scripts/train_gpu_lease.sh DATA RUNS PACKED NAME=CONFIG@INIT... [-- TRAIN_ARGS...]
#
# DATA: the CBSD432 folder; RUNS: where the run folders go; PACKED: where one
# NAME.tar.gz per run goes (weights, spec, metrics.csv, log; no checkpoints). Each
# NAME=CONFIG@INIT starts `malleconv train --config CONFIG --init INIT --out RUNS/NAME`
# (NAME=CONFIG without @INIT trains from scratch). Arguments after `--` go to every run
# (e.g. -- --set train.minutes=0.1 for a smoke run).
# Written for a 15-minute GPU lease: every run ends on its own clock and exports its
# weights even when another run fails. Runs share the GPU (three kept an H200 97-100% busy
# in the first lease), so a run that matters most is best run alone.
#
# The first lease (stage 17, docs/training.md) ran:
#   scripts/train_gpu_lease.sh $MALLECONV_DATA/train/CBSD432 runs/gpu runs/gpu-packed \
#       mallenet-s-s17=configs/mallenet-s-stage17-gpu.yaml@mallenet-s \
#       mallenet-m-s3=configs/mallenet-m-stage3-gpu.yaml@experiments/weights/mallenet-m-stage2.safetensors \
#       mallenet-w=configs/mallenet-w-gpu.yaml@experiments/weights/mallenet-m-stage2.safetensors
set -u
usage() {
    echo "usage: $0 DATA RUNS PACKED NAME=CONFIG[@INIT]... [-- TRAIN_ARGS...]" >&2
    exit 2
}
[ $# -ge 4 ] || usage
DATA=$1 RUNS=$2 PACKED=$3
shift 3
PY=${PYTHON:-python3}

names=() configs=() inits=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    spec=$1
    shift
    case $spec in
    *=*) ;;
    *) echo "$0: run '$spec' is not NAME=CONFIG[@INIT]" >&2; usage ;;
    esac
    name=${spec%%=*} rest=${spec#*=}
    config=${rest%%@*} init=
    [ "$config" != "$rest" ] && init=${rest#*@}
    if [ -z "$name" ] || [ ! -f "$config" ]; then
        echo "$0: run '$spec': no config file '$config'" >&2
        exit 2
    fi
    names+=("$name") configs+=("$config") inits+=("$init")
done
[ ${#names[@]} -gt 0 ] || usage
[ $# -gt 0 ] && shift  # the "--"
mkdir -p "$RUNS" "$PACKED"

pids=()
for i in "${!names[@]}"; do
    name=${names[$i]}
    init_args=()
    [ -n "${inits[$i]}" ] && init_args=(--init "${inits[$i]}")
    "$PY" -m malleconv train --config "${configs[$i]}" "${init_args[@]}" \
        --data "$DATA" --out "$RUNS/$name" --no-progress "$@" >"$RUNS/$name.log" 2>&1 &
    pids+=($!)
done

# A line per run every minute while any runs: the last logged step, loss and pixels/s.
tick=0
while jobs -r | grep -q .; do
    sleep 5
    tick=$((tick + 1))
    [ $((tick % 12)) -eq 0 ] || continue
    for name in "${names[@]}"; do
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
for name in "${names[@]}"; do
    echo "== $name"
    tail -c 1500 "$RUNS/$name.log"
    cp "$RUNS/$name.log" "$RUNS/$name/train.log" 2>/dev/null
    tar czf "$PACKED/$name.tar.gz" -C "$RUNS" --exclude checkpoints --exclude tensorboard "$name"
done
exit $status
