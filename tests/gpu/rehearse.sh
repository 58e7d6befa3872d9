#!/usr/bin/env bash
# Rehearse tests/gpu/run.sh on a machine WITHOUT a GPU: pynvml and nvidia-smi are replaced by the test
# doubles in tests/gpu/rehearsal/ (built from the unit tests' fake NVML). It proves the playbooks, the
# nvidia-smi filter and bench.py run end to end; it proves nothing about real hardware.
#   VENV=.venv bash tests/gpu/rehearse.sh        # REHEARSAL_PROFILE=h100|hgx_h100|a100_mig|v100_old ...
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export VENV=${VENV:-$repo/.venv}
export WORK=${WORK:-$repo/tests/output/gpu-rehearsal}
export PATH=$here/rehearsal:$PATH
export PYTHONPATH=$here/rehearsal:$WORK/collections${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$WORK/collections/ansible_collections/onprem"
# The PCI bus the nvidia_driver role reads: the profile's GPUs (and NVSwitches) in a sysfs tree.
rm -rf "$WORK/pci"
export NVIDIA_DRIVER_SYSFS_ROOT
NVIDIA_DRIVER_SYSFS_ROOT=$(python3 "$here/rehearsal/sysfs_double.py" "$WORK/pci")
ln -sfn "$repo" "$WORK/collections/ansible_collections/onprem/deepseek"
exec bash "$here/run.sh"
