# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Command lines of the inference engines, from a model plan.

Pure Python, no I/O. The parallel sizes, memory share and context length come from the plan that
``model_plan`` returned (``engine_args_by_rank``); this module only adds what is not the planner's business:
the model path inside the container, the served name, the listen address, Ray or SGLang rendezvous, and the
container runtime options (GPU access, IPC, shared memory, read-only model mount, NCCL/Gloo interfaces).

Three engines:

* ``vllm``: ``vllm serve <model> ...`` in the vLLM image. A plan over several nodes runs on Ray: rank 0 starts
  the Ray head and then vLLM in the same container, ranks 1.. run ``ray start --block --address=<head>:<port>``
  (vLLM's examples/online_serving/run_cluster.sh). The API key is read by vLLM from ``VLLM_API_KEY``.
* ``sglang``: ``python3 -m sglang.launch_server --model-path <model> ...``; every rank runs it with its own
  ``--node-rank`` and the same ``--dist-init-addr``. The API key comes from ``ENGINE_API_KEY`` in the
  environment file, passed on by a ``/bin/sh`` wrapper so that it is not written into the unit.
* ``mock``: the collection's test double (``mock_engine.py``), run directly by python3 without a container.
"""

from __future__ import annotations

import re
import shlex

ENGINES = ("vllm", "sglang", "mock")
RUNTIMES = ("podman", "docker")
GPU_ACCESS = ("cdi", "gpus")

# The API key reaches each engine through this environment variable (from a root-only environment file).
API_KEY_ENV = {"vllm": "VLLM_API_KEY", "sglang": "ENGINE_API_KEY", "mock": "ENGINE_API_KEY"}

DEFAULTS = {
    "model_mount": "/model",
    "served_model_name": "deepseek",
    "host": "0.0.0.0",
    "port": 8000,
    "trust_remote_code": True,
    "enable_metrics": True,
    "extra_args": [],
    "head_address": None,
    "node_address": None,
    "ray_port": 6379,
    "dist_init_port": 5000,
    "mock_script": "/usr/local/lib/onprem-deepseek/mock_engine.py",
    "mock_python": "/usr/bin/python3",
    "mock_args": [],
}

CONTAINER_DEFAULTS = {
    "runtime": "podman",
    "runtime_path": None,
    "gpu_access": None,
    "name": "onprem-deepseek-engine",
    "image": None,
    "model_dir": None,
    "model_mount": "/model",
    "shm_size": "32g",
    "network": "host",
    "env": {},
    "env_file": None,
    "extra_options": [],
    "pull": "never",
}


class EngineError(ValueError):
    """Input that cannot give a command line; the message says what to change."""


def _opts(options, defaults):
    merged = dict(defaults)
    for key, value in (options or {}).items():
        if key not in defaults:
            raise EngineError(f"unknown option {key!r}; known: {', '.join(sorted(defaults))}")
        if value is not None:
            merged[key] = value
    return merged


def _plan_args(engine, plan, rank):
    """The planner's flags for ``rank`` after checking the plan is usable by ``engine``."""
    if not isinstance(plan, dict):
        raise EngineError("the plan must be the dict model_plan returned (plan.engine_args_by_rank)")
    if not plan.get("fits"):
        raise EngineError(f"the plan does not fit, so no engine can start: {plan.get('reason') or 'no reason given'}")
    if plan.get("engine") != engine:
        raise EngineError(f"the plan was made for {plan.get('engine')!r}, not {engine!r}: "
                          f"plan again with engine={engine}")
    by_rank = plan.get("engine_args_by_rank") or [plan.get("engine_args") or []]
    if not 0 <= rank < len(by_rank):
        raise EngineError(f"rank {rank} is outside the plan's {len(by_rank)} node(s)")
    return [str(arg) for arg in by_rank[rank]], len(by_rank)


def plan_nodes(plan):
    """Nodes one engine instance spans (1 for the mock engine or a plan without it)."""
    if not plan:
        return 1
    return int(plan.get("nodes_needed") or len(plan.get("engine_args_by_rank") or [None]) or 1)


def _has_flag(args, flag):
    return any(arg == flag or arg.startswith(flag + "=") for arg in args)


def engine_argv(engine, plan=None, rank=0, options=None):
    """The program and arguments one node runs (inside the container for vllm and sglang)."""
    if engine not in ENGINES:
        raise EngineError(f"engine {engine!r} is not supported; use one of {', '.join(ENGINES)}")
    opts = _opts(options, DEFAULTS)
    extra = [str(arg) for arg in opts["extra_args"]]
    served = ["--served-model-name", str(opts["served_model_name"])]
    listen = ["--host", str(opts["host"]), "--port", str(opts["port"])]
    if engine == "mock":
        return [opts["mock_python"], opts["mock_script"], *listen, *served,
                *[str(arg) for arg in opts["mock_args"]], *extra]

    args, nodes = _plan_args(engine, plan, rank)
    trust = ["--trust-remote-code"] if opts["trust_remote_code"] else []
    if nodes > 1 and not opts["head_address"]:
        raise EngineError("a plan over several nodes needs head_address (the address of node rank 0)")

    if engine == "vllm":
        serve = ["vllm", "serve", opts["model_mount"], *served, *listen, *trust, *args, *extra]
        if nodes == 1:
            return serve
        if not opts["node_address"]:
            raise EngineError("vLLM on Ray needs node_address (this node's address, exported as VLLM_HOST_IP)")
        if rank == 0:
            ray = ["ray", "start", "--head", f"--node-ip-address={opts['node_address']}",
                   f"--port={opts['ray_port']}"]
            return ["/bin/sh", "-c", f"{shlex.join(ray)} && exec {shlex.join(serve)}"]
        return ["ray", "start", "--block", f"--address={opts['head_address']}:{opts['ray_port']}",
                f"--node-ip-address={opts['node_address']}"]

    # sglang
    if nodes > 1 and not _has_flag(args, "--dist-init-addr"):
        args = [*args, "--dist-init-addr", f"{opts['head_address']}:{opts['dist_init_port']}"]
    if nodes > 1 and not _has_flag(args, "--node-rank"):
        args = [*args, "--node-rank", str(rank)]
    metrics = ["--enable-metrics"] if opts["enable_metrics"] else []
    launch = ["-m", "sglang.launch_server", "--model-path", opts["model_mount"], *served, *listen, *trust,
              *metrics, *args, *extra]
    # SGLang takes its key only as --api-key: a shell in the container adds it from the environment file.
    wrapper = f'exec python3 "$@" --api-key "${API_KEY_ENV["sglang"]}"'
    return ["/bin/sh", "-c", wrapper, "sglang", *launch]


def container_argv(argv, options):
    """``<runtime> run ...`` that runs ``argv`` (from engine_argv) in the engine image."""
    opts = _opts(options, CONTAINER_DEFAULTS)
    runtime = opts["runtime"]
    if runtime not in RUNTIMES:
        raise EngineError(f"container runtime {runtime!r} is not supported; use one of {', '.join(RUNTIMES)}")
    if not opts["image"]:
        raise EngineError("image is required (a pinned tag or digest of the engine image)")
    gpu = opts["gpu_access"] or ("cdi" if runtime == "podman" else "gpus")
    if gpu not in GPU_ACCESS:
        raise EngineError(f"gpu_access {gpu!r} is not supported; use one of {', '.join(GPU_ACCESS)}")
    cmd = [opts["runtime_path"] or f"/usr/bin/{runtime}", "run", "--rm", "--name", opts["name"],
           f"--pull={opts['pull']}", f"--network={opts['network']}", "--ipc=host", f"--shm-size={opts['shm_size']}",
           "--ulimit", "memlock=-1:-1", "--ulimit", "stack=67108864:67108864"]
    cmd += ["--device", "nvidia.com/gpu=all"] if gpu == "cdi" else ["--gpus", "all"]
    if opts["model_dir"]:
        cmd += ["--volume", f"{opts['model_dir']}:{opts['model_mount']}:ro"]
    if opts["env_file"]:
        cmd += ["--env-file", opts["env_file"]]
    for key in sorted(opts["env"]):
        value = opts["env"][key]
        if value is None or value == "":
            continue
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(key)):
            raise EngineError(f"environment variable name {key!r} is not valid")
        cmd += ["--env", f"{key}={value}"]
    cmd += [str(option) for option in opts["extra_options"]]
    cmd += ["--entrypoint", argv[0], opts["image"], *argv[1:]]
    return cmd


