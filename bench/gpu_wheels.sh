#!/usr/bin/env bash
# A wheel cache for the GPU scripts on hosts that reach no package index: this package (built from the committed
# tree, HEAD) and zarr with its dependencies and pyautoattack, for CPython 3.11-3.13 on manylinux x86_64.
# Run it where a package index is reachable, copy the folder to the GPU host with the checkout and pass it there
# as `--wheels DIR` (bench/gpu_check.sh, experiments/compare_gpu.sh, scripts/fit_edm_fmnist_gpu.sh).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash bench/gpu_wheels.sh [--out DIR] [--python VERSIONS] [--no-package]

Writes the wheels the GPU scripts install with --wheels DIR: dra_pipeline (from git HEAD), zarr 3.1,
numcodecs, donfig, google-crc32c, packaging, typing_extensions and pyautoattack.

  --out DIR           wheel folder (env WHEELS; default .whl in the repository root, which git does not track:
                      list it in .git/info/exclude or choose a folder outside the checkout)
  --python VERSIONS   comma list of CPython versions for the compiled wheels (default 3.11,3.12,3.13;
                      `--python 3.12` alone keeps the folder small enough to travel with the checkout)
  --no-package        leave out dra_pipeline's own wheel (it carries the packaged teacher weights): the GPU
                      scripts then build the checkout they run in, offline, with the host's setuptools
  -h, --help          this text
EOF
}

dir=${WHEELS:-} pythons=3.11,3.12,3.13 package=1
while [ $# -gt 0 ]; do
  case $1 in
    --out) dir=${2:?--out needs a folder}; shift 2 ;;
    --out=*) dir=${1#*=}; shift ;;
    --python) pythons=${2:?--python needs versions}; shift 2 ;;
    --python=*) pythons=${1#*=}; shift ;;
    --no-package) package=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu_wheels.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${dir:-$repo/.whl}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
cd "$repo"

rm -f "$dir"/dra_pipeline-*.whl
if [ "$package" = 1 ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  git archive HEAD | tar -x -C "$tmp"
  python3 -m pip wheel -q --no-deps -w "$dir" "$tmp"
fi
python3 -m pip download -q --no-deps -d "$dir" "zarr==3.1.*" donfig packaging typing_extensions pyautoattack
IFS=, read -r -a versions <<<"$pythons"
for py in "${versions[@]}"; do  # zarr 3 needs Python >= 3.11
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d "$dir" "numcodecs>=0.14" google-crc32c
done
# pyautoattack's wheel carries a 42 MB example model (examples/model_test.pt) and a TensorFlow example's weights that
# nothing here uses: drop them (and their RECORD lines) so the folder can travel with a checkout.
python3 - "$dir" <<'PY'
import sys
import zipfile
from pathlib import Path

for wheel in Path(sys.argv[1]).glob("pyautoattack-*.whl"):
    drop = (".pt", ".h5")
    with zipfile.ZipFile(wheel) as src:
        if not any(n.endswith(drop) for n in src.namelist()):
            continue
        tmp = wheel.with_name(wheel.name + ".partial")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                if info.filename.endswith(drop):
                    continue
                data = src.read(info)
                if info.filename.endswith(".dist-info/RECORD"):
                    lines = data.decode().splitlines()
                    data = ("\n".join(ln for ln in lines if not ln.split(",")[0].endswith(drop)) + "\n").encode()
                dst.writestr(info, data)
    tmp.replace(wheel)
PY
ls -l "$dir"
