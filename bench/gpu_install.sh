# Sourced by the GPU scripts: install the carried wheels (.whl/, made by bench/gpu_wheels.sh) into /tmp/site, only
# the packages the machine's image lacks, and put them on PYTHONPATH. The GPU machine reaches no package registry.
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/dra_pipeline-*.whl
for mod in zarr numcodecs donfig google_crc32c packaging typing_extensions pyautoattack; do
  python3 -c "import $mod" 2>/dev/null ||
    python3 -m pip install -q --no-index --no-deps --find-links .whl --target /tmp/site "${mod//_/-}"
done
export PYTHONPATH=/tmp/site:$PWD/bench PYTHONUNBUFFERED=1