def engine_env(engine, plan=None, rank=0, options=None):
    """Environment for the engine container: NCCL/Gloo interfaces, Ray's VLLM_HOST_IP, offline hub."""
    opts = dict(options or {})
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"} if engine != "mock" else {}
    if opts.get("socket_ifname"):
        env["NCCL_SOCKET_IFNAME"] = opts["socket_ifname"]
        env["GLOO_SOCKET_IFNAME"] = opts["socket_ifname"]
    if opts.get("ib_gid_index") not in (None, ""):
        env["NCCL_IB_GID_INDEX"] = str(opts["ib_gid_index"])
    if engine == "vllm" and plan_nodes(plan) > 1 and opts.get("node_address"):
        env["VLLM_HOST_IP"] = opts["node_address"]
    env.update({str(k): str(v) for k, v in (opts.get("extra") or {}).items()})
    return env


_SYSTEMD_SPECIAL = re.compile(r"[\s\"'\\;$%]")


def systemd_quote(word):
    """One argument for a unit's Exec*= line: systemd's quoting, with % and $ escaped."""
    word = str(word)
    escaped = word.replace("%", "%%").replace("$", "$$")
    if word and not _SYSTEMD_SPECIAL.search(word):
        return escaped
    escaped = escaped.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def systemd_exec(argv):
    """A whole Exec*= value from an argument list."""
    if not argv:
        raise EngineError("an Exec line needs at least a program")
    if not str(argv[0]).startswith("/"):
        raise EngineError(f"systemd needs an absolute program path, got {argv[0]!r}")
    return " ".join(systemd_quote(word) for word in argv)


def node_role(hosts, host, nodes_per_instance):
    """(instance index, rank, head host) of ``host`` in ``hosts`` grouped ``nodes_per_instance`` at a time."""
    hosts = list(hosts)
    if host not in hosts:
        raise EngineError(f"{host} is not one of the engine hosts ({', '.join(hosts) or 'none'})")
    size = max(1, int(nodes_per_instance))
    if len(hosts) < size:
        raise EngineError(f"the plan needs {size} nodes per engine instance, only {len(hosts)} given")
    index = hosts.index(host)
    instance, rank = divmod(index, size)
    if (instance + 1) * size > len(hosts):
        raise EngineError(f"{host} is left over: {len(hosts)} hosts do not divide into instances of {size} nodes")
    return {"instance": instance, "rank": rank, "head": hosts[instance * size],
            "members": hosts[instance * size:(instance + 1) * size]}
