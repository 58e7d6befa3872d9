"""The role-interface check (tests/tools/role_docs.py) catches the drift it exists for."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "role_docs.py"
spec = importlib.util.spec_from_file_location("role_docs", TOOL)
role_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(role_docs)

SPEC = """
argument_specs:
  main:
    options:
      demo_port:
        type: int
        default: 8000
        description: Port.
      demo_mode:
        type: str
        choices: [a, b]
        default: a
        description: Mode.
"""


def make_role(tmp_path: Path, defaults: str, spec: str = SPEC, readme: str | None = None) -> Path:
    role = tmp_path / "demo"
    (role / "defaults").mkdir(parents=True)
    (role / "meta").mkdir()
    (role / "defaults" / "main.yml").write_text(textwrap.dedent(defaults))
    (role / "meta" / "argument_specs.yml").write_text(textwrap.dedent(spec))
    if readme is not None:
        (role / "README.md").write_text(readme)
    return role


@pytest.mark.parametrize(
    ("defaults", "expected"),
    [
        ("demo_port: 8000\ndemo_mode: a\n", []),
        ("demo_port: 8000\ndemo_mode: a\ndemo_extra: 1\n", ["demo_extra is in defaults/main.yml but not in"]),
        ("demo_port: 8000\n", ["demo_mode has a spec default but no value in defaults/main.yml"]),
        ("demo_port: 8080\ndemo_mode: a\n", ["demo_port default differs: spec 8000, defaults 8080"]),
    ],
    ids=["in-step", "undocumented-default", "missing-default", "different-value"],
)
def test_interface_problems(tmp_path, defaults, expected):
    problems = role_docs.interface_problems(make_role(tmp_path, defaults))
    assert len(problems) == len(expected)
    for problem, fragment in zip(problems, expected):
        assert fragment in problem


def test_readme_table_is_generated_then_checked(tmp_path):
    readme = f"# demo\n\n{role_docs.BEGIN}\nstale\n{role_docs.END}\n\ntail text\n"
    role = make_role(tmp_path, "demo_port: 8000\ndemo_mode: a\n", readme=readme)

    assert "out of date" in role_docs.readme_problem(role, write=False)
    assert role_docs.readme_problem(role, write=True) is None
    text = (role / "README.md").read_text()
    assert "| `demo_port` | int | `8000` | Port. |" in text
    assert "| `demo_mode` | str | `a` | Mode. One of: a, b. |" in text
    assert text.endswith("tail text\n")
    assert role_docs.readme_problem(role, write=False) is None


def test_readme_without_markers_is_reported(tmp_path):
    role = make_role(tmp_path, "demo_port: 8000\ndemo_mode: a\n", readme="# demo\n")
    assert "lacks the" in role_docs.readme_problem(role, write=False)


def test_every_role_in_the_collection_is_in_step():
    assert role_docs.main(["--check"]) == 0
