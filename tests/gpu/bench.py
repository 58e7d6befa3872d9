# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Time gpu_facts against `nvidia-smi -q -x` on this GPU host and print BENCH lines.

    BENCH gpu_facts_ms <ms>         the gpu_facts module run as a process (Python start, imports, NVML, JSON out)
    BENCH gpu_facts_probe_ms <ms>   NvmlProbe.collect() alone, in this process (the NVML work)
    BENCH nvidia_smi_xml_ms <ms>    `nvidia-smi -q -x` as a process, plus parsing its XML

Each figure is the median of --runs runs after one warm-up. The collection must be importable as
ansible_collections.onprem.deepseek (tests/gpu/run.sh puts it on PYTHONPATH), and ansible-core and
nvidia-ml-py must be importable by this Python.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "filter_plugins"))

from nvidia_smi import nvidia_smi_xml

MODULE = "ansible_collections.onprem.deepseek.plugins.modules.gpu_facts"


def median_ms(action, runs):
    action()  # warm-up: page cache, driver state
    samples = []
    for _run in range(runs):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def run_module(args_path):
    done = subprocess.run([sys.executable, "-m", MODULE, args_path], capture_output=True, check=True)
    result = json.loads(done.stdout)
    if result.get("failed") or not result["ansible_facts"]["gpu"]["count"]:
        raise SystemExit(f"gpu_facts found no GPU: {result.get('msg') or result['ansible_facts']['gpu']['reason']}")


def run_nvidia_smi():
    done = subprocess.run(["nvidia-smi", "-q", "-x"], capture_output=True, check=True)
    if not nvidia_smi_xml(done.stdout.decode())["gpus"]:
        raise SystemExit("nvidia-smi -q -x listed no GPU")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per figure (default 20)")
    runs = parser.parse_args().runs
    try:
        from ansible_collections.onprem.deepseek.plugins.module_utils._nvml import NvmlProbe
    except ImportError as err:
        raise SystemExit(f"cannot import the collection ({err}): run tests/gpu/run.sh, or put the directory "
                         "that holds ansible_collections/onprem/deepseek on PYTHONPATH") from err

    with tempfile.TemporaryDirectory() as tmp:
        args_path = os.path.join(tmp, "args.json")
        with open(args_path, "w") as handle:
            json.dump({"ANSIBLE_MODULE_ARGS": {"required": True}}, handle)
        module_ms = median_ms(lambda: run_module(args_path), runs)
    probe_ms = median_ms(lambda: NvmlProbe().collect(), runs)
    smi_ms = median_ms(run_nvidia_smi, runs)

    print(f"BENCH gpu_facts_ms {module_ms:.1f}")
    print(f"BENCH gpu_facts_probe_ms {probe_ms:.1f}")
    print(f"BENCH nvidia_smi_xml_ms {smi_ms:.1f}")


if __name__ == "__main__":
    main()
