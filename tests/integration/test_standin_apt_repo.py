# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tests/tools/standin_apt_repo.py: the TEST STAND-IN repository builder, with the real dpkg-deb and apt.

The toolkit spec is built for two versions; the packages are read back with ``dpkg-deb``, the indexes are
checked against the Release file, ``apt-get`` (with private state and cache directories, so the machine's own
apt setup is neither used nor touched) resolves a pinned install from the repository, and the stand-in
``nvidia-ctk`` is extracted and run.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "tools" / "standin" / "nvidia-container-toolkit" / "spec.yml"
TOOLKIT = ["libnvidia-container1", "libnvidia-container-tools",
           "nvidia-container-toolkit-base", "nvidia-container-toolkit"]

pytestmark = pytest.mark.skipif(
    not (shutil.which("dpkg-deb") and shutil.which("dpkg-scanpackages") and shutil.which("apt-get")),
    reason="needs dpkg-deb, dpkg-scanpackages (dpkg-dev) and apt-get",
)


def _load():
    spec = importlib.util.spec_from_file_location("standin_apt_repo", ROOT / "tests" / "tools" / "standin_apt_repo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


standin = _load()


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    out = tmp_path_factory.mktemp("standin") / "repo"
    code = standin.main([str(SPEC), str(out), "--each", "VERSION=1.17.8", "--each", "VERSION=1.18.2"])
    assert code == 0
    return out


def deb_field(deb, field):
    answer = subprocess.run(["dpkg-deb", "-f", str(deb), field], check=True, capture_output=True, text=True)
    return answer.stdout.strip()


def test_every_package_is_built_and_labelled(repo):
    debs = sorted(p.name for p in repo.glob("*.deb"))
    assert debs == sorted(f"{name}_{version}-1_{standin.host_architecture()}.deb"
                          for name in TOOLKIT for version in ("1.17.8", "1.18.2"))
    for deb in repo.glob("*.deb"):
        assert deb_field(deb, "Description").startswith("TEST STAND-IN for ")
        assert "built by onprem.deepseek tests" in deb_field(deb, "Description").splitlines()[0]
    toolkit = repo / f"nvidia-container-toolkit_1.17.8-1_{standin.host_architecture()}.deb"
    assert deb_field(toolkit, "Depends") == (
        "nvidia-container-toolkit-base (= 1.17.8-1), libnvidia-container-tools (>= 1.17.8-1), "
        "libnvidia-container-tools (<< 2.0.0)"
    )
    listing = subprocess.run(["dpkg-deb", "-c", str(repo / toolkit.name.replace("toolkit_", "toolkit-base_"))],
                             check=True, capture_output=True, text=True).stdout
    modes = {line.split()[-1]: line.split()[0] for line in listing.splitlines()}
    assert modes["./usr/bin/nvidia-ctk"] == "-rwxr-xr-x"
    assert modes["./usr/bin/nvidia-container-runtime"] == "-rwxr-xr-x"
    assert all(line.split()[1] == "root/root" for line in listing.splitlines())


def test_indexes_match_the_release_file(repo):
    packages = (repo / "Packages").read_text()
    assert gzip.decompress((repo / "Packages.gz").read_bytes()).decode() == packages
    assert packages.count("Package: ") == 8
    release = (repo / "Release").read_text()
    sums = {line.split()[2]: (line.split()[0], int(line.split()[1]))
            for line in release.split("SHA256:\n", 1)[1].splitlines()}
    for name in ("Packages", "Packages.gz"):
        data = (repo / name).read_bytes()
        assert sums[name] == (hashlib.sha256(data).hexdigest(), len(data))


def test_apt_resolves_a_pinned_install_from_the_repository(repo, tmp_path):
    for sub in ("lists/partial", "cache/archives/partial", "etc/sources.list.d", "etc/preferences.d"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "etc" / "sources.list").write_text(f"deb [trusted=yes] file://{repo} ./\n")
    (tmp_path / "status").write_text("")
    options = [
        "-o", f"Dir::Etc::SourceList={tmp_path}/etc/sources.list",
        "-o", f"Dir::Etc::SourceParts={tmp_path}/etc/sources.list.d",
        "-o", f"Dir::Etc::PreferencesParts={tmp_path}/etc/preferences.d",
        "-o", f"Dir::State::Lists={tmp_path}/lists",
        "-o", f"Dir::State::status={tmp_path}/status",
        "-o", f"Dir::Cache={tmp_path}/cache",
        "-o", "Debug::NoLocking=1",
        # the private lists directory is under pytest's tmp, which the _apt user cannot enter
        "-o", "APT::Sandbox::User=root",
    ]
    update = subprocess.run(["apt-get", *options, "update"], capture_output=True, text=True, check=False)
    assert update.returncode == 0, update.stderr
    assert "W:" not in update.stdout + update.stderr
    # The exact dependency (toolkit -> base = same version) means one package cannot be pinned alone:
    # the role pins all four, as here.
    alone = subprocess.run(["apt-get", *options, "install", "-s", "nvidia-container-toolkit=1.17.8-1"],
                           capture_output=True, text=True, check=False)
    assert alone.returncode != 0 and "nvidia-container-toolkit-base (= 1.17.8-1)" in alone.stdout
    pinned = subprocess.run(["apt-get", *options, "install", "-s", *(f"{name}=1.17.8-1" for name in TOOLKIT)],
                            capture_output=True, text=True, check=False)
    assert pinned.returncode == 0, pinned.stderr
    installs = sorted(line.split()[1:3] for line in pinned.stdout.splitlines() if line.startswith("Inst "))
    assert installs == sorted([name, "(1.17.8-1"] for name in TOOLKIT)
    newest = subprocess.run(["apt-get", *options, "install", "-s", "nvidia-container-toolkit"],
                            capture_output=True, text=True, check=True)
    assert "Inst nvidia-container-toolkit (1.18.2-1" in newest.stdout


def test_standin_nvidia_ctk(repo, tmp_path):
    deb = next(repo.glob("nvidia-container-toolkit-base_1.18.2-1_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path / "root")], check=True)
    ctk = tmp_path / "root" / "usr" / "bin" / "nvidia-ctk"
    version = subprocess.run([str(ctk), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.splitlines()[0] == "NVIDIA Container Toolkit CLI version 1.18.2 (TEST STAND-IN)"
    for how in (["--output", str(tmp_path / "a" / "nvidia.yaml")], [f"--output={tmp_path}/b/nvidia.yaml"]):
        subprocess.run([str(ctk), "cdi", "generate", *how], capture_output=True, text=True, check=True)
    for sub in ("a", "b"):
        spec = yaml.safe_load((tmp_path / sub / "nvidia.yaml").read_text())
        assert spec["kind"] == "nvidia.com/gpu" and spec["devices"][0]["name"] == "all"
        assert "NVIDIA_CTK_STANDIN=1" in spec["containerEdits"]["env"]
    refused = subprocess.run([str(ctk), "runtime", "configure"], capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "TEST STAND-IN" in refused.stderr


@pytest.mark.parametrize("package, args, says", [
    ({"name": "x", "version": "1", "files": {"/a": {"content": "a"}}}, [], "lacks 'stands_in_for'"),
    ({"name": "pkg", "version": "@V@", "stands_in_for": "p", "files": {"/a": {"content": "a"}}}, [],
     "@V@ has no value"),
    ({"name": "pkg", "version": "1", "stands_in_for": "p", "files": {"usr/a": {"content": "a"}}}, [],
     "must be absolute"),
    ({"name": "pkg", "version": "v1", "stands_in_for": "p", "files": {"/a": {"content": "a"}}}, [],
     "not a valid Debian version"),
    ({"name": "pkg", "version": "1", "stands_in_for": "p", "files": {"/a": {}}}, [],
     "exactly one of 'source' or 'content'"),
    ({"name": "pkg", "version": "1", "stands_in_for": "p", "files": {"/a": {"content": "a"}}},
     ["--each", "V=1", "--each", "V=1"], "would be built twice"),
])
def test_bad_specs_are_refused(tmp_path, capsys, package, args, says):
    spec = tmp_path / "spec.yml"
    spec.write_text(yaml.safe_dump({"architecture": "all", "packages": [package]}))
    assert standin.main([str(spec), str(tmp_path / "out"), *args]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
