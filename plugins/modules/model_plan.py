# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_plan
short_description: Plan how a DeepSeek model fits on a set of GPU nodes
description:
  - Takes the GPU facts of the inference nodes (as M(onprem.deepseek.gpu_facts) returns them), a model and a
    precision, and answers whether the model fits, on how many nodes, with which tensor, pipeline, expert and
    data parallel sizes, how much memory each GPU keeps for the KV cache and about how many tokens that holds.
  - Returns the flags that say so for the engine (vLLM or SGLang), and a one-line reason.
  - Knows the DeepSeek family (V3, V3-0324, V3.1, R1, R1-0528 in FP8, BF16 and INT4/AWQ, and the six
    R1-Distill models) with their real attention shapes (MLA for V3/R1, GQA for the distills); other models
    are planned from O(custom).
  - Pure computation, it reads nothing from the host. Run it once, on the controller, with
    C(delegate_to=localhost) and C(run_once=true).
  - A plan that does not fit is a result (RV(plan.fits=false) with the reason and the smallest set of the same
    GPU that would hold the model), not a failure; the module fails only on input it cannot use.
author:
  - onprem.deepseek maintainers (@onprem)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  model:
    description:
      - Catalog name, case-insensitive, with or without the C(deepseek-ai/) prefix, for example
        V(DeepSeek-R1) or V(deepseek-ai/DeepSeek-R1-Distill-Qwen-7B).
      - Any other name needs O(custom).
    type: str
    required: true
  precision:
    description:
      - Precision of the weights. V(awq) is the same as V(int4).
      - Defaults to the model's published precision (V(fp8) for V3/R1, V(bf16) for the distills and custom models).
    type: str
    choices: [bf16, fp16, fp8, int8, int4, awq]
  gpu_facts:
    description:
      - One entry per inference node, each the C(ansible_facts.gpu) that M(onprem.deepseek.gpu_facts) returned
        there, for example
        C({{ groups.gpu_nodes | map('extract', hostvars, ['ansible_facts', 'gpu']) | list }}).
      - GPUs with an C(error) or with MIG enabled are left out. With mixed GPUs the plan uses the smallest one
        and the smallest GPU count per node.
    type: list
    elements: dict
    required: true
  engine:
    description: Inference engine the flags are for.
    type: str
    choices: [vllm, sglang]
    default: vllm
  context_length:
    description: Longest sequence (prompt plus output, tokens) the engine must accept.
    type: int
    default: 32768
  concurrency:
    description: Sequences of O(context_length) tokens one engine instance must hold in its KV cache at once.
    type: int
    default: 1
  gpu_memory_utilization:
    description:
      - Share of each GPU's memory the engine may use (vLLM C(--gpu-memory-utilization),
        SGLang C(--mem-fraction-static)).
    type: float
    default: 0.9
  overhead_gib:
    description: Memory per GPU, inside that share, kept for activations, CUDA graphs and communication buffers.
    type: float
    default: 4.0
  expert_parallel:
    description: For mixture-of-experts models on vLLM, shard the experts (C(--enable-expert-parallel)).
    type: bool
    default: true
  head_address:
    description: Address of node rank 0; used for SGLang's C(--dist-init-addr) when the plan spans nodes.
    type: str
  custom:
    description: Size and shape of a model that is not in the catalog.
    type: dict
    suboptions:
      params_b:
        description: Parameters, in billions.
        type: float
        required: true
      num_layers:
        description: C(num_hidden_layers) from its config.json.
        type: int
      num_attention_heads:
        description: C(num_attention_heads) from its config.json.
        type: int
      num_kv_heads:
        description: C(num_key_value_heads) from its config.json.
        type: int
      head_dim:
        description: C(head_dim), or C(hidden_size / num_attention_heads).
        type: int
      max_context:
        description: C(max_position_embeddings) from its config.json.
        type: int
      moe:
        description: Whether it is a mixture-of-experts model.
        type: bool
        default: false
notes:
  - Weights per GPU are the checkpoint size divided by TP x PP; the published checkpoint size is used where
    known, otherwise parameters x bytes per parameter (scales included).
  - The KV cache is counted in BF16. MLA's compressed latent is kept whole on every tensor-parallel rank.
  - Multi-node plans use TP = GPUs per node and PP = nodes on vLLM (with Ray), TP across all GPUs on SGLang.
seealso:
  - module: onprem.deepseek.gpu_facts
"""

EXAMPLES = r"""
- name: Plan DeepSeek-R1 on the GPU nodes
  onprem.deepseek.model_plan:
    model: DeepSeek-R1
    gpu_facts: "{{ groups.gpu_nodes | map('extract', hostvars, ['ansible_facts', 'gpu']) | list }}"
    context_length: 32768
    concurrency: 8
  delegate_to: localhost
  run_once: true
  register: __plan

- name: Stop with the reason when it does not fit
  ansible.builtin.assert:
    that: __plan.plan.fits
    fail_msg: "{{ __plan.plan.reason }}"
    success_msg: "{{ __plan.plan.reason }}"
  run_once: true

- name: Plan a distill for SGLang
  onprem.deepseek.model_plan:
    model: deepseek-ai/DeepSeek-R1-Distill-Qwen-32B
    engine: sglang
    gpu_facts: "{{ [ansible_facts.gpu] }}"

- name: Plan a model outside the catalog
  onprem.deepseek.model_plan:
    model: my-org/Qwen2.5-72B-Instruct
    precision: bf16
    custom:
      params_b: 72.7
      num_layers: 80
      num_attention_heads: 64
      num_kv_heads: 8
      head_dim: 128
      max_context: 32768
    gpu_facts: "{{ [ansible_facts.gpu] }}"
