# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: docker_daemon_json
short_description: Merge container runtimes and settings into Docker's daemon.json, keeping the user's keys
description:
  - Reads the existing Docker daemon configuration, merges the given O(runtimes), O(settings) and
    O(default_runtime) into it and writes it back only when the merged configuration differs from what
    is there. Every key the module is not told about is kept as it is.
  - A file that is not valid JSON, whose top level is not an object, or that repeats a key is refused
    with the reason and its position; the module never writes over a file it could not read.
  - The candidate is written to a temporary file in the same directory, checked with
    C(dockerd --validate --config-file) where the installed dockerd has that flag (Docker 23 and later),
    and renamed onto O(path) only when it passed. With O(backup=true) the old file is kept as a
    timestamped copy first.
  - An unchanged configuration is not rewritten, so the user's formatting survives until a real change.
author:
  - onprem.deepseek maintainers (@onprem)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: >-
      The candidate is built and, where possible, validated in a private temporary directory;
      O(path) is not touched.
  diff_mode:
    support: full
    details: Shows the file before and the text that would be written.
  platform:
    platforms: posix
options:
  path:
    description: The daemon configuration file. Its directory is created when missing.
    type: path
    default: /etc/docker/daemon.json
  runtimes:
    description:
      - Runtimes to register, name to C({path, args}). Each named runtime is set to exactly this entry;
        runtimes with other names are kept.
    type: dict
    default: {}
  default_runtime:
    description:
      - A runtime name sets C(default-runtime); it must be one of the configured runtimes (or V(runc)).
      - The empty string removes C(default-runtime) when it names one of O(runtimes), and keeps a default
        the user set for another runtime.
      - Not given leaves C(default-runtime) alone.
    type: str
  settings:
    description: More top-level keys, merged deeply (objects key by key; lists and scalars replace).
    type: dict
    default: {}
  backup:
    description: Keep a timestamped copy of the old file before replacing it.
    type: bool
    default: true
  validate:
    description:
      - V(auto) validates with C(dockerd --validate) where the installed dockerd supports it and says so
        in RV(validation) where it does not; V(always) fails when it cannot validate; V(never) does not try.
    type: str
    choices: [auto, always, never]
    default: auto
  dockerd:
    description: The dockerd executable, a name looked up in C(PATH) or a full path.
    type: str
    default: dockerd
seealso:
  - name: Docker daemon configuration file
    description: The keys dockerd reads from daemon.json.
    link: https://docs.docker.com/reference/cli/dockerd/#daemon-configuration-file
"""

EXAMPLES = r"""
- name: Register the NVIDIA runtime with Docker, keeping every other key
  onprem.deepseek.docker_daemon_json:
    runtimes:
      nvidia:
        path: nvidia-container-runtime
        args: []
  notify: Restart docker

- name: Make it the default runtime
  onprem.deepseek.docker_daemon_json:
    runtimes:
      nvidia: {path: nvidia-container-runtime, args: []}
    default_runtime: nvidia

- name: No longer the default (a default the user set for another runtime is kept)
  onprem.deepseek.docker_daemon_json:
    runtimes:
      nvidia: {path: nvidia-container-runtime, args: []}
    default_runtime: ""
"""

RETURN = r"""
path:
  description: The configuration file.
  returned: always
  type: str
  sample: /etc/docker/daemon.json
