# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The preflight role's checks on recorded GPU data.

Each case builds ``ansible_facts.gpu`` for one or two fake hosts by running the real NVML probe
(module_utils/_nvml.py) over the unit tests' fake NVML profiles (real shapes: an H100 80GB HBM3 on driver
580.159.04, an 8 x H100 HGX board, an A100 with MIG on, ...), hands them to the role through its test seam
``preflight_gpu_facts_override``, runs ``ansible-playbook -c local`` and asserts pass or fail and the message.
The plan (model_plan), the disk check (this machine's real mounts) and the play flow run for real.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "integration" / "preflight" / "preflight.yml"
COLLECTIONS = ROOT / "build" / "collections"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NVML = _load("preflight_nvml", ROOT / "plugins" / "module_utils" / "_nvml.py")
FAKE = _load("preflight_fake_pynvml", ROOT / "tests" / "unit" / "plugins" / "module_utils" / "fake_pynvml.py")

pytestmark = pytest.mark.skipif(
    not ANSIBLE_PLAYBOOK.exists() or not (COLLECTIONS / "ansible_collections" / "onprem" / "deepseek").exists(),
    reason="needs ansible-playbook next to this Python and build/collections (make venv collection)",
)


# -- recorded GPU facts ---------------------------------------------------------------

def probe(gpus, **nvml):
    """ansible_facts.gpu as gpu_facts returns it, for the fake NVML serving ``gpus``."""
    return NVML.NvmlProbe(FAKE.FakeNvml(gpus, **nvml), sysfs_root="/nonexistent").collect()


def hgx(changes=None):
    """8 x H100 80GB HBM3 on NVSwitch; ``changes`` maps a GPU index to profile overrides."""
    gpus = FAKE.hgx_h100()
    for index, override in (changes or {}).items():
        gpus[index].update(override)
    return gpus


def a100_node():
    return [FAKE.h100(i, bus, numa=0 if i < 4 else 1, name="NVIDIA A100-SXM4-80GB", memory=FAKE.memory(81920, 0),
                      compute_capability=(8, 0), power_mw=400000,
                      pcie={"gen": 4, "gen_max": 4, "width": 16, "width_max": 16},
                      nvlinks=[1] * 12, nvlink_remote=FAKE.NVML_NVLINK_DEVICE_TYPE_SWITCH)
            for i, bus in enumerate(FAKE.HGX_BUSES)]


H100 = [FAKE.h100()]
ECC = [FAKE.h100(ecc_errors={(1, 0): 2, (1, 1): 5}, remapped_rows=(0, 1, 0, 1))]
PCIE_X8 = hgx({3: {"pcie": {"gen": 5, "gen_max": 5, "width": 8, "width_max": 16}}})
PCIE_GEN = [FAKE.h100(pcie={"gen": 4, "gen_max": 5, "width": 16, "width_max": 16})]
DISTILL = "DeepSeek-R1-Distill-Qwen-7B"
R1_FIT = "2 nodes × 8 × NVIDIA H100 80GB HBM3 → DeepSeek-R1 FP8: fits, TP 8 × PP 2 (EP 8)"

# id: (hosts {name: gpu facts}, extra vars, passes, substrings of the failure message or of the plan's reason)
CASES = {
    "h100-distill-fits": (
        {"node-a": probe(H100)}, {}, True,
        ["1 node × 1 × NVIDIA H100 80GB HBM3 → DeepSeek-R1-Distill-Qwen-7B BF16: fits, TP 1"]),
    "h100-r1-does-not-fit": (
        {"node-a": probe(H100)}, {"preflight_model": "DeepSeek-R1"}, False,
        ["DeepSeek-R1 FP8: does not fit: weights need", "smallest set of this GPU that holds it: 2 nodes × 8",
         "Add nodes or GPUs"]),
    "hgx-single-r1-does-not-fit": (
        {"node-a": probe(hgx())}, {"preflight_model": "DeepSeek-R1"}, False,
        ["1 node × 8 × NVIDIA H100 80GB HBM3 → DeepSeek-R1 FP8: does not fit", "2 nodes × 8"]),
    "hgx-pair-r1-fits": (
        {"node-a": probe(hgx()), "node-b": probe(hgx())},
        {"preflight_model": "DeepSeek-R1", "preflight_check_disk": False}, True, [R1_FIT]),
    "hgx-pair-r1-disk-too-small": (
        {"node-a": probe(hgx()), "node-b": probe(hgx())},
        {"preflight_model": "DeepSeek-R1", "preflight_model_size_gib": 1000000}, False,
        ["GiB free; DeepSeek-R1 needs 1200000.0 GiB (1000000 GiB × 1 version(s) × margin 1.2)",
         "mount a larger volume at"]),
    "pcie-width-degraded": (
        {"node-a": probe(PCIE_X8)}, {}, False,
        ["node-a: GPU 3 (00000000:5D:00.0) PCIe link is x8 of x16. A link trained down", "reseat"]),
    "pcie-width-check-off": (
        {"node-a": probe(PCIE_X8)},
        {"preflight_check_pcie_width": False}, True, ["fits"]),
    "pcie-gen-degraded": (
        {"node-a": probe(PCIE_GEN)}, {}, False,
        ["node-a: GPU 0 (00000000:18:00.0) PCIe link runs at gen 4 of gen 5.", "preflight_check_pcie_gen: false"]),
    "ecc-errors": (
        {"node-a": probe(ECC)}, {}, False,
        ["node-a: GPU 0 (00000000:18:00.0) has 2 uncorrectable ECC errors since the driver loaded (5 over its life); "
         "GPU 0 (00000000:18:00.0) has a failed row remap.", "dcgmi diag -r 3"]),
    "lost-gpu": (
        {"node-a": probe(hgx({2: {"lost": "query"}}))}, {}, False,
        ["node-a: GPU 2 cannot be read: GPU 2 is lost", "Xid 79"]),
    "mig-on": (
        {"node-a": probe(FAKE.a100_mig())}, {}, False,
        ["node-a: GPU 0 (00000000:07:00.0, NVIDIA A100-SXM4-80GB) has MIG enabled", "-mig 0"]),
    "nvlinks-down": (
        {"node-a": probe(hgx({5: {"nvlinks": [1] * 16 + [0] * 2}}))}, {}, False,
        ["node-a: GPU 5 (00000000:AB:00.0) has 16 of 18 NVLinks up", "nvidia-fabricmanager"]),
    "old-driver": (
        {"node-a": probe(H100, driver="535.183.01", cuda=12020)}, {}, False,
        ["node-a: NVIDIA driver 535.183.01 is older than the minimum 580"]),
    "old-driver-allowed": (
        {"node-a": probe(H100, driver="535.183.01", cuda=12020)}, {"preflight_driver_min_version": "535"}, True,
        ["fits"]),
    "mismatched-models": (
        {"node-a": probe(hgx()), "node-b": probe(a100_node())}, {}, False,
        ["The GPU nodes differ: node-a has 8 × NVIDIA H100 80GB HBM3, node-b has 8 × NVIDIA A100-SXM4-80GB."]),
    "mismatched-counts": (
        {"node-a": probe(hgx()), "node-b": probe(hgx()[:4])}, {}, False,
        ["node-a has 8 × NVIDIA H100 80GB HBM3, node-b has 4 × NVIDIA H100 80GB HBM3"]),
    "no-gpu-required": (
        {"node-a": probe([], init_error=FAKE.NVMLError_DriverNotLoaded())}, {}, False,
        ["node-a: no NVIDIA GPU could be read (NVML could not start (Driver Not Loaded): the NVIDIA kernel module",
         "preflight_require_gpu: false"]),
    "no-gpu-cpu-only-allowed": (
        {"node-a": probe([], init_error=FAKE.NVMLError_DriverNotLoaded())}, {"preflight_require_gpu": False}, True,
        ["no GPU node with a readable GPU in the play"]),
    "too-little-memory": (
        {"node-a": probe(H100)}, {"preflight_memory_min_gib": 1000000}, False,
        ["GiB of RAM, 1000000 GiB wanted (preflight_memory_min_gib)"]),
}


# -- running the play ---------------------------------------------------------------

def run_play(tmp_path, hosts, extra, options=()):
    inventory = {"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        "children": {"gpu_nodes": {"hosts": {
            name: {"preflight_gpu_facts_override": facts} for name, facts in hosts.items()}}},
    }}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory, allow_unicode=True), encoding="utf-8")
    variables = {"preflight_model": DISTILL, "preflight_model_store": str(tmp_path / "store" / "models")}
    variables.update(extra)
    (tmp_path / "vars.json").write_text(json.dumps(variables), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path),
               ANSIBLE_HOME=str(tmp_path / ".ansible"))
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "hosts.yml"), "-e", f"@{tmp_path / 'vars.json'}", *options,
         str(PLAYBOOK)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook gave no JSON report (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.returncode, report


def results(report):
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                yield task["task"]["name"], host, result


def failures(report):
    return [(name, host, result.get("msg", "")) for name, host, result in results(report) if result.get("failed")]


def plan_fact(report):
    for name, _host, result in results(report):
        if name.endswith("Keep the plan for the later roles") and "ansible_facts" in result:
            return result["ansible_facts"]["preflight_plan"]
    return None


@pytest.mark.parametrize("case", list(CASES))
def test_preflight(tmp_path, case):
    hosts, extra, passes, expected = CASES[case]
    rc, report = run_play(tmp_path, hosts, extra)
    failed = failures(report)
    if passes:
        assert rc == 0 and not failed, f"expected to pass, got rc {rc}: {failed}"
        assert all(stats["failures"] == 0 and stats["ok"] > 0 for stats in report["stats"].values())
        plan = plan_fact(report)
        assert plan is not None, "the role set no preflight_plan"
        for text in expected:
            assert text in plan["reason"], plan["reason"]
        assert plan["hosts"] == ([] if plan["skipped"] else sorted(hosts))
        assert plan["skipped"] or plan["fits"]
        if case == "hgx-pair-r1-fits":  # the layout and vLLM flags the inference role will read
            assert (plan["tp"], plan["pp"], plan["ep"], plan["dp"], plan["nodes_needed"]) == (8, 2, 8, 1, 2)
            assert plan["engine_args"][:4] == ["--tensor-parallel-size", "8", "--pipeline-parallel-size", "2"]
            assert "--enable-expert-parallel" in plan["engine_args"]
            assert plan["engine_args_by_rank"][1] == []
    else:
        assert rc != 0 and failed, f"expected a failure, the play passed (rc {rc})"
        messages = " | ".join(f"{host}: {msg}" for _name, host, msg in failed)
        for text in expected:
            assert text in messages, f"{text!r} not in the failure messages: {messages}"
        # the play stopped at the first failed check: no later stage ran on any host
        assert all(stats["failures"] + stats.get("ok", 0) > 0 for stats in report["stats"].values())


def test_check_mode_reads_and_plans(tmp_path):
    """--check on a fresh host fails nothing: the store does not exist yet, df and du are read-only."""
    rc, report = run_play(tmp_path, {"node-a": probe(H100)}, {}, options=("--check",))
    plan = plan_fact(report)
    assert rc == 0 and not failures(report)
    assert plan is not None and plan["fits"] and plan["tp"] == 1
    assert all(stats["changed"] == 0 for stats in report["stats"].values())
