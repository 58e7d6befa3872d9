# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Gate in front of the inference role's health check (ExecCondition= of <engine>-health.service).

The health check (roles/inference/files/engine_health.py) probes the engine's /health and restarts it after
N failures in a row. This gate adds what it lacks:

* GPU visible: when GPUs are expected and nvidia-smi lists fewer, the probe (and so any restart) is skipped:
  a restart cannot bring a GPU back; the GPUNotVisible alert calls a person.
* Back-off: every start of the engine unit (its systemd InvocationID) is remembered. With k starts within
  the window, probing (and so the next restart) waits min(base * 2^(k-2), max) seconds after the latest start;
  the first start is probed at once.
* One log line per action (journal of the health service), and metrics for node_exporter's textfile collector.

Exit 0: run the probe. Exit 1: skip it this time (systemd treats 1..254 from ExecCondition as "condition
failed", not as an error).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

RUN, SKIP = 0, 1


def write_atomic(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=".onprem-", suffix=".partial", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise


def visible_gpus(nvidia_smi):
    try:
        result = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 0, f"{nvidia_smi}: {exc}"
    if result.returncode != 0:
        return 0, ((result.stderr or result.stdout).strip().splitlines() or [f"exit {result.returncode}"])[-1]
    return sum(1 for line in result.stdout.splitlines() if line.startswith("GPU ")), ""


def invocation(unit):
    result = subprocess.run(["systemctl", "show", "--property=InvocationID", "--value", unit],
                            capture_output=True, text=True, check=False)
    return result.stdout.strip()


def load_starts(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return [(str(i), float(t)) for i, t in json.load(handle)["starts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def backoff_for(starts_in_window, base, maximum):
    if starts_in_window <= 1:
        return 0
    return min(base * 2 ** (starts_in_window - 2), maximum)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unit", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--metrics", required=True, help="textfile collector .prom file")
    parser.add_argument("--expect-gpus", type=int, default=0)
    parser.add_argument("--nvidia-smi", default="nvidia-smi")
    parser.add_argument("--backoff-base", type=float, default=60)
    parser.add_argument("--backoff-max", type=float, default=1800)
    parser.add_argument("--window", type=float, default=3600)
    args = parser.parse_args(argv)
    now = time.time()
    decision = RUN
    visible = -1
    if args.expect_gpus > 0:
        visible, error = visible_gpus(args.nvidia_smi)
        if visible < args.expect_gpus:
            reason = f" ({error})" if error else ""
            print(f"{args.unit}: nvidia-smi lists {visible} of {args.expect_gpus} GPUs{reason}: not probed or"
                  " restarted, a restart cannot bring a GPU back; the node needs a person", flush=True)
            decision = SKIP

    starts = [(i, t) for i, t in load_starts(args.state) if now - t < args.window]
    current = invocation(args.unit)
    if current and current not in {i for i, _t in starts}:
        starts.append((current, now))
        print(f"{args.unit}: new start seen (invocation {current[:12]}), {len(starts)} start(s) within "
              f"{args.window:.0f} s", flush=True)
    write_atomic(args.state, json.dumps({"starts": starts}) + "\n")
    backoff = backoff_for(len(starts), args.backoff_base, args.backoff_max)
    latest = max((t for _i, t in starts), default=now)
    if decision == RUN and current and now - latest < backoff:
        print(f"{args.unit}: back-off: {len(starts)} starts within {args.window:.0f} s, started "
              f"{now - latest:.0f} s ago; not probed or restarted for another {backoff - (now - latest):.0f} s",
              flush=True)
        decision = SKIP

    lines = [
        "# HELP onprem_selfheal_backoff_seconds Back-off before the engine may be restarted again (0: none).",
        "# TYPE onprem_selfheal_backoff_seconds gauge",
        f"onprem_selfheal_backoff_seconds {backoff:g}",
        "# HELP onprem_selfheal_engine_starts Starts of the engine unit within the back-off window.",
        "# TYPE onprem_selfheal_engine_starts gauge",
        f"onprem_selfheal_engine_starts {len(starts)}",
        "# HELP onprem_selfheal_last_check_seconds Unix time of the last self-healing check.",
        "# TYPE onprem_selfheal_last_check_seconds gauge",
        f"onprem_selfheal_last_check_seconds {now:.0f}",
    ]
    if args.expect_gpus > 0:
        lines += [
            "# HELP onprem_selfheal_gpus_expected GPUs this node should have.",
            "# TYPE onprem_selfheal_gpus_expected gauge",
            f"onprem_selfheal_gpus_expected {args.expect_gpus}",
            "# HELP onprem_selfheal_gpus_visible GPUs nvidia-smi lists.",
            "# TYPE onprem_selfheal_gpus_visible gauge",
            f"onprem_selfheal_gpus_visible {visible}",
        ]
    write_atomic(args.metrics, "\n".join(lines) + "\n")
    return decision


if __name__ == "__main__":
    sys.exit(main())
