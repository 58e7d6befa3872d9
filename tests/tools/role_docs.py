"""Keep every role's interface in one place.

For each role under roles/ (internal roles, named with a leading underscore, included):
- the option names in meta/argument_specs.yml (entry point ``main``) must equal the keys of defaults/main.yml,
  and each default in the spec must equal the value in defaults/main.yml;
- README.md holds a variables table generated from the spec between the markers
  ``<!-- BEGIN ARGUMENT SPEC -->`` and ``<!-- END ARGUMENT SPEC -->``.

``--check`` reports every difference and exits 1; without it the README tables are rewritten.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- BEGIN ARGUMENT SPEC -->"
END = "<!-- END ARGUMENT SPEC -->"


def load_yaml(path: Path):
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def spec_options(role: Path) -> dict:
    spec = load_yaml(role / "meta" / "argument_specs.yml")
    return spec.get("argument_specs", {}).get("main", {}).get("options", {}) or {}


def interface_problems(role: Path) -> list[str]:
    """Differences between a role's argument spec and its defaults."""
    problems = []
    defaults_file = role / "defaults" / "main.yml"
    defaults = load_yaml(defaults_file) if defaults_file.exists() else {}
    options = spec_options(role)
    for name in sorted(set(defaults) - set(options)):
        problems.append(f"{role.name}: {name} is in defaults/main.yml but not in meta/argument_specs.yml")
    for name in sorted(set(options) - set(defaults)):
        if "default" in options[name]:
            problems.append(f"{role.name}: {name} has a spec default but no value in defaults/main.yml")
    for name in sorted(set(options) & set(defaults)):
        if "default" not in options[name]:
            problems.append(f"{role.name}: {name} has no default in meta/argument_specs.yml")
        elif normalise(options[name]["default"]) != normalise(defaults[name]):
            problems.append(
                f"{role.name}: {name} default differs: spec {options[name]['default']!r}, defaults {defaults[name]!r}"
            )
    return problems


def normalise(value):
    """Compare defaults the way Ansible would after type conversion of scalars."""
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    return str(value)


def cell(text) -> str:
    if isinstance(text, list):
        text = " ".join(str(t) for t in text)
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_table(role: Path) -> str:
    rows = ["| variable | type | default | description |", "| --- | --- | --- | --- |"]
    for name, opt in spec_options(role).items():
        default = opt.get("default")
        shown = default if isinstance(default, str) else json.dumps(default)
        if isinstance(default, dict) and len(shown) > 60:
            shown = f"{len(default)} keys, see defaults/main.yml"
        choices = ", ".join(c if isinstance(c, str) else json.dumps(c) for c in opt.get("choices", []))
        choices = f" One of: {choices}." if choices else ""
        rows.append(
            f"| `{name}` | {opt.get('type', 'str')} | `{cell(shown)}` | {cell(opt.get('description', ''))}{choices} |"
        )
    return "\n".join(rows)


def readme_problem(role: Path, write: bool) -> str | None:
    readme = role / "README.md"
    if not readme.exists():
        return f"{role.name}: README.md is missing"
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        return f"{role.name}: README.md lacks the {BEGIN} / {END} markers"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    wanted = f"{head}{BEGIN}\n{render_table(role)}\n{END}{tail}"
    if wanted == text:
        return None
    if write:
        readme.write_text(wanted, encoding="utf-8")
        return None
    return f"{role.name}: README.md variables table is out of date (run: python tests/tools/role_docs.py)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report differences instead of rewriting READMEs")
    args = parser.parse_args(argv)
    problems = []
    roles = sorted(p for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists())
    for role in roles:
        problems.extend(interface_problems(role))
        problem = readme_problem(role, write=not args.check)
        if problem:
            problems.append(problem)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(roles)} roles checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
