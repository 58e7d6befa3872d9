# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The capacity planner against the published hardware table (DEEPSEEK.md) and hand-computed figures.

Run with ``-rP`` (or ``-s``) to see the one-line reasons the table tests print.
"""

from __future__ import annotations

import pytest
from ansible_collections.onprem.deepseek.plugins.module_utils._nvml import NvmlProbe
from ansible_collections.onprem.deepseek.plugins.module_utils._planner import (
    CATALOG,
    MLA_V3,
    PlanError,
    plan,
    smallest_gpu_set,
    synthetic_hosts,
)
from ansible_collections.onprem.deepseek.tests.unit.plugins.module_utils import (
    fake_pynvml as fake,
)
from ansible_collections.onprem.deepseek.tests.unit.plugins.module_utils.fake_pynvml import (
    FakeNvml,
)

# name and framebuffer size as NVML reports them
H100 = ("NVIDIA H100 80GB HBM3", 81559)
H200 = ("NVIDIA H200", 143771)
A100_80 = ("NVIDIA A100-SXM4-80GB", 81920)
A100_40 = ("NVIDIA A100-SXM4-40GB", 40960)


def on(gpu, nodes, per_node):
    return synthetic_hosts(gpu[0], gpu[1], nodes, per_node)


# -- DEEPSEEK.md: "Hardware that serves them" -----------------------------------------

@pytest.mark.parametrize("model, precision, gpu, nodes, fits, tp, pp", [
    # V3/R1 FP8: 1x8 H200, or 2x8 H100; 8xH100 = 640 GB < ~690 GB of weights
    ("DeepSeek-V3", "fp8", H200, 1, True, 8, 1),
    ("DeepSeek-R1", "fp8", H200, 1, True, 8, 1),
    ("DeepSeek-V3", "fp8", H100, 2, True, 8, 2),
    ("DeepSeek-R1", "fp8", H100, 2, True, 8, 2),
    ("DeepSeek-V3", "fp8", H100, 1, False, 8, 1),
    ("DeepSeek-R1", "fp8", H100, 1, False, 8, 1),
    ("DeepSeek-V3-0324", "fp8", H100, 1, False, 8, 1),
    ("DeepSeek-V3.1", "fp8", H100, 2, True, 8, 2),
    ("DeepSeek-R1-0528", "fp8", H200, 1, True, 8, 1),
    # BF16 (~1.3 TB): 2x8 H200 or 4x8 H100/A100
    ("DeepSeek-V3", "bf16", H200, 2, True, 8, 2),
    ("DeepSeek-V3", "bf16", H200, 1, False, 8, 1),
    ("DeepSeek-R1", "bf16", H100, 4, True, 8, 4),
    ("DeepSeek-R1", "bf16", H100, 2, False, 8, 2),
    ("DeepSeek-R1", "bf16", A100_80, 4, True, 8, 4),
    # AWQ/INT4: 1x8 H100/A100
    ("DeepSeek-R1", "awq", H100, 1, True, 8, 1),
    ("DeepSeek-V3", "int4", A100_80, 1, True, 8, 1),
])
def test_published_hardware_table(model, precision, gpu, nodes, fits, tp, pp):
    result = plan(model, on(gpu, nodes, 8), precision=precision)
    print(result["reason"])
    assert result["fits"] is fits
    assert (result["tp"], result["pp"]) == (tp, pp)
    hardware = f"{'1 node' if nodes == 1 else f'{nodes} nodes'} × 8 × {gpu[0]}"
    verdict = "fits" if fits else "does not fit"
    assert result["reason"].startswith(f"{hardware} → {model} {result['precision'].upper()}: {verdict}")
    if fits:
        assert result["ep"] == 8  # MoE on vLLM: experts sharded over the 8 TP ranks
        assert result["weights_per_gpu_gib"] < gpu[1] / 1024 * 0.9 - 4
    else:
        assert result["engine_args"] == []


@pytest.mark.parametrize("model, precision, gpu, smallest", [
    ("DeepSeek-V3", "fp8", H100, (2, 8)),
    ("DeepSeek-R1", "fp8", H200, (1, 8)),
    ("DeepSeek-V3", "bf16", H200, (2, 8)),
    ("DeepSeek-V3", "bf16", H100, (4, 8)),
    ("DeepSeek-R1", "bf16", A100_80, (4, 8)),
    ("DeepSeek-R1", "int4", H100, (1, 8)),
    ("DeepSeek-R1", "int4", A100_80, (1, 8)),
    ("DeepSeek-V3", "bf16", A100_40, None),  # 1370 GB over 32 x 40 GB does not go
])
def test_smallest_set_for_the_big_models(model, precision, gpu, smallest):
    found = smallest_gpu_set(model, precision, gpu[0], gpu[1])
    if smallest is None:
        assert found is None
        return
    print(found[2]["reason"])
    assert found[:2] == smallest


# Worked by hand: usable = MiB x 0.9 - 4 GiB; weights = BF16 size / TP; KV/token/GPU =
# layers x 2 x ceil(kv_heads / TP) x 128 x 2 B; needs 32,768 tokens.
@pytest.mark.parametrize("model, gpu, smallest, tp", [
    ("DeepSeek-R1-Distill-Qwen-1.5B", H100, (1, 1), 1),
    ("DeepSeek-R1-Distill-Qwen-7B", H100, (1, 1), 1),
    ("DeepSeek-R1-Distill-Llama-8B", H100, (1, 1), 1),
    ("DeepSeek-R1-Distill-Qwen-14B", H100, (1, 1), 1),
    ("DeepSeek-R1-Distill-Qwen-32B", H100, (1, 2), 2),   # 1 GPU: 6.7 GiB left < 8 GiB of KV for 32K
    ("DeepSeek-R1-Distill-Llama-70B", H100, (1, 4), 4),  # TP 2: 2.0 GiB left < 5 GiB
    ("DeepSeek-R1-Distill-Qwen-32B", H200, (1, 1), 1),
    ("DeepSeek-R1-Distill-Llama-70B", H200, (1, 2), 2),  # 131.3 GiB of weights > 122.4 GiB usable
    ("DeepSeek-R1-Distill-Qwen-7B", A100_40, (1, 1), 1),
    ("DeepSeek-R1-Distill-Qwen-14B", A100_40, (1, 2), 2),  # 1 GPU: 4.5 GiB left < 6 GiB
    ("DeepSeek-R1-Distill-Qwen-32B", A100_40, (1, 4), 4),
    ("DeepSeek-R1-Distill-Llama-70B", A100_40, (1, 8), 8),
])
def test_each_distill_on_its_smallest_set(model, gpu, smallest, tp):
    nodes, per_node, result = smallest_gpu_set(model, None, gpu[0], gpu[1])
    print(result["reason"])
    assert (nodes, per_node) == smallest
    assert (result["tp"], result["pp"], result["dp"], result["ep"]) == (tp, 1, 1, 1)
    assert result["precision"] == "bf16"


def test_distill_32b_one_h100_by_hand():
    """(81559 MiB x 0.9 - 4 GiB - 65.5 GB) / 262,144 B per token = 27,365 tokens."""
    result = plan("DeepSeek-R1-Distill-Qwen-32B", on(H100, 1, 1), context_length=16384)
    assert result["fits"] is True
    assert result["kv_bytes_per_token_per_gpu"] == 262144
    assert result["kv_tokens"] == 27365
    assert result["max_sequences"] == 1
    assert result["weights_per_gpu_gib"] == 61.0
    refused = plan("DeepSeek-R1-Distill-Qwen-32B", on(H100, 1, 1), context_length=16384, concurrency=2)
    print(refused["reason"])
    assert refused["fits"] is False
    assert "holds ≈ 27,365 tokens, 16,384 × 2 needed" in refused["reason"]
    assert refused["suggestion"] == {"nodes": 1, "gpus_per_node": 2, "text": "1 node × 2"}


def test_reason_for_fp8_on_one_h100_node():
    result = plan("DeepSeek-R1", on(H100, 1, 8))
    assert result["reason"] == (
        "1 node × 8 × NVIDIA H100 80GB HBM3 → DeepSeek-R1 FP8: does not fit: weights need 80.3 GiB/GPU at TP 8, "
        "only 67.7 GiB/GPU usable (79.6 GiB × 0.9 − 4 GiB overhead); "
        "smallest set of this GPU that holds it: 2 nodes × 8")
    assert result["suggestion"]["nodes"] == 2


# -- KV-cache shapes ----------------------------------------------------------------

@pytest.mark.parametrize("model, tp, pp, per_token", [
    ("DeepSeek-V3", 8, 1, 61 * 576 * 2),          # MLA latent kept whole on every TP rank
    ("DeepSeek-V3", 16, 1, 61 * 576 * 2),
    ("DeepSeek-R1", 8, 2, 31 * 576 * 2),          # PP halves the layers per GPU
    ("DeepSeek-R1-Distill-Qwen-32B", 1, 1, 64 * 2 * 8 * 128 * 2),
    ("DeepSeek-R1-Distill-Qwen-32B", 16, 1, 64 * 2 * 1 * 128 * 2),  # 8 KV heads, replicated past TP 8
    ("DeepSeek-R1-Distill-Qwen-1.5B", 2, 1, 28 * 2 * 1 * 128 * 2),
    ("DeepSeek-R1-Distill-Llama-70B", 4, 1, 80 * 2 * 2 * 128 * 2),
])
def test_kv_bytes_per_token(model, tp, pp, per_token):
    assert CATALOG[model].attention.kv_bytes_per_token(tp, pp) == per_token


@pytest.mark.parametrize("model, allowed", [
    ("DeepSeek-R1-Distill-Qwen-1.5B", [1, 2, 4, 6]),  # 12 heads, 2 KV heads (replicated at TP 4 and 6)
    ("DeepSeek-R1-Distill-Qwen-7B", [1, 2, 4]),       # 28 heads, 4 KV heads
    ("DeepSeek-R1-Distill-Llama-8B", [1, 2, 4, 8]),
    ("DeepSeek-R1", [1, 2, 4, 8]),
])
def test_tensor_parallel_sizes(model, allowed):
    attention = CATALOG[model].attention
    assert [tp for tp in range(1, 9) if attention.tp_allowed(tp)] == allowed


def test_mla_shape():
    assert (MLA_V3.num_layers, MLA_V3.kv_lora_rank, MLA_V3.qk_rope_head_dim) == (61, 512, 64)


# -- engine flags ----------------------------------------------------------------------

@pytest.mark.parametrize("model, gpu, nodes, engine, options, args, by_rank", [
    ("DeepSeek-R1", H200, 1, "vllm", {},
     ["--tensor-parallel-size", "8", "--enable-expert-parallel",
      "--max-model-len", "32768", "--gpu-memory-utilization", "0.9"], None),
    ("DeepSeek-R1", H100, 2, "vllm", {"context_length": 65536, "gpu_memory_utilization": 0.92},
     ["--tensor-parallel-size", "8", "--pipeline-parallel-size", "2", "--enable-expert-parallel",
      "--distributed-executor-backend", "ray", "--max-model-len", "65536", "--gpu-memory-utilization", "0.92"],
     [None, []]),
    ("DeepSeek-R1", H100, 2, "vllm", {"expert_parallel": False},
     ["--tensor-parallel-size", "8", "--pipeline-parallel-size", "2",
      "--distributed-executor-backend", "ray", "--max-model-len", "32768", "--gpu-memory-utilization", "0.9"],
     [None, []]),
    ("DeepSeek-R1", H100, 2, "sglang", {"head_address": "10.0.0.1"},
     ["--tp", "16", "--nnodes", "2", "--context-length", "32768", "--mem-fraction-static", "0.9"],
     [["--node-rank", "0", "--dist-init-addr", "10.0.0.1:5000"],
      ["--node-rank", "1", "--dist-init-addr", "10.0.0.1:5000"]]),
    ("DeepSeek-R1-Distill-Qwen-7B", H100, 1, "vllm", {},
     ["--tensor-parallel-size", "1", "--data-parallel-size", "8",
      "--max-model-len", "32768", "--gpu-memory-utilization", "0.9"], None),
    ("DeepSeek-R1-Distill-Qwen-7B", H100, 1, "sglang", {},
     ["--tp", "1", "--dp-size", "8", "--context-length", "32768", "--mem-fraction-static", "0.9"], None),
])
def test_engine_args(model, gpu, nodes, engine, options, args, by_rank):
    result = plan(model, on(gpu, nodes, 8), engine=engine, **options)
    assert result["fits"] is True
    assert result["engine_args"] == args
    expected_ranks = [args] if by_rank is None else [
        args if extra is None else (args + extra if extra else []) for extra in by_rank]
    assert result["engine_args_by_rank"] == expected_ranks


def test_sglang_across_nodes_keeps_the_latent_on_every_gpu():
    """TP 16 instead of PP 2: each GPU caches all 61 layers, so half the tokens of the vLLM plan."""
    vllm = plan("DeepSeek-R1", on(H100, 2, 8))
    sglang = plan("DeepSeek-R1", on(H100, 2, 8), engine="sglang")
    assert (sglang["tp"], sglang["pp"], sglang["ep"]) == (16, 1, 1)
    assert sglang["weights_per_gpu_gib"] == vllm["weights_per_gpu_gib"] == 40.2
    assert (vllm["kv_bytes_per_token_per_gpu"], sglang["kv_bytes_per_token_per_gpu"]) == (35712, 70272)
    assert "set head_address to get --dist-init-addr for each SGLang node rank" in sglang["notes"]


def test_spreads_over_all_nodes_when_a_second_instance_would_not_fit():
    result = plan("DeepSeek-R1", on(H100, 3, 8))
    assert (result["nodes_needed"], result["pp"], result["instances"]) == (3, 3, 1)
    assert "2 nodes would do; spread over all 3 nodes since a second instance would not fit" in result["notes"]
    four = plan("DeepSeek-R1", on(H100, 4, 8))
    assert (four["nodes_needed"], four["pp"], four["instances"]) == (2, 2, 2)


# -- input: facts, models, precisions ----------------------------------------------

def test_plans_from_probe_output():
    """gpu_facts' own output (HGX board through the fake NVML) goes straight into the planner."""
    facts = NvmlProbe(lib=FakeNvml(fake.hgx_h100()), sysfs_root="/nonexistent").collect()
    result = plan("DeepSeek-R1", [facts, facts])
    assert result["fits"] is True
    assert (result["gpu_name"], result["gpu_memory_mib"], result["nodes_available"]) == (
        "NVIDIA H100 80GB HBM3", 81559, 2)
    alone = plan("DeepSeek-R1", [facts])
    assert alone["fits"] is False
    assert alone["suggestion"]["text"] == "2 nodes × 8"


