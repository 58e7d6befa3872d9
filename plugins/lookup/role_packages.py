# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: role_packages
short_description: The packages the collection's roles install on a given operating system
description:
  - Reads every role under O(roles_path) the way Ansible would run it on a host of the given operating system
    (defaults, C(vars/main.yml), then C(vars/<os_family>.yml), C(vars/<distribution>.yml) and
    C(vars/<distribution>-<major>.yml), most specific last) and returns one entry per package task
    (C(apt), C(dnf), C(yum), C(package), C(pip), with or without the C(ansible.builtin.) prefix).
  - The task's package names are rendered with those variables and O(host_vars) (inventory values, which win
    over role defaults and lose to role vars, as in Ansible), the task's and its blocks' C(vars), and the
    variables no C(set_fact) before it has made host-specific. A name that cannot be rendered (it needs a fact or a
    registered result of the host) gives an entry with RV(_raw[].error) set, naming the role, file and task,
    so no package task is ever dropped silently; callers decide (the bundle build fails on it).
  - Tasks are reached from C(tasks/main.yml) through C(import_tasks), C(include_tasks) and blocks, and the
    C(when) conditions on the way are collected. An entry is V(included) unless one of them is false with the
    known variables; a condition that needs facts or results only the host has counts as true (the bundle
    rather carries a package too many than one too few). Task files no entry point reaches are read too.
  - This is what the offline bundle is built from (C(playbooks/bundle_build.yml)), so the bundle and the roles
    cannot drift apart.
author:
  - onprem.deepseek maintainers (@onprem)
options:
  _terms:
    description: Not used.
    required: false
  os_family:
    description: C(ansible_facts.os_family) of the target (V(Debian), V(RedHat)).
    type: str
    required: true
  distribution:
    description: C(ansible_facts.distribution) of the target (V(Debian), V(Ubuntu), V(RedHat), V(Rocky)).
    type: str
    required: true
  distribution_major_version:
    description: C(ansible_facts.distribution_major_version) of the target (V(12)).
    type: str
    required: true
  facts:
    description: More C(ansible_facts) of the target, for conditions and names that use them.
    type: dict
    default: {}
  host_vars:
    description: Inventory variables of the target (what C(when) conditions and package names use).
    type: dict
    default: {}
  roles_path:
    description: The directory of roles to read. Defaults to this collection's C(roles/).
    type: path
  roles_skip:
    description: Roles left out entirely (their packages come from elsewhere).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: List the Debian 12 packages of every role
  ansible.builtin.debug:
    msg: >-
      {{ query('onprem.deepseek.role_packages', os_family='Debian', distribution='Debian',
               distribution_major_version='12', host_vars={'inference_engine': 'mock'})
         | selectattr('included') | selectattr('manager', 'ne', 'pip')
         | map(attribute='packages') | flatten | unique | sort }}
"""

RETURN = r"""
_raw:
  description: One entry per package task.
  type: list
  elements: dict
  contains:
    role:
      description: Role name.
      type: str
    file:
      description: Task file, relative to the role's C(tasks/) directory.
      type: str
    task:
      description: The task's name.
      type: str
    manager:
      description: V(system) for C(package), V(apt), V(dnf) or V(pip).
      type: str
    packages:
      description: Rendered package names (pins such as C(name=1.2) kept).
      type: list
      elements: str
    files:
      description: Package files the task installs from a path (C(apt deb=)); not resolved from a repository.
      type: list
      elements: str
    included:
      description: Whether the bundle must carry these packages.
      type: bool
    reason:
      description: Why an entry is not included (the false condition, or another package manager).
      type: str
    error:
      description: Why the package names of an included entry could not be rendered; empty when they were.
      type: str
