# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""model_plan as Ansible runs it: argument spec, check mode, failures on bad input."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.onprem.deepseek.plugins.module_utils._nvml import NvmlProbe
from ansible_collections.onprem.deepseek.plugins.modules import model_plan
from ansible_collections.onprem.deepseek.tests.unit.plugins.module_utils import (
    fake_pynvml as fake,
)
from ansible_collections.onprem.deepseek.tests.unit.plugins.module_utils.fake_pynvml import (
    FakeNvml,
)


def run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        model_plan.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def hgx():
    """gpu facts of one 8 x H100 HGX node, as gpu_facts returns them."""
    return NvmlProbe(lib=FakeNvml(fake.hgx_h100()), sysfs_root="/nonexistent").collect()


@pytest.fixture(scope="module")
def single_h100():
    return NvmlProbe(lib=FakeNvml([fake.h100()]), sysfs_root="/nonexistent").collect()


@pytest.mark.parametrize("args, fits, layout, reason", [
    ({"model": "DeepSeek-R1"}, False, (8, 1, 8, 1),
     "1 node × 8 × NVIDIA H100 80GB HBM3 → DeepSeek-R1 FP8: does not fit: weights need 80.3 GiB/GPU"),
    ({"model": "DeepSeek-R1", "nodes": 2}, True, (8, 2, 8, 1),
     "2 nodes × 8 × NVIDIA H100 80GB HBM3 → DeepSeek-R1 FP8: fits, TP 8 × PP 2 (EP 8), 27.5 GiB/GPU"),
    ({"model": "DeepSeek-R1", "precision": "awq", "_ansible_check_mode": True}, True, (8, 1, 8, 1),
     "1 node × 8 × NVIDIA H100 80GB HBM3 → DeepSeek-R1 INT4: fits, TP 8 (EP 8)"),
    ({"model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "engine": "sglang"}, True, (2, 1, 1, 4),
     "1 node × 8 × NVIDIA H100 80GB HBM3 → DeepSeek-R1-Distill-Qwen-32B BF16: fits, TP 2 × DP 4"),
])
def test_plans(capsys, hgx, args, fits, layout, reason):
    nodes = args.pop("nodes", 1)
    code, result = run(capsys, dict(args, gpu_facts=[hgx] * nodes))
    found = result["plan"]
    print(found["reason"])
    assert code == 0
    assert result["changed"] is False
    assert found["fits"] is fits
    assert (found["tp"], found["pp"], found["ep"], found["dp"]) == layout
    assert found["reason"].startswith(reason)


def test_preflight_pair_on_one_h100(capsys, single_h100):
    """The two plans the GPU-host suite prints: a distill that fits one H100 and R1 FP8 that does not."""
    code, distill = run(capsys, {"model": "DeepSeek-R1-Distill-Qwen-7B", "gpu_facts": [single_h100]})
    assert code == 0
    assert distill["plan"]["fits"] is True
    assert distill["plan"]["engine_args"][:2] == ["--tensor-parallel-size", "1"]
    code, r1 = run(capsys, {"model": "DeepSeek-R1", "gpu_facts": [single_h100]})
    assert code == 0
    assert r1["plan"]["fits"] is False
    assert r1["plan"]["reason"] == (
        "1 node × 1 × NVIDIA H100 80GB HBM3 → DeepSeek-R1 FP8: does not fit: weights need 642.6 GiB/GPU at TP 1, "
        "only 67.7 GiB/GPU usable (79.6 GiB × 0.9 − 4 GiB overhead); smallest set of this GPU that holds it: "
        "2 nodes × 8")


def test_custom_model(capsys, hgx):
    code, result = run(capsys, {
        "model": "Qwen2.5-72B-Instruct", "precision": "bf16", "gpu_facts": [hgx],
        "custom": {"params_b": 72.7, "num_layers": 80, "num_attention_heads": 64, "num_kv_heads": 8,
                   "head_dim": 128, "max_context": 32768},
    })
    assert code == 0
    assert (result["plan"]["model"], result["plan"]["tp"]) == ("Qwen2.5-72B-Instruct", 4)
    assert result["plan"]["weights_source"] == "estimated from 72.7B parameters"


@pytest.mark.parametrize("args, message", [
    ({"model": "Llama-3-8B"}, "model_plan: model 'Llama-3-8B' is not in the catalog"),
    ({"model": "DeepSeek-R1", "gpu_memory_utilization": 0}, "model_plan: gpu_memory_utilization must be in (0, 1]"),
    ({"model": "DeepSeek-R1", "precision": "fp4"}, "value of precision must be one of"),
    ({"model": "DeepSeek-R1", "engine": "tgi"}, "value of engine must be one of"),
    ({"model": "x", "custom": {"num_layers": 4}}, "missing required arguments: params_b found in custom"),
])
def test_bad_input_fails_with_a_message(capsys, hgx, args, message):
    code, result = run(capsys, dict(args, gpu_facts=[hgx]))
    assert code == 1
    assert result["failed"] is True
    assert message in result["msg"]


def test_no_gpu_facts_fail(capsys):
    code, result = run(capsys, {"model": "DeepSeek-R1", "gpu_facts": [
        {"count": 0, "reason": "NVML found no NVIDIA GPU on this host", "devices": []}]})
    assert code == 1
    assert result["msg"] == ("model_plan: no usable GPU in the gpu facts given: "
                             "host 1: no usable GPU (NVML found no NVIDIA GPU on this host)")