def test_lost_and_mig_gpus_are_left_out():
    gpus = fake.hgx_h100()
    gpus[2]["lost"] = "handle"
    facts = NvmlProbe(lib=FakeNvml(gpus), sysfs_root="/nonexistent").collect()
    mig = NvmlProbe(lib=FakeNvml(fake.a100_mig()), sysfs_root="/nonexistent").collect()
    result = plan("DeepSeek-R1-Distill-Qwen-7B", [facts, mig])
    assert result["nodes_available"] == 1
    assert result["gpus_per_node"] == 7
    assert any(note.startswith("host 1: GPU 2 left out: GPU 2 is lost") for note in result["notes"])
    assert "host 2: GPU 0 left out: MIG is enabled on it" in result["notes"]
    # 7 GPUs: TP must divide 7 and 28 heads; TP 1 x DP 7
    assert (result["tp"], result["dp"]) == (1, 7)


def test_mixed_gpus_plan_on_the_smallest():
    hosts = on(H200, 1, 8) + on(H100, 1, 4)
    result = plan("DeepSeek-R1-Distill-Llama-70B", hosts)
    assert (result["gpu_name"], result["gpus_per_node"]) == (H100[0], 4)
    assert result["tp"] == 4
    assert "nodes have 4/8 GPUs: planned on 4 per node" in result["notes"]
    assert any(note.startswith("mixed GPU models") for note in result["notes"])


