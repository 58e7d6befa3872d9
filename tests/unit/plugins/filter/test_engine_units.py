# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inference role's systemd units, rendered by the role's own tasks (ansible-playbook -c local, tasks_from
configure.yml, no service managed) for the DEEPSEEK.md plans, then checked by `systemd-analyze verify`.

`systemd-analyze verify` works without systemd as PID 1 (it loads the units offline); it is skipped with the
reason where the tool is missing. Also runs the engine_cmd filter through Ansible's templar.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ansible_collections.onprem.deepseek
import pytest
from ansible_collections.onprem.deepseek.plugins.module_utils._planner import plan, synthetic_hosts

# The directory that holds ansible_collections/ (build/collections in a checkout, the copy under ansible-test)
COLLECTIONS_ROOT = Path(next(iter(ansible_collections.onprem.deepseek.__path__))).parents[2]
H100 = ("NVIDIA H100 80GB HBM3", 81559)
H200 = ("NVIDIA H200", 143771)
ANALYZE = shutil.which("systemd-analyze")
PLAYBOOK = """
- name: Render the inference units with the role's tasks
  hosts: gpu_nodes
  connection: local
  gather_facts: false
  tasks:
    - name: Render
      ansible.builtin.include_role:
        name: onprem.deepseek.inference
        tasks_from: configure.yml
      vars:
        inference_manage_service: false
        inference_systemd_dir: "{{ out }}/{{ inventory_hostname }}/units"
        inference_config_dir: "{{ out }}/{{ inventory_hostname }}/etc"
"""

SCENARIOS = {
    "vllm-1x8-h200": ("vllm", H200, 1, "podman"),
    "vllm-2x8-h100": ("vllm", H100, 2, "podman"),
    "sglang-1x8-h200": ("sglang", H200, 1, "docker"),
    "sglang-2x8-h100": ("sglang", H100, 2, "podman"),
    "mock": ("mock", None, 1, "podman"),
}


def render(tmp_path, engine, gpu, nodes, runtime):
    hosts = {f"node{i + 1}": {"inference_node_address": f"10.0.0.{i + 1}"} for i in range(nodes)}
    inventory = {"all": {"children": {"gpu_nodes": {"hosts": hosts}}}}
    variables = {
        "out": str(tmp_path), "inference_engine": engine, "inference_runtime": runtime,
        "inference_api_key": "engine-secret-key-123456", "inference_socket_ifname": "ens1f0",
        "ansible_python_interpreter": sys.executable,
    }
    if gpu is not None:
        variables["inference_plan"] = plan("DeepSeek-R1", synthetic_hosts(gpu[0], gpu[1], nodes, 8), engine=engine)
    for host in hosts:
        (tmp_path / host / "units").mkdir(parents=True)  # /etc/systemd/system exists on every host
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_ROOT), ANSIBLE_NOCOLOR="1",
               ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_LOCALHOST_WARNING="0")
    playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"
    result = subprocess.run([playbook, "-i", str(tmp_path / "inventory.json"), str(tmp_path / "play.yml"),
                             "-e", f"@{tmp_path / 'vars.json'}"], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return {host: tmp_path / host for host in hosts}


def verify(unit_dir):
    """systemd-analyze verify on every unit of unit_dir (it also checks that each Exec program exists)."""
    units = sorted(str(path) for path in unit_dir.iterdir())
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="warning")
    result = subprocess.run([ANALYZE, "verify", "--man=no", *units], capture_output=True, text=True, env=env,
                            check=False)
    return result


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_units_render_and_pass_systemd_analyze_verify(tmp_path, name):
    engine, gpu, nodes, runtime = SCENARIOS[name]
    hosts = render(tmp_path, engine, gpu, nodes, runtime)
    for host, out in hosts.items():
        unit_dir = out / "units"
        engine_unit = (unit_dir / "onprem-deepseek-engine.service").read_text()
        exec_start = next(line for line in engine_unit.splitlines() if line.startswith("ExecStart="))
        assert "engine-secret-key" not in engine_unit
        env_file = out / "etc" / "engine.env"
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"
        assert "engine-secret-key-123456" in env_file.read_text()
        assert "Restart=on-failure" in engine_unit
        if engine == "mock":
            assert exec_start.startswith("ExecStart=/usr/bin/python3 /usr/local/lib/onprem-deepseek/mock_engine.py")
            assert "DynamicUser=yes" in engine_unit
        else:
            assert exec_start.startswith(f"ExecStart=/usr/bin/{runtime} run --rm")
            assert "--ipc=host" in exec_start
            assert ("--device nvidia.com/gpu=all" if runtime == "podman" else "--gpus all") in exec_start
            assert "TimeoutStartSec=3720" in engine_unit  # 1 h for /health after loading 690 GB, plus margin
        head = host == "node1"
        assert ("ExecStartPost=" in engine_unit) == head  # only the head serves HTTP and waits for /health
        assert (unit_dir / "onprem-deepseek-engine-health.timer").exists() == head
        if engine == "vllm" and nodes == 2:
            assert ("ray start --head" in exec_start) == head
            assert ("--address=10.0.0.1:6379" in exec_start) == (not head)
        if engine == "sglang" and nodes == 2:
            assert f"--node-rank {0 if head else 1}" in exec_start
            assert "--dist-init-addr 10.0.0.1:5000" in exec_start
        if runtime == "docker" and engine != "mock":
            # docker is not installed on the build machine: verify a copy that names an executable that exists,
            # next to a stand-in docker.service for its Requires=
            assert "Requires=docker.service" in engine_unit
            stand_in = engine_unit.replace("/usr/bin/docker", "/usr/bin/env")
            (unit_dir / "onprem-deepseek-engine.service").write_text(stand_in)
            (unit_dir / "docker.service").write_text("[Service]\nExecStart=/usr/bin/env\n")
        result = verify(unit_dir)
        assert result.returncode == 0, f"{host}: {result.stdout}{result.stderr}"
        problems = [line for line in result.stderr.splitlines()
                    if "onprem-deepseek" in line and "Failed to" not in line.split(":", 1)[0]]
        assert not problems, problems
