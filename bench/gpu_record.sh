#!/usr/bin/env bash
# The GPU record on a time-limited GPU host (10 minutes a command), as one script. Three phases, in this order:
#   perf     (a) the performance record at real size: bench/gpu_check.sh (WRN-28-10 at batch 512 on a 50,000-row
#                store, fp32 and bf16 with MFU; full-size EDM DDPM++ extraction; LightningDiT-XL; ConvNeXt-B)
#   teacher  (b) edm-cifar10-mini: `teacher fit --net cifar-mini` on real CIFAR-10 (the JPEG re-encoding), a linear
#                probe against raw pixels on CIFAR-10 test images, 100 samples, the record (size, loss curve)
#   cifar10  (c) the first CIFAR-10 test of DRA: AT vs AT + DRA on edm-cifar10-mini targets, PreAct ResNet-18,
#                TRADES-10 at 8/255, 30 epochs, seeds 0 and 1, AutoAttack on the first 1000 test images, the table
# Each phase is skipped when its record under OUT is complete, starts only when its minimum time is left of
# --budget-s, and is stopped in time (`timeout` on each command). Rerunning the same command continues: on the
# same machine from OUT and WORK; on a fresh machine from --records (the records.tar.gz an earlier run wrote
# into --bundle). With 10-minute commands: (a) fits one, (b) one more, (c) one or two.
set -uo pipefail

usage() {
  cat <<'EOF'
Usage: bash bench/gpu_record.sh [--phases perf,teacher,cifar10] [--budget-s S] [--out DIR] [--work DIR]
                                 [--wheels DIR] [--cifar ARCHIVE] [--records TAR] [--teacher-weights FILE]
                                 [--bundle DIR]

  --phases LIST          phases to run, in the order perf, teacher, cifar10 (default: all three)
  --budget-s S           seconds this call may take in all (env BUDGET_S; default 540, for a host that stops
                         a command at 600 s); 20 s of it are kept for writing the bundle
  --out DIR              every record (env OUT; default runs/gpu-record)
  --work DIR             data, stores, scratch; not brought back (env WORK; default ${TMPDIR:-/tmp}/dra-gpu-record)
  --wheels DIR           wheel folder from bench/gpu_wheels.sh, for a host without a package index (env WHEELS)
  --cifar ARCHIVE        CIFAR-10's JPEG re-encoding: the zip, or the .tar.xz `experiments/cifar10_jpeg.py pack`
                         makes (env CIFAR10_JPEG, else DRA_CIFAR10_JPEG_ZIP); needed by teacher and cifar10
  --records TAR          records.tar.gz from an earlier machine: unpacked into OUT first (existing files kept)
  --teacher-weights FILE edm-cifar10-mini's EMA weights for phase cifar10 (env TEACHER_WEIGHTS; default: OUT's from
                         phase teacher, else the packaged ones)
  --bundle DIR           also write DIR/records.tar.gz (OUT without weights, checkpoints or stores), DIR/gpu-record.log
                         and DIR/edm-cifar10-mini.safetensors (when made): at most 3 files, each under 16 MiB, for a
                         host that sends back only small files
  -h, --help             this text

Env (sizes; defaults are the real ones): DEVICE (cuda); perf: PERF_S (450, its limit) and bench/gpu_check.sh's
ROWS BATCH STEPS MODEL SKIP_IMAGENET; teacher: FIT_NET (cifar-mini) FIT_MINUTES (8, less when the budget is
shorter: the fit gets what is left after AFTER_S, 120 s for the probe, samples and record) FIT_STEPS (200000)
FIT_BATCH (512) PROBE_TRAIN_N (5000) PROBE_TEST_N (2000) SAMPLES (100) TRAIN_PER_CLASS TEST_PER_CLASS (all);
cifar10: SEEDS (0,1) EPOCHS (chosen by experiments/cifar10_plan.py: 30 when a seed's pair fits) N (1000)
EVAL_BATCH (1000) PARALLEL (runs trained at once: all planned) ATTACK (autoattack; apgd-ce for rehearsals)
CIFAR_SETS (extra config overrides, space-separated key=value) PLAN (on; off with EPOCHS runs every seed without
projecting the time: rehearsals, where the projection is far too long)
CPU rehearsal at toy size: docs/performance.md, "GPU record: how to run it".
EOF
}

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/host_args.sh
source "$repo/bench/host_args.sh"
parse_host_args "$@"
PHASES=perf,teacher,cifar10 BUDGET_S=${BUDGET_S:-540} CIFAR=${CIFAR10_JPEG:-${DRA_CIFAR10_JPEG_ZIP:-}} RECORDS=
TEACHER_WEIGHTS=${TEACHER_WEIGHTS:-} BUNDLE=
set -- ${HOST_ARGS[@]+"${HOST_ARGS[@]}"}
while [ $# -gt 0 ]; do
  case $1 in
    --phases) PHASES=${2:?--phases needs a list}; shift 2 ;;
    --budget-s) BUDGET_S=${2:?--budget-s needs seconds}; shift 2 ;;
    --cifar) CIFAR=${2:?--cifar needs a file}; shift 2 ;;
    --records) RECORDS=${2:?--records needs a file}; shift 2 ;;
    --teacher-weights) TEACHER_WEIGHTS=${2:?--teacher-weights needs a file}; shift 2 ;;
    --bundle) BUNDLE=${2:?--bundle needs a folder}; shift 2 ;;
    *) echo "gpu_record.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
