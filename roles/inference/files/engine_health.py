# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health of an inference engine (standard library only).

  engine_health.py wait  --url URL --timeout S
      Poll URL until it answers 200 (a 690 GB checkpoint can take many minutes to load). Exit 1 on timeout.
  engine_health.py check --url URL --unit UNIT --failures N --state FILE
      One probe, for a systemd timer. Counts consecutive failures in FILE; at N, restarts UNIT and resets the
      count. Probes only while UNIT is active (a starting engine is the start-up wait's business).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request


def probe(url, timeout):
    """(ok, text) for one GET of url."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200, f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, str(getattr(exc, "reason", exc))


def wait(args):
    start = time.monotonic()
    last_report = start
    while True:
        ok, text = probe(args.url, args.probe_timeout)
        elapsed = time.monotonic() - start
        if ok:
            print(f"{args.url} healthy after {elapsed:.0f} s", flush=True)
            return 0
        if elapsed >= args.timeout:
            print(f"{args.url} not healthy after {args.timeout} s (last answer: {text})", file=sys.stderr, flush=True)
            return 1
        if time.monotonic() - last_report >= 60:
            print(f"waiting for {args.url}: {elapsed:.0f} s of {args.timeout} s, last answer: {text}", flush=True)
            last_report = time.monotonic()
        time.sleep(args.interval)


def unit_state(unit):
    result = subprocess.run(["systemctl", "show", "--property=ActiveState", "--value", unit],
                            capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


def read_count(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def write_count(path, count):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(f"{count}\n")
    os.replace(partial, path)


def check(args):
    state = unit_state(args.unit)
    if state != "active":
        write_count(args.state, 0)
        print(f"{args.unit} is {state}: not probed", flush=True)
        return 0
    ok, text = probe(args.url, args.probe_timeout)
    if ok:
        write_count(args.state, 0)
        return 0
    count = read_count(args.state) + 1
    if count < args.failures:
        write_count(args.state, count)
        print(f"{args.url}: {text} ({count} of {args.failures} failures in a row)", file=sys.stderr, flush=True)
        return 1
    write_count(args.state, 0)
    print(f"{args.url}: {text}, {count} failures in a row: restarting {args.unit}", file=sys.stderr, flush=True)
    subprocess.run(["systemctl", "restart", "--no-block", args.unit], check=True)
    return 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    for name in ("wait", "check"):
        command = sub.add_parser(name)
        command.add_argument("--url", required=True)
        command.add_argument("--probe-timeout", type=float, default=10.0)
    sub.choices["wait"].add_argument("--timeout", type=float, required=True)
    sub.choices["wait"].add_argument("--interval", type=float, default=5.0)
    sub.choices["check"].add_argument("--unit", required=True)
    sub.choices["check"].add_argument("--failures", type=int, default=3)
    sub.choices["check"].add_argument("--state", required=True)
    args = parser.parse_args(argv)
    return wait(args) if args.action == "wait" else check(args)


if __name__ == "__main__":
    sys.exit(main())
