"""The collection builds into a Galaxy tarball that installs and documents its modules."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*args, env=None, cwd=None):
    result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False)
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    run(BIN / "ansible-galaxy", "collection", "build", "--force", "--output-path", str(out), str(ROOT))
    built = list(out.glob("onprem-deepseek-*.tar.gz"))
    assert len(built) == 1, built
    return built[0]


def test_tarball_holds_the_collection_and_none_of_the_dev_files(tarball):
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    assert "MANIFEST.json" in names
    assert "roles/os_tuning/tasks/main.yml" in names
    assert "playbooks/site.yml" in names
    assert "meta/runtime.yml" in names
    for module in (ROOT / "plugins" / "modules").glob("*.py"):
        assert f"plugins/modules/{module.name}" in names
    leaked = sorted(n for n in names if n.split("/")[0] in {"tests", "molecule", ".venv", "build", ".ci", ".git"})
    assert leaked == []


def test_installed_tarball_lists_every_module(tarball, tmp_path):
    dest = tmp_path / "collections"
    run(BIN / "ansible-galaxy", "collection", "install", "--offline", "--no-deps", "--force", "-p", str(dest),
        str(tarball))
    installed = dest / "ansible_collections" / "onprem" / "deepseek"
    assert (installed / "MANIFEST.json").is_file()

    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(dest)
    listed = run(BIN / "ansible-doc", "-t", "module", "-l", "onprem.deepseek", env=env, cwd=tmp_path)
    names = {line.split()[0] for line in listed.splitlines() if line.strip()}
    expected = {f"onprem.deepseek.{m.stem}" for m in (ROOT / "plugins" / "modules").glob("*.py")}
    assert expected, "the collection has no modules to list"
    assert expected <= names, f"missing from ansible-doc -l: {sorted(expected - names)}"
