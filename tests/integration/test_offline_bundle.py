# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The offline bundle, end to end but small: playbooks/bundle_build.yml builds a bundle for Debian 12 with the
audit role's packages only (the full bundle is the molecule `airgap` scenario), then playbooks/offline.yml
installs it into a container that has no network.

Acceptance 2: a corrupted file and a missing file are found before anything is installed, by name; so is a
file the manifest does not list. A good bundle installs, becomes the only apt source, and a second run changes
nothing."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/onprem-debian12-systemd:latest"
ENV = dict(
    os.environ,
    ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
    ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"),
    CONTAINERS_CONF=str(ROOT / "molecule" / "containers.conf"),
    ANSIBLE_NOCOLOR="1",
)
KEY = secrets.token_hex(16)
BUILD_OUTPUT = []
PLAYBOOK = str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "ansible-playbook")


def have_image():
    if shutil.which("podman") is None:
        return False
    return subprocess.run(["podman", "image", "exists", IMAGE], env=ENV, check=False).returncode == 0


pytestmark = pytest.mark.skipif(not have_image(), reason=f"podman and {IMAGE} are needed (tests/image/build.sh)")


def playbook(*args):
    return subprocess.run([PLAYBOOK, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    work = tmp_path_factory.mktemp("bundle")
    model = work / "model-src"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "mock"}\n')
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 1024)
    subprocess.run(["sha256sum", "config.json", "model.safetensors"], cwd=model, check=True,
                   stdout=(model / "SHA256SUMS").open("w"))
    key = work / "bundle.key"
    key.write_text(KEY + "\n")
    key.chmod(0o600)
    skip = sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir() and p.name not in ("audit",))
    extra = {
        "offline_build_dir": str(work / "out"),
        "offline_build_base_images": {"Debian-12": IMAGE},
        "offline_build_roles_skip": skip,
        "offline_build_wheels": [],
        "offline_build_collection": False,
        "offline_build_model_src": str(model),
        "offline_build_model_name": "onprem/test-model",
        "offline_build_model_revision": "r1",
        "offline_build_sm4_key_file": str(key),
    }
    run = playbook("playbooks/bundle_build.yml", "-v", "-e", json.dumps(extra))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    BUILD_OUTPUT.append(run.stdout + run.stderr)
    return work / "out" / "onprem-deepseek-bundle"


@pytest.fixture
def container():
    name = f"onprem-offline-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["podman", "run", "-d", "--rm", "--network", "none", "--name", name, IMAGE, "sleep", "3600"],
                   env=ENV, check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], env=ENV, check=False, capture_output=True)


def in_container(name, *argv):
    return subprocess.run(["podman", "exec", name, *argv], env=ENV, capture_output=True, text=True, check=False)


def install(container, src, *more):
    inventory = Path(f"/tmp/{container}.ini")
    inventory.write_text(
        f"{container} ansible_connection=containers.podman.podman ansible_python_interpreter=/usr/bin/python3\n")
    extra = {"offline_enabled": True, "offline_bundle_src": str(src)}
    try:
        return playbook("-i", str(inventory), "playbooks/offline.yml", "-e", json.dumps(extra), *more)
    finally:
        inventory.unlink()


def test_build_writes_a_complete_bundle(bundle):
    info = json.loads((bundle / "bundle.json").read_text())
    target = info["targets"][0]
    assert [t["name"] for t in info["targets"]] == ["Debian-12"]
    assert target["requested"] == ["auditd", "logrotate"]
    assert target["packages"] >= 2
    assert info["model"]["name"] == "onprem/test-model" and info["model"]["files"] == 2
    assert info["collection"]["name"] == "onprem.deepseek"
    index = (bundle / "os" / "Debian-12" / "repo" / "Packages").read_text()
    assert "Package: auditd\n" in index
    # The manifest, checked with coreutils rather than with our own code, lists every other file
    check = subprocess.run(["sha256sum", "--check", "--strict", "MANIFEST.sha256"], cwd=bundle,
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    listed = {line.split("  ", 1)[1] for line in (bundle / "MANIFEST.sha256").read_text().splitlines()}
    on_disk = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()}
    assert on_disk - listed == {"MANIFEST.sha256"}
    assert not (bundle.parent / "onprem-deepseek-bundle.partial").exists()
    archive = subprocess.run(["tar", "-tf", str(bundle.parent / "onprem-deepseek-bundle.tar")],
                             capture_output=True, text=True, check=True).stdout.split()
    assert {n.split("/", 1)[1] for n in archive if not n.endswith("/")} == on_disk


