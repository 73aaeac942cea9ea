#!/usr/bin/env bash
# The main job on the embedded default, from a fresh machine: set up, then stage one (edm-fmnist features of the
# 60,000 Fashion-MNIST training images), stage two (TRADES + DRA on the fmnist-cpu preset) and stage three
# (AutoAttack on the first N test images), then a table of clean and robust accuracy. Rerunning resumes every stage.
# About 10 minutes on 2 CPU cores (measured from a fresh clone). N_EVAL (default 300) sets the AutoAttack subset.
set -euo pipefail
cd "$(dirname "$0")/.."
N_EVAL=${N_EVAL:-300}
RUN=runs/fmnist-cpu-dra
SECONDS=0
bash scripts/setup.sh
echo "== stage one: extract (edm-fmnist features) =="
.venv/bin/dra-pipeline extract --teacher edm-fmnist --device cpu
echo "== stage two: train (TRADES + DRA, lambda 0.5) =="
.venv/bin/dra-pipeline train --features cache/fashion-mnist.zarr --config fmnist-cpu --lambda 0.5 --out $RUN
echo "== stage three: evaluate (AutoAttack standard, first $N_EVAL test images, seed 0) =="
.venv/bin/dra-pipeline evaluate --run $RUN --n "$N_EVAL" --seed 0 --batch-size 300 --device cpu
.venv/bin/python - "$RUN/report.json" "$SECONDS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c, a = r["clean"], r["robust"]
print(f"\n| model | clean accuracy | AutoAttack accuracy (L-inf eps {r['attack']['eps']:g}) | n | seed |")
print("|---|---:|---:|---:|---:|")
print(f"| SmallCNN-16, TRADES + DRA (lambda 0.5), best EMA | {100 * c['accuracy']:.1f} % "
      f"[{100 * c['ci95'][0]:.1f}, {100 * c['ci95'][1]:.1f}] | {100 * a['accuracy']:.1f} % "
      f"[{100 * a['ci95'][0]:.1f}, {100 * a['ci95'][1]:.1f}] | {a['n']} | {r['attack']['seed']} |")
print(f"(95 % intervals in brackets; full report: {sys.argv[1].replace('.json', '.md')}; {int(sys.argv[2]) // 60} min "
      f"{int(sys.argv[2]) % 60} s in all)")
PY
