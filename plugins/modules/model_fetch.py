# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_fetch
short_description: Download a model tree, verify every file's SHA-256, keep versions and a current link
description:
  - Fetches the files of a model from a plain mirror (V(http)), a Hugging Face-compatible endpoint
    (V(huggingface)), ModelScope (V(modelscope)) or a local directory (V(local)) into
    C(<store>/<org>/<model>/<revision>/), verifies each file against a trusted digest, and points
    C(<store>/<org>/<model>/current) at that directory only once every file is verified.
  - Several files download at once; SHA-256 is computed while the bytes stream in. Each file is written
    to C(<name>.partial) next to its final name, resumed with HTTP C(Range) after any interruption
    (a killed process included), fsynced, verified, then renamed. A file that fails verification is
    deleted and never appears under its final name; the error lists every bad file and what to do.
  - A verified-state cache (C(.model_fetch_state.json) in the version directory) records size, mtime,
    inode and SHA-256 of every verified file, so a run on an unchanged tree reads no file and reports
    C(changed=false). O(verify=full) hashes every file again.
  - The version directory also gets a C(SHA256SUMS) of every file, so it can be served to other nodes
    (source V(http)) or copied to removable media (source V(local)).
  - O(state=rollback) points C(current) back at the previous verified version.
  - O(activate=false) fetches and verifies a new version next to the one in use without switching C(current),
    and O(state=switch) switches C(current) to such a staged version later (node by node, once each node is
    drained from the gateway).
  - C(.model_fetch_history.json) in the model directory records the order in which versions became current;
    O(state=rollback) and O(keep) read it.
author:
  - onprem.deepseek maintainers (@onprem)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Lists the files that would be fetched and their size; checks existing files (cache permitting).
  diff_mode:
    support: partial
    details: Shows the target of the C(current) link before and after.
  platform:
    platforms: posix
