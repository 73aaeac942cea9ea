#!/usr/bin/env bash
# The GPU check: the GPU figures of docs/performance.md in one run on any CUDA host, sized for the 450 s `perf` limit
# of bench/gpu_record.sh (not yet timed on a GPU).
# Measures with WRN-28-10 at batch 512 (DM-AT's preset) on a synthetic 50,000-row store made by `extract` with a
# random-weight EDM DDPM++ CIFAR-10 teacher (full size): extraction img/s over the bare teacher forward,
# cached-DRA / plain step time, online-teacher / cached step time, feature-wait fraction, peak GPU memory; then the
# ImageNet path at full size on random weights (LightningDiT-XL/1 extraction, a ConvNeXt-B TRADES-DRA step).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash bench/gpu_check.sh [--out DIR] [--wheels DIR] [--work DIR]

Prints the GPU figures and keeps a copy of everything printed in OUT/gpu_check.log.
Needs python3 with the package's dependencies (pyproject.toml; torch as a CUDA build); bench/gpu_install.sh
installs this checkout and whichever of zarr, its dependencies and pyautoattack are missing.

  --out DIR     where gpu_check.log goes (env OUT; default runs/gpu-check)
  --wheels DIR  wheel cache made by bench/gpu_wheels.sh, for hosts without a package index (env WHEELS;
                default: none, build this checkout and use the configured package index)
  --work DIR    synthetic images, random-weight teacher and feature store, remade on every run
                (env WORK; default ${TMPDIR:-/tmp}/dra-gpu-check)
  -h, --help    this text

Sizes (env): DEVICE (cuda), ROWS (50000), BATCH (512), STEPS (8), MODEL (wrn-28-10), IMAGENET_ROWS (1024),
IMAGENET_BATCH (128), STUDENT_BATCH (64), SKIP_IMAGENET (0; 1 skips the ImageNet-scale part). A CPU rehearsal at toy
size: DEVICE=cpu ROWS=64 BATCH=8 STEPS=1 MODEL=wrn-16-4 SKIP_IMAGENET=1 bash bench/gpu_check.sh
EOF
}

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/host_args.sh
source "$repo/bench/host_args.sh"
parse_host_args "$@"
if [ ${#HOST_ARGS[@]} -gt 0 ]; then
  echo "gpu_check.sh: unknown argument: ${HOST_ARGS[0]}" >&2; usage >&2; exit 2
fi
OUT=${OUT:-$repo/runs/gpu-check} WORK=${WORK:-${TMPDIR:-/tmp}/dra-gpu-check}
absolute_host_dirs || exit 1
cd "$repo"

exec > >(tee "$OUT/gpu_check.log") 2>&1
# shellcheck source=bench/gpu_install.sh
source bench/gpu_install.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
python3 -c "import torch, zarr; print('torch', torch.__version__, 'zarr', zarr.__version__)"
DEVICE=${DEVICE:-cuda} ROWS=${ROWS:-50000} BATCH=${BATCH:-512} STEPS=${STEPS:-8} MODEL=${MODEL:-wrn-28-10}
SECONDS=0
python3 bench/gpu_setup.py --rows "$ROWS" --out "$WORK"
W=$WORK/edm-cifar10-random.safetensors
rm -rf "$WORK/store.zarr"  # extraction is timed from an empty store
echo "== extract: $ROWS rows, edm-cifar10 (random weights, full size), batch $BATCH =="
/usr/bin/time -f "extract wall %e s, max RSS %M KiB" python3 -m dra_pipeline extract --teacher edm-cifar10 \
  --checkpoint "$W" --data "$WORK/synthetic.npz" --out "$WORK/store.zarr" --batch-size "$BATCH" --device "$DEVICE"
echo "== bench/extract.py (extract img/s over bare forward img/s) =="
python3 bench/extract.py --teacher edm-cifar10 --checkpoint "$W" --data "$WORK/synthetic.npz" \
  --rows $((ROWS < 16384 ? ROWS : 16384)) --batch-size "$BATCH" --device "$DEVICE"
for PRECISION in fp32 bf16; do
  echo "== bench/train_step.py: $MODEL, batch $BATCH, TRADES-10, $PRECISION (channels-last on GPU), with MFU =="
  python3 bench/train_step.py --features "$WORK/store.zarr" --config dmat-cifar10-1m-wrn28-10-dra --device "$DEVICE" \
    --set model.name="$MODEL" --set train.batch_size="$BATCH" --set train.precision="$PRECISION" --steps "$STEPS" \
    --warmup "$((STEPS < 3 ? 1 : 3))" --json "$OUT/train_step-$PRECISION.json"
done
echo "== bench/precision.py: bf16 autocast against fp32 (adversarial pixels changed, step time), $MODEL =="
python3 bench/precision.py --model "$MODEL" --batch "$((BATCH < 128 ? BATCH : 128))" --device "$DEVICE"
if [ "${SKIP_IMAGENET:-0}" != 1 ]; then
  echo "== bench/imagenet_scale.py: LightningDiT-XL/1 extraction, ConvNeXt-B TRADES-3 + DRA step (random weights) =="
  python3 bench/imagenet_scale.py --device "$DEVICE" --rows "${IMAGENET_ROWS:-1024}" \
    --batch-size "${IMAGENET_BATCH:-128}" --student-batch "${STUDENT_BATCH:-64}" --steps "$STEPS"
fi
echo "gpu_check done in $SECONDS s"
