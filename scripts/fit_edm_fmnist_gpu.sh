#!/usr/bin/env bash
# Train the packaged edm-fmnist teacher on a CUDA host: `teacher fit` with the recipe recorded in
# docs/teachers/edm-fmnist.md (small SongUNet, batch 512, lr 1e-3, seed 0, bounded by MAX_MINUTES of training).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash scripts/fit_edm_fmnist_gpu.sh [--out DIR] [--wheels DIR] [--data-dir DIR]

Trains the edm-fmnist teacher into OUT/run (config.json, stats.jsonl, EMA weights).
Needs python3 with the package's dependencies (pyproject.toml; torch as a CUDA build) installed; only
dra_pipeline itself is installed here, without dependencies.

  --out DIR       the run directory goes to DIR/run (env OUT; default runs/edm-fmnist-fit)
  --wheels DIR    folder holding a dra_pipeline wheel (`pip wheel --no-deps -w DIR .`, or bench/gpu_wheels.sh),
                  installed without a package index (env WHEELS; default: none, build this checkout)
  --data-dir DIR  folder holding Fashion-MNIST's four IDX files (env DATA_DIR; default: $DRA_DATA_DIR, then
                  /usr/share/datasets/fashion-mnist, the dataset-fashion-mnist Debian package)
  -h, --help      this text

Env: MAX_MINUTES (7.5) of training; SITE (${TMPDIR:-/tmp}/dra-pipeline-site) where the package is installed;
KEEP_STATE=1 keeps the optimizer state (run/state.pt, needed only to resume the fit).
EOF
}

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/host_args.sh
source "$repo/bench/host_args.sh"
DRA_DATA_DIR=${DATA_DIR:-${DRA_DATA_DIR:-}}
parse_host_args "$@"
if [ ${#HOST_ARGS[@]} -gt 0 ]; then
  echo "fit_edm_fmnist_gpu.sh: unknown argument: ${HOST_ARGS[0]}" >&2; usage >&2; exit 2
fi
OUT=${OUT:-$repo/runs/edm-fmnist-fit}
absolute_host_dirs || exit 1
cd "$repo"

SITE=${SITE:-${TMPDIR:-/tmp}/dra-pipeline-site}
if [ -n "$WHEELS" ]; then
  python3 -m pip install -q --upgrade --no-index --no-deps --target "$SITE" "$WHEELS"/dra_pipeline-*.whl
else
  python3 -m pip install -q --upgrade --no-deps --target "$SITE" .
fi
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
python3 -m dra_pipeline teacher fit --data fashion-mnist --out "$OUT/run" \
  --net small --steps 100000 --batch-size 512 --lr 1e-3 --seed 0 --device cuda --max-minutes "${MAX_MINUTES:-7.5}"
if [ "${KEEP_STATE:-0}" != 1 ]; then
  rm -f "$OUT/run/state.pt"  # optimizer state: large, and not needed to use the teacher
fi
tail -n 3 "$OUT/run/stats.jsonl"
