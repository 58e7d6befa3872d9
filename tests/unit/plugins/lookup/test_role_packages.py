# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The role_packages lookup: the offline bundle's package list is read from the roles, so these tests are what
stops a role from installing a package the bundle does not carry."""

from __future__ import annotations

import os
import re
import textwrap

import pytest
import yaml
from ansible.constants import config
from ansible.errors import AnsibleLookupError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible_collections.onprem.deepseek.plugins.lookup import role_packages

NAME = "onprem.deepseek.role_packages"
# What the plugin loader does when it loads the lookup: register its documented options.
OPTIONS = yaml.safe_load(role_packages.DOCUMENTATION)["options"]
config.initialize_plugin_configuration_definitions("lookup", NAME, OPTIONS)

ROLES = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles"))
DEBIAN12 = {"os_family": "Debian", "distribution": "Debian", "distribution_major_version": "12"}
RHEL9 = {"os_family": "RedHat", "distribution": "RedHat", "distribution_major_version": "9"}
# Every module that installs packages from a repository. One the lookup does not read fails the coverage test.
PACKAGE_MODULE = re.compile(
    r"^(ansible\.(builtin|legacy)\.|community\.general\.)?"
    r"(apt|package|dnf|dnf5|yum|pip|pipx|zypper|apk|pacman|snap|flatpak|homebrew|portage|pkgng|opkg)$"
)


def query(roles_path=ROLES, **options):
    loader = DataLoader()
    lookup = role_packages.LookupModule(loader=loader, templar=Templar(loader=loader))
    lookup._load_name = NAME
    return lookup.run([], variables={}, roles_path=roles_path, **options)


def write(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(textwrap.dedent(text))


def package_tasks(tasks):
    """(module, args) of every package task in a task list, blocks included (an independent reading)."""
    found = []
    for task in tasks or []:
        for section in ("block", "rescue", "always"):
            found.extend(package_tasks(task.get(section)))
        for key, args in task.items():
            if PACKAGE_MODULE.match(str(key)):
                found.append((str(key), args))
    return found


def test_every_package_task_of_every_role_is_reported():
    """A task that installs packages and is not in the lookup's answer would be missing from the bundle."""
    entries = query(**DEBIAN12, roles_skip=[])
    reported = {}
    for entry in entries:
        reported.setdefault((entry["role"], entry["file"]), []).append(entry)
    expected_total = 0
    for role in sorted(os.listdir(ROLES)):
        tasks_dir = os.path.join(ROLES, role, "tasks")
        if not os.path.isdir(tasks_dir):
            continue
        for name in sorted(os.listdir(tasks_dir)):
            with open(os.path.join(tasks_dir, name), encoding="utf-8") as handle:
                tasks = yaml.safe_load(handle)
            installs = [
                (key, args) for key, args in package_tasks(tasks)
                if isinstance(args, dict) and args.get("state", "present") not in ("absent", "removed")
                and any(k in args for k in ("name", "pkg", "package", "deb"))
            ]
            for key, _args in installs:
                assert key.split(".")[-1] in ("apt", "package", "dnf", "dnf5", "yum", "pip"), (
                    f"{role}/tasks/{name} installs packages with {key}, which role_packages does not read: teach "
                    "plugins/lookup/role_packages.py that module, or the offline bundle will lack its packages"
                )
            assert len(reported.get((role, name), [])) == len(installs), (
                f"{role}/tasks/{name}: {len(installs)} package tasks, role_packages reports "
                f"{len(reported.get((role, name), []))}"
            )
            expected_total += len(installs)
    assert expected_total > 0
    assert len(entries) == expected_total


def test_debian12_carries_the_packages_the_roles_declare():
    """Compared with the roles' own variables, read here with plain YAML."""

    def load(rel):
        with open(os.path.join(ROLES, rel), encoding="utf-8") as handle:
            return yaml.safe_load(handle)

    entries = query(**DEBIAN12, roles_skip=["nvidia_driver", "container_runtime"],
                    host_vars={"inference_engine": "mock", "offline_enabled": True})
    carried = {name for entry in entries if entry["included"] for name in entry["packages"]}
    assert not [entry["error"] for entry in entries if entry["included"] and entry["error"]]
    monitoring = load("monitoring/defaults/main.yml")
    declared = set(load("audit/defaults/main.yml")["audit_packages"])
    declared |= set(load("gateway/vars/Debian.yml")["_gateway_family"]["packages"])
    declared |= set(load("os_tuning/vars/Debian.yml")["_os_tuning_packages_irqbalance"])
    declared |= set(load("secure_storage/vars/Debian.yml")["_secure_storage_packages"])
    for key in ("prometheus", "alertmanager", "node_exporter", "nginx_exporter"):
        declared |= set(monitoring[f"monitoring_{key}_packages"])
    assert declared <= carried, f"not carried: {sorted(declared - carried)}"
    assert "python3-pip" in carried  # the offline role's own, for the wheels, when the host is offline
    tuned = [entry for entry in entries if entry["role"] == "os_tuning" and "tuned" in entry["packages"]]
    assert [(entry["included"], entry["reason"]) for entry in tuned] == [
        (False, "when: os_tuning_tuned_install | bool is false")
    ]
    offline_off = query(**DEBIAN12, roles_skip=["nvidia_driver", "container_runtime"])
    offline_entries = [(e["manager"], e["included"]) for e in offline_off if e["role"] == "offline"]
    assert offline_entries == [("apt", False), ("pip", False)]