"""

import os

from ansible.errors import AnsibleError, AnsibleLookupError
from ansible.plugins.lookup import LookupBase

try:  # ansible-core >= 2.19 renders only trusted templates
    from ansible.template import trust_as_template
except ImportError:  # pragma: no cover - older ansible-core trusts every string

    def trust_as_template(value):
        return value


MANAGERS = {
    "package": "system",
    "apt": "apt",
    "dnf": "dnf",
    "dnf5": "dnf",
    "yum": "dnf",
    "pip": "pip",
}
FAMILY_MANAGER = {"Debian": "apt", "RedHat": "dnf"}
PREFIXES = ("ansible.builtin.", "ansible.legacy.")
INCLUDES = {"import_tasks", "include_tasks"}
REMOVE_STATES = {"absent", "removed"}
NAME_KEYS = ("name", "pkg", "package")


def short_action(key):
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def as_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def task_action(task):
    """Return (short action name, its arguments) of a task dict, or (None, None)."""
    for key, value in task.items():
        short = short_action(str(key))
        if short in MANAGERS or short in INCLUDES:
            return short, value
    return None, None


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        roles_path = self.get_option("roles_path") or os.path.join(
            os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "roles"
        )
        if not os.path.isdir(roles_path):
            raise AnsibleLookupError(f"role_packages: roles_path {roles_path} is not a directory")
        facts = dict(self.get_option("facts") or {})
        facts.update(
            os_family=self.get_option("os_family"),
            distribution=self.get_option("distribution"),
            distribution_major_version=str(self.get_option("distribution_major_version")),
        )
        skip = set(self.get_option("roles_skip"))
        entries = []
        for role in sorted(os.listdir(roles_path)):
            role_dir = os.path.join(roles_path, role)
            if role in skip or not os.path.isdir(os.path.join(role_dir, "tasks")):
                continue
            entries.extend(self._role(role, role_dir, facts, self.get_option("host_vars") or {}))
        return entries

    # -- one role --------------------------------------------------------------------------------
    def _load(self, path):
        if not os.path.isfile(path):
            return None
        try:
            # The roles' own files: their templates are rendered, as when the role runs
            return self._loader.load_from_file(path, trusted_as_template=True)
        except TypeError:  # pragma: no cover - ansible-core < 2.19 trusts every template
            return self._loader.load_from_file(path)

    def _role_vars(self, role_dir, facts, inventory):
        merged = dict(self._load(os.path.join(role_dir, "defaults", "main.yml")) or {})
        merged.update(inventory)
        merged.update(self._load(os.path.join(role_dir, "vars", "main.yml")) or {})
        for name in (
            facts["os_family"],
            facts["distribution"],
            f"{facts['distribution']}-{facts['distribution_major_version']}",
        ):
            merged.update(self._load(os.path.join(role_dir, "vars", f"{name}.yml")) or {})
        merged["ansible_facts"] = dict(facts)
        merged["role_path"] = role_dir
        merged["role_name"] = os.path.basename(role_dir)
        return merged

    def _role(self, role, role_dir, facts, inventory):
        tasks_dir = os.path.join(role_dir, "tasks")
        walker = _Walker(self, role, tasks_dir, self._role_vars(role_dir, facts, inventory), facts["os_family"])
        for entry in sorted(name for name in os.listdir(tasks_dir) if name.endswith((".yml", ".yaml"))):
            if entry == "main.yml":
                walker.walk_file(entry, [])
        # Entry points other than main (tasks_from) and files reached only through a name that could not be
        # rendered: read them too, with no inherited condition.
        for entry in sorted(name for name in os.listdir(tasks_dir) if name.endswith((".yml", ".yaml"))):
            if entry not in walker.seen:
                walker.walk_file(entry, [])
        return walker.entries


class _Walker:
    """Walks a role's task files in order, as a host would run them: task and block ``vars`` apply to the tasks
    under them; a variable a ``set_fact`` assigns is unknown from there on (its value is the host's)."""

    def __init__(self, lookup, role, tasks_dir, variables, os_family):
        self.lookup = lookup
        self.role = role
        self.tasks_dir = tasks_dir
        self.variables = variables
        self.os_family = os_family
        self.seen = set()
        self.entries = []

    def templar(self, scope):
        return self.lookup._templar.copy_with_new_env(available_variables=dict(self.variables, **scope))

    def render(self, value, scope):
        if isinstance(value, str):
            value = trust_as_template(value)
        return self.templar(scope).template(value)

    def condition(self, cond, scope):
        """True or False when the condition can be decided from the known variables, else None."""
        if isinstance(cond, bool):
            return cond
        try:
            return bool(self.templar(scope).evaluate_conditional(trust_as_template(str(cond))))
        except AnsibleError:
            return None

    def set_fact(self, args):
        # A fact is decided on the host (from its facts, groups, results): from here on the variable is
        # unknown, so conditions on it count as true and names that need it are reported, never guessed.
        for key in args or {}:
            self.variables.pop(key, None)

    def walk_file(self, name, conditions, scope=None):
        if name in self.seen:
            return
        self.seen.add(name)
        path = os.path.join(self.tasks_dir, name)
        tasks = self.lookup._load(path) or []
        if not isinstance(tasks, list):
            raise AnsibleLookupError(f"role_packages: {path} is not a list of tasks")
        self.walk_tasks(name, tasks, conditions, scope or {})

    def walk_tasks(self, name, tasks, conditions, scope):
        for task in tasks:
            if not isinstance(task, dict):
                continue
            here = conditions + as_list(task.get("when"))
            inner = dict(scope, **(task.get("vars") or {}))
            if "block" in task:
                for section in ("block", "rescue", "always"):
                    self.walk_tasks(name, task.get(section) or [], here, inner)
                continue
            key = next((short_action(str(k)) for k in task if short_action(str(k)) == "set_fact"), None)
            if key:
                self.set_fact(task.get("ansible.builtin.set_fact", task.get("set_fact")))
                continue
            action, args = task_action(task)
            if action is None:
                continue
            if action in INCLUDES:
                self.follow(task, args, here, inner)
            else:
                self.package_task(name, task, action, args or {}, here, inner)

    def follow(self, task, args, conditions, scope):
        target = args.get("file") if isinstance(args, dict) else args
        try:
            rendered = str(self.render(target, scope))
        except AnsibleError:
            return  # read later as a file no entry point reaches
        if os.path.isfile(os.path.join(self.tasks_dir, rendered)):
            self.walk_file(rendered, conditions, scope)

    def package_task(self, name, task, action, args, conditions, scope):
        manager = MANAGERS[action]
        label = f"{self.role}/tasks/{name}: task '{task.get('name', action)}'"
        entry = {"role": self.role, "file": name, "task": task.get("name", action), "manager": manager,
                 "packages": [], "files": [], "included": True, "reason": "", "error": ""}
        if str(args.get("state", "present")) in REMOVE_STATES:
            return
        if manager in ("apt", "dnf") and manager != FAMILY_MANAGER.get(self.os_family):
            entry.update(included=False, reason=f"{manager} task, not run on {self.os_family}")
        if manager == "pip" and "--no-index" in str(args.get("extra_args", "")):
            # Installs from files already on the host (the bundle's wheels): nothing to fetch for it.
            entry.update(included=False, reason="pip --no-index installs local files only")
            self.entries.append(entry)
            return
        raw = next((args[key] for key in NAME_KEYS if key in args), None)
        if raw is None and "deb" not in args and not args.get("upgrade"):
            return  # update_cache only
        if entry["included"]:
            for cond in conditions:
                if self.condition(cond, scope) is False:
                    entry.update(included=False, reason=f"when: {cond} is false")
                    break
        source = "deb" if raw is None else "name"
        try:
            rendered = self.render(args["deb"] if raw is None else raw, scope)
        except AnsibleError as exc:
            if entry["included"]:
                # Decided on the host only (a registered result, a fact): the caller must not guess.
                entry["error"] = (
                    f"{label}: cannot render the package {source} {(args['deb'] if raw is None else raw)!r}: {exc}"
                )
            rendered = []
        names = []
        for item in as_list(rendered):
            names.extend(part.strip() for part in str(item).split(",") if part.strip())
        entry["files" if raw is None else "packages"] = names
        self.entries.append(entry)