@pytest.mark.parametrize("hosts", [[], [{"count": 0, "reason": "NVML could not start (Driver Not Loaded)"}]])
def test_no_usable_gpu(hosts):
    with pytest.raises(PlanError, match="no usable GPU in the gpu facts given"):
        plan("DeepSeek-R1", hosts)


@pytest.mark.parametrize("name, canonical", [
    ("deepseek-ai/DeepSeek-R1", "DeepSeek-R1"),
    ("deepseek-r1-distill-qwen-7b", "DeepSeek-R1-Distill-Qwen-7B"),
    ("DeepSeek-V3.1", "DeepSeek-V3.1"),
])
def test_model_names(name, canonical):
    assert plan(name, on(H200, 1, 8))["model"] == canonical


@pytest.mark.parametrize("precision, stored, source", [
    (None, "fp8", "published checkpoint size"),
    ("AWQ", "int4", "estimated from 685B parameters"),
    ("bf16", "bf16", "estimated from 685B parameters"),
])
def test_precisions(precision, stored, source):
    result = plan("DeepSeek-R1", on(H200, 2, 8), precision=precision)
    assert (result["precision"], result["weights_source"]) == (stored, source)


def test_catalog_covers_the_family():
    names = set(CATALOG)
    assert {"DeepSeek-V3", "DeepSeek-V3-0324", "DeepSeek-V3.1", "DeepSeek-R1", "DeepSeek-R1-0528"} <= names
    assert len([name for name in names if "Distill" in name]) == 6
    assert {p for name in names if "Distill" not in name for p in CATALOG[name].checkpoints} == {"fp8", "bf16", "int4"}


