#!/usr/bin/env bash
# `make bench`: every benchmark this machine can run, one `BENCH <name> <value> <unit>` line per figure.
# Figures and the commands that produced them are recorded in docs/benchmarks.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
export PYTHONPATH="$root/build/collections${PYTHONPATH:+:$PYTHONPATH}"
status=0

run() { # run <script...>: a failing benchmark is reported and the others still run
  echo "# $*" >&2
  "$@" || { echo "bench: '$*' failed" >&2; status=1; }
}

run bash tests/bench/bench_demo.sh
for script in tests/bench/bench_*.py; do
  [ -e "$script" ] && run python "$script"
done
if command -v nvidia-smi >/dev/null 2>&1; then
  run python tests/gpu/bench.py
else
  echo "# tests/gpu/bench.py skipped: no nvidia-smi on this machine (run it on a GPU host, see tests/gpu/README.md)" >&2
fi
exit "$status"
