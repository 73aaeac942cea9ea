#!/usr/bin/env bash
# The main job on the embedded default, from a fresh machine: set up, then stage one (edm-fmnist features of the
# 60,000 Fashion-MNIST training images) and stage two (TRADES + DRA on the fmnist-cpu preset). Rerunning resumes.
# About 15 minutes on 2 CPU cores. `evaluate` (AutoAttack) joins this script when it is built.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/dra-pipeline extract --teacher edm-fmnist --device cpu
.venv/bin/dra-pipeline train --features cache/fashion-mnist.zarr --config fmnist-cpu --lambda 0.5 --out runs/fmnist-cpu-dra
tail -n 4 runs/fmnist-cpu-dra/stats.jsonl