def test_inventory_values_switch_packages_on():
    entries = query(**DEBIAN12, roles_skip=["nvidia_driver", "container_runtime"],
                    host_vars={"os_tuning_tuned_install": True})
    tuned = [entry for entry in entries if entry["role"] == "os_tuning" and "tuned" in entry["packages"]]
    assert [entry["included"] for entry in tuned] == [True]


@pytest.fixture
def roles(tmp_path):
    write(tmp_path, {
        "web/defaults/main.yml": """\
            web_packages: [nginx]
            web_extra: false
            web_flavour: light
            """,
        "web/vars/Debian.yml": """\
            _web_family: {tools: [curl, "{{ web_flavour }}-tools"]}
            """,
        "web/vars/Debian-12.yml": """\
            _web_family: {tools: [curl, wget]}
            """,
        "web/tasks/main.yml": """\
            - name: Prepare the package manager
              ansible.builtin.include_tasks: "setup-{{ ansible_facts.os_family }}.yml"
            - name: Optional parts
              when: web_extra | bool
              block:
                - name: Install the extras
                  ansible.builtin.apt:
                    name: [extra-one, extra-two]
            - name: Install the web server and the tools of the most specific vars file
              ansible.builtin.package:
                name: "{{ web_packages + _web_family.tools + [__web_local] }}"
              vars:
                __web_local: "{{ web_flavour }}-doc"
            - name: Remove the old server
              ansible.builtin.apt:
                name: apache2
                state: absent
            - name: Decide on the host
              ansible.builtin.set_fact:
                web_flavour: "{{ ansible_facts.memtotal_mb > 1000 }}"
            - name: Install what depends on the host
              ansible.builtin.package:
                name: "web-{{ web_flavour }}"
              when: web_packages | length > 0
            """,
        "web/tasks/setup-Debian.yml": """\
            - name: Refresh the cache
              ansible.builtin.apt:
                update_cache: true
            - name: Install a Debian-only helper, "pins" and comma lists
              apt:
                pkg: "dpkg-dev=1.21, debhelper"
            """,
        "web/tasks/setup-RedHat.yml": """\
            - name: Install a RedHat-only helper
              ansible.builtin.dnf:
                name: rpm-build
            """,
        "web/tasks/extra_entry.yml": """\
            - name: Install the wheels
              ansible.builtin.pip:
                name: ["nvidia-ml-py"]
            - name: Install the local wheels
              ansible.builtin.pip:
                name: "{{ __web_from_the_host }}"
                extra_args: --no-index --find-links /srv/wheels
            """,
        "skipped/tasks/main.yml": """\
            - name: Install
              ansible.builtin.package:
                name: never
            """,
    })
    return str(tmp_path)


def test_walks_roles_like_ansible_runs_them(roles):
    entries = query(roles_path=roles, **DEBIAN12, roles_skip=["skipped"])
    table = [(e["file"], e["manager"], e["packages"], e["included"], e["reason"], bool(e["error"])) for e in entries]
    assert table == [
        ("setup-Debian.yml", "apt", ["dpkg-dev=1.21", "debhelper"], True, "", False),
        ("main.yml", "apt", ["extra-one", "extra-two"], False, "when: web_extra | bool is false", False),
        ("main.yml", "system", ["nginx", "curl", "wget", "light-doc"], True, "", False),
        ("main.yml", "system", [], True, "", True),
        ("extra_entry.yml", "pip", ["nvidia-ml-py"], True, "", False),
        ("extra_entry.yml", "pip", [], False, "pip --no-index installs local files only", False),
        ("setup-RedHat.yml", "dnf", ["rpm-build"], False, "dnf task, not run on Debian", False),
    ]
    unresolved = entries[3]
    assert "web/tasks/main.yml: task 'Install what depends on the host'" in unresolved["error"]
    assert "web_flavour" in unresolved["error"]


def test_inventory_values_override_defaults_and_lose_to_role_vars(roles):
    entries = query(roles_path=roles, **DEBIAN12, roles_skip=["skipped"],
                    host_vars={"web_extra": True, "web_flavour": "full", "_web_family": {"tools": ["ignored"]}})
    by_task = {e["task"]: e for e in entries}
    assert by_task["Install the extras"]["included"] is True
    assert by_task["Install the web server and the tools of the most specific vars file"]["packages"] == [
        "nginx", "curl", "wget", "full-doc"]


def test_other_os_family(roles):
    entries = query(roles_path=roles, **RHEL9, roles_skip=["skipped"])
    by_task = {e["task"]: e for e in entries}
    assert by_task["Install a RedHat-only helper"]["included"] is True
    assert by_task["Install a Debian-only helper, \"pins\" and comma lists"]["included"] is False
    # No vars/RedHat.yml in this role: its names need _web_family, so the entry says it cannot tell
    error = by_task["Install the web server and the tools of the most specific vars file"]["error"]
    assert error.startswith("web/tasks/main.yml: task 'Install the web server")
    assert "cannot render the package name" in error


def test_missing_roles_path_is_an_error(tmp_path):
    with pytest.raises(AnsibleLookupError, match="is not a directory"):
        query(roles_path=str(tmp_path / "nope"), **DEBIAN12)