config:
  description: The configuration after the merge (what is, or in check mode would be, in the file).
  returned: always
  type: dict
  sample: {"log-driver": "json-file", "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}}
backup_file:
  description: The copy of the old file.
  returned: when the file was replaced and O(backup=true)
  type: str
  sample: /etc/docker/daemon.json.12345.2025-01-01@12:00:00~
validated:
  description: Whether dockerd checked the new configuration.
  returned: always
  type: bool
  sample: true
validation:
  description: How the configuration was checked, or why it was not.
  returned: always
  type: str
  sample: dockerd --validate
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.onprem.deepseek.plugins.module_utils._daemon_json import DaemonJsonError, merge, parse, render


class Dockerd:
    """The one seam to the outside world: the dockerd executable."""

    def __init__(self, module, name):
        self.module = module
        self.name = name
        self.path = module.get_bin_path(name) if os.sep not in name else (name if os.access(name, os.X_OK) else None)

    def supports_validate(self):
        if self.path is None:
            return False
        answer = self.module.run_command([self.path, "--help"])
        return "--validate" in answer[1] + answer[2]

    def validate(self, config_file):
        rc, out, err = self.module.run_command([self.path, "--validate", "--config-file", config_file])
        return rc, (err or out).strip()


def read_existing(module, path):
    if not os.path.lexists(path):
        return None
    if not os.path.isfile(path):
        module.fail_json(msg=f"{path} exists but is not a regular file; move it away and run again", path=path)
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        module.fail_json(msg=f"{path} is not UTF-8 text ({exc}); nothing was written. Fix or move the file "
                             "and run again", path=path)
    except OSError as exc:
        module.fail_json(msg=f"cannot read {path}: {exc.strerror}; check its permissions", path=path)


def write_candidate(directory, text):
    """``text`` in a new temporary file in ``directory``, flushed to disk; its name."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".daemon.json.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def check_runtimes(module, runtimes):
    for name, spec in runtimes.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("path"), str) or not spec["path"]:
            module.fail_json(msg=f"runtimes.{name} needs a non-empty path, "
                                 "e.g. {path: nvidia-container-runtime, args: []}")
        if not isinstance(spec.get("args", []), list):
            module.fail_json(msg=f"runtimes.{name}.args must be a list of strings")


def validation_plan(module, dockerd):
    """Whether to run dockerd --validate, and the reason to give when not; fails for validate=always."""
    mode = module.params["validate"]
    if mode == "never":
        return False, "not validated (validate=never)"
    if dockerd.supports_validate():
        return True, "dockerd --validate"
    if dockerd.path is None:
        why = f"{dockerd.name} not found"
    else:
        why = f"{dockerd.path} has no --validate flag"
    if mode == "always":
        module.fail_json(msg=f"validate=always but {why} (Docker 23 or later has the flag); install Docker first "
                             "or use validate=auto", path=module.params["path"])
    return False, f"not validated: {why}"


def run_module(module):
    p = module.params
    path = p["path"]
    check_runtimes(module, p["runtimes"])
    old_text = read_existing(module, path)
    try:
        current = parse(old_text or "", source=path)
        new = merge(current, p["runtimes"], p["default_runtime"], p["settings"])
    except DaemonJsonError as exc:
        module.fail_json(msg=f"{exc}. Nothing was written: fix the file (or move it away) and run again.", path=path)

    changed = old_text is None or new != current
    result = {"path": path, "config": new, "validated": False, "validation": "unchanged, not validated",
              "changed": changed}
    if not changed:
        module.exit_json(**result)

    text = render(new)
    directory = os.path.dirname(path) or "."
    if module.check_mode:
        directory = module.tmpdir
    elif not os.path.isdir(directory):
        os.makedirs(directory, mode=0o755)

    dockerd = Dockerd(module, p["dockerd"])
    can_validate, result["validation"] = validation_plan(module, dockerd)
    tmp = write_candidate(directory, text)
    try:
        if can_validate:
            rc, message = dockerd.validate(tmp)
            if rc != 0:
                module.fail_json(msg=f"dockerd rejects the merged configuration for {path}: {message}. "
                                     "Nothing was written; fix the offending setting", path=path, config=new)
            result["validated"] = True
        if not module.check_mode:
            if old_text is not None and p["backup"]:
                result["backup_file"] = module.backup_local(path)
            os.chmod(tmp, 0o644)
            module.atomic_move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

    if module._diff:
        result["diff"] = {"before": old_text or "", "after": text, "before_header": path, "after_header": path}
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/etc/docker/daemon.json"},
            "runtimes": {"type": "dict", "default": {}},
            "default_runtime": {"type": "str"},
            "settings": {"type": "dict", "default": {}},
            "backup": {"type": "bool", "default": True},
            "validate": {"type": "str", "choices": ["auto", "always", "never"], "default": "auto"},
            "dockerd": {"type": "str", "default": "dockerd"},
        },
        supports_check_mode=True,
    )
    module.run_command_environ_update = {"LANG": "C", "LC_ALL": "C"}
    run_module(module)


if __name__ == "__main__":
    main()