OUT=${OUT:-$repo/runs/gpu-record} WORK=${WORK:-${TMPDIR:-/tmp}/dra-gpu-record}
absolute_host_dirs || exit 1
for name in CIFAR RECORDS TEACHER_WEIGHTS; do
  if [ -n "${!name}" ]; then
    [ -f "${!name}" ] || { echo "gpu_record.sh: $name file ${!name} not found" >&2; exit 2; }
    printf -v "$name" '%s' "$(cd "$(dirname "${!name}")" && pwd)/$(basename "${!name}")"
  fi
done
if [ -n "$BUNDLE" ]; then
  mkdir -p "$BUNDLE" && BUNDLE=$(cd "$BUNDLE" && pwd)
fi
cd "$repo" || exit 1
DEVICE=${DEVICE:-cuda}
RESERVE_S=20  # kept for the bundle
export DEVICE TQDM_MININTERVAL=${TQDM_MININTERVAL:-20}  # progress bars: a line every 20 s in the logs

bundle() {
  [ -n "$BUNDLE" ] || return 0
  tar -czf "$BUNDLE/records.tar.gz" -C "$OUT" --exclude='*.pt' --exclude='*.safetensors' --exclude='*.zarr' \
    --exclude='*.partial' . 2>/dev/null
  cp "$OUT/gpu-record.log" "$BUNDLE/gpu-record.log" 2>/dev/null
  cp "$OUT/teacher/edm-cifar10-mini.safetensors" "$BUNDLE/" 2>/dev/null
  ls -l "$BUNDLE"
  true
}
trap bundle EXIT
if [ -n "$RECORDS" ]; then
  tar -xzf "$RECORDS" -C "$OUT" --skip-old-files || { echo "gpu_record.sh: cannot unpack $RECORDS" >&2; exit 2; }
fi
exec > >(tee -a "$OUT/gpu-record.log") 2>&1
SECONDS=0
echo "== gpu_record.sh $(date -u +%FT%TZ): phases $PHASES, budget $BUDGET_S s, device $DEVICE, out $OUT =="

