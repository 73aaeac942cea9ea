#!/usr/bin/env bash
# The GPU check: one prepared run on a single lent GPU machine (which reaches no package registry), < 8 minutes.
#   here:   bash bench/gpu_wheels.sh          # .whl/: this package + zarr and its dependencies, as wheels
#   device: bash bench/gpu_check.sh           # carry .whl; figures are printed and copied to $OUT/gpu_check.log
# Measures with WRN-28-10 at batch 512 (DM-AT's preset) on a synthetic 50,000-row store made by `extract` with a
# random-weight EDM DDPM++ CIFAR-10 teacher (full size): extraction img/s over the bare teacher forward,
# cached-DRA / plain step time, online-teacher / cached step time, feature-wait fraction, peak GPU memory; then the
# ImageNet path at full size on random weights (LightningDiT-XL/1 extraction, a ConvNeXt-B TRADES-DRA step).
set -euo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
source bench/gpu_install.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
python3 -c "import torch, zarr; print('torch', torch.__version__, 'zarr', zarr.__version__)"
# Sizes can be shrunk for a CPU rehearsal: DEVICE=cpu ROWS=64 BATCH=8 STEPS=1 bash bench/gpu_check.sh
DEVICE=${DEVICE:-cuda} ROWS=${ROWS:-50000} BATCH=${BATCH:-512} STEPS=${STEPS:-8}
WORK=/tmp/gpu
SECONDS=0
python3 bench/gpu_setup.py --rows "$ROWS" --out $WORK
W=$WORK/edm-cifar10-random.safetensors
echo "== extract: $ROWS rows, edm-cifar10 (random weights, full size), batch $BATCH =="
/usr/bin/time -f "extract wall %e s, max RSS %M KiB" python3 -m dra_pipeline extract --teacher edm-cifar10 \
  --checkpoint $W --data $WORK/synthetic.npz --out $WORK/store.zarr --batch-size "$BATCH" --device "$DEVICE"
echo "== bench/extract.py (extract img/s over bare forward img/s) =="
python3 bench/extract.py --teacher edm-cifar10 --checkpoint $W --data $WORK/synthetic.npz \
  --rows $((ROWS < 16384 ? ROWS : 16384)) --batch-size "$BATCH" --device "$DEVICE"
echo "== bench/train_step.py: WRN-28-10, batch $BATCH, TRADES-10 (bf16 autocast, channels-last on GPU) =="
python3 bench/train_step.py --features $WORK/store.zarr --config dmat-cifar10-1m-wrn28-10-dra --device "$DEVICE" \
  --set train.batch_size="$BATCH" --steps "$STEPS" --warmup "$((STEPS < 3 ? 1 : 3))"
echo "== bench/imagenet_scale.py: LightningDiT-XL/1 extraction, ConvNeXt-B TRADES-3 + DRA step (random weights) =="
python3 bench/imagenet_scale.py --device "$DEVICE" --rows "${IMAGENET_ROWS:-1024}" --batch-size "${IMAGENET_BATCH:-128}" \
  --student-batch "${STUDENT_BATCH:-64}" --steps "$STEPS"
echo "gpu_check done in $SECONDS s"
