"""The shipped inventories only set variables the roles know, and their playbooks parse against them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = {p.name: p for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists()}
INVENTORIES = sorted(p for p in (ROOT / "inventories").iterdir() if (p / "hosts.yml").exists())


def role_options(role: Path) -> set[str]:
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    return set(spec["argument_specs"]["main"]["options"])


def inventory_variables(inventory: Path):
    for path in sorted((inventory / "group_vars").glob("*.yml")) + sorted((inventory / "host_vars").glob("*.yml")):
        for name in (yaml.safe_load(path.read_text()) or {}):
            yield path.relative_to(ROOT), name


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: p.name)
def test_role_variables_in_inventory_exist_in_the_role(inventory):
    unknown = []
    for path, name in inventory_variables(inventory):
        # the longest role name that prefixes the variable owns it (os_tuning_x belongs to os_tuning)
        owners = sorted((r for r in ROLES if name.startswith(f"{r}_")), key=len, reverse=True)
        if owners and name not in role_options(ROLES[owners[0]]):
            unknown.append(f"{path}: {name} is not an option of role {owners[0]}")
    assert unknown == []


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: p.name)
def test_site_playbook_parses_against_inventory(inventory):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"),
               ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), "--list-tasks",
         str(ROOT / "site.yml")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    site = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
    stages = [Path(step["ansible.builtin.import_playbook"]).stem for step in site]
    plays = [line for line in result.stdout.splitlines() if line.strip().startswith("play #")]
    stage_plays = {stage: yaml.safe_load((ROOT / "playbooks" / f"{stage}.yml").read_text()) for stage in stages}
    assert len(plays) == sum(len(p) for p in stage_plays.values()), plays
    for stage in stages:
        stage_roles = [r["role"] for play in stage_plays[stage] for r in play.get("roles", [])]
        for role in stage_roles:
            assert f"{role} : " in result.stdout, f"no task of {role} listed for {inventory.name}"