options:
  state:
    description:
      - V(present) fetches and verifies the model and switches C(current) to it.
      - V(rollback) switches C(current) back to the version that was current before, after verifying it.
      - V(switch) points C(current) at the version directory O(revision) (fetched earlier, for example with
        O(activate=false)) after verifying it, records it in the history and prunes to O(keep). Nothing is fetched.
    type: str
    choices: [present, rollback, switch]
    default: present
  source:
    description:
      - Where the files and their digests come from.
      - V(http) is any web server with a C(SHA256SUMS) (O(manifest)) under O(url) - a mirror, or a seed
        node serving a verified tree.
      - V(huggingface) is the hub or any HF-compatible endpoint (O(endpoint)); digests come from the tree API.
      - V(modelscope) is ModelScope or a compatible endpoint; digests come from the file list API.
      - V(local) is a directory (NFS, removable medium, unpacked offline bundle) with its C(SHA256SUMS).
      - Required with O(state=present).
    type: str
    choices: [http, huggingface, modelscope, local]
  url:
    description: Base URL of the mirror for O(source=http); files are C(<url>/<relative path>).
    type: str
  endpoint:
    description:
      - API endpoint for O(source=huggingface) (default C(https://huggingface.co)) or
        O(source=modelscope) (default C(https://www.modelscope.cn)), for example an internal C(HF_ENDPOINT) mirror.
    type: str
  repo_id:
    description: Repository id (C(org/model)) for O(source=huggingface) and O(source=modelscope).
    type: str
  src:
    description: Source directory for O(source=local).
    type: path
  manifest:
    description: Name of the manifest file under O(url) or O(src).
    type: str
    default: SHA256SUMS
  manifest_sha256:
    description:
      - SHA-256 of the manifest itself for O(source=http) and O(source=local). When set, a manifest with
        other content is refused, so a mirror cannot swap the list of digests.
    type: str
  name:
    description:
      - C(org/model) under O(store). Defaults to O(repo_id); required for O(source=http) and O(source=local).
    type: str
  store:
    description: Root of the model store.
    type: path
    required: true
  revision:
    description:
      - Revision to fetch. For V(huggingface) a branch, tag or commit (default V(main)), resolved to its commit
        id where the endpoint says it, and that id names the version directory. For V(modelscope) default V(master).
      - For V(http) and V(local), the name of the version directory; by default C(sha256-<first 12 hex digits>)
        of the manifest, so a changed manifest is a new version.
      - With O(state=switch), the name of the version directory to make current (required).
    type: str
  activate:
    description:
      - With O(state=present), switch C(current) to the fetched version once it verified, record it in the history
        and prune old versions to O(keep).
      - V(false) leaves C(current), the history and the other versions as they are; the verified version waits
        under its directory until O(state=switch) makes it current.
    type: bool
    default: true
  include:
    description: Glob patterns (on the relative path); only matching files are fetched. Empty means all.
    type: list
    elements: str
    default: []
  exclude:
    description: Glob patterns of files to leave out.
    type: list
    elements: str
    default: []
  token:
    description: Bearer token for the endpoint. Never logged, never sent to another host after a redirect.
    type: str
  ca_path:
    description: CA bundle (PEM) that signed the endpoint's certificate.
    type: path
  validate_certs:
    description: Verify TLS certificates.
    type: bool
    default: true
  proxy:
    description: HTTP(S) proxy URL; when unset the C(http_proxy)/C(https_proxy)/C(no_proxy) variables apply.
    type: str
  timeout:
    description: Seconds without progress on a connection before it counts as dropped (and is retried).
    type: int
    default: 60
  workers:
    description: Files downloaded (or hashed) at once.
    type: int
    default: 4
  retries:
    description: Retries per file after a 5xx, dropped connection, time-out or short body (exponential back-off).
    type: int
    default: 5
  backoff:
    description: First back-off delay in seconds; it doubles with each retry, up to 30 s.
    type: float
    default: 1.0
  verify:
    description:
      - V(cached) trusts a file whose size, mtime and inode match the verified-state cache.
      - V(full) hashes every file again.
    type: str
    choices: [cached, full]
    default: cached
  bandwidth_limit:
    description: Cap in bytes per second for all downloads of this run together; V(0) is no cap.
    type: int
    default: 0
  block_size:
    description: Block in bytes for hashing files on disk (clamped to 1-8 MiB); downloads stream in 256 KiB blocks.
    type: int
    default: 4194304
  keep:
    description:
      - Versions to keep, the current one included. Older ones are deleted only after the new one is
        verified and current.
    type: int
    default: 2
  space_reserve:
    description: Bytes that must stay free on the store's file system after the download.
    type: int
    default: 1073741824
  progress_file:
    description:
      - When set, a JSON file with files and bytes done/total, rate and ETA, rewritten about every second, for
        a play that runs this module asynchronously and reports progress while it waits.
    type: path
notes:
  - Hugging Face files kept in git rather than LFS (C(config.json), tokenizer files) have no SHA-256 in the tree
    listing. They are verified against the listing's git blob SHA-1 (C(oid), which git computes over
    C(blob <size>\\0<content>)), and their SHA-256 is computed while they download and recorded in the
    version's C(SHA256SUMS). Only the LFS files (the weights) are pinned by SHA-256 from the listing.
  - ModelScope listings carry C(Sha256) for every file. A file listed without any digest is refused.
  - For O(source=http), sizes come from C(HEAD) requests before the download (for the disk-space check).
seealso:
  - module: onprem.deepseek.model_manifest
"""

EXAMPLES = r"""
- name: Fetch DeepSeek-R1-Distill-Qwen-7B from an internal HF mirror
  onprem.deepseek.model_fetch:
    source: huggingface
    endpoint: https://hf-mirror.example.internal
    repo_id: deepseek-ai/DeepSeek-R1-Distill-Qwen-7B
    revision: main
    store: /srv/models
    token: "{{ vault_hf_token }}"
    ca_path: /etc/pki/tls/certs/internal-ca.pem
    exclude: ["*.md", "figures/*"]

- name: Fetch from a plain mirror with a pinned manifest
  onprem.deepseek.model_fetch:
    source: http
    url: https://mirror.example.internal/deepseek-ai/DeepSeek-V3/
    manifest_sha256: 0f3e...c1
    name: deepseek-ai/DeepSeek-V3
    store: /srv/models

- name: Copy from removable media (air gap)
  onprem.deepseek.model_fetch:
    source: local
    src: /media/bundle/models/deepseek-ai/DeepSeek-V3
    name: deepseek-ai/DeepSeek-V3
    revision: v3-0324
    store: /srv/models

- name: Go back to the previous version
  onprem.deepseek.model_fetch:
    state: rollback
    name: deepseek-ai/DeepSeek-V3
    store: /srv/models

- name: Stage a new version next to the one being served (current stays)
  onprem.deepseek.model_fetch:
    source: local
    src: /media/bundle/models/deepseek-ai/DeepSeek-V3
    name: deepseek-ai/DeepSeek-V3
    revision: v3-0324
    store: /srv/models
    activate: false

- name: Later, once this node is out of the gateway, serve the staged version
  onprem.deepseek.model_fetch:
    state: switch
    name: deepseek-ai/DeepSeek-V3
    revision: v3-0324
    store: /srv/models
"""

RETURN = r"""
path:
  description: The version directory.
  returned: always
  type: str
  sample: /srv/models/deepseek-ai/DeepSeek-V3/86a6b1e5c9f6a2e0c3f1d4b7e8a9c0d1e2f3a4b5
current:
  description: The C(current) link of the model.
  returned: always
  type: str
  sample: /srv/models/deepseek-ai/DeepSeek-V3/current
revision:
  description: Name of the version directory (a commit id, a revision, or C(sha256-<hex>) of the manifest).
  returned: always
  type: str
  sample: 86a6b1e5c9f6a2e0c3f1d4b7e8a9c0d1e2f3a4b5
files:
  description: Number of files in the selected tree.
  returned: when state=present
  type: int
  sample: 174
bytes_total:
  description: Size of the selected tree in bytes (files of unknown size count as 0 in check mode).
  returned: when state=present
  type: int
  sample: 688586727753
fetched:
  description: Files downloaded or copied by this run (in check mode, the ones that would be).
  returned: when state=present
  type: list
  elements: str
  sample: [model-00001-of-000163.safetensors]
bytes_transferred:
  description: Bytes received by this run, retries included.
  returned: when state=present
  type: int
  sample: 4294967296
hashed:
  description: Files read to verify them this run (zero on an unchanged tree with O(verify=cached)).
  returned: when state=present
  type: int
  sample: 0
removed_bad:
  description: Files that were present under their final name but failed verification, and were deleted.
  returned: when state=present
  type: list
  elements: str
  sample: []
removed_versions:
  description: Older version directories deleted to keep O(keep) versions.
  returned: always
  type: list
  elements: str
  sample: []
manifest_sha256:
  description:
    - SHA-256 of the C(SHA256SUMS) written into the version directory (pin it on peers with O(manifest_sha256)).
  returned: when state=present and not in check mode
  type: str
  sample: 5b1f0f0c2e8d3c9a7f6e5d4c3b2a19087f6e5d4c3b2a19087f6e5d4c3b2a1908
previous:
  description: The version C(current) pointed at before this run, if any.
  returned: always
  type: str
  sample: 0a1b2c3d4e5f60718293a4b5c6d7e8f901234567
activated:
  description:
    - Whether C(current) points at O(revision) after this run (in check mode, whether it would).
    - V(false) after O(activate=false) unless the fetched version was already current.
  returned: always
  type: bool
  sample: true
failed_files:
  description: Every file that could not be fetched and verified, with the reason.
  returned: on failure
  type: dict
  sample: {"model-00002-of-000163.safetensors": "SHA-256 ..., expected ...; the bad copy was deleted"}
"""

import hashlib
import json
import os
import re
import shutil
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.onprem.deepseek.plugins.module_utils._fetch import (
    FetchError,
    HttpFetcher,
    Progress,
    fetch_many,
    list_http,
    list_huggingface,
    list_local,
    list_modelscope,
)
from ansible_collections.onprem.deepseek.plugins.module_utils._manifest import (
    MANIFEST_NAME,
    PARTIAL_SUFFIX,
    STATE_NAME,
    ManifestError,
    StateCache,
    atomic_write,
    format_manifest,
    fsync_dir,
    parse_manifest,
    safe_relpath,
    select,
    verify_tree,
)

HISTORY_NAME = ".model_fetch_history.json"
CURRENT = "current"
DEFAULT_ENDPOINTS = {"huggingface": "https://huggingface.co", "modelscope": "https://www.modelscope.cn"}
DEFAULT_REVISIONS = {"huggingface": "main", "modelscope": "master"}
VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def model_root(module):
    name = module.params["name"] or module.params["repo_id"]
    if not name:
        module.fail_json(msg="name (org/model) is required for this source: it places the model under store")
    try:
        rel = safe_relpath(name)
    except ManifestError as exc:
        module.fail_json(msg=f"name {name!r} cannot be used under store: {exc}")
    return os.path.join(module.params["store"], *rel.split("/"))


def read_history(root):
    try:
        with open(os.path.join(root, HISTORY_NAME), encoding="utf-8") as handle:
            data = json.load(handle)
        versions = data.get("versions", []) if isinstance(data, dict) else []
        return [v for v in versions if isinstance(v, str)]
    except (OSError, ValueError):
        return []


def write_history(root, versions):
    atomic_write(os.path.join(root, HISTORY_NAME), json.dumps({"versions": versions}, indent=1))


def current_target(root):
    link = os.path.join(root, CURRENT)
    if os.path.islink(link):
        return os.path.basename(os.readlink(link).rstrip("/"))
    return None


def switch_current(root, version):
    """Point <root>/current at <version> atomically (a new link renamed over the old one)."""
    link = os.path.join(root, CURRENT)
    tmp = os.path.join(root, f".{CURRENT}.{os.getpid()}.tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(version, tmp)
    os.replace(tmp, link)
    fsync_dir(root)


def version_name(module, source, listed_revision, manifest_digest):
    wanted = module.params["revision"]
    if source == "huggingface":
        name = listed_revision or wanted or DEFAULT_REVISIONS[source]
    elif source == "modelscope":
        name = wanted or DEFAULT_REVISIONS[source]
    else:
        name = wanted or f"sha256-{manifest_digest[:12]}"
    if not VERSION_NAME.match(name) or name == CURRENT:
        module.fail_json(msg=f"revision {name!r} cannot name a directory: use letters, digits, '.', '_', '+', '-'")
    return name


def make_fetcher(module):
    p = module.params
    return HttpFetcher(timeout=p["timeout"], ca_path=p["ca_path"], proxy=p["proxy"], token=p["token"],
                       validate_certs=p["validate_certs"], retries=p["retries"], backoff=p["backoff"],
                       block_size=p["block_size"], bandwidth=p["bandwidth_limit"])


def list_source(module, fetcher):
    """Return (files, version directory name) for the configured source."""
    p = module.params
    source = p["source"]
    needs = {"http": ["url"], "local": ["src"], "huggingface": ["repo_id"], "modelscope": ["repo_id"]}[source]
    missing = [key for key in needs if not p[key]]
    if missing:
        module.fail_json(msg=f"source={source} needs {', '.join(missing)}")
    digest, listed = None, None
    if source == "http":
        files, digest = list_http(fetcher, p["url"], p["manifest"], p["manifest_sha256"])
    elif source == "local":
        if not os.path.isdir(p["src"]):
            module.fail_json(msg=f"src {p['src']} is not a directory: mount the medium or unpack the bundle first")
        files, digest = list_local(p["src"], p["manifest"], p["manifest_sha256"])
    elif source == "huggingface":
        endpoint = p["endpoint"] or DEFAULT_ENDPOINTS[source]
        files, listed = list_huggingface(fetcher, endpoint, p["repo_id"], p["revision"] or DEFAULT_REVISIONS[source])
    else:
        endpoint = p["endpoint"] or DEFAULT_ENDPOINTS[source]
        files, _none = list_modelscope(fetcher, endpoint, p["repo_id"], p["revision"] or DEFAULT_REVISIONS[source])
    return files, version_name(module, source, listed, digest)


def choose(module, files):
    p = module.params
    by_path = {f["path"]: f for f in files}
    kept = select(sorted(by_path), p["include"], p["exclude"])
    kept = [rel for rel in kept if rel not in (MANIFEST_NAME, STATE_NAME) and not rel.endswith(PARTIAL_SUFFIX)]
    if not kept:
        module.fail_json(msg=f"no file left to fetch: the source lists {len(files)} files and include={p['include']} "
                             f"exclude={p['exclude']} select none of them")
    undigested = [rel for rel in kept if not by_path[rel]["sha256"] and not by_path[rel]["git_sha1"]]
    if undigested:
        module.fail_json(msg=f"the source lists no digest for {', '.join(undigested[:10])}"
                             f"{' and more' if len(undigested) > 10 else ''}: refusing to fetch unverifiable files; "
                             "exclude them or publish a SHA256SUMS")
    return [by_path[rel] for rel in kept]


def expectations(files):
    return {f["path"]: {"sha256": f["sha256"], "git_sha1": f["git_sha1"], "size": f["size"]} for f in files}


def check_space(module, version_dir, jobs):
    need = 0
    for job in jobs:
        if job["size"] is None:
            continue
        partial = job["dest"] + PARTIAL_SUFFIX
        have = os.path.getsize(partial) if os.path.exists(partial) else 0
        need += max(job["size"] - have, 0)
    probe = version_dir
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    st = os.statvfs(probe)
    free = st.f_bavail * st.f_frsize
    reserve = module.params["space_reserve"]
    if need + reserve > free:
        module.fail_json(msg=f"not enough space under {probe}: the download needs {human(need)} plus a reserve of "
                             f"{human(reserve)}, {human(free)} is free. Free space, lower keep, or grow the volume",
                         bytes_needed=need, bytes_free=free)
    return need, free


def human(nbytes):
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def prune(root, keep, current, history):
    """Delete managed versions beyond ``keep`` (current included), oldest first; return their names."""
    managed = [d for d in os.listdir(root)
               if d != CURRENT and not d.startswith(".") and os.path.isdir(os.path.join(root, d))
               and not os.path.islink(os.path.join(root, d)) and os.path.exists(os.path.join(root, d, STATE_NAME))]
    order = {name: i for i, name in enumerate(history)}
    managed.sort(key=lambda d: (order.get(d, -1), d))
    survivors = [d for d in managed if d != current][-(max(keep, 1) - 1):] if keep > 1 else []
    removed = []
    for name in managed:
        if name == current or name in survivors:
            continue
        shutil.rmtree(os.path.join(root, name))
        removed.append(name)
    return removed


def verified_version(module, root, target, action):
    """Verify an existing version directory against its SHA256SUMS (cache permitting); return its cache."""
    target_dir = os.path.join(root, target)
    if not os.path.isdir(target_dir) or os.path.islink(target_dir):
        module.fail_json(msg=f"cannot {action} {target}: {target_dir} is not a version directory; fetch it first "
                             "with state=present and revision set")
    cache = StateCache(target_dir)
    expected = {rel: entry["sha256"] for rel, entry in cache.entries.items() if isinstance(entry, dict)}
    manifest = os.path.join(target_dir, MANIFEST_NAME)
    if os.path.exists(manifest):
        with open(manifest, encoding="utf-8") as handle:
            expected = parse_manifest(handle.read(), source=manifest)
    result = verify_tree(target_dir, expected, cache, module.params["verify"], module.params["workers"])
    bad = dict(result["bad"], **{rel: "missing" for rel in result["missing"]})
    if bad or not expected:
        module.fail_json(msg=f"cannot {action} {target}: it does not verify "
                             f"({', '.join(f'{k}: {v}' for k, v in sorted(bad.items())) or 'no manifest'}); "
                             "fetch it again with state=present and revision set", failed_files=bad)
    return cache


def do_rollback(module):
    root = model_root(module)
    current = current_target(root)
    history = [v for v in read_history(root) if os.path.isdir(os.path.join(root, v))]
    if current is None:
        module.fail_json(msg=f"{root}/current does not exist: nothing to roll back; fetch a model first")
    earlier = history[:history.index(current)] if current in history else history
    earlier = [v for v in earlier if v != current]
    if not earlier:
        module.fail_json(msg=f"no earlier version of {root} to roll back to (kept: {', '.join(history) or 'none'}); "
                             "raise keep to retain more versions", previous=current)
    target = earlier[-1]
    cache = verified_version(module, root, target, "roll back to")
    diff = {"before": {"current": current}, "after": {"current": target}}
    if not module.check_mode:
        cache.save()
        switch_current(root, target)
        # the version rolled back from stays on disk, just before the target in history, until keep prunes it
        write_history(root, [v for v in history if v not in (current, target)] + [current, target])
    extra = {"diff": diff} if module._diff else {}
    module.exit_json(changed=True, path=os.path.join(root, target), current=os.path.join(root, CURRENT),
                     revision=target, previous=current, activated=True, removed_versions=[], **extra)


def do_switch(module):
    """Point current at an existing, verified version directory (staged earlier with activate=false)."""
    root = model_root(module)
    target = module.params["revision"]
    if not target or not VERSION_NAME.match(target) or target == CURRENT:
        module.fail_json(msg=f"state=switch needs revision set to the name of a version directory under {root} "
                             f"(got {target!r})")
    current = current_target(root)
    cache = verified_version(module, root, target, "switch to")
    old_history = read_history(root)
    history = [v for v in old_history if v != target and os.path.isdir(os.path.join(root, v))] + [target]
    changed = current != target or history != old_history
    result = {"path": os.path.join(root, target), "current": os.path.join(root, CURRENT), "revision": target,
              "previous": current, "activated": True, "removed_versions": []}
    if module._diff and current != target:
        result["diff"] = {"before": {"current": current}, "after": {"current": target}}
    if module.check_mode:
        module.exit_json(changed=changed, **result)
    cache.save()
    if current != target:
        switch_current(root, target)
    if history != old_history:
        write_history(root, history)
    result["removed_versions"] = prune(root, module.params["keep"], target, history)
    if result["removed_versions"]:
        write_history(root, [v for v in history if v not in result["removed_versions"]])
    module.exit_json(changed=changed or bool(result["removed_versions"]), **result)


def write_progress(path):
    if not path:
        return None

    def report(snapshot):
        atomic_write(path, json.dumps(dict(snapshot, updated=time.time())))
    return report


def plan(module, fetcher):
    """List the source, check what is on disk; return everything the fetch needs."""
    p = module.params
    root = model_root(module)
    try:
        files, version = list_source(module, fetcher)
    except (FetchError, ManifestError) as exc:
        module.fail_json(msg=f"cannot list the model: {exc}")
    files = choose(module, files)
    version_dir = os.path.join(root, version)
    expected = expectations(files)
    cache = StateCache(version_dir)
    if os.path.isdir(version_dir):
        state = verify_tree(version_dir, expected, cache, p["verify"], p["workers"], p["block_size"])
    else:
        state = {"ok": {}, "bad": {}, "missing": sorted(expected), "hashed": [], "hashed_bytes": 0}
    by_path = {f["path"]: f for f in files}
    jobs = [dict(by_path[rel], dest=os.path.join(version_dir, *rel.split("/")))
            for rel in sorted(state["missing"]) + sorted(state["bad"])]
    for job in jobs:
        if job["size"] is None and job.get("url"):
            try:
                job["size"] = fetcher.head_size(job["url"], what=job["path"])
            except FetchError as exc:
                module.fail_json(msg=f"{job['path']}: {exc}", failed_files={job["path"]: str(exc)})
            expected[job["path"]]["size"] = job["size"]
    return {"root": root, "files": files, "version": version, "dir": version_dir, "expected": expected,
            "cache": cache, "state": state, "jobs": jobs, "previous": current_target(root)}


def finish(module, work, result):
    """Write the version's SHA256SUMS, switch current, record history, prune old versions."""
    root, version, version_dir = work["root"], work["version"], work["dir"]
    manifest_text = format_manifest(work["state"]["ok"])
    manifest_path = os.path.join(version_dir, MANIFEST_NAME)
    try:
        with open(manifest_path, encoding="utf-8") as handle:
            old_manifest = handle.read()
    except OSError:
        old_manifest = None
    if old_manifest != manifest_text:
        atomic_write(manifest_path, manifest_text)
    result["manifest_sha256"] = hashlib.sha256(manifest_text.encode("utf-8")).hexdigest()
    if not module.params["activate"]:
        # staged: current, the history and the other versions stay as they are until state=switch
        return
    old_history = read_history(root)
    history = [v for v in old_history if v != version and os.path.isdir(os.path.join(root, v))] + [version]
    if work["previous"] != version:
        switch_current(root, version)
    if history != old_history:
        write_history(root, history)
    result["removed_versions"] = prune(root, module.params["keep"], version, history)
    if result["removed_versions"]:
        write_history(root, [v for v in history if v not in result["removed_versions"]])


def do_present(module, fetcher):
    p = module.params
    work = plan(module, fetcher)
    jobs, state, cache = work["jobs"], work["state"], work["cache"]
    previous, version = work["previous"], work["version"]
    link_changes = previous != version and p["activate"]
    result = {"path": work["dir"], "current": os.path.join(work["root"], CURRENT), "revision": version,
              "files": len(work["files"]), "bytes_total": sum(f["size"] or 0 for f in work["files"]),
              "fetched": [j["path"] for j in jobs], "bytes_transferred": 0, "hashed": len(state["hashed"]),
              "removed_bad": sorted(state["bad"]), "removed_versions": [], "previous": previous,
              "activated": previous == version or p["activate"]}
    if module._diff and link_changes:
        result["diff"] = {"before": {"current": previous}, "after": {"current": version}}
    if module.check_mode:
        result["bytes_to_fetch"] = sum(j["size"] or 0 for j in jobs)
        module.exit_json(changed=bool(jobs) or link_changes, **result)

    os.makedirs(work["dir"], exist_ok=True)
    for rel in state["bad"]:
        bad_path = os.path.join(work["dir"], *rel.split("/"))
        if os.path.lexists(bad_path):
            os.unlink(bad_path)
        cache.forget(rel)
    check_space(module, work["dir"], jobs)
    progress = Progress(len(jobs), sum(j["size"] or 0 for j in jobs), write_progress(p["progress_file"]))
    done, failed = fetch_many(fetcher, jobs, p["workers"], progress)
    result["bytes_transferred"] = sum(t["transferred"] for t in done.values())
    for rel, transfer in done.items():
        st = os.stat(os.path.join(work["dir"], *rel.split("/")))
        cache.record(rel, st, transfer["sha256"], transfer.get("git_sha1"))
        state["ok"][rel] = transfer["sha256"]
    cache.prune(set(work["expected"]))
    cache.save()
    if p["progress_file"]:
        write_progress(p["progress_file"])(progress.snapshot())
    if failed:
        lines = "; ".join(f"{rel}: {why}" for rel, why in sorted(failed.items()))
        module.fail_json(msg=f"{len(failed)} of {len(work['files'])} files of {version} could not be fetched and "
                             f"verified (none of them is under its final name; current still points at {previous}): "
                             f"{lines}. Fix the cause and run again: completed files are kept and partial ones resume.",
                         failed_files=failed, **dict(result, fetched=sorted(done)))
    finish(module, work, result)
    module.exit_json(changed=bool(jobs) or link_changes or bool(result["removed_versions"]), **result)


def run_module(module, fetcher=None):
    if module.params["state"] == "rollback":
        do_rollback(module)
    if module.params["state"] == "switch":
        do_switch(module)
    do_present(module, fetcher if fetcher is not None else make_fetcher(module))


def argument_spec():
    return {
        "state": {"type": "str", "choices": ["present", "rollback", "switch"], "default": "present"},
        "source": {"type": "str", "choices": ["http", "huggingface", "modelscope", "local"]},
        "url": {"type": "str"},
        "endpoint": {"type": "str"},
        "repo_id": {"type": "str"},
        "src": {"type": "path"},
        "manifest": {"type": "str", "default": MANIFEST_NAME},
        "manifest_sha256": {"type": "str"},
        "name": {"type": "str"},
        "store": {"type": "path", "required": True},
        "revision": {"type": "str"},
        "include": {"type": "list", "elements": "str", "default": []},
        "exclude": {"type": "list", "elements": "str", "default": []},
        "token": {"type": "str", "no_log": True},
        "ca_path": {"type": "path"},
        "validate_certs": {"type": "bool", "default": True},
        "proxy": {"type": "str"},
        "timeout": {"type": "int", "default": 60},
        "workers": {"type": "int", "default": 4},
        "retries": {"type": "int", "default": 5},
        "backoff": {"type": "float", "default": 1.0},
        "verify": {"type": "str", "choices": ["cached", "full"], "default": "cached"},
        "bandwidth_limit": {"type": "int", "default": 0},
        "block_size": {"type": "int", "default": 4194304},
        "keep": {"type": "int", "default": 2},
        "activate": {"type": "bool", "default": True},
        "space_reserve": {"type": "int", "default": 1073741824},
        "progress_file": {"type": "path"},
    }


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[("state", "present", ["source"]), ("state", "switch", ["revision"])])
    run_module(module)


if __name__ == "__main__":
    main()