def test_the_archive_is_encrypted_for_removable_media_and_decrypts_to_the_same_bytes(bundle, tmp_path):
    sealed = bundle.parent / "onprem-deepseek-bundle.tar.sm4"
    key = tmp_path / "key"
    key.write_text(KEY + "\n")
    key.chmod(0o600)
    opened = tmp_path / "bundle.tar"
    adhoc = str(Path(PLAYBOOK).with_name("ansible"))
    run = subprocess.run([adhoc, "localhost", "-m", "onprem.deepseek.sm4_file", "-a",
                          f"state=decrypted src={sealed} dest={opened} key_file={key}"],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr

    def digest(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert digest(opened) == digest(bundle.parent / "onprem-deepseek-bundle.tar")
    assert KEY not in BUILD_OUTPUT[0] and KEY.upper() not in BUILD_OUTPUT[0]


def test_corrupted_and_missing_files_stop_the_install_before_anything_changes(bundle, container, tmp_path):
    broken = tmp_path / "bundle"
    shutil.copytree(bundle, broken)
    shard = broken / "model" / "model.safetensors"
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0x01
    shard.write_bytes(bytes(data))
    (broken / "os" / "Debian-12" / "repo" / "Packages.gz").unlink()

    run = install(container, broken)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "model/model.safetensors" in out
    assert "os/Debian-12/repo/Packages.gz: missing" in out
    assert "Check every file against MANIFEST.sha256 before anything is installed" in out
    assert "Move the other sources aside" not in out
    # The host is as it was: its own sources in place, no bundle source, nothing installed
    assert in_container(container, "test", "-f", "/etc/apt/sources.list").returncode == 0
    source = "/etc/apt/sources.list.d/onprem-deepseek-offline.sources"
    assert in_container(container, "test", "-e", source).returncode == 1
    assert in_container(container, "dpkg", "-s", "auditd").returncode == 1


def test_a_file_the_manifest_does_not_list_is_refused(bundle, container, tmp_path):
    planted = tmp_path / "bundle"
    shutil.copytree(bundle, planted)
    (planted / "os" / "Debian-12" / "repo" / "planted_1.0_all.deb").write_bytes(b"not from the builder")
    run = install(container, planted)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "os/Debian-12/repo/planted_1.0_all.deb" in out
    assert in_container(container, "test", "-f", "/etc/apt/sources.list").returncode == 0


def test_a_good_bundle_becomes_the_only_source_and_installs_idempotently(bundle, container):
    archive = bundle.parent / "onprem-deepseek-bundle.tar"
    first = install(container, archive)
    assert first.returncode == 0, first.stdout[-4000:]
    sources = in_container(container, "apt-get", "indextargets", "--format", "$(REPO_URI)").stdout.split()
    assert set(sources) == {"file:/var/lib/onprem-deepseek/bundle/os/Debian-12/repo/"}
    assert in_container(container, "test", "-f", "/etc/apt/onprem-deepseek-disabled/sources.list").returncode == 0
    # The bundle's repository serves the roles' packages with no network at all
    apt = in_container(container, "apt-get", "install", "-y", "--no-install-recommends", "auditd")
    assert apt.returncode == 0, apt.stdout + apt.stderr
    second = install(container, archive)
    assert second.returncode == 0
    recap = [line for line in second.stdout.splitlines() if line.startswith(container)]
    assert recap and "changed=0" in recap[-1] and "failed=0" in recap[-1], second.stdout[-3000:]
