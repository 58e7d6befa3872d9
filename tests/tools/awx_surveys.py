"""Generate the AWX surveys of awx/job_templates.yml from the roles' argument specs.

awx/job_templates.yml lists, for each job template, which options of which role its survey asks for. Each
question is made from the option's entry in roles/<role>/meta/argument_specs.yml (entry point ``main``):

    type str            -> text (multiplechoice when the option has choices; password when it is no_log)
    type path, raw      -> text
    type int            -> integer
    type float          -> float
    type bool           -> multiplechoice of "true" / "false"
    type list + choices -> multiselect

description -> question_description, required -> required. The role default goes into the description, not
into the question's default: AWX sends a question's default on every launch, which would override the
site's inventory; an unanswered question without a default sends nothing. A list without choices or a dict
is refused with the reason (a textarea answer reaches the playbook as one string).

Without arguments awx/surveys/<id>.json is rewritten for every template with questions (and surveys of
templates that no longer have any are removed); ``--check`` writes nothing, reports every stale, missing or
extra file and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = Path("awx") / "job_templates.yml"
SURVEYS = Path("awx") / "surveys"
MARKUP = re.compile(r"\b[CMOIBVUL]\(([^)]*)\)")


class SurveyError(Exception):
    """A template or option that cannot become a survey question; the message says what to do."""


def load_yaml(path: Path):
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def role_options(root: Path, role: str) -> dict:
    spec_file = root / "roles" / role / "meta" / "argument_specs.yml"
    if not spec_file.is_file():
        raise SurveyError(f"role {role!r} has no {spec_file.relative_to(root)}; name a role under roles/")
    spec = load_yaml(spec_file)
    return spec.get("argument_specs", {}).get("main", {}).get("options", {}) or {}


def plain(text) -> str:
    """An argument-spec description as one line of plain text (no C()/O()/M() markup)."""
    if isinstance(text, list):
        text = " ".join(str(part) for part in text)
    return MARKUP.sub(r"\1", " ".join(str(text or "").split()))


def label(role: str, option: str) -> str:
    words = option[len(role) + 1 :] if option.startswith(role + "_") else option
    return f"{role.replace('_', ' ').capitalize()}: {words.replace('_', ' ')}"


def shown(value) -> str:
    """A role default as the description shows it."""
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value)


def question(role: str, option: str, spec: dict) -> dict:
    """One survey question. It carries no default: an unanswered question passes no variable, so the inventory's
    value stays in force (an AWX default would be sent on every launch and override the inventory)."""
    where = f"{role}: {option}"
    kind = spec.get("type", "str")
    choices = spec.get("choices")
    entry = {
        "question_name": label(role, option),
        "question_description": (
            f"{plain(spec.get('description'))} Leave empty to keep the inventory's value "
            f"(role default: {shown(spec.get('default'))})."
        ),
        "variable": option,
        "required": bool(spec.get("required", False)),
    }
    if kind == "bool":
        entry["type"] = "multiplechoice"
        entry["choices"] = ["true", "false"]
    elif kind in ("str", "path", "raw") and choices:
        entry["type"] = "multiplechoice"
        entry["choices"] = [str(choice) for choice in choices]
    elif kind in ("str", "path", "raw"):
        entry["type"] = "password" if spec.get("no_log") else "text"
    elif kind == "int":
        entry["type"] = "integer"
    elif kind == "float":
        entry["type"] = "float"
    elif kind == "list" and choices:
        entry["type"] = "multiselect"
        entry["choices"] = [str(choice) for choice in choices]
    else:
        raise SurveyError(
            f"{where} is of type {kind}; an AWX survey answer would reach the playbook as one string. "
            "Set it in the inventory (or in the template's extra variables) instead"
        )
    return entry


def load_templates(root: Path) -> list:
    data = load_yaml(root / TEMPLATES)
    templates = data.get("job_templates")
    if not isinstance(templates, list) or not templates:
        raise SurveyError(f"{TEMPLATES} has no job_templates list")
    seen = set()
    for template in templates:
        for key in ("id", "name", "playbook"):
            if not template.get(key):
                raise SurveyError(f"{TEMPLATES}: a job template lacks {key!r}: {template!r}")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", template["id"]):
            raise SurveyError(f"{TEMPLATES}: id {template['id']!r} must be lower case letters, digits and _")
        if template["id"] in seen:
            raise SurveyError(f"{TEMPLATES}: id {template['id']!r} appears twice")
        seen.add(template["id"])
    return templates


def survey(root: Path, template: dict):
    """The survey spec of one template, or None when it asks nothing."""
    questions = []
    variables = set()
    for group in template.get("survey") or []:
        role = group.get("role")
        options = role_options(root, role)
        for option in group.get("options") or []:
            if option not in options:
                raise SurveyError(
                    f"{template['id']}: {option} is not an option of role {role} "
                    f"(roles/{role}/meta/argument_specs.yml)"
                )
            if option in variables:
                raise SurveyError(f"{template['id']}: {option} is asked twice")
            variables.add(option)
            questions.append(question(role, option, options[option]))
    if not questions:
        return None
    return {
        "name": template["name"],
        "description": f"Generated from the roles' argument specs by tests/tools/awx_surveys.py ({TEMPLATES}).",
        "spec": questions,
    }


def render(spec: dict) -> str:
    return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"


def wanted_files(root: Path) -> dict:
    files = {}
    for template in load_templates(root):
        spec = survey(root, template)
        if spec is not None:
            files[root / SURVEYS / f"{template['id']}.json"] = render(spec)
    return files


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def problems(root: Path) -> list:
    wanted = wanted_files(root)
    found = set((root / SURVEYS).glob("*.json")) if (root / SURVEYS).is_dir() else set()
    out = []
    for path, text in sorted(wanted.items()):
        rel = path.relative_to(root)
        if not path.exists():
            out.append(f"{rel} is missing")
        elif path.read_text(encoding="utf-8") != text:
            out.append(f"{rel} is stale")
    for path in sorted(found - set(wanted)):
        out.append(f"{path.relative_to(root)} belongs to no job template with survey questions")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a survey is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="collection root (default: this checkout)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        if args.check:
            found = problems(root)
            for line in found:
                print(line, file=sys.stderr)
            if found:
                print("run: python tests/tools/awx_surveys.py", file=sys.stderr)
            return 1 if found else 0
        wanted = wanted_files(root)
    except SurveyError as exc:
        print(f"awx_surveys: {exc}", file=sys.stderr)
        return 2
    for path, text in sorted(wanted.items()):
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            write_atomic(path, text)
            print(f"wrote {path.relative_to(root)}")
    for path in sorted(set((root / SURVEYS).glob("*.json")) - set(wanted)):
        path.unlink()
        print(f"removed {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
