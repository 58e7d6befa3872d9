# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Capacity planner for the DeepSeek family on a set of GPU nodes.

Pure Python, no I/O: it takes the ``ansible_facts.gpu`` of each node (what
gpu_facts returns), a model and a precision, and answers whether the model
fits, with which tensor / pipeline / expert / data parallel sizes, how much
memory each GPU keeps for the KV cache, and the engine flags that say so.

The memory model, per GPU:

    usable    = memory_total * gpu_memory_utilization - overhead
    weights   = checkpoint bytes / (TP * PP)
    kv room   = usable - weights
    kv tokens = kv room / KV bytes per token on that GPU

KV bytes per token come from the model's real attention shape:

* MLA (DeepSeek-V3/R1): each layer caches one compressed latent of
  kv_lora_rank + qk_rope_head_dim values per token. The latent is not split
  across tensor-parallel ranks (every TP rank keeps it), only across pipeline
  stages.
* GQA (the R1-Distill models): each layer caches K and V for num_kv_heads
  heads of head_dim values; TP splits the KV heads (a rank keeps at least one,
  heads are replicated when TP > num_kv_heads).

The KV cache is assumed to be BF16 (2 bytes per value), the engines' default.
"""

from __future__ import annotations

import math
from collections import Counter

GIB = 1024 ** 3
MIB = 1024 ** 2
GB = 1000 ** 3
KV_CACHE_BYTES = 2

ENGINES = ("vllm", "sglang")
DEFAULT_CONTEXT_LENGTH = 32768
DEFAULT_GPU_MEMORY_UTILIZATION = 0.90
DEFAULT_OVERHEAD_GIB = 4.0
SGLANG_DIST_INIT_PORT = 5000

# Bytes per parameter for a checkpoint in each precision, scales included.
#  fp8:  1 byte + one fp32 scale per 128x128 block (DeepSeek's block-wise FP8).
#  int4: 4-bit weights + one fp16 scale and one 4-bit zero point per group of 128 (AWQ/GPTQ layout).
BYTES_PER_PARAM = {
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0 + 4.0 / (128 * 128),
    "int8": 1.0 + 2.0 / 128,
    "int4": 0.5 + (2.0 + 0.5) / 128,
}
PRECISION_ALIASES = {"awq": "int4", "gptq": "int4", "w4a16": "int4", "bfloat16": "bf16", "float16": "fp16"}

# Sets of GPUs tried by smallest_gpu_set(), smallest first (fewer nodes first on a tie).
GPUS_PER_NODE_STEPS = (1, 2, 4, 8)
NODE_STEPS = (1, 2, 4)


class Attention:
    """The part of a model's config.json that sizes the KV cache and bounds TP."""

    def __init__(self, kind, num_layers, num_heads, num_kv_heads=0, head_dim=0, kv_lora_rank=0, qk_rope_head_dim=0):
        self.kind = kind
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.kv_lora_rank = kv_lora_rank
        self.qk_rope_head_dim = qk_rope_head_dim

    def tp_allowed(self, tp):
        """The engines split attention heads evenly; GQA also needs KV heads to split or replicate evenly."""
        if self.num_heads % tp:
            return False
        if self.kind == "gqa":
            return self.num_kv_heads % tp == 0 or tp % self.num_kv_heads == 0
        return True

    def kv_bytes_per_token(self, tp, pp):
        """KV-cache bytes one token takes on one GPU of a TP x PP replica."""
        layers = math.ceil(self.num_layers / pp)
        if self.kind == "mla":
            return layers * (self.kv_lora_rank + self.qk_rope_head_dim) * KV_CACHE_BYTES
        heads = math.ceil(self.num_kv_heads / tp)
        return layers * 2 * heads * self.head_dim * KV_CACHE_BYTES


