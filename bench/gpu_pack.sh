#!/usr/bin/env bash
# What bench/gpu_record.sh needs on a GPU host that reaches no package index, in one folder of this
# checkout that git ignores, small enough to copy with the checkout:
# the wheels the host's Python lacks (CPython 3.12, without dra_pipeline's own, which the script builds from the
# checkout) and CIFAR-10's JPEG re-encoding as one .tar.xz (17.7 MiB instead of the zip's 62).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash bench/gpu_pack.sh [--out DIR] [--cifar-zip ZIP] [--python VERSION]

Writes DIR/wheels/ (bench/gpu_wheels.sh --python VERSION --no-package) and DIR/cifar10-jpeg.tar.xz
(experiments/cifar10_jpeg.py pack), lists DIR in .git/info/exclude, and prints the size that travels and the
commands to run on the GPU machine.

  --out DIR         folder inside the checkout (default .gpu)
  --cifar-zip ZIP   CIFAR-10's JPEG zip (default: $DRA_CIFAR10_JPEG_ZIP)
  --python VERSION  the GPU host's CPython (default 3.12)
  -h, --help        this text

Env: PYTHON, the interpreter with numpy and pip (default: the checkout's .venv, else python3).
EOF
}

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=.gpu zip=${DRA_CIFAR10_JPEG_ZIP:-} py=3.12
while [ $# -gt 0 ]; do
  case $1 in
    --out) dir=${2:?--out needs a folder}; shift 2 ;;
    --cifar-zip) zip=${2:?--cifar-zip needs a file}; shift 2 ;;
    --python) py=${2:?--python needs a version}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu_pack.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
cd "$repo"
if [ -x .venv/bin/python ]; then PYTHON=${PYTHON:-$repo/.venv/bin/python}; else PYTHON=${PYTHON:-python3}; fi
[ -f "$zip" ] || { echo "gpu_pack.sh: CIFAR-10 JPEG zip ${zip:-(none given)} not found; pass --cifar-zip" >&2; exit 2; }
case $(cd "$(dirname "$dir")" 2>/dev/null && pwd)/ in
  "$repo"/*) ;;
  *) echo "gpu_pack.sh: --out must be inside the checkout ($repo), so that it is copied with it" >&2; exit 2 ;;
esac
mkdir -p "$dir"
rel=${dir#./}
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF "/$rel/" "$exclude" 2>/dev/null || echo "/$rel/" >>"$exclude"

PATH=$(dirname "$PYTHON"):$PATH bash bench/gpu_wheels.sh --out "$dir/wheels" --python "$py" --no-package >/dev/null
[ -f "$dir/cifar10-jpeg.tar.xz" ] || "$PYTHON" experiments/cifar10_jpeg.py pack "$zip" --out "$dir/cifar10-jpeg.tar.xz"

tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f1)
packed=$(du -sb "$dir" | cut -f1)
total=$(((tree + packed) / 1048576))
echo "to copy: working tree $((tree / 1048576)) MiB + $rel $((packed / 1048576)) MiB = $total MiB"
cat <<EOF
On the GPU host (the checkout copied with $rel; OUT a folder whose files come back), one phase per command:
  bash bench/gpu_record.sh --phases perf --wheels $rel/wheels --out runs/gpu-record --bundle \$OUT
  bash bench/gpu_record.sh --phases teacher --wheels $rel/wheels --cifar $rel/cifar10-jpeg.tar.xz \\
    --out runs/gpu-record --bundle \$OUT
  bash bench/gpu_record.sh --phases cifar10 --wheels $rel/wheels --cifar $rel/cifar10-jpeg.tar.xz \\
    --out runs/gpu-record --bundle \$OUT \\
    --records $rel/records.tar.gz --teacher-weights $rel/edm-cifar10-mini.safetensors
(copy an earlier phase's records.tar.gz and edm-cifar10-mini.safetensors from its files into $rel/ first)
EOF
