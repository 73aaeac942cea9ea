# shellcheck shell=bash
# Sourced by the GPU scripts (bench/gpu_check.sh, bench/gpu_record.sh, experiments/compare_gpu.sh): make this
# checkout's dra_pipeline and the packages the host's Python lacks (zarr and its dependencies, pyautoattack)
# importable, without touching that Python's own site-packages. The package's other dependencies (pyproject.toml;
# torch as a CUDA build) are expected to be installed already.
#   WHEELS  optional folder of wheels made by bench/gpu_wheels.sh: when set, everything is installed from it and no
#           package index is contacted (for hosts without one); dra_pipeline from its wheel there, or, when the
#           folder holds none (gpu_wheels.sh --no-package), built from this checkout with the host's setuptools
#           (no build isolation: nothing is downloaded). When empty, this checkout is built and the missing
#           packages come from the configured package index.
#   SITE    the folder the packages go into (default: ${TMPDIR:-/tmp}/dra-pipeline-site); put first on PYTHONPATH.
# Sourcing it again in a child script (gpu_record.sh runs gpu_check.sh) does nothing: DRA_GPU_SITE says it is done.
# Run from the repository root.
SITE=${SITE:-${TMPDIR:-/tmp}/dra-pipeline-site}
if [ "${DRA_GPU_SITE:-}" != "$SITE" ]; then
  mkdir -p "$SITE"
  if [ -n "${WHEELS:-}" ]; then
    pip_source=(--no-index --find-links "$WHEELS")
    if compgen -G "$WHEELS/dra_pipeline-*.whl" >/dev/null; then
      python3 -m pip install -q --upgrade --no-index --no-deps --target "$SITE" "$WHEELS"/dra_pipeline-*.whl
    else
      python3 -m pip install -q --upgrade --no-index --no-deps --no-build-isolation --target "$SITE" .
    fi
  else
    pip_source=()
    python3 -m pip install -q --upgrade --no-deps --target "$SITE" .
  fi
  for mod in zarr numcodecs donfig google_crc32c packaging typing_extensions pyautoattack; do
    PYTHONPATH=$SITE python3 -c "import $mod" 2>/dev/null ||
      python3 -m pip install -q --no-deps ${pip_source[@]+"${pip_source[@]}"} --target "$SITE" "${mod//_/-}"
  done
  unset pip_source mod
  export DRA_GPU_SITE=$SITE
  export PYTHONPATH=$SITE:$PWD/bench${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
fi
