#!/bin/sh
# TEST STAND-IN for NVIDIA's nvidia-ctk, built by the onprem.deepseek tests. It implements only:
#   nvidia-ctk --version
#   nvidia-ctk cdi generate --output=FILE | --output FILE
# and fails, saying so, for anything else.
set -eu
version="@VERSION@"

standin_fail() {
  echo "nvidia-ctk (TEST STAND-IN): $*" >&2
  exit 2
}

case "${1:-}" in
  --version|-v)
    echo "NVIDIA Container Toolkit CLI version ${version} (TEST STAND-IN)"
    echo "commit: stand-in"
    exit 0
    ;;
  cdi)
    [ "${2:-}" = generate ] || standin_fail "only 'cdi generate' is implemented"
    shift 2
    output=""
    while [ $# -gt 0 ]; do
      case "$1" in
        --output=*) output="${1#--output=}" ;;
        --output) shift; output="${1:-}" ;;
        *) standin_fail "cdi generate: option $1 is not implemented" ;;
      esac
      shift
    done
    [ -n "$output" ] || standin_fail "cdi generate: give --output FILE"
    driver="none"
    if [ -r /sys/module/nvidia/version ]; then
      driver="$(cat /sys/module/nvidia/version)"
    fi
    mkdir -p "$(dirname "$output")"
    cat > "$output" <<SPEC
---
# TEST STAND-IN CDI spec written by the stand-in nvidia-ctk ${version} (onprem.deepseek tests).
# It names no real GPU: containers that ask for nvidia.com/gpu=all get /dev/null.
cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
  - name: all
    containerEdits:
      deviceNodes:
        - path: /dev/null
containerEdits:
  env:
    - NVIDIA_CTK_STANDIN=1
    - NVIDIA_CTK_STANDIN_DRIVER=${driver}
SPEC
    echo "Generated CDI spec with version 0.5.0 (TEST STAND-IN)" >&2
    exit 0
    ;;
  *)
    standin_fail "'${1:-}' is not implemented"
    ;;
esac
