#!/usr/bin/env bash
# The GPU-host suite in one command (see tests/gpu/README.md):
#   bash tests/gpu/run.sh                  # wheels in tests/gpu/wheels
#   WHEELS=/media/usb/wheels bash tests/gpu/run.sh
# Needs: python3 (3.10+), nvidia-ml-py importable by it, nvidia-smi, and a folder of wheels with
# ansible-core and its dependencies (and a pip wheel when python3 has no venv/ensurepip).
# Needs no package registry. Everything it writes goes under $WORK (default tests/output/gpu).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-$here/wheels}
WORK=${WORK:-$repo/tests/output/gpu}
venv=${VENV:-$WORK/venv}  # VENV=: use an existing virtualenv that has ansible-core
log=$WORK/gpu-suite.log

die() { echo "run.sh: $*" >&2; exit 1; }

make_venv() {
  [ -d "$WHEELS" ] || die "no wheels in $WHEELS: on a connected machine run the 'pip download' line in tests/gpu/README.md and copy the folder here (or set WHEELS=)"
  # --system-site-packages: nvidia-ml-py is installed for the system python3 on the GPU host.
  if ! "$PYTHON" -m venv --system-site-packages "$venv" 2>/dev/null; then
    # Ubuntu without python3-venv has no ensurepip: make the venv bare and run pip from its wheel.
    rm -rf "$venv"
    "$PYTHON" -m venv --without-pip --system-site-packages "$venv"
  fi
  local pip=("$venv/bin/python" -m pip)
  if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    local wheel
    wheel=$(find "$WHEELS" -maxdepth 1 -name 'pip-*.whl' 2>/dev/null | sort | head -n 1) || true
    [ -n "$wheel" ] || die "python3 has no pip/ensurepip and $WHEELS has no pip-*.whl (see README)"
    pip=("$venv/bin/python" "$wheel/pip")
  fi
  "${pip[@]}" install --quiet --no-index --find-links "$WHEELS" "ansible-core>=2.16"
}

mkdir -p "$WORK"
[ -x "$venv/bin/ansible-playbook" ] || make_venv
"$venv/bin/python" -m pip show nvidia-ml-py >/dev/null 2>&1 \
  || "$venv/bin/python" -c 'import pynvml' 2>/dev/null \
  || die "nvidia-ml-py is not importable by $PYTHON: install it for that interpreter"
command -v nvidia-smi >/dev/null || die "nvidia-smi is not on PATH: install the NVIDIA driver utilities"

# The checkout, where Ansible (and bench.py) look for onprem.deepseek.
mkdir -p "$WORK/collections/ansible_collections/onprem"
ln -sfn "$repo" "$WORK/collections/ansible_collections/onprem/deepseek"
export ANSIBLE_COLLECTIONS_PATH=$WORK/collections
export PYTHONPATH=$WORK/collections${PYTHONPATH:+:$PYTHONPATH}
export ANSIBLE_CONFIG=$repo/ansible.cfg
export ANSIBLE_FORCE_COLOR=0
# "localhost," (trailing comma) is Ansible's inline inventory of one host.
playbook=("$venv/bin/ansible-playbook" -c local -i "localhost," -e "ansible_python_interpreter=$venv/bin/python")

cd "$repo"
{
  echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(hostname) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | sort | uniq -c | tr -s ' ')"
  "${playbook[@]}" tests/gpu/gpu_facts_vs_nvidia_smi.yml
  "${playbook[@]}" tests/gpu/model_plan_on_this_host.yml
  "${playbook[@]}" tests/gpu/preflight_on_this_host.yml
  # Both plays together must change nothing: the satisfied pin, and the unsatisfied one that fails early.
  "${playbook[@]}" ${NVIDIA_DRIVER_SYSFS_ROOT:+-e "nvidia_driver_sysfs_root=$NVIDIA_DRIVER_SYSFS_ROOT"} \
    tests/gpu/nvidia_driver_on_this_host.yml | tee "$WORK/nvidia_driver.log"
  grep -Eq '^localhost +: ok=[0-9]+ +changed=0 +unreachable=0 +failed=0' "$WORK/nvidia_driver.log" \
    || die "nvidia_driver changed something on this host, or failed: see the PLAY RECAP in $WORK/nvidia_driver.log"
  echo "run.sh: nvidia_driver recognised the installed driver with changed=0"
  "$venv/bin/python" tests/gpu/bench.py
} 2>&1 | tee "$log"
echo "run.sh: all passed; output kept in $log"
