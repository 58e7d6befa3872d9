"""Build a flat apt repository of TEST STAND-IN packages (a test double for a vendor package repository).

The packages carry the names and versions of real vendor packages (NVIDIA's container toolkit, a driver,
...) so that roles install them exactly as they would install the real ones, but their contents are tiny
scripts that implement just enough of the real tools for a test. Every package's Description starts with
``TEST STAND-IN for <what> built by onprem.deepseek tests`` so that nobody mistakes one for the real thing.

Usage::

    python tests/tools/standin_apt_repo.py SPEC OUTDIR [--var NAME=VALUE ...] [--each NAME=VALUE ...]

Builds every package SPEC lists with ``dpkg-deb --build --root-owner-group`` into OUTDIR, indexes them with
``dpkg-scanpackages`` (or ``apt-ftparchive`` when that is what the machine has) and writes ``Packages``,
``Packages.gz`` and an unsigned ``Release`` with the indexes' sizes and SHA-256 sums. The repository is
signed by nothing: the test's sources entry must say ``[trusted=yes]`` (``deb [trusted=yes]
file:///OUTDIR ./``), which is only acceptable because the test built it and it never leaves the test host.
OUTDIR is replaced as a whole: the new repository is built beside it and renamed into place.
Prints OUTDIR and the built ``name version`` pairs.

SPEC is a YAML (or JSON) file::

    architecture: amd64          # optional, default: dpkg --print-architecture
    packages:
      - name: nvidia-container-toolkit-base
        version: "@VERSION@-1"   # any string; @NAME@ tokens are replaced by --var NAME=VALUE
        stands_in_for: the NVIDIA Container Toolkit base package (nvidia-ctk, nvidia-container-runtime)
        description: optional longer text, one line
        depends: ["libnvidia-container1 (>= @VERSION@)"]    # optional, also pre_depends, provides,
                                                          # conflicts, breaks, replaces; section, priority
        architecture: all        # optional, overrides the top-level one
        files:                   # installed paths
          /usr/bin/nvidia-ctk:
            source: nvidia-ctk.sh     # a file relative to SPEC, or
            # content: "text"         # inline text
            mode: "0755"              # default 0644
            substitute: true          # replace @NAME@ tokens in the content too (default false)
        postinst: "#!/bin/sh\\n..."  # optional maintainer scripts: postinst, prerm, postrm, preinst

``--each NAME=VALUE``, given several times for one NAME, builds the whole spec once per value (e.g. two
toolkit versions in one repository, to test that a role pins the older one).

Every @NAME@ token in a spec string must be given with --var or --each; an unknown one is an error, as is a
package without name, version, stands_in_for or files, a relative file path, or a file path given twice.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

TOKEN = re.compile(r"@([A-Z][A-Z0-9_]*)@")
RELATIONS = ("pre_depends", "depends", "provides", "conflicts", "breaks", "replaces")
SCRIPTS = ("preinst", "postinst", "prerm", "postrm")
NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
VERSION = re.compile(r"^([0-9]+:)?[0-9][A-Za-z0-9.+~-]*$")


class SpecError(ValueError):
    """The spec cannot be built; the message names the package and the field."""


def substitute(text: str, variables: dict[str, str], where: str) -> str:
    def replace(match):
        name = match.group(1)
        if name not in variables:
            raise SpecError(f"{where}: @{name}@ has no value; pass --var {name}=...")
        return variables[name]

    return TOKEN.sub(replace, text)


def expand(value, variables, where):
    """``value`` with every token replaced, recursively through lists and dicts."""
    if isinstance(value, str):
        return substitute(value, variables, where)
    if isinstance(value, list):
        return [expand(v, variables, where) for v in value]
    if isinstance(value, dict):
        return {k: expand(v, variables, where) for k, v in value.items()}
    return value


def host_architecture() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True, text=True).stdout.strip()


def load_spec(spec_path: Path, variables: dict[str, str]) -> tuple[str, list[dict]]:
    """The architecture and the checked package list of a spec, tokens replaced, file contents loaded."""
    raw = yaml.safe_load(spec_path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict) or not isinstance(raw.get("packages"), list) or not raw["packages"]:
        raise SpecError(f"{spec_path}: needs a non-empty 'packages' list")
    arch = expand(str(raw.get("architecture") or host_architecture()), variables, "architecture")
    packages = []
    seen = set()
    for index, pkg in enumerate(raw["packages"]):
        where = f"{spec_path}: packages[{index}]"
        if not isinstance(pkg, dict):
            raise SpecError(f"{where} must be a mapping")
        for field in ("name", "version", "stands_in_for", "files"):
            if not pkg.get(field):
                raise SpecError(f"{where} lacks '{field}'")
        files = pkg["files"]
        fields = expand({k: v for k, v in pkg.items() if k != "files"}, variables, where)
        name, version = str(fields["name"]), str(fields["version"])
        where = f"{spec_path}: {name}"
        if not NAME.match(name):
            raise SpecError(f"{where}: '{name}' is not a valid Debian package name")
        if not VERSION.match(version):
            raise SpecError(f"{where}: '{version}' is not a valid Debian version")
        if (name, version) in seen:
            raise SpecError(f"{where}: version {version} listed twice")
        seen.add((name, version))
        if not isinstance(files, dict):
            raise SpecError(f"{where}: 'files' must map installed paths to {{source|content, mode}}")
        fields["files"] = {dest: load_file(spec_path, where, dest, entry or {}, variables)
                           for dest, entry in files.items()}
        fields.setdefault("architecture", arch)
        packages.append(fields)
    return arch, packages


def load_file(spec_path: Path, where: str, dest: str, entry: dict, variables: dict[str, str]) -> dict:
    if not dest.startswith("/") or ".." in Path(dest).parts or dest.endswith("/"):
        raise SpecError(f"{where}: file path {dest!r} must be absolute, without '..', naming a file")
    if ("source" in entry) == ("content" in entry):
        raise SpecError(f"{where}: {dest} needs exactly one of 'source' or 'content'")
    if "source" in entry:
        data = (spec_path.parent / entry["source"]).read_bytes()
    else:
        data = str(entry["content"]).encode("utf-8")
    if entry.get("substitute"):
        data = substitute(data.decode("utf-8"), variables, f"{where}: {dest}").encode("utf-8")
    mode = int(str(entry.get("mode", "0644")), 8)
    if mode & ~0o7777:
        raise SpecError(f"{where}: {dest} has mode {entry.get('mode')!r}, not an octal permission")
    return {"data": data, "mode": mode}


def control_text(pkg: dict, installed_kib: int) -> str:
    summary = f"TEST STAND-IN for {pkg['stands_in_for']} built by onprem.deepseek tests"
    lines = [
        f"Package: {pkg['name']}",
        f"Version: {pkg['version']}",
        f"Architecture: {pkg['architecture']}",
        "Maintainer: onprem.deepseek tests <tests@onprem-deepseek.invalid>",
        f"Installed-Size: {installed_kib}",
        f"Section: {pkg.get('section', 'misc')}",
        f"Priority: {pkg.get('priority', 'optional')}",
    ]
    for field in RELATIONS:
        values = pkg.get(field) or []
        if isinstance(values, str):
            values = [values]
        if values:
            label = "-".join(part.capitalize() for part in field.split("_"))
            lines.append(f"{label}: {', '.join(values)}")
    description = pkg.get("description") or "Not the vendor's package: a few scripts that imitate its tools."
    lines.append(f"Description: {summary}")
    lines.append(f" {description}")
    return "\n".join(lines) + "\n"


def build_package(pkg: dict, workdir: Path, pool: Path) -> Path:
    root = workdir / f"{pkg['name']}_{pkg['version']}"
    (root / "DEBIAN").mkdir(parents=True)
    total = 0
    for dest, entry in pkg["files"].items():
        target = root / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(entry["data"])
        target.chmod(entry["mode"])
        total += len(entry["data"])
    (root / "DEBIAN" / "control").write_text(control_text(pkg, max(1, (total + 1023) // 1024)), encoding="utf-8")
    for script in SCRIPTS:
        if pkg.get(script):
            path = root / "DEBIAN" / script
            path.write_text(pkg[script], encoding="utf-8")
            path.chmod(0o755)
    deb = pool / f"{pkg['name']}_{pkg['version'].split(':')[-1]}_{pkg['architecture']}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
                   check=True, capture_output=True, text=True)
    return deb


def index_packages(repo: Path) -> str:
    """The Packages index of the .deb files in ``repo`` (paths relative to it)."""
    if shutil.which("dpkg-scanpackages"):
        command = ["dpkg-scanpackages", "--multiversion", "."]
    elif shutil.which("apt-ftparchive"):
        command = ["apt-ftparchive", "packages", "."]
    else:
        raise SpecError("neither dpkg-scanpackages (package dpkg-dev) nor apt-ftparchive (apt-utils) is installed")
    result = subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True)
    return result.stdout


def release_text(repo: Path, names: list[str], architectures: list[str]) -> str:
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    lines = [
        "Origin: onprem.deepseek tests",
        "Label: TEST STAND-IN repository",
        f"Date: {date}",
        f"Architectures: {' '.join(architectures)}",
        "Description: TEST STAND-IN packages built by onprem.deepseek tests; unsigned, for tests only",
        "SHA256:",
    ]
    for name in names:
        data = (repo / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data):>16} {name}")
    return "\n".join(lines) + "\n"


def build_repo(spec_path: Path, outdir: Path, variables: dict[str, str],
               each: list[dict[str, str]] | None = None) -> list[tuple[str, str]]:
    """Build the repository of ``spec_path`` into ``outdir``; the (name, version) pairs built.

    ``each`` lists extra variable sets; the spec is built once for each (once with ``variables`` alone if empty).
    """
    packages = []
    built = set()
    for extra in each or [{}]:
        arch, more = load_spec(spec_path, {**variables, **extra})
        for pkg in more:
            if (pkg["name"], pkg["version"]) in built:
                raise SpecError(f"{spec_path}: {pkg['name']} {pkg['version']} would be built twice "
                                "(an --each value repeats)")
            built.add((pkg["name"], pkg["version"]))
        packages.extend(more)
    outdir = outdir.resolve()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        with tempfile.TemporaryDirectory() as work:
            for pkg in packages:
                build_package(pkg, Path(work), staging)
        index = index_packages(staging)
        (staging / "Packages").write_text(index, encoding="utf-8")
        with gzip.GzipFile(staging / "Packages.gz", "wb", mtime=0) as handle:
            handle.write(index.encode("utf-8"))
        architectures = sorted({arch} | {p["architecture"] for p in packages})
        (staging / "Release").write_text(release_text(staging, ["Packages", "Packages.gz"], architectures),
                                         encoding="utf-8")
        staging.chmod(0o755)
        if outdir.exists():
            old = outdir.with_name(f".{outdir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(outdir, old)
            os.replace(staging, outdir)
            shutil.rmtree(old)
        else:
            os.replace(staging, outdir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [(p["name"], p["version"]) for p in packages]


def parse_vars(pairs: list[str]) -> dict[str, str]:
    variables = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not re.match(r"^[A-Z][A-Z0-9_]*$", name):
            raise SpecError(f"--var {pair!r}: write NAME=VALUE with NAME in capitals")
        variables[name] = value
    return variables


def parse_each(pairs: list[str]) -> list[dict[str, str]]:
    """``--each`` pairs as one variable set per value; a single NAME only (a matrix is not needed yet)."""
    sets = [parse_vars([pair]) for pair in pairs]
    names = {name for one in sets for name in one}
    if len(names) > 1:
        raise SpecError(f"--each takes one NAME, several values; got {', '.join(sorted(names))}")
    return sets


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="YAML spec of the packages")
    parser.add_argument("outdir", type=Path, help="repository directory (replaced as a whole)")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="value for @NAME@ tokens in the spec")
    parser.add_argument("--each", action="append", default=[], metavar="NAME=VALUE",
                        help="build the spec once more for each value of NAME")
    args = parser.parse_args(argv)
    try:
        built = build_repo(args.spec, args.outdir, parse_vars(args.var), parse_each(args.each))
    except (SpecError, OSError) as exc:
        print(f"standin_apt_repo: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"standin_apt_repo: {' '.join(exc.cmd)} failed: {exc.stderr.strip()}", file=sys.stderr)
        return 2
    print(args.outdir.resolve())
    for name, version in built:
        print(f"{name} {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