"""

RETURN = r"""
plan:
  description: The plan.
  returned: success
  type: dict
  contains:
    fits:
      description: Whether the model fits with the wanted context length and concurrency.
      type: bool
      sample: true
    reason:
      description: One line saying what was planned and why it fits or not.
      type: str
      sample: >-
        2 nodes × 8 × NVIDIA H100 80GB HBM3 → DeepSeek-R1 FP8: fits, TP 8 × PP 2 (EP 8),
        27.5 GiB/GPU for KV cache (≈ 827,418 tokens)
    model: {description: Catalog name of the model., type: str, sample: DeepSeek-R1}
    precision: {description: Precision planned., type: str, sample: fp8}
    engine: {description: Engine the flags are for., type: str, sample: vllm}
    gpu_name: {description: GPU planned on (the smallest one seen)., type: str, sample: NVIDIA H100 80GB HBM3}
    gpu_memory_mib: {description: Memory of that GPU in MiB., type: int, sample: 81559}
    nodes_available: {description: Nodes with usable GPUs in O(gpu_facts)., type: int, sample: 2}
    gpus_per_node: {description: Usable GPUs per node (the smallest count seen)., type: int, sample: 8}
    nodes_needed: {description: Nodes one engine instance spans., type: int, sample: 2}
    instances:
      description: Engine instances the given nodes can run side by side; V(0) when it does not fit.
      type: int
      sample: 1
    tp: {description: Tensor-parallel size., type: int, sample: 8}
    pp: {description: Pipeline-parallel size., type: int, sample: 2}
    ep: {description: Expert-parallel size (V(1) when experts are not sharded)., type: int, sample: 8}
    dp: {description: Data-parallel replicas inside one engine instance., type: int, sample: 1}
    context_length: {description: Context length planned for., type: int, sample: 32768}
    concurrency: {description: Concurrent full-length sequences planned for., type: int, sample: 1}
    gpu_memory_utilization: {description: Value to pass to the engine., type: float, sample: 0.9}
    overhead_gib: {description: Overhead per GPU assumed., type: float, sample: 4.0}
    weights_total_gib: {description: Size of the weights., type: float, sample: 642.6}
    weights_source: {description: Where that size comes from., type: str, sample: published checkpoint size}
    weights_per_gpu_gib: {description: Weights on each GPU., type: float, sample: 40.2}
    kv_cache_per_gpu_gib: {description: Memory left on each GPU for the KV cache., type: float, sample: 27.5}
    kv_bytes_per_token_per_gpu:
      description: KV-cache bytes one token takes on one GPU; V(null) when the shape is unknown.
      type: int
      sample: 35712
    kv_tokens:
      description: Tokens that fit in the KV cache of one replica; V(null) when the shape is unknown.
      type: int
      sample: 827418
    max_sequences:
      description: Sequences of O(context_length) tokens one engine instance holds at once.
      type: int
      sample: 25
    engine_args:
      description:
        - Parallelism, context and memory flags for the engine on node rank 0 (on every node when one node suffices).
      type: list
      elements: str
      sample: ["--tensor-parallel-size", "8", "--pipeline-parallel-size", "2", "--enable-expert-parallel",
               "--distributed-executor-backend", "ray", "--max-model-len", "32768", "--gpu-memory-utilization", "0.9"]
    engine_args_by_rank:
      description:
        - Flags per node rank of one instance. vLLM workers get an empty list (they only join the Ray cluster);
          SGLang ranks add C(--node-rank) and, with O(head_address), C(--dist-init-addr).
      type: list
      elements: list
    suggestion:
      description:
        - When it does not fit, the smallest set of the same GPU that holds it.
        - Keys C(nodes), C(gpus_per_node) and C(text).
      type: dict
      sample: {"nodes": 2, "gpus_per_node": 8, "text": "2 nodes × 8"}
    notes:
      description: Remarks on the input (GPUs left out, mixed GPUs, estimated sizes, missing head address).
      type: list
      elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.onprem.deepseek.plugins.module_utils._planner import (
    PlanError,
    plan,
)


def argument_spec():
    return {
        "model": {"type": "str", "required": True},
        "precision": {"type": "str", "choices": ["bf16", "fp16", "fp8", "int8", "int4", "awq"]},
        "gpu_facts": {"type": "list", "elements": "dict", "required": True},
        "engine": {"type": "str", "choices": ["vllm", "sglang"], "default": "vllm"},
        "context_length": {"type": "int", "default": 32768},
        "concurrency": {"type": "int", "default": 1},
        "gpu_memory_utilization": {"type": "float", "default": 0.9},
        "overhead_gib": {"type": "float", "default": 4.0},
        "expert_parallel": {"type": "bool", "default": True},
        "head_address": {"type": "str"},
        "custom": {
            "type": "dict",
            "options": {
                "params_b": {"type": "float", "required": True},
                "num_layers": {"type": "int"},
                "num_attention_heads": {"type": "int"},
                "num_kv_heads": {"type": "int"},
                "head_dim": {"type": "int"},
                "max_context": {"type": "int"},
                "moe": {"type": "bool", "default": False},
            },
        },
    }


def run_module(module):
    params = module.params
    try:
        result = plan(
            params["model"],
            params["gpu_facts"],
            precision=params["precision"],
            engine=params["engine"],
            context_length=params["context_length"],
            concurrency=params["concurrency"],
            gpu_memory_utilization=params["gpu_memory_utilization"],
            overhead_gib=params["overhead_gib"],
            custom=params["custom"],
            expert_parallel=params["expert_parallel"],
            head_address=params["head_address"],
        )
    except PlanError as err:
        module.fail_json(msg=f"model_plan: {err}")
    module.exit_json(changed=False, plan=result)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    run_module(module)


if __name__ == "__main__":
    main()