# shellcheck source=bench/gpu_install.sh
source bench/gpu_install.sh || { echo "gpu_record.sh: install failed"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
python3 -c "import torch, zarr; print('torch', torch.__version__, 'zarr', zarr.__version__)" || exit 1
git log -1 --format='commit %H %s' 2>/dev/null || true

left() { echo $((BUDGET_S - RESERVE_S - SECONDS)); }
wanted() { [[ ",$PHASES," == *",$1,"* ]]; }

# The JPEG archive in the official python-batch layout (named dataset cifar10) under WORK/data, once per machine.
cifar_data() {
  if [ -z "$CIFAR" ]; then
    echo "$1: needs CIFAR-10's JPEG archive: pass --cifar (the zip, or experiments/cifar10_jpeg.py pack's .tar.xz)"
    return 1
  fi
  python3 experiments/cifar10_jpeg.py convert "$CIFAR" --out "$WORK/data" \
    ${TRAIN_PER_CLASS:+--train-per-class "$TRAIN_PER_CLASS"} ${TEST_PER_CLASS:+--test-per-class "$TEST_PER_CLASS"}
}

phase_perf() {
  if grep -q "^gpu_check done" "$OUT/perf/gpu_check.log" 2>/dev/null; then
    echo "perf: done before ($OUT/perf/gpu_check.log)"; return 0
  fi
  local limit; limit=$(left)
  limit=$((limit < ${PERF_S:-450} ? limit : ${PERF_S:-450}))
  if [ "$limit" -lt "${PERF_MIN_S:-240}" ]; then
    echo "perf: not started, $limit s left (it needs ${PERF_MIN_S:-240}); rerun on a fresh machine"; return 0
  fi
  echo "== phase perf (a): bench/gpu_check.sh, limit $limit s =="
  timeout --kill-after=10 "$limit" bash bench/gpu_check.sh --out "$OUT/perf" --work "$WORK/perf"
  local rc=$?
  [ "$rc" = 0 ] || echo "perf: stopped with exit $rc after $SECONDS s (124: its limit); its log so far is kept"
}

phase_teacher() {
  local dir=$OUT/teacher run=$OUT/teacher/run
  if [ -f "$dir/DONE" ]; then echo "teacher: done before ($dir)"; return 0; fi
  if [ "$(left)" -lt "${TEACHER_MIN_S:-240}" ]; then
    echo "teacher: not started, $(left) s left (it needs ${TEACHER_MIN_S:-240}); rerun on a fresh machine"; return 0
  fi
  echo "== phase teacher (b): fit edm-cifar10-mini on CIFAR-10 (JPEG copy), probe, samples =="
  mkdir -p "$dir"
  cifar_data teacher || return 0
  if [ -f "$run/stats.jsonl" ] && [ ! -f "$run/state.pt" ]; then  # a fit whose state stayed on another machine
    mv "$run" "$run.incomplete-$(date +%s)" && echo "teacher: an earlier machine's unfinished fit moved aside"
  fi
  # Fitting gets what is left after the probe, the samples and the record (AFTER_S), at most FIT_MINUTES.
  local minutes
  minutes=$(python3 -c "print(round(max(0.5, min(${FIT_MINUTES:-8}, ($(left) - ${AFTER_S:-120}) / 60)), 2))")
  echo "teacher: fitting for at most $minutes min"
  timeout --kill-after=10 "$(left)" python3 -m dra_pipeline teacher fit --data cifar10 --data-dir "$WORK/data" \
    --out "$run" --net "${FIT_NET:-cifar-mini}" --steps "${FIT_STEPS:-200000}" --batch-size "${FIT_BATCH:-512}" \
    --lr 1e-3 --seed 0 --device "$DEVICE" --max-minutes "$minutes" || { echo "teacher: fit stopped ($?)"; return 0; }
  cp "$run/ema.safetensors" "$dir/edm-cifar10-mini.safetensors"
  local weights=$dir/edm-cifar10-mini.safetensors
  timeout --kill-after=10 "$(left)" python3 -m dra_pipeline teacher probe --teacher edm-cifar10-mini \
    --checkpoint "$weights" --data cifar10 --data-dir "$WORK/data" \
    --layers "${PROBE_LAYERS:-dec.8x8_in1,dec.8x8_block2,dec.16x16_block2}" \
    --sigmas "${PROBE_SIGMAS:-0.02,0.06,0.2}" \
    --train-n "${PROBE_TRAIN_N:-5000}" --test-n "${PROBE_TEST_N:-2000}" --seed 0 --device "$DEVICE" \
    | tee "$dir/probe.md" || { echo "teacher: probe stopped"; return 0; }
  timeout --kill-after=10 "$(left)" python3 -m dra_pipeline generate --teacher edm-cifar10-mini \
    --checkpoint "$weights" --n "${SAMPLES:-100}" --out "$dir/samples.npz" --seed 0 --batch-size 100 \
    --device "$DEVICE" \
    || { echo "teacher: generate stopped"; return 0; }
  python3 experiments/teacher_record.py "$run" --samples "$dir/samples.npz" --out "$dir" && touch "$dir/DONE"
  echo "teacher: done in $SECONDS s; package it: cp $weights pipeline/teachers/weights/"
}

phase_cifar10() {
  local dir=$OUT/cifar10 store weights=$TEACHER_WEIGHTS
  local seeds=${SEEDS:-0,1} sets=() kv
  for kv in ${CIFAR_SETS:-}; do sets+=(--set "$kv"); done
  if [ -f "$dir/DONE" ]; then echo "cifar10: done before ($dir/results.md)"; return 0; fi
  if [ -z "$weights" ] && [ -f "$OUT/teacher/edm-cifar10-mini.safetensors" ]; then
    weights=$OUT/teacher/edm-cifar10-mini.safetensors
  fi
  if [ -z "$weights" ]; then  # the packaged file, when this checkout ships it
    weights=$(python3 -c "from dra_pipeline.teachers import edm; print(edm.WEIGHTS_DIR / edm.EDM_CIFAR10_MINI_FILE)")
    if [ ! -f "$weights" ]; then
      echo "cifar10: needs edm-cifar10-mini's weights: run phase teacher first, or pass --teacher-weights"; return 0
    fi
  fi
  if [ "$(left)" -lt "${CIFAR_MIN_S:-300}" ]; then
    echo "cifar10: not started, $(left) s left (it needs ${CIFAR_MIN_S:-300}); rerun on a fresh machine"; return 0
  fi
  echo "== phase cifar10 (c): AT vs AT + DRA on CIFAR-10 (JPEG copy), teacher $weights =="
  store=$WORK/cifar10-mini-$(sha256sum "$weights" | cut -c1-12).zarr  # one store per teacher weights
  mkdir -p "$dir"
  cifar_data cifar10 || return 0
  export DRA_DATA_DIR=$WORK/data
  for run in "$dir"/*/; do  # a run that came back without its checkpoints, unfinished: it starts again
    [[ $(basename "$run") =~ -s[0-9]+$ ]] || continue
    if [ -f "$run/config.yaml" ] && [ ! -f "$run/report.json" ] && [ ! -f "$run/last.pt" ]; then
      mv "$run" "${run%/}.incomplete-$(date +%s)" && echo "cifar10: unfinished $(basename "$run") moved aside"
    fi
  done
  timeout --kill-after=10 "$(left)" python3 -m dra_pipeline extract --teacher edm-cifar10-mini \
    --checkpoint "$weights" --data cifar10 --views clean,flip --out "$store" --batch-size 1024 --device "$DEVICE" \
    || { echo "cifar10: extract stopped"; return 0; }
  if [ ! -f "$dir/step.json" ]; then  # the step time the plan projects from, measured once per experiment
    timeout --kill-after=10 "$(left)" python3 bench/train_step.py --features "$store" \
      --config experiments/cifar10-short.yaml --device "$DEVICE" --modes plain,cached --steps "${TIMING_STEPS:-6}" \
      --warmup 2 --no-memory --json "$dir/step.json.partial" ${sets[@]+"${sets[@]}"} \
      || { echo "cifar10: step timing stopped"; return 0; }
    mv "$dir/step.json.partial" "$dir/step.json"
  fi
  local plan="${EPOCHS:-} $seeds"
  if [ "${PLAN:-on}" != off ] || [ -z "${EPOCHS:-}" ]; then  # PLAN=off with EPOCHS: every seed (rehearsals)
    plan=$(python3 experiments/cifar10_plan.py --step "$dir/step.json" --root "$dir" --store "$store" \
      --seeds "$seeds" --n "${N:-1000}" --left-s "$(left)" ${EPOCHS:+--epochs "$EPOCHS"} ${sets[@]+"${sets[@]}"}) \
      || return 0
  fi
  read -r epochs run_seeds <<<"$plan"
  local compared=1  # compare.py prints the table when it ends; otherwise it is printed below
  if [ -n "$run_seeds" ]; then
    local n_runs=$(($(tr -cd , <<<"$run_seeds" | wc -c) * 2 + 2))
    timeout --kill-after=20 "$(left)" python3 experiments/compare.py --dataset cifar10 --methods at,at-dra \
      --seeds "$run_seeds" --sweep '' --no-analyze --n "${N:-1000}" --eval-batch "${EVAL_BATCH:-1000}" \
      --attack "${ATTACK:-autoattack}" \
      --device "$DEVICE" --parallel "${PARALLEL:-$n_runs}" --root "$dir" --store "$store" \
      --teacher-checkpoint "$weights" \
      --data-dir "$WORK/data" --set "train.epochs=$epochs" ${sets[@]+"${sets[@]}"}
    compared=$?
    echo "cifar10: compare.py exit $compared after $SECONDS s"
  fi
  python3 experiments/compare.py --dataset cifar10 --methods at,at-dra --seeds "$seeds" --sweep '' --summary \
    --attack "${ATTACK:-autoattack}" --root "$dir" >/dev/null && [ "$compared" != 0 ] && cat "$dir/results.md"
  local left_seeds
  left_seeds=$(python3 -c "
import sys; sys.path.insert(0, 'experiments')
from pathlib import Path
from cifar10_plan import pending
print(','.join(map(str, pending(Path('$dir'), [int(s) for s in '$seeds'.split(',')], 0.5))))")
  if [ -z "$left_seeds" ]; then
    touch "$dir/DONE"; echo "cifar10: all runs evaluated"
  else
    echo "cifar10: seeds $left_seeds still to run, at $epochs epochs: rerun (on a fresh machine: with --records)"
  fi
}

for phase in perf teacher cifar10; do
  if wanted "$phase"; then "phase_$phase"; fi
done
echo "gpu_record done in $SECONDS s ($(left) s of the budget left)"
