#!/usr/bin/env bash
# Train one or more runs side by side on one GPU, each for its config's train.minutes, then
# pack each run's weights, metrics and log.
#
#   scripts/train_gpu_lease.sh DATA RUNS PACKED NAME=CONFIG[@INIT] [+KEY=VALUE...]... \
#       [-- TRAIN_ARGS...]
#
# DATA: the training image folder, or several joined by commas (CBSD432,OpenPhotos for
# mallenet-s-real); RUNS: where the run folders go; PACKED: where one
# NAME.tar.gz per run goes (weights, spec, metrics.csv, log; no checkpoints). Each
# NAME=CONFIG@INIT starts `malleconv train --config CONFIG --init INIT --out RUNS/NAME`
# (NAME=CONFIG without @INIT trains from scratch); each +KEY=VALUE after it adds
# `--set KEY=VALUE` to that run only, so a run is a recipe plus its overrides as in
# configs/lineage/. Arguments after `--` go to every run (e.g. -- --set train.minutes=0.1
# for a smoke run).
# Written for a 15-minute GPU lease: every run ends on its own clock and exports its
# weights even when another run fails. Runs share the GPU (three kept an H200 97-100% busy
# in the first lease), so a run that matters most is best run alone.
#
# mallenet-s stage 20 (configs/lineage/mallenet-s.yaml), alone on the GPU:
#   scripts/train_gpu_lease.sh $MALLECONV_DATA/train/CBSD432 runs/gpu runs/gpu-packed \
#       mallenet-s-s20=configs/chroma-mix-gpu.yaml@runs/mallenet-s-s22/mallenet-s.safetensors \
#       +train.seed=20
set -u
usage() {
    echo "usage: $0 DATA RUNS PACKED NAME=CONFIG[@INIT] [+KEY=VALUE...]... [-- TRAIN_ARGS...]" >&2
    exit 2
}
[ $# -ge 4 ] || usage
DATA=$1 RUNS=$2 PACKED=$3
shift 3
PY=${PYTHON:-python3}

# sets[i]: run i's --set values, one per line (bash has no arrays of arrays).
names=() configs=() inits=() sets=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    spec=$1
    shift
    case $spec in
    +*=*)
        if [ ${#names[@]} -eq 0 ]; then
            echo "$0: override '$spec' comes before any NAME=CONFIG run" >&2
            usage
        fi
        prev=$((${#names[@]} - 1))
        sets[$prev]+="${spec#+}"$'\n'
        continue
        ;;
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
    names+=("$name") configs+=("$config") inits+=("$init") sets+=("")
done
[ ${#names[@]} -gt 0 ] || usage
[ $# -gt 0 ] && shift  # the "--"
mkdir -p "$RUNS" "$PACKED"
IFS=',' read -ra data_dirs <<<"$DATA"

pids=()
for i in "${!names[@]}"; do
    name=${names[$i]}
    init_args=() set_args=()
    [ -n "${inits[$i]}" ] && init_args=(--init "${inits[$i]}")
    while IFS= read -r item; do
        [ -n "$item" ] && set_args+=(--set "$item")
    done <<<"${sets[$i]}"
    "$PY" -m malleconv train --config "${configs[$i]}" "${set_args[@]}" "${init_args[@]}" \
        --data "${data_dirs[@]}" --out "$RUNS/$name" --no-progress "$@" >"$RUNS/$name.log" 2>&1 &
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
