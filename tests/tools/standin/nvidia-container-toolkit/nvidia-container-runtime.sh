#!/bin/sh
# TEST STAND-IN for NVIDIA's nvidia-container-runtime, built by the onprem.deepseek tests.
# dockerd and containerd only need the path to exist; it cannot start containers.
if [ "${1:-}" = --version ]; then
  echo "NVIDIA Container Runtime version @VERSION@ (TEST STAND-IN)"
  exit 0
fi
echo "nvidia-container-runtime (TEST STAND-IN): cannot run containers" >&2
exit 1
