#!/usr/bin/env bash
# experiments/compare.py on a CUDA host. The runs are trained and evaluated under WORK (rerunning resumes them);
# each finished run's config, stats, best EMA checkpoint, report.json/.md, and the logs and results tables are
# copied to OUT/compare, also when the experiment stops early; the synthetic images and the store stay in WORK.
# A GPU comparison is its own experiment (bf16 autocast, 100,000 synthetic images unless --synthetic is passed):
# tabulate it apart from a CPU run's results, never mixed with them.
set -uo pipefail

usage() {
  cat <<'EOF'
Usage: bash experiments/compare_gpu.sh [--out DIR] [--wheels DIR] [--work DIR] [--data-dir DIR] [compare.py options]

Runs `python experiments/compare.py --device cuda --parallel PARALLEL` with its runs, store and synthetic
images under WORK; every other option is passed on to compare.py (e.g. --synthetic 5000 --seeds 0).
Needs python3 with the package's dependencies (pyproject.toml; torch as a CUDA build); bench/gpu_install.sh
installs this checkout and whichever of zarr, its dependencies and pyautoattack are missing.

  --out DIR       where the runs' small files and the tables are copied, under DIR/compare
                  (env OUT; default runs/compare-gpu)
  --wheels DIR    wheel cache made by bench/gpu_wheels.sh, for hosts without a package index (env WHEELS;
                  default: none, build this checkout and use the configured package index)
  --work DIR      runs, feature store and synthetic images (env WORK; default ${TMPDIR:-/tmp}/dra-compare)
  --data-dir DIR  folder holding Fashion-MNIST's four IDX files, or a root holding fashion-mnist/
                  (env DRA_DATA_DIR; default /usr/share/datasets/fashion-mnist, the dataset-fashion-mnist
                  Debian package)
  -h, --help      this text

Env: PARALLEL (10) runs trained and evaluated at once; LIMIT_S (0: none) stops the experiment after that many
seconds, leaving time to copy what is finished (rerunning resumes the rest).
EOF
}

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/host_args.sh
source "$repo/bench/host_args.sh"
parse_host_args "$@"
OUT=${OUT:-$repo/runs/compare-gpu} WORK=${WORK:-${TMPDIR:-/tmp}/dra-compare}
absolute_host_dirs || exit 1
mkdir -p "$OUT/compare"
cd "$repo" || exit 1

# shellcheck source=bench/gpu_install.sh
source bench/gpu_install.sh || exit 1
collect() {
  for run in "$WORK"/runs/*/; do
    [ -f "$run/config.yaml" ] || continue
    name=$(basename "$run")
    mkdir -p "$OUT/compare/$name"
    cp "$run"/{config.yaml,stats.jsonl,environment.json,best-ema.pt} "$run"/report.* "$OUT/compare/$name/" 2>/dev/null
  done
  cp -r "$WORK"/runs/logs "$WORK"/runs/results.* "$OUT/compare/" 2>/dev/null
  nvidia-smi --query-gpu=name --format=csv,noheader > "$OUT/compare/device.txt" 2>/dev/null
  true
}
trap collect EXIT
timeout "${LIMIT_S:-0}" python3 experiments/compare.py --device cuda --parallel "${PARALLEL:-10}" --root "$WORK/runs" \
  --store "$WORK/store.zarr" --synthetic-file "$WORK/synthetic.npz" ${HOST_ARGS[@]+"${HOST_ARGS[@]}"} 2>&1 |
  tee "$OUT/compare/compare.log"
