#!/usr/bin/env bash
# experiments/compare.py on a lent GPU machine (no registry): carry .whl (bench/gpu_wheels.sh) and
# .devdata/fashion-mnist (the Debian package's four IDX files). Runs and their reports come back under $OUT/compare
# (config, stats, best EMA checkpoint, report.json/.md, logs); the synthetic images and the store stay behind.
# LIMIT_S stops the experiment in time to copy what is finished (rerunning compare.py elsewhere resumes the rest).
# A GPU comparison is its own experiment (bf16 autocast, 100,000 synthetic images unless --synthetic is passed):
# tabulate it apart from a CPU run's results, never mixed with them.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT/compare"
source bench/gpu_install.sh
export DRA_DATA_DIR=$PWD/.devdata
WORK=/tmp/compare
collect() {
  for run in $WORK/runs/*/; do
    [ -f "$run/config.yaml" ] || continue
    name=$(basename "$run")
    mkdir -p "$OUT/compare/$name"
    cp "$run"/{config.yaml,stats.jsonl,environment.json,best-ema.pt} "$run"/report.* "$OUT/compare/$name/" 2>/dev/null
  done
  cp -r $WORK/runs/logs $WORK/runs/results.* "$OUT/compare/" 2>/dev/null
  nvidia-smi --query-gpu=name --format=csv,noheader > "$OUT/compare/device.txt" 2>/dev/null
  true
}
trap collect EXIT
timeout "${LIMIT_S:-420}" python3 experiments/compare.py --device cuda --parallel "${PARALLEL:-10}" --root $WORK/runs \
  --store $WORK/store.zarr --synthetic-file $WORK/synthetic.npz "$@" 2>&1 | tee "$OUT/compare/compare.log"