class Model:
    """One catalog entry: shape, parameter count and the checkpoints that exist."""

    def __init__(self, name, params_b, attention, max_context, native, checkpoints, moe=False):
        self.name = name
        self.params_b = params_b
        self.attention = attention
        self.max_context = max_context
        self.native = native
        self.checkpoints = checkpoints  # precision -> (repository, size in GB or None)
        self.moe = moe

    def weights_bytes(self, precision):
        """(bytes, source): the published checkpoint size when known, else params x bytes/param."""
        size_gb = self.checkpoints.get(precision, (None, None))[1]
        if size_gb is not None:
            return size_gb * GB, "published checkpoint size"
        return self.params_b * 1e9 * BYTES_PER_PARAM[precision], f"estimated from {fmt_num(self.params_b)}B parameters"


# DeepSeek-V3 / R1 shape, from config.json of deepseek-ai/DeepSeek-V3 (same in V3-0324, V3.1, R1, R1-0528):
# num_hidden_layers 61, num_attention_heads 128, kv_lora_rank 512, qk_rope_head_dim 64,
# max_position_embeddings 163840, n_routed_experts 256 (MoE).
MLA_V3 = Attention("mla", num_layers=61, num_heads=128, kv_lora_rank=512, qk_rope_head_dim=64)
V3_MAX_CONTEXT = 163840
# 671B main model + 14B multi-token-prediction module = 685B on the hub (DEEPSEEK.md). The MTP module is
# counted: it is in the checkpoint, and engines load it for speculative decoding.
V3_PARAMS_B = 685.0
# FP8 checkpoint on the hub: 163 shards, about 690 GB (DEEPSEEK.md, derived from the shard list).
V3_FP8_GB = 690.0

# (name, FP8 repository, AWQ repository or None). BF16 has no official repository: it is produced with
# inference/fp8_cast_bf16.py from the FP8 one, so its size is estimated from the parameter count.
V3_FAMILY = (
    ("DeepSeek-V3", "deepseek-ai/DeepSeek-V3", "cognitivecomputations/DeepSeek-V3-AWQ"),
    ("DeepSeek-V3-0324", "deepseek-ai/DeepSeek-V3-0324", "cognitivecomputations/DeepSeek-V3-0324-AWQ"),
    ("DeepSeek-V3.1", "deepseek-ai/DeepSeek-V3.1", None),
    ("DeepSeek-R1", "deepseek-ai/DeepSeek-R1", "cognitivecomputations/DeepSeek-R1-AWQ"),
    ("DeepSeek-R1-0528", "deepseek-ai/DeepSeek-R1-0528", None),
)

# R1-Distill shapes from each repository's config.json on the Hugging Face hub (deepseek-ai/<name>):
# (name, params B, BF16 size GB [DEEPSEEK.md], num_hidden_layers, num_attention_heads,
#  num_key_value_heads, head_dim = hidden_size / num_attention_heads, max_position_embeddings)
DISTILLS = (
    ("DeepSeek-R1-Distill-Qwen-1.5B", 1.78, 3.55, 28, 12, 2, 128, 131072),   # Qwen2.5-Math-1.5B, hidden 1536
    ("DeepSeek-R1-Distill-Qwen-7B", 7.62, 15.2, 28, 28, 4, 128, 131072),     # Qwen2.5-Math-7B, hidden 3584
    ("DeepSeek-R1-Distill-Llama-8B", 8.03, 16.1, 32, 32, 8, 128, 131072),    # Llama-3.1-8B, hidden 4096
    ("DeepSeek-R1-Distill-Qwen-14B", 14.8, 29.5, 48, 40, 8, 128, 131072),    # Qwen2.5-14B, hidden 5120
    ("DeepSeek-R1-Distill-Qwen-32B", 32.8, 65.5, 64, 40, 8, 128, 131072),    # Qwen2.5-32B, hidden 5120
    ("DeepSeek-R1-Distill-Llama-70B", 70.6, 141.0, 80, 64, 8, 128, 131072),  # Llama-3.3-70B-Instruct, hidden 8192
)


