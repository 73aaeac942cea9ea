#!/usr/bin/env bash
# Train the packaged edm-fmnist teacher on a lent GPU machine, which reaches no package registry.
# Carries: .whl/ (this package as a wheel: `pip wheel --no-deps -w .whl .`) and .devdata/fashion-mnist/ (the four
# IDX gz files of the Debian package). The run directory lands in $OUT/run.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
python3 -m dra_pipeline teacher fit --data fashion-mnist --data-dir .devdata/fashion-mnist --out "$OUT/run" \
  --net small --steps 100000 --batch-size 512 --lr 1e-3 --seed 0 --device cuda --max-minutes "${MAX_MINUTES:-7.5}"
rm -f "$OUT/run/state.pt"  # optimizer state: too large to bring back, not needed to use the teacher
tail -n 3 "$OUT/run/stats.jsonl"
