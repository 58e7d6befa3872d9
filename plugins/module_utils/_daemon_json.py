# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Merge runtime settings into a Docker daemon.json without losing the user's own keys.

Pure functions, no file or process access: the module reads and writes, these decide.
"""

from __future__ import annotations

import copy
import json


class DaemonJsonError(ValueError):
    """The existing file cannot be merged into; the message says why and what to do."""


def _refuse_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise DaemonJsonError(f"key {key!r} appears twice in one object (dockerd refuses that)")
        seen[key] = value
    return seen


def parse(text, source="daemon.json"):
    """The configuration in ``text`` as a dict. Empty or whitespace-only text is an empty configuration.

    Raises DaemonJsonError for anything dockerd would not load: invalid JSON, a top level that is not an
    object, a key given twice, or a ``runtimes`` entry that is not an object.
    """
    if not text.strip():
        return {}
    try:
        data = json.loads(text, object_pairs_hook=_refuse_duplicates)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise DaemonJsonError(f"{source} is not valid JSON: {exc.msg} at {where}") from None
    except DaemonJsonError as exc:
        raise DaemonJsonError(f"{source}: {exc}") from None
    if not isinstance(data, dict):
        raise DaemonJsonError(f"{source} must hold a JSON object at the top level, not {type(data).__name__}")
    if "runtimes" in data and not isinstance(data["runtimes"], dict):
        raise DaemonJsonError(f"{source}: 'runtimes' must be an object mapping runtime names to {{path, args}}")
    return data


def deep_merge(base, extra):
    """``extra`` merged into a copy of ``base``: objects merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge(current, runtimes=None, default_runtime=None, settings=None):
    """The configuration after the merge.

    - ``settings``: more keys, merged deeply (objects key by key, lists and scalars replaced).
    - ``runtimes``: name -> {path, args}; each named runtime is set to exactly that, other runtimes are kept.
    - ``default_runtime``: None leaves ``default-runtime`` alone; a name sets it (it must be a runtime that
      is configured or one dockerd knows, ``runc``); the empty string removes it only when it names one of
      ``runtimes`` (a default the user chose for a runtime this merge does not manage is kept).
    """
    runtimes = runtimes or {}
    data = deep_merge(current, settings or {})
    if runtimes:
        merged = dict(data.get("runtimes") or {})
        for name, spec in runtimes.items():
            merged[name] = {"path": spec["path"], "args": list(spec.get("args") or [])}
        data["runtimes"] = merged
    if default_runtime:
        known = set(data.get("runtimes") or {}) | {"runc", "io.containerd.runc.v2"}
        if default_runtime not in known:
            raise DaemonJsonError(
                f"default runtime {default_runtime!r} is not configured: add it to runtimes "
                f"(configured: {', '.join(sorted(known))})"
            )
        data["default-runtime"] = default_runtime
    elif default_runtime == "" and data.get("default-runtime") in runtimes:
        del data["default-runtime"]
    return data


def render(data):
    """The text written to the file: two-space indent, keys in their existing order, a final newline."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