def build_catalog():
    catalog = {}
    for name, fp8_repo, awq_repo in V3_FAMILY:
        checkpoints = {"fp8": (fp8_repo, V3_FP8_GB), "bf16": (None, None)}
        if awq_repo:
            checkpoints["int4"] = (awq_repo, None)
        catalog[name] = Model(name, V3_PARAMS_B, MLA_V3, V3_MAX_CONTEXT, "fp8", checkpoints, moe=True)
    for name, params_b, size_gb, layers, heads, kv_heads, head_dim, max_context in DISTILLS:
        attention = Attention("gqa", layers, heads, num_kv_heads=kv_heads, head_dim=head_dim)
        checkpoints = {"bf16": ("deepseek-ai/" + name, size_gb)}
        catalog[name] = Model(name, params_b, attention, max_context, "bf16", checkpoints)
    return catalog


CATALOG = build_catalog()


class PlanError(ValueError):
    """Input the planner cannot work with; the message says what to change."""


# -- small formatting helpers ---------------------------------------------------

def fmt_num(value):
    return (f"{value:.2f}").rstrip("0").rstrip(".")


def gib(value_bytes):
    return round(value_bytes / GIB, 1)


def plural(count, word):
    return f"{count} {word}{'' if count == 1 else 's'}"


# -- inputs -------------------------------------------------------------------

def normalize_precision(precision):
    if precision is None:
        return None
    value = str(precision).strip().lower()
    value = PRECISION_ALIASES.get(value, value)
    if value not in BYTES_PER_PARAM:
        known = ", ".join(sorted(BYTES_PER_PARAM))
        raise PlanError(f"precision {precision!r} is not known; use one of {known}")
    return value


def find_model(name):
    wanted = str(name).strip().lower()
    wanted = wanted.split("/", 1)[1] if wanted.startswith("deepseek-ai/") else wanted
    for model_name, model in CATALOG.items():
        if model_name.lower() == wanted:
            return model
    return None


def custom_model(name, custom):
    """A model outside the catalog, from its parameter count and (optionally) attention shape."""
    if not custom.get("params_b"):
        known = ", ".join(CATALOG)
        raise PlanError(f"model {name!r} is not in the catalog ({known}); "
                        "give custom.params_b and a precision to plan it")
    attention = None
    shape = [custom.get(key) for key in ("num_layers", "num_attention_heads", "num_kv_heads", "head_dim")]
    if all(shape):
        attention = Attention("gqa", *shape[:2], num_kv_heads=shape[2], head_dim=shape[3])
    return Model(name, float(custom["params_b"]), attention, custom.get("max_context"), "bf16", {},
                 moe=bool(custom.get("moe")))


def resolve_model(name, precision, custom=None):
    model = find_model(name)
    if model is None:
        model = custom_model(name, custom or {})
    precision = normalize_precision(precision) or model.native
    return model, precision


class Hardware:
    """The usable GPUs of the inventory, reduced to what a plan needs."""

    def __init__(self, nodes, gpus_per_node, gpu_name, memory_mib, notes):
        self.nodes = nodes
        self.gpus_per_node = gpus_per_node
        self.gpu_name = gpu_name
        self.memory_mib = memory_mib
        self.notes = notes

    def describe(self, nodes=None, gpus_per_node=None):
        nodes = plural(nodes or self.nodes, "node")
        return f"{nodes} × {gpus_per_node or self.gpus_per_node} × {self.gpu_name}"


def usable_devices(facts, notes, host_number):
    devices = []
    for device in facts.get("devices") or []:
        if device.get("error"):
            notes.append(f"host {host_number}: GPU {device.get('index')} left out: {device['error']}")
        elif device.get("mig_mode_current"):
            notes.append(f"host {host_number}: GPU {device.get('index')} left out: MIG is enabled on it")
        elif device.get("memory_total_mib"):
            devices.append(device)
    return devices


