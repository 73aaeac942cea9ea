# shellcheck shell=bash
# Options every GPU-host script takes, parsed in one place. Source this file after defining usage(), then call
#   parse_host_args "$@"      sets OUT, WHEELS, WORK, DRA_DATA_DIR from --out/--wheels/--work/--data-dir (or the
#                             environment) and leaves any other argument in HOST_ARGS; -h prints usage and exits
#   absolute_host_dirs        makes OUT and WORK (when set) exist, and every set folder absolute; exports DRA_DATA_DIR
parse_host_args() {
  HOST_ARGS=()
  OUT=${OUT:-} WHEELS=${WHEELS:-} WORK=${WORK:-} DRA_DATA_DIR=${DRA_DATA_DIR:-}
  while [ $# -gt 0 ]; do
    case $1 in
      --out) OUT=${2:?--out needs a folder}; shift 2 ;;
      --out=*) OUT=${1#*=}; shift ;;
      --wheels) WHEELS=${2:?--wheels needs a folder}; shift 2 ;;
      --wheels=*) WHEELS=${1#*=}; shift ;;
      --work) WORK=${2:?--work needs a folder}; shift 2 ;;
      --work=*) WORK=${1#*=}; shift ;;
      --data-dir) DRA_DATA_DIR=${2:?--data-dir needs a folder}; shift 2 ;;
      --data-dir=*) DRA_DATA_DIR=${1#*=}; shift ;;
      -h | --help) usage; exit 0 ;;
      *) HOST_ARGS+=("$1"); shift ;;
    esac
  done
}

absolute_host_dirs() {
  local name
  for name in OUT WORK; do
    if [ -n "${!name}" ]; then
      mkdir -p "${!name}" && printf -v "$name" '%s' "$(cd "${!name}" && pwd)" || return 1
    fi
  done
  for name in WHEELS DRA_DATA_DIR; do
    if [ -n "${!name}" ]; then
      printf -v "$name" '%s' "$(cd "${!name}" && pwd)" || return 1
    fi
  done
  if [ -n "$DRA_DATA_DIR" ]; then
    export DRA_DATA_DIR
  fi
}
