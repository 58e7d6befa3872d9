#!/usr/bin/env bash
# Harness figures: how long the demo container takes to boot, and os_tuning's first and second run on it,
# next to the cost of the connection alone (one `ansible -m ping` through the podman connection).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
export CONTAINERS_CONF="$root/molecule/containers.conf"
export ANSIBLE_COLLECTIONS_PATH="$root/build/collections" ANSIBLE_CONFIG="$root/ansible.cfg"
name="onprem-bench-demo"
inv="$(mktemp -d)"
trap 'podman rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$inv"' EXIT

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }

cat >"$inv/hosts.yml" <<YAML
all:
  children:
    gpu_nodes: {hosts: {$name: {}}}
  vars:
    ansible_connection: containers.podman.podman
    ansible_python_interpreter: /usr/bin/python3
YAML

t0=$(now)
DEMO_NAME="$name" bash tests/demo.sh up >/dev/null
t1=$(now)
echo "BENCH demo_container_boot_s $(elapsed "$t0" "$t1") s"

t0=$(now); ansible -i "$inv" all -m ansible.builtin.ping >/dev/null; t1=$(now)
ping_s=$(elapsed "$t0" "$t1")
echo "BENCH ansible_ping_s $ping_s s"

run_tuning() { ansible-playbook -i "$inv" playbooks/os_tuning.yml -e onprem_os_tuning_hosts=all >"$inv/run.log"; }
t0=$(now); run_tuning; t1=$(now)
first=$(elapsed "$t0" "$t1")
t0=$(now); run_tuning; t1=$(now)
second=$(elapsed "$t0" "$t1")
grep -q "changed=0" "$inv/run.log" || { echo "bench_demo: second os_tuning run changed something" >&2; exit 1; }
echo "BENCH os_tuning_first_run_s $first s"
echo "BENCH os_tuning_rerun_s $second s"
echo "BENCH os_tuning_rerun_per_ping $(python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.1f}')" "$second" "$ping_s") ratio"