def summarize_hardware(hosts):
    """Reduce per-host gpu facts to nodes x GPUs of the smallest GPU seen."""
    notes, per_host = [], []
    for number, facts in enumerate(hosts or [], start=1):
        devices = usable_devices(facts or {}, notes, number)
        if devices:
            per_host.append(devices)
        else:
            notes.append(f"host {number}: no usable GPU ({(facts or {}).get('reason') or 'none listed'})")
    if not per_host:
        why = "; ".join(notes or ["the list is empty"])
        raise PlanError(f"no usable GPU in the gpu facts given: {why}")
    every = [device for devices in per_host for device in devices]
    smallest = min(every, key=lambda device: device["memory_total_mib"])
    names = Counter(device.get("name") or "unknown GPU" for device in every)
    if len(names) > 1:
        notes.append(f"mixed GPU models ({', '.join(sorted(names))}): planned on the smallest, {smallest.get('name')}")
    counts = sorted({len(devices) for devices in per_host})
    if len(counts) > 1:
        notes.append(f"nodes have {'/'.join(str(c) for c in counts)} GPUs: planned on {counts[0]} per node")
    name = smallest.get("name") or "unknown GPU"
    return Hardware(len(per_host), counts[0], name, smallest["memory_total_mib"], notes)


# -- layouts --------------------------------------------------------------------

class Layout:
    """How one engine instance spreads the model: nodes, TP, PP, DP."""

    def __init__(self, nodes, tp, pp=1, dp=1):
        self.nodes = nodes
        self.tp = tp
        self.pp = pp
        self.dp = dp