def test_no_published_checkpoint_is_noted():
    result = plan("DeepSeek-R1-Distill-Qwen-7B", on(H100, 1, 1), precision="fp8")
    assert result["weights_total_gib"] == 7.1  # 7.62e9 params x (1 + 4/16384) bytes
    assert any(note.startswith("no fp8 checkpoint of DeepSeek-R1-Distill-Qwen-7B") for note in result["notes"])


def test_context_beyond_the_model():
    result = plan("DeepSeek-R1", on(H200, 1, 8), context_length=200000)
    assert result["fits"] is False
    assert "context_length 200,000 exceeds the model's 163,840" in result["reason"]
    assert result["suggestion"] is None


def test_custom_model_with_shape():
    custom = {"params_b": 72.7, "num_layers": 80, "num_attention_heads": 64, "num_kv_heads": 8, "head_dim": 128,
              "max_context": 32768}
    result = plan("Qwen2.5-72B-Instruct", on(H100, 1, 8), precision="bf16", custom=custom)
    assert result["fits"] is True
    assert (result["tp"], result["dp"]) == (4, 2)  # 135.4 GiB: at TP 2, 67.7 GiB/GPU > 67.68 GiB usable
    assert result["weights_total_gib"] == 135.4
    assert result["kv_bytes_per_token_per_gpu"] == 80 * 2 * 2 * 128 * 2


def test_custom_model_without_shape():
    result = plan("some-13b", on(A100_40, 1, 1), custom={"params_b": 13})
    assert result["fits"] is True
    assert result["kv_tokens"] is None
    assert any(note.startswith("KV cache not sized") for note in result["notes"])


@pytest.mark.parametrize("model, options, message", [
    ("Llama-3-8B", {}, "is not in the catalog"),
    ("DeepSeek-R1", {"precision": "fp4"}, "precision 'fp4' is not known"),
    ("DeepSeek-R1", {"engine": "tgi"}, "engine 'tgi' is not supported"),
    ("DeepSeek-R1", {"gpu_memory_utilization": 1.5}, "gpu_memory_utilization must be in (0, 1]"),
    ("DeepSeek-R1", {"concurrency": 0}, "must be at least 1"),
    ("DeepSeek-R1", {"overhead_gib": -1}, "overhead_gib must not be negative"),
])
def test_bad_input(model, options, message):
    with pytest.raises(PlanError) as raised:
        plan(model, on(H100, 1, 8), **options)
    assert message in str(raised.value)
