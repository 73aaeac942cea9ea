#!/usr/bin/env bash
# Set up a fresh machine for dra-pipeline: the Fashion-MNIST Debian package, a virtual environment in .venv,
# torch (pinned, installed first so that timm's torchvision matches it), then this package with its test extra.
# Idempotent: rerunning skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing dataset-fashion-mnist"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
echo "setup: installing torch==2.14.1 torchvision==0.29.1"
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
echo "setup: installing dra-pipeline[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" --config-settings editable_mode=strict