def candidate_layouts(hardware, model, engine):
    """Smallest first: one node with growing TP (rest of the node as DP), then more nodes.

    Mixture-of-experts models take the whole node in TP (with expert parallelism), the recipe the engines
    document for DeepSeek-V3/R1; data-parallel replicas of an MoE model would share their experts.
    """
    attention = model.attention
    per_node = hardware.gpus_per_node
    layouts = []
    for tp in range(1, per_node + 1):
        if per_node % tp or (model.moe and tp != per_node):
            continue
        if attention is None or attention.tp_allowed(tp):
            layouts.append(Layout(1, tp, dp=per_node // tp))
    for nodes in range(2, hardware.nodes + 1):
        layout = multi_node_layout(nodes, per_node, engine)
        if attention is None or (attention.tp_allowed(layout.tp) and layout.pp <= attention.num_layers):
            layouts.append(layout)
    return layouts


def multi_node_layout(nodes, per_node, engine):
    """vLLM: TP inside a node, PP across nodes (Ray). SGLang: TP across all GPUs (--nnodes)."""
    if engine == "sglang":
        return Layout(nodes, per_node * nodes)
    return Layout(nodes, per_node, pp=nodes)


class Request:
    """Everything a plan depends on besides the hardware."""

    def __init__(self, model, precision, engine, context_length, concurrency, gpu_memory_utilization, overhead_gib,
                 expert_parallel=True, head_address=None):
        if engine not in ENGINES:
            raise PlanError(f"engine {engine!r} is not supported; use one of {', '.join(ENGINES)}")
        if not 0 < gpu_memory_utilization <= 1:
            raise PlanError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        if context_length < 1 or concurrency < 1:
            raise PlanError("context_length and concurrency must be at least 1")
        if overhead_gib < 0:
            raise PlanError(f"overhead_gib must not be negative, got {overhead_gib}")
        self.model = model
        self.precision = precision
        self.engine = engine
        self.context_length = context_length
        self.concurrency = concurrency
        self.gpu_memory_utilization = gpu_memory_utilization
        self.overhead_gib = overhead_gib
        self.expert_parallel = expert_parallel
        self.head_address = head_address
        self.weights_bytes, self.weights_source = model.weights_bytes(precision)

    @property
    def label(self):
        return f"{self.model.name} {self.precision.upper()}"


def evaluate(request, hardware, layout):
    """Memory per GPU for one layout, and whether it holds the wanted context x concurrency."""
    memory = hardware.memory_mib * MIB
    usable = memory * request.gpu_memory_utilization - request.overhead_gib * GIB
    weights = request.weights_bytes / (layout.tp * layout.pp)
    room = usable - weights
    attention = request.model.attention
    per_token = attention.kv_bytes_per_token(layout.tp, layout.pp) if attention else None
    tokens = int(room // per_token) if per_token and room > 0 else (0 if per_token else None)
    result = {
        "memory": memory, "usable": usable, "weights": weights, "room": room,
        "per_token": per_token, "tokens": tokens, "sequences": None,
    }
    if tokens is not None:
        result["sequences"] = layout.dp * (tokens // request.context_length)
        result["fits"] = tokens >= request.context_length and result["sequences"] >= request.concurrency
    else:
        result["fits"] = room > 0
    return result


# -- engine flags -----------------------------------------------------------------

def expert_parallel_size(request, layout):
    if request.engine == "vllm" and request.model.moe and request.expert_parallel and layout.tp * layout.dp > 1:
        return layout.tp * layout.dp
    return 1


def vllm_args(request, layout, ep):
    args = ["--tensor-parallel-size", str(layout.tp)]
    if layout.pp > 1:
        args += ["--pipeline-parallel-size", str(layout.pp)]
    if layout.dp > 1:
        args += ["--data-parallel-size", str(layout.dp)]
    if ep > 1:
        args.append("--enable-expert-parallel")
    if layout.nodes > 1:
        args += ["--distributed-executor-backend", "ray"]
    args += ["--max-model-len", str(request.context_length),
             "--gpu-memory-utilization", fmt_num(request.gpu_memory_utilization)]
    return args


def sglang_args(request, layout):
    args = ["--tp", str(layout.tp)]
    if layout.dp > 1:
        args += ["--dp-size", str(layout.dp)]
    if layout.nodes > 1:
        args += ["--nnodes", str(layout.nodes)]
    args += ["--context-length", str(request.context_length),
             "--mem-fraction-static", fmt_num(request.gpu_memory_utilization)]
    return args


def args_by_rank(request, layout, args):
    """Per node rank. vLLM workers only join Ray (no engine flags); SGLang ranks differ by --node-rank."""
    if layout.nodes == 1:
        return [args]
    if request.engine == "vllm":
        return [args] + [[] for rank in range(1, layout.nodes)]
    ranks = []
    for rank in range(layout.nodes):
        extra = ["--node-rank", str(rank)]
        if request.head_address:
            extra += ["--dist-init-addr", f"{request.head_address}:{SGLANG_DIST_INIT_PORT}"]
        ranks.append(args + extra)
    return ranks


# -- reasons ----------------------------------------------------------------------

def layout_text(layout, ep):
    parts = [f"TP {layout.tp}"]
    if layout.pp > 1:
        parts.append(f"PP {layout.pp}")
    if layout.dp > 1:
        parts.append(f"DP {layout.dp}")
    text = " × ".join(parts)
    return text + (f" (EP {ep})" if ep > 1 else "")


def why_not(request, layout, numbers):
    at = layout_text(layout, 1)
    if numbers["weights"] > numbers["usable"]:
        return (f"weights need {gib(numbers['weights']):.1f} GiB/GPU at {at}, only {gib(numbers['usable']):.1f} "
                f"GiB/GPU usable ({gib(numbers['memory']):.1f} GiB × {fmt_num(request.gpu_memory_utilization)} − "
                f"{fmt_num(request.overhead_gib)} GiB overhead)")
    return (f"{gib(max(numbers['room'], 0)):.1f} GiB/GPU left for KV cache at {at} holds ≈ {numbers['tokens']:,} "
            f"tokens, {request.context_length:,} × {request.concurrency} needed")


def fits_text(layout, numbers, ep):
    tokens = ""
    if numbers["tokens"] is not None:
        tokens = f" (≈ {numbers['tokens']:,} tokens{' per replica' if layout.dp > 1 else ''})"
    return f"fits, {layout_text(layout, ep)}, {gib(numbers['room']):.1f} GiB/GPU for KV cache{tokens}"


# -- the plan ---------------------------------------------------------------------

def plan(model, hosts, precision=None, engine="vllm", context_length=DEFAULT_CONTEXT_LENGTH, concurrency=1,
         gpu_memory_utilization=DEFAULT_GPU_MEMORY_UTILIZATION, overhead_gib=DEFAULT_OVERHEAD_GIB,
         custom=None, expert_parallel=True, head_address=None, suggest=True):
    """Plan ``model`` on ``hosts`` (a list of gpu facts, one per node). Raises PlanError on bad input."""
    resolved, precision = resolve_model(model, precision, custom)
    request = Request(resolved, precision, engine, context_length, concurrency, gpu_memory_utilization,
                      overhead_gib, expert_parallel, head_address)
    hardware = summarize_hardware(hosts)
    result = base_result(request, hardware)
    if resolved.max_context and context_length > resolved.max_context:
        failure = f"context_length {context_length:,} exceeds the model's {resolved.max_context:,}"
        return finish(result, request, hardware, None, None, failure, suggest)
    layouts = candidate_layouts(hardware, resolved, engine)
    if not layouts:
        failure = (f"no tensor-parallel size fits {hardware.gpus_per_node} GPUs per node and "
                   f"{resolved.attention.num_heads} attention heads")
        return finish(result, request, hardware, None, None, failure, suggest)
    for layout in layouts:
        numbers = evaluate(request, hardware, layout)
        if numbers["fits"]:
            chosen, chosen_numbers = widen(request, hardware, layout, numbers, result["notes"])
            return finish(result, request, hardware, chosen, chosen_numbers, None, suggest)
    return finish(result, request, hardware, layout, numbers, why_not(request, layout, numbers), suggest)


def widen(request, hardware, layout, numbers, notes):
    """Spread a multi-node instance over every node when a second instance would not fit anyway (more KV room)."""
    if layout.nodes in (1, hardware.nodes) or hardware.nodes // layout.nodes > 1:
        return layout, numbers
    wide = multi_node_layout(hardware.nodes, hardware.gpus_per_node, request.engine)
    attention = request.model.attention
    if attention is not None and not (attention.tp_allowed(wide.tp) and wide.pp <= attention.num_layers):
        return layout, numbers
    notes.append(f"{plural(layout.nodes, 'node')} would do; spread over all {plural(hardware.nodes, 'node')} "
                 "since a second instance would not fit")
    return wide, evaluate(request, hardware, wide)


def base_result(request, hardware):
    return {
        "fits": False,
        "reason": None,
        "model": request.model.name,
        "precision": request.precision,
        "engine": request.engine,
        "gpu_name": hardware.gpu_name,
        "gpu_memory_mib": hardware.memory_mib,
        "nodes_available": hardware.nodes,
        "gpus_per_node": hardware.gpus_per_node,
        "context_length": request.context_length,
        "concurrency": request.concurrency,
        "gpu_memory_utilization": request.gpu_memory_utilization,
        "overhead_gib": request.overhead_gib,
        "weights_total_gib": gib(request.weights_bytes),
        "weights_source": request.weights_source,
        "nodes_needed": None, "instances": 0,
        "tp": None, "pp": None, "ep": None, "dp": None,
        "weights_per_gpu_gib": None,
        "kv_cache_per_gpu_gib": None,
        "kv_bytes_per_token_per_gpu": None,
        "kv_tokens": None,
        "max_sequences": None,
        "engine_args": [],
        "engine_args_by_rank": [],
        "suggestion": None,
        "notes": list(hardware.notes),
    }


def finish(result, request, hardware, layout, numbers, failure, suggest):
    """Fill the layout, numbers, flags and the one-line reason."""
    if layout is not None:
        ep = expert_parallel_size(request, layout)
        result.update({
            "nodes_needed": layout.nodes, "tp": layout.tp, "pp": layout.pp, "dp": layout.dp, "ep": ep,
            "weights_per_gpu_gib": gib(numbers["weights"]),
            "kv_cache_per_gpu_gib": gib(max(numbers["room"], 0)),
            "kv_bytes_per_token_per_gpu": numbers["per_token"],
            "kv_tokens": numbers["tokens"],
            "max_sequences": numbers["sequences"],
        })
    head = f"{hardware.describe()} → {request.label}"
    if failure is None:
        result["fits"] = True
        result["instances"] = hardware.nodes // layout.nodes
        args = vllm_args(request, layout, ep) if request.engine == "vllm" else sglang_args(request, layout)
        result["engine_args"] = args
        result["engine_args_by_rank"] = args_by_rank(request, layout, args)
        result["reason"] = f"{head}: {fits_text(layout, numbers, ep)}"
        add_notes(result, request, layout)
        return result
    result["reason"] = f"{head}: does not fit: {failure}"
    if suggest:
        result["suggestion"] = suggestion(request, hardware)
        if result["suggestion"]:
            result["reason"] += f"; smallest set of this GPU that holds it: {result['suggestion']['text']}"
        else:
            largest = f"{plural(NODE_STEPS[-1], 'node')} × {GPUS_PER_NODE_STEPS[-1]}"
            result["reason"] += f"; no set up to {largest} of this GPU holds it"
    return result


def add_notes(result, request, layout):
    if request.model.attention is None:
        result["notes"].append("KV cache not sized: give custom num_layers, num_attention_heads, num_kv_heads "
                               "and head_dim to get a token estimate")
    if request.engine == "sglang" and layout.nodes > 1 and not request.head_address:
        result["notes"].append("set head_address to get --dist-init-addr for each SGLang node rank")
    if not request.weights_source.startswith("published"):
        result["notes"].append(f"weights {request.weights_source}")
    if request.model.name in CATALOG and request.precision not in request.model.checkpoints:
        result["notes"].append(f"no {request.precision} checkpoint of {request.model.name} in the catalog: "
                               "use a community checkpoint or let the engine quantize at load time")


def suggestion(request, hardware):
    found = smallest_gpu_set(request.model.name, request.precision, hardware.gpu_name, hardware.memory_mib,
                             engine=request.engine, context_length=request.context_length,
                             concurrency=request.concurrency,
                             gpu_memory_utilization=request.gpu_memory_utilization,
                             overhead_gib=request.overhead_gib, custom=custom_of(request.model),
                             expert_parallel=request.expert_parallel)
    if found is None:
        return None
    nodes, per_node = found[:2]
    return {"nodes": nodes, "gpus_per_node": per_node, "text": f"{plural(nodes, 'node')} × {per_node}"}


def custom_of(model):
    if model.name in CATALOG:
        return None
    custom = {"params_b": model.params_b, "max_context": model.max_context, "moe": model.moe}
    if model.attention is not None:
        custom.update({"num_layers": model.attention.num_layers, "num_attention_heads": model.attention.num_heads,
                       "num_kv_heads": model.attention.num_kv_heads, "head_dim": model.attention.head_dim})
    return custom


# -- what-if: the smallest set of one GPU model -------------------------------------

def synthetic_hosts(gpu_name, memory_mib, nodes, gpus_per_node):
    """gpu facts for ``nodes`` identical hosts, shaped like gpu_facts' output (only what the planner reads)."""
    devices = [{"index": i, "name": gpu_name, "memory_total_mib": memory_mib, "mig_mode_current": False,
                "error": None} for i in range(gpus_per_node)]
    return [{"count": gpus_per_node, "reason": None, "devices": [dict(d) for d in devices]} for node in range(nodes)]


def gpu_sets():
    sets = [(nodes, per_node) for nodes in NODE_STEPS for per_node in GPUS_PER_NODE_STEPS]
    return sorted(sets, key=lambda item: (item[0] * item[1], item[0]))


def smallest_gpu_set(model, precision, gpu_name, memory_mib, **options):
    """(nodes, gpus per node, plan) of the smallest set of this GPU that holds the model, or None."""
    for nodes, per_node in gpu_sets():
        result = plan(model, synthetic_hosts(gpu_name, memory_mib, nodes, per_node), precision=precision,
                      suggest=False, **options)
        if result["fits"]:
            return nodes, per_node, result
    return None
