# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Engine command lines for the plans of DEEPSEEK.md's hardware table, against the engines' documented flags.

vLLM (DEEPSEEK.md "Hardware that serves them"): 8xH200 FP8 `--tensor-parallel-size 8 --enable-expert-parallel`;
multi-node TP = GPUs per node, PP = nodes, `--distributed-executor-backend ray`, Ray head
`ray start --head --node-ip-address=IP --port=6379`, workers `--address=IP:6379`, own VLLM_HOST_IP per node,
docker `--network host --ipc=host --shm-size ... --gpus all`.
SGLang: `python3 -m sglang.launch_server --model-path PATH --tp 8 --trust-remote-code`, `--shm-size 32g --ipc=host`;
two nodes `--tp 16 --nnodes 2 --node-rank 0|1 --dist-init-addr HEAD:5000`; `--enable-metrics` for /metrics;
no `--quantization fp8` for the FP8 checkpoint; NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME.
"""

from __future__ import annotations

import shlex

import pytest
from ansible_collections.onprem.deepseek.plugins.module_utils._engine import (
    EngineError,
    container_argv,
    engine_argv,
    engine_env,
    node_role,
    systemd_exec,
    systemd_quote,
)
from ansible_collections.onprem.deepseek.plugins.module_utils._planner import plan, synthetic_hosts

H100 = ("NVIDIA H100 80GB HBM3", 81559)
H200 = ("NVIDIA H200", 143771)
HEAD, WORKER = "10.0.0.1", "10.0.0.2"
VLLM_IMAGE = "docker.io/vllm/vllm-openai:v0.11.0"
MODEL_DIR = "/srv/deepseek/models/deepseek-ai/DeepSeek-R1/current"


def r1_plan(gpu, nodes, engine):
    return plan("DeepSeek-R1", synthetic_hosts(gpu[0], gpu[1], nodes, 8), precision="fp8", engine=engine)


def flag(argv, name):
    """Value after ``name`` in argv (None when absent)."""
    return argv[argv.index(name) + 1] if name in argv else None


def options(rank):
    return {"served_model_name": "deepseek-r1", "head_address": HEAD, "node_address": HEAD if rank == 0 else WORKER}


# -- 1x8 H200, R1 FP8 --------------------------------------------------------------------------------------

def test_vllm_1x8_h200_r1_fp8():
    the_plan = r1_plan(H200, 1, "vllm")
    argv = engine_argv("vllm", the_plan, 0, options(0))
    assert argv[:3] == ["vllm", "serve", "/model"]
    assert flag(argv, "--tensor-parallel-size") == "8"
    assert "--enable-expert-parallel" in argv
    assert "--pipeline-parallel-size" not in argv
    assert "--distributed-executor-backend" not in argv
    assert flag(argv, "--served-model-name") == "deepseek-r1"
    assert flag(argv, "--max-model-len") == "32768"
    assert flag(argv, "--gpu-memory-utilization") == "0.9"
    assert "--trust-remote-code" in argv
    assert "--quantization" not in argv
    assert flag(argv, "--port") == "8000" and flag(argv, "--host") == "0.0.0.0"
    assert "--api-key" not in argv  # read from VLLM_API_KEY in the environment file
    assert engine_env("vllm", the_plan, 0, {"node_address": HEAD}).get("VLLM_HOST_IP") is None


def test_sglang_1x8_h200_r1_fp8():
    the_plan = r1_plan(H200, 1, "sglang")
    argv = engine_argv("sglang", the_plan, 0, options(0))
    assert argv[:4] == ["/bin/sh", "-c", 'exec python3 "$@" --api-key "$ENGINE_API_KEY"', "sglang"]
    launch = argv[4:]
    assert launch[:4] == ["-m", "sglang.launch_server", "--model-path", "/model"]
    assert flag(launch, "--tp") == "8"
    assert "--trust-remote-code" in launch
    assert "--enable-metrics" in launch
    assert flag(launch, "--context-length") == "32768"
    assert flag(launch, "--mem-fraction-static") == "0.9"
    for absent in ("--nnodes", "--node-rank", "--dist-init-addr", "--quantization"):
        assert absent not in launch


# -- 2x8 H100, R1 FP8 --------------------------------------------------------------------------------------

def test_vllm_2x8_h100_r1_fp8_on_ray():
    the_plan = r1_plan(H100, 2, "vllm")
    assert the_plan["nodes_needed"] == 2
    head = engine_argv("vllm", the_plan, 0, options(0))
    assert head[:2] == ["/bin/sh", "-c"]
    ray, serve = head[2].split(" && exec ")
    assert shlex.split(ray) == ["ray", "start", "--head", f"--node-ip-address={HEAD}", "--port=6379"]
    serve = shlex.split(serve)
    assert serve[:3] == ["vllm", "serve", "/model"]
    assert flag(serve, "--tensor-parallel-size") == "8"  # TP = GPUs per node
    assert flag(serve, "--pipeline-parallel-size") == "2"  # PP = nodes
    assert flag(serve, "--distributed-executor-backend") == "ray"
    assert "--quantization" not in serve
    worker = engine_argv("vllm", the_plan, 1, options(1))
    assert worker == ["ray", "start", "--block", f"--address={HEAD}:6379", f"--node-ip-address={WORKER}"]
    assert engine_env("vllm", the_plan, 0, {"node_address": HEAD})["VLLM_HOST_IP"] == HEAD
    assert engine_env("vllm", the_plan, 1, {"node_address": WORKER})["VLLM_HOST_IP"] == WORKER


@pytest.mark.parametrize("rank", [0, 1])
def test_sglang_2x8_h100_r1_fp8_ranks(rank):
    the_plan = r1_plan(H100, 2, "sglang")
    launch = engine_argv("sglang", the_plan, rank, options(rank))[4:]
    assert flag(launch, "--tp") == "16"  # TP across all 16 GPUs
    assert flag(launch, "--nnodes") == "2"
    assert flag(launch, "--node-rank") == str(rank)
    assert flag(launch, "--dist-init-addr") == f"{HEAD}:5000"
    assert launch.count("--node-rank") == 1 and launch.count("--dist-init-addr") == 1
    assert "--quantization" not in launch


def test_sglang_keeps_a_dist_init_addr_the_plan_already_has():
    the_plan = plan("DeepSeek-R1", synthetic_hosts(*H100, 2, 8), engine="sglang", head_address="192.0.2.7")
    launch = engine_argv("sglang", the_plan, 1, options(1))[4:]
    assert flag(launch, "--dist-init-addr") == "192.0.2.7:5000"
    assert launch.count("--dist-init-addr") == 1


# -- container and unit --------------------------------------------------------------------------------------

@pytest.mark.parametrize("runtime, gpu, expected", [
    ("podman", None, ["--device", "nvidia.com/gpu=all"]),
    ("docker", None, ["--gpus", "all"]),
    ("docker", "cdi", ["--device", "nvidia.com/gpu=all"]),
    ("podman", "gpus", ["--gpus", "all"]),
])
def test_container_gpu_access_ipc_shm_and_read_only_model(runtime, gpu, expected):
    the_plan = r1_plan(H200, 1, "vllm")
    env = engine_env("vllm", the_plan, 0, {"socket_ifname": "ens1f0", "ib_gid_index": 3})
    cmd = container_argv(engine_argv("vllm", the_plan, 0, options(0)), {
        "runtime": runtime, "gpu_access": gpu, "image": VLLM_IMAGE, "env": env,
        "env_file": "/etc/onprem-deepseek/engine.env", "model_dir": MODEL_DIR})
    assert cmd[:3] == [f"/usr/bin/{runtime}", "run", "--rm"]
    text = " ".join(cmd)
    assert " ".join(expected) in text
    assert "--ipc=host" in cmd and "--network=host" in cmd and "--shm-size=32g" in cmd and "--pull=never" in cmd
    assert flag(cmd, "--volume") == f"{MODEL_DIR}:/model:ro"
    assert flag(cmd, "--env-file") == "/etc/onprem-deepseek/engine.env"
    for pair in ("NCCL_SOCKET_IFNAME=ens1f0", "GLOO_SOCKET_IFNAME=ens1f0", "NCCL_IB_GID_INDEX=3", "HF_HUB_OFFLINE=1"):
        assert pair in cmd
    image_at = cmd.index(VLLM_IMAGE)
    assert cmd[image_at - 2:image_at] == ["--entrypoint", "vllm"]
    assert cmd[image_at + 1:image_at + 3] == ["serve", "/model"]


def test_mock_needs_no_plan_and_no_container():
    argv = engine_argv("mock", None, 0, {"served_model_name": "mock-r1", "port": 8123,
                                         "mock_args": ["--token-delay", "0.05"]})
    assert argv[:2] == ["/usr/bin/python3", "/usr/local/lib/onprem-deepseek/mock_engine.py"]
    assert flag(argv, "--port") == "8123" and flag(argv, "--served-model-name") == "mock-r1"
    assert flag(argv, "--token-delay") == "0.05"
    assert engine_env("mock") == {}


@pytest.mark.parametrize("word, quoted", [
    ("plain", "plain"),
    ("--port=8000", "--port=8000"),
    ("a b", '"a b"'),
    ('exec python3 "$@"', '"exec python3 \\"$$@\\""'),
    ("100%", '"100%%"'),
    ("", '""'),
])
def test_systemd_quoting(word, quoted):
    assert systemd_quote(word) == quoted


def test_systemd_exec_needs_an_absolute_program():
    assert systemd_exec(["/usr/bin/podman", "run", "x y"]) == '/usr/bin/podman run "x y"'
    with pytest.raises(EngineError, match="absolute"):
        systemd_exec(["podman", "run"])


@pytest.mark.parametrize("engine, the_plan, rank, message", [
    ("vllm", {"fits": False, "reason": "8 × H100 cannot hold it"}, 0, "does not fit, so no engine can start: 8 × H100"),
    ("sglang", {"fits": True, "engine": "vllm", "engine_args_by_rank": [[]]}, 0, "made for 'vllm'"),
    ("vllm", {"fits": True, "engine": "vllm", "engine_args_by_rank": [[]]}, 1, "rank 1 is outside"),
    ("tgi", {}, 0, "not supported"),
    ("vllm", None, 0, "must be the dict"),
])
def test_unusable_plans_say_why(engine, the_plan, rank, message):
    with pytest.raises(EngineError, match=message):
        engine_argv(engine, the_plan, rank)


def test_multi_node_needs_the_head_address():
    with pytest.raises(EngineError, match="head_address"):
        engine_argv("vllm", r1_plan(H100, 2, "vllm"), 0, {"node_address": HEAD})


@pytest.mark.parametrize("host, size, expected", [
    ("n1", 1, {"instance": 0, "rank": 0, "head": "n1", "members": ["n1"]}),
    ("n2", 2, {"instance": 0, "rank": 1, "head": "n1", "members": ["n1", "n2"]}),
    ("n3", 2, {"instance": 1, "rank": 0, "head": "n3", "members": ["n3", "n4"]}),
])
def test_node_role(host, size, expected):
    assert node_role(["n1", "n2", "n3", "n4"], host, size) == expected


def test_node_role_left_over_host():
    with pytest.raises(EngineError, match="left over"):
        node_role(["n1", "n2", "n3"], "n3", 2)
