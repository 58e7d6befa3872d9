# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_manifest
short_description: Write or check a SHA256SUMS manifest for a model directory
description:
  - V(present) hashes every file under O(path) (in parallel, streaming) and writes C(<path>/SHA256SUMS) in the
    C(sha256sum) format, relative POSIX paths, sorted. The file is rewritten only when its content changes.
  - V(check) verifies every file the existing manifest lists and fails, naming each bad or missing file, when
    one does not match. It changes nothing except the verified-state cache.
  - Manifest entries with absolute paths, C(..) components, or whose real path (links resolved) leaves the
    directory are refused, when reading a manifest and when writing one.
  - With O(cache=true), a C(.model_fetch_state.json) in the directory records size, mtime, inode and SHA-256
    of each hashed file, so an unchanged tree is checked without reading it again (the same cache
    M(onprem.deepseek.model_fetch) uses).
author:
  - onprem.deepseek maintainers (@onprem)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Shows the manifest lines before and after.
  platform:
    platforms: posix
options:
  path:
    description: The directory (a verified model tree, a mirror, removable media).
    type: path
    required: true
  state:
    description: V(present) writes the manifest, V(check) verifies the directory against it.
    type: str
    choices: [present, check]
    default: present
  manifest:
    description: File name of the manifest inside O(path).
    type: str
    default: SHA256SUMS
  include:
    description: Glob patterns (relative paths) of files to list; empty means all. V(present) only.
    type: list
    elements: str
    default: []
  exclude:
    description: Glob patterns of files to leave out. V(present) only.
    type: list
    elements: str
    default: []
  workers:
    description: Files hashed at once.
    type: int
    default: 2
  cache:
    description: Use and update the verified-state cache in O(path).
    type: bool
    default: true
  verify:
    description: V(cached) trusts cache entries whose size, mtime and inode are unchanged; V(full) hashes every file.
    type: str
    choices: [cached, full]
    default: cached
seealso:
  - module: onprem.deepseek.model_fetch
"""

EXAMPLES = r"""
- name: Write SHA256SUMS for a verified model tree before copying it to removable media
  onprem.deepseek.model_manifest:
    path: /srv/models/deepseek-ai/DeepSeek-V3/current/

- name: Check the copy on the medium
  onprem.deepseek.model_manifest:
    path: /media/bundle/models/deepseek-ai/DeepSeek-V3
    state: check
    verify: full
"""

RETURN = r"""
manifest:
  description: Path of the manifest.
  returned: always
  type: str
  sample: /srv/models/deepseek-ai/DeepSeek-V3/current/SHA256SUMS
files:
  description: Number of files listed.
  returned: always
  type: int
  sample: 174
hashed:
  description: Files read this run (0 on an unchanged tree with the cache).
  returned: always
  type: int
  sample: 0
sha256:
  description: SHA-256 of the manifest file itself (what O(onprem.deepseek.model_fetch#module:manifest_sha256) pins).
  returned: when the manifest exists (or would, in check mode)
  type: str
  sample: 5b1f0f0c2e8d3c9a7f6e5d4c3b2a19087f6e5d4c3b2a19087f6e5d4c3b2a1908
bad:
  description: Files that are missing or do not match, with the reason (V(check)).
  returned: when state=check
  type: dict
  sample: {}
"""

import hashlib
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.onprem.deepseek.plugins.module_utils._manifest import (
    STATE_NAME,
    ManifestError,
    StateCache,
    atomic_write,
    build_manifest,
    format_manifest,
    parse_manifest,
    safe_relpath,
    verify_tree,
)


def read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def run_module(module):
    p = module.params
    root = p["path"]
    if not os.path.isdir(root):
        module.fail_json(msg=f"{root} is not a directory")
    try:
        name = safe_relpath(p["manifest"])
    except ManifestError as exc:
        module.fail_json(msg=f"manifest: {exc}")
    manifest_path = os.path.join(root, *name.split("/"))
    cache = StateCache(root) if p["cache"] else None
    old = read_text(manifest_path)

    if p["state"] == "check":
        if old is None:
            module.fail_json(msg=f"{manifest_path} does not exist: write it with state=present on a verified copy",
                             manifest=manifest_path, files=0, hashed=0, bad={})
        try:
            expected = parse_manifest(old, source=manifest_path)
        except ManifestError as exc:
            module.fail_json(msg=f"refusing {manifest_path}: {exc}", manifest=manifest_path, files=0, hashed=0, bad={})
        result = verify_tree(root, expected, cache, p["verify"], p["workers"])
        bad = dict(result["bad"], **{rel: "missing" for rel in result["missing"]})
        if cache is not None and not module.check_mode:
            cache.save()
        out = {"manifest": manifest_path, "files": len(expected), "hashed": len(result["hashed"]), "bad": bad,
               "sha256": hashlib.sha256(old.encode("utf-8")).hexdigest()}
        if bad:
            module.fail_json(msg=f"{len(bad)} of {len(expected)} files under {root} do not match {name}: "
                                 + "; ".join(f"{rel}: {why}" for rel, why in sorted(bad.items()))
                                 + ". Copy those files again from a verified source", **out)
        module.exit_json(changed=False, **out)

    skip_names = {name, STATE_NAME}
    try:
        entries, hashed = build_manifest(root, p["include"], p["exclude"], p["workers"], cache, p["verify"])
    except ManifestError as exc:
        module.fail_json(msg=f"refusing to write a manifest for {root}: {exc}")
    entries = {rel: sha for rel, sha in entries.items() if rel not in skip_names}
    text = format_manifest(entries)
    changed = text != old
    if changed and not module.check_mode:
        atomic_write(manifest_path, text)
    if cache is not None and not module.check_mode:
        cache.prune(set(entries))
        cache.save()
    out = {"manifest": manifest_path, "files": len(entries), "hashed": len(hashed),
           "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    if changed and module._diff:
        out["diff"] = {"before": old or "", "after": text,
                       "before_header": manifest_path, "after_header": manifest_path}
    module.exit_json(changed=changed, **out)


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["present", "check"], "default": "present"},
            "manifest": {"type": "str", "default": "SHA256SUMS"},
            "include": {"type": "list", "elements": "str", "default": []},
            "exclude": {"type": "list", "elements": "str", "default": []},
            "workers": {"type": "int", "default": 2},
            "cache": {"type": "bool", "default": True},
            "verify": {"type": "str", "choices": ["cached", "full"], "default": "cached"},
        },
        supports_check_mode=True,
    )
    run_module(module)


if __name__ == "__main__":
    main()
