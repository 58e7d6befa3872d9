#!/usr/bin/env bash
# The test runner behind `make test` (and `make lint|sanity|units|integration|molecule`).
# Each stage runs even when an earlier one failed; the last line is the summary:
#   summary: N passed, M failed
# where N and M count pytest/ansible-test test cases plus one per lint tool, sanity run and molecule scenario.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1
bin="$root/.venv/bin"
export PATH="$bin:$PATH"
export CONTAINERS_CONF="$root/molecule/containers.conf"
export ANSIBLE_COLLECTIONS_PATH="$root/build/collections"
export ANSIBLE_CONFIG="$root/ansible.cfg"
export MOLECULE_PYTHON="$bin/python"
export PY_COLORS=0 ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1 NO_COLOR=1
reports="$root/build/reports"
mkdir -p "$reports"

passed=0
failed=0
lines=()

record() { # record <name> <passed> <failed>
  passed=$((passed + $2))
  failed=$((failed + $3))
  lines+=("$(printf '%-34s %5d passed %4d failed' "$1" "$2" "$3")")
}

tool() { # tool <name> <command...>: one check, pass or fail by exit code
  local name="$1"
  shift
  echo "=== $name: $*"
  if "$@"; then record "$name" 1 0; else record "$name" 0 1; fi
}

pytest_counts() { # pytest_counts <name> <log> <rc>: add up the cases of every pytest closing line in the log
  local name="$1" log="$2" rc="$3" p=0 f=0 line n
  while IFS= read -r line; do
    n="$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+' || true)"; p=$((p + ${n:-0}))
    n="$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || true)"; f=$((f + ${n:-0}))
    n="$(grep -oE '[0-9]+ errors?' <<<"$line" | grep -oE '[0-9]+' || true)"; f=$((f + ${n:-0}))
  done < <(grep -E '^=+ .*(passed|failed|error|no tests ran).* in [0-9.]+s.* =+$' "$log")
  # A run that failed without a count (collection error, crash) still counts as one failure.
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
    echo "$name: no test ran" >&2
    f=1
  fi
  record "$name" "$p" "$f"
}

ansible_test_bootstrap() { # ansible-test --venv downloads a pip bootstrap from a host CI cannot reach
  local version cache
  version="$(python - <<'PY'
import importlib.util, pathlib, re
base = pathlib.Path(importlib.util.find_spec("ansible_test").submodule_search_locations[0])
print(re.search(r"pip='([0-9.]+)'", (base / "_internal" / "python_requirements.py").read_text()).group(1))
PY
)"
  cache="$HOME/.ansible/test/cache/get_pip_${version//./_}.py"
  if [ ! -f "$cache" ]; then
    mkdir -p "$(dirname "$cache")"
    cp "$root/tests/tools/get_pip_offline.py" "$cache"
    echo "ansible-test: pip $version bootstrap from tests/tools/get_pip_offline.py"
  fi
}

sanity_copy() { # a copy of the collection where ansible-test expects it
  # Outside the checkout: inside it, git would mark the copy as ignored and ansible-test would test nothing.
  local dest="${ONPREM_SANITY_ROOT:-/var/tmp/onprem-deepseek-sanity}/ansible_collections/onprem/deepseek"
  mkdir -p "$dest"
  rsync -a --delete \
    --exclude .git --exclude .venv --exclude build --exclude tests/output \
    --exclude .pytest_cache --exclude .ruff_cache --exclude __pycache__ --exclude .ansible --exclude '*.tar.gz' \
    "$root/" "$dest/"
  echo "$dest"
}

stage_lint() {
  tool yamllint yamllint --strict .
  tool ruff ruff check .
  tool "ansible-lint (production)" ansible-lint --profile production
  tool "argument_specs match defaults" python tests/tools/role_docs.py --check
}

stage_sanity() {
  local dest log="$reports/sanity.log" rc ran
  ansible_test_bootstrap
  dest="$(sanity_copy)"
  echo "=== ansible-test sanity"
  (cd "$dest" && ansible-test sanity --venv --python 3.11 --color no) 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  ran="$(grep -c '^Running sanity test' "$log" || true)"
  if [ "$rc" -eq 0 ] && [ "$ran" -gt 0 ] && ! grep -q 'All targets skipped' "$log"; then
    record "ansible-test sanity ($ran tests)" 1 0
  else
    echo "ansible-test sanity: rc=$rc, $ran tests ran" >&2
    record "ansible-test sanity ($ran tests)" 0 1
  fi
}

stage_units() {
  local dest log="$reports/units.log" rc
  ansible_test_bootstrap
  dest="$(sanity_copy)"
  echo "=== ansible-test units"
  (cd "$dest" && ansible-test units --venv --python 3.11 --color no) 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  pytest_counts "ansible-test units" "$log" "$rc"
}

stage_integration() {
  local log="$reports/integration.log" rc
  echo "=== pytest tests/integration"
  PYTHONPATH="$root/build/collections" pytest -p no:cacheprovider -ra tests/integration 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  pytest_counts "pytest tests/integration" "$log" "$rc"
}

stage_molecule() {
  local dir name
  for dir in molecule/*/; do
    name="$(basename "$dir")"
    [ -f "$dir/molecule.yml" ] || continue
    tool "molecule $name" molecule test -s "$name"
  done
}

case "${1:-all}" in
  all)
    stage_lint
    stage_sanity
    stage_units
    stage_integration
    stage_molecule
    ;;
  lint|sanity|units|integration|molecule) "stage_$1" ;;
  *)
    echo "usage: $0 [all|lint|sanity|units|integration|molecule]" >&2
    exit 2
    ;;
esac

echo
echo "=== results"
printf '%s\n' "${lines[@]}"
echo "summary: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
