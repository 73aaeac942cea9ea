#!/usr/bin/env bash
# Wheels for bench/gpu_check.sh: this package (from the committed tree) and zarr with its dependencies for
# CPython 3.11-3.13, into .whl/ (git-ignored via .git/info/exclude; pass it in the device run's `carry`).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
tmp=$(mktemp -d)
git archive HEAD | tar -x -C "$tmp"
python3 -m pip wheel -q --no-deps -w .whl "$tmp"
rm -rf "$tmp"
python3 -m pip download -q --no-deps -d .whl "zarr==3.1.*" donfig packaging typing_extensions pyautoattack
for py in 3.11 3.12 3.13; do  # zarr 3 needs Python >= 3.11
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d .whl "numcodecs>=0.14" google-crc32c
done
ls .whl
