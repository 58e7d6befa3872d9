# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""engine_cmd: the command line and ExecStart= of an inference engine, from a model plan."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.onprem.deepseek.plugins.module_utils._engine import (
    API_KEY_ENV,
    EngineError,
    container_argv,
    engine_argv,
    engine_env,
    systemd_exec,
)


def engine_cmd(engine, plan=None, rank=0, engine_options=None, container_options=None, env_options=None):
    """Everything a unit needs to start ``engine`` on node ``rank`` of ``plan``."""
    try:
        argv = engine_argv(engine, plan, int(rank), engine_options)
        env = engine_env(engine, plan, int(rank), env_options)
        if engine == "mock":
            full = argv
        else:
            options = dict(container_options or {})
            options["env"] = dict(env, **(options.get("env") or {}))
            full = container_argv(argv, options)
        return {
            "engine": engine,
            "rank": int(rank),
            "argv": argv,
            "env": env,
            "command": full,
            "exec_start": systemd_exec(full),
            "api_key_env": API_KEY_ENV[engine],
            "container": engine != "mock",
        }
    except (EngineError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"engine_cmd: {exc}") from exc


class FilterModule:
    def filters(self):
        return {"engine_cmd": engine_cmd}
