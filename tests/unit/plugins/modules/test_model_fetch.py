# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""model_fetch as Ansible runs it, with the network seam (HttpFetcher.request) answered by MemorySite."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.onprem.deepseek.plugins.module_utils import _fetch, _manifest
from ansible_collections.onprem.deepseek.plugins.modules import model_fetch
from ansible_collections.onprem.deepseek.tests.unit.plugins.module_utils.fetch_double import (
    BASE,
    COMMIT,
    REPO,
    MemoryFetcher,
    MemorySite,
)

FILES = {
    "config.json": b'{"model_type": "deepseek_v3"}\n',
    "model-00001-of-00002.safetensors": bytes(range(256)) * 40,
    "model-00002-of-00002.safetensors": b"\x01\x02" * 3000,
    "tokenizer/tokenizer.json": b'{"version": "1.0", "pad": "' + b"x" * 200 + b'"}',
}

SOURCES = {
    "http": {"source": "http", "url": BASE + "/mirror/", "name": REPO},
    "huggingface": {"source": "huggingface", "endpoint": BASE, "repo_id": REPO},
    "modelscope": {"source": "modelscope", "endpoint": BASE, "repo_id": REPO},
}


@pytest.fixture
def site(monkeypatch):
    the_site = MemorySite(FILES)
    monkeypatch.setattr(model_fetch, "make_fetcher", lambda module: MemoryFetcher(
        the_site, retries=module.params["retries"], bandwidth=module.params["bandwidth_limit"]))
    return the_site


def run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        model_fetch.main()
    out = capsys.readouterr().out
    return exited.value.code, json.loads(out), out


def tree_digests(path):
    found = {}
    for rel in _manifest.walk_tree(path):
        with open(os.path.join(path, rel), "rb") as handle:
            found[rel] = hashlib.sha256(handle.read()).hexdigest()
    return found


def expected_digests():
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in FILES.items()}


def local_source(tmp_path):
    src = tmp_path / "medium"
    for rel, data in FILES.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    (src / "SHA256SUMS").write_text(_manifest.format_manifest(expected_digests()))
    return {"source": "local", "src": str(src), "name": REPO, "revision": "r1"}


@pytest.mark.parametrize("source", ["http", "huggingface", "modelscope", "local"])
def test_quartet(capsys, site, tmp_path, source):
    store = tmp_path / "store"
    args = dict(local_source(tmp_path) if source == "local" else SOURCES[source], store=str(store))

    code, check, _err = run(capsys, dict(args, _ansible_check_mode=True))
    assert code == 0 and check["changed"] is True
    assert sorted(check["fetched"]) == sorted(FILES)
    assert not store.exists() or not any(store.rglob("*.safetensors"))

    code, apply, _err = run(capsys, args)
    assert code == 0 and apply["changed"] is True
    version = apply["path"]
    assert tree_digests(version) == expected_digests()
    assert os.readlink(store / REPO / "current") == os.path.basename(version)
    assert _manifest.parse_manifest((store / REPO / "current" / "SHA256SUMS").read_text()) == expected_digests()
    written = (store / REPO / "current" / "SHA256SUMS").read_bytes()
    assert apply["manifest_sha256"] == hashlib.sha256(written).hexdigest()
    if source == "huggingface":
        assert apply["revision"] == COMMIT
    if source != "local":
        assert sum(site.sent.values()) == sum(len(d) for d in FILES.values())

    code, again, _err = run(capsys, args)
    assert code == 0 and again["changed"] is False
    assert again["fetched"] == [] and again["hashed"] == 0 and again["bytes_transferred"] == 0

    code, again_check, _err = run(capsys, dict(args, _ansible_check_mode=True))
    assert code == 0 and again_check["changed"] is False and again_check["fetched"] == []


def test_cache_touch_rehashes_only_that_file_and_full_rehashes_all(capsys, site, tmp_path):
    args = dict(SOURCES["http"], store=str(tmp_path))
    _code, first, _err = run(capsys, args)
    shard = os.path.join(first["path"], "model-00002-of-00002.safetensors")
    st = os.stat(shard)
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    _code, touched, _err = run(capsys, args)
    assert touched["changed"] is False and touched["hashed"] == 1 and touched["fetched"] == []

    _code, cached, _err = run(capsys, args)
    assert cached["hashed"] == 0

    _code, full, _err = run(capsys, dict(args, verify="full"))
    assert full["changed"] is False and full["hashed"] == len(FILES)


def test_bad_file_on_disk_is_removed_and_fetched_again(capsys, site, tmp_path):
    args = dict(SOURCES["huggingface"], store=str(tmp_path))
    _code, first, _err = run(capsys, args)
    shard = os.path.join(first["path"], "model-00001-of-00002.safetensors")
    with open(shard, "r+b") as handle:
        handle.write(b"\xff")
    os.utime(shard, ns=(1, 1))
    _code, second, _err = run(capsys, args)
    assert second["changed"] is True
    assert second["removed_bad"] == ["model-00001-of-00002.safetensors"]
    assert second["fetched"] == ["model-00001-of-00002.safetensors"]
    assert tree_digests(first["path"]) == expected_digests()


@pytest.mark.parametrize("fault, sent_factor", [
    (None, "rest"),           # Range honoured: only the missing bytes travel
    ("ignore_range", "all"),  # 200 to a ranged request: restart from zero, hash restarts too
    ("bad_range", "all"),     # 206 whose Content-Range does not start at the offset: restart
])
def test_resume_partial(capsys, site, tmp_path, fault, sent_factor):
    rel = "model-00001-of-00002.safetensors"
    data = FILES[rel]
    args = dict(SOURCES["http"], store=str(tmp_path), include=[rel])
    _code, check, _err = run(capsys, dict(args, _ansible_check_mode=True))
    version = check["path"]
    os.makedirs(version)
    half = len(data) // 2
    # the partial holds garbage-free real bytes of the first half, as a killed run leaves it
    with open(os.path.join(version, rel + ".partial"), "wb") as handle:
        handle.write(data[:half])
    if fault:
        site.faults[rel].append(fault)
    code, result, _err = run(capsys, args)
    assert code == 0 and result["changed"] is True
    want = len(data) - half if sent_factor == "rest" else len(data) + (len(data) - half if fault == "bad_range" else 0)
    assert site.sent[rel] == want
    assert tree_digests(version) == {rel: hashlib.sha256(data).hexdigest()}
    assert not os.path.exists(os.path.join(version, rel + ".partial"))


@pytest.mark.parametrize("fault, ok", [
    (["error500"], True),               # one 5xx, then success
    (["corrupt"], True),                # one bad body: deleted, fetched again, verified
    (["corrupt", "corrupt"], False),    # the source keeps serving other bytes: fail, name the file
    (["error500"] * 3, False),          # retries run out
])
def test_server_faults(capsys, site, tmp_path, fault, ok):
    rel = "model-00002-of-00002.safetensors"
    site.faults[rel].extend(fault)
    args = dict(SOURCES["modelscope"], store=str(tmp_path), retries=2)
    code, result, _err = run(capsys, args)
    final = tmp_path / REPO / "master" / rel
    if ok:
        assert code == 0
        assert tree_digests(result["path"]) == expected_digests()
    else:
        assert code == 1 and result["failed"] is True
        assert rel in result["msg"] and rel in result["failed_files"]
        assert "run again" in result["msg"]
        assert not final.exists()
        assert not (tmp_path / REPO / "current").exists()
        site.faults.clear()
        code, again, _err = run(capsys, args)
        assert code == 0 and again["fetched"] == [rel]
        assert tree_digests(again["path"]) == expected_digests()


@pytest.mark.parametrize("line", [
    "{sha}  /etc/passwd",
    "{sha}  ../outside",
    "{sha}  models/../../outside",
    "{sha}  dir\\file",
    "not-a-digest  file",
])
def test_manifest_path_refused(capsys, site, tmp_path, line):
    site.manifest_text = line.format(sha="a" * 64) + "\n"
    code, result, _err = run(capsys, dict(SOURCES["http"], store=str(tmp_path)))
    assert code == 1
    assert result["msg"].startswith("cannot list the model: SHA256SUMS line 1")
    assert not any(tmp_path.rglob("*"))


def test_local_source_link_out_of_tree_refused(capsys, tmp_path):
    args = local_source(tmp_path)
    outside = tmp_path / "secret"
    outside.write_bytes(b"secret")
    link = tmp_path / "medium" / "leak.bin"
    link.symlink_to(outside)
    manifest = tmp_path / "medium" / "SHA256SUMS"
    manifest.write_text(manifest.read_text() + f"{hashlib.sha256(b'secret').hexdigest()}  leak.bin\n")
    code, result, _err = run(capsys, dict(args, store=str(tmp_path / "store")))
    assert code == 1
    assert "leak.bin resolves to" in result["msg"] and "links out of the tree are refused" in result["msg"]


def test_pinned_manifest_mismatch_refused(capsys, site, tmp_path):
    code, result, _err = run(capsys, dict(SOURCES["http"], store=str(tmp_path), manifest_sha256="0" * 64))
    assert code == 1
    assert "does not serve the manifest you pinned" in result["msg"]


def test_include_exclude(capsys, site, tmp_path):
    args = dict(SOURCES["huggingface"], store=str(tmp_path), include=["*.safetensors", "*.json"],
                exclude=["model-00002-*"])
    code, result, _err = run(capsys, args)
    assert code == 0
    assert sorted(tree_digests(result["path"])) == [
        "config.json", "model-00001-of-00002.safetensors", "tokenizer/tokenizer.json"]
    code, none_left, _err = run(capsys, dict(args, include=["*.bin"]))
    assert code == 1 and "select none of them" in none_left["msg"]


def test_hf_pagination_and_git_blob_check(site):
    """Small git files carry only the blob SHA-1; LFS files carry SHA-256; the Link header pages through."""
    fetcher = MemoryFetcher(site)
    files, commit = _fetch.list_huggingface(fetcher, BASE, REPO, "main")
    assert commit == COMMIT
    by_path = {f["path"]: f for f in files}
    assert sorted(by_path) == sorted(FILES)
    assert by_path["config.json"]["sha256"] is None
    assert by_path["config.json"]["git_sha1"] == hashlib.sha1(
        b"blob %d\x00" % len(FILES["config.json"]) + FILES["config.json"]).hexdigest()
    shard = "model-00001-of-00002.safetensors"
    assert by_path[shard]["sha256"] == expected_digests()[shard]
    tree_calls = [url for _m, url, _r in site.requests if "/tree/" in url]
    assert len(tree_calls) == 2  # 4 files, page size 2


def test_keep_and_rollback(capsys, site, tmp_path):
    store = tmp_path / "store"
    base = dict(SOURCES["http"], store=str(store), keep=2)
    for revision in ("r1", "r2", "r3"):
        code, result, _err = run(capsys, dict(base, revision=revision))
        assert code == 0
    assert result["removed_versions"] == ["r1"]
    assert sorted(p.name for p in (store / REPO).iterdir() if not p.name.startswith(".")) == ["current", "r2", "r3"]

    rollback = {"state": "rollback", "store": str(store), "name": REPO}
    code, checked, _err = run(capsys, dict(rollback, _ansible_check_mode=True))
    assert code == 0 and checked["changed"] is True and checked["revision"] == "r2"
    assert os.readlink(store / REPO / "current") == "r3"

    code, rolled, _err = run(capsys, dict(rollback, _ansible_diff=True))
    assert code == 0 and rolled["changed"] is True
    assert rolled["diff"] == {"before": {"current": "r3"}, "after": {"current": "r2"}}
    assert os.readlink(store / REPO / "current") == "r2"
    assert tree_digests(store / REPO / "current") == expected_digests()

    code, _back, _err = run(capsys, rollback)
    assert code == 0 and os.readlink(store / REPO / "current") == "r3"


def test_rollback_without_earlier_version_fails(capsys, site, tmp_path):
    run(capsys, dict(SOURCES["http"], store=str(tmp_path), revision="only"))
    code, result, _err = run(capsys, {"state": "rollback", "store": str(tmp_path), "name": REPO})
    assert code == 1 and "no earlier version" in result["msg"]


def test_rollback_refuses_a_version_that_does_not_verify(capsys, site, tmp_path):
    base = dict(SOURCES["http"], store=str(tmp_path))
    run(capsys, dict(base, revision="r1"))
    run(capsys, dict(base, revision="r2"))
    shard = tmp_path / REPO / "r1" / "model-00002-of-00002.safetensors"
    shard.write_bytes(b"tampered")
    code, result, _err = run(capsys, {"state": "rollback", "store": str(tmp_path), "name": REPO})
    assert code == 1 and "cannot roll back to r1" in result["msg"]
    assert os.readlink(tmp_path / REPO / "current") == "r2"


def test_disk_space_check(capsys, site, tmp_path):
    code, result, _err = run(capsys, dict(SOURCES["http"], store=str(tmp_path), space_reserve=2 ** 60))
    assert code == 1 and result["msg"].startswith("not enough space under ")
    assert not any(tmp_path.rglob("*.safetensors*"))


def test_token_never_printed(capsys, site, tmp_path):
    token = "hf_SECRETtoken123"
    code, result, out = run(capsys, dict(SOURCES["huggingface"], store=str(tmp_path), token=token,
                                         repo_id="deepseek-ai/Missing", name=REPO))
    assert code == 1 and "HTTP 404" in result["msg"]
    assert token not in out


def test_progress_file(capsys, site, tmp_path):
    progress = tmp_path / "progress.json"
    code, _result, _err = run(capsys, dict(SOURCES["http"], store=str(tmp_path / "s"), progress_file=str(progress)))
    snapshot = json.loads(progress.read_text())
    assert code == 0
    assert snapshot["files_done"] == snapshot["files_total"] == len(FILES)
    assert snapshot["bytes_done"] == snapshot["bytes_total"] == sum(len(d) for d in FILES.values())


def versions_on_disk(root):
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


def history(root):
    return json.loads((root / ".model_fetch_history.json").read_text())["versions"]


def test_stage_with_activate_false_then_switch_quartets(capsys, site, tmp_path):
    root = tmp_path / REPO
    base = dict(SOURCES["http"], store=str(tmp_path), keep=1)
    code, _first, _err = run(capsys, dict(base, revision="r1"))
    assert code == 0 and os.readlink(root / "current") == "r1"

    stage = dict(base, revision="r2", activate=False)
    outcomes = []
    for check in (True, False, False, True):
        code, result, _err = run(capsys, dict(stage, _ansible_check_mode=check))
        assert code == 0, result
        outcomes.append((result["changed"], result["activated"], result["previous"]))
        assert os.readlink(root / "current") == "r1"
    assert outcomes == [(True, False, "r1"), (True, False, "r1"), (False, False, "r1"), (False, False, "r1")]
    # staged: verified with its own SHA256SUMS, not in the history, and keep=1 did not prune the version in use
    assert versions_on_disk(root) == ["current", "r1", "r2"]
    assert history(root) == ["r1"]
    assert tree_digests(root / "r2") == expected_digests()

    switch = {"state": "switch", "store": str(tmp_path), "name": REPO, "revision": "r2", "keep": 1}
    switched = []
    for check in (True, False, False, True):
        code, result, _err = run(capsys, dict(switch, _ansible_check_mode=check, _ansible_diff=True))
        assert code == 0, result
        switched.append((result["changed"], result["previous"], result.get("diff")))
        if check and not switched[:-1]:
            assert os.readlink(root / "current") == "r1"
    diff = {"before": {"current": "r1"}, "after": {"current": "r2"}}
    assert switched == [(True, "r1", diff), (True, "r1", diff), (False, "r2", None), (False, "r2", None)]
    assert os.readlink(root / "current") == "r2"
    assert history(root) == ["r2"]
    assert versions_on_disk(root) == ["current", "r2"]  # keep=1 prunes r1 once r2 is current


def test_switch_then_rollback_returns_to_the_version_served_before(capsys, site, tmp_path):
    root = tmp_path / REPO
    base = dict(SOURCES["http"], store=str(tmp_path))
    run(capsys, dict(base, revision="r1"))
    run(capsys, dict(base, revision="r2", activate=False))
    code, _result, _err = run(capsys, {"state": "switch", "store": str(tmp_path), "name": REPO, "revision": "r2"})
    assert code == 0 and history(root) == ["r1", "r2"]

    code, checked, _err = run(capsys, {"state": "rollback", "store": str(tmp_path), "name": REPO,
                                       "_ansible_check_mode": True})
    assert code == 0 and checked["revision"] == "r1" and checked["previous"] == "r2"
    assert os.readlink(root / "current") == "r2"
    code, rolled, _err = run(capsys, {"state": "rollback", "store": str(tmp_path), "name": REPO})
    assert code == 0 and rolled["revision"] == "r1" and os.readlink(root / "current") == "r1"
    # switching to the version already current changes nothing
    code, again, _err = run(capsys, {"state": "switch", "store": str(tmp_path), "name": REPO, "revision": "r1"})
    assert code == 0 and again["changed"] is False


@pytest.mark.parametrize("revision, damage, message", [
    ("r9", None, "is not a version directory"),
    ("r2", "model-00002-of-00002.safetensors", "cannot switch to r2: it does not verify"),
    ("current", None, "needs revision set to the name of a version directory"),
    ("../r1", None, "needs revision set to the name of a version directory"),
])
def test_switch_refuses_what_is_not_a_verified_version(capsys, site, tmp_path, revision, damage, message):
    root = tmp_path / REPO
    base = dict(SOURCES["http"], store=str(tmp_path))
    run(capsys, dict(base, revision="r1"))
    run(capsys, dict(base, revision="r2", activate=False))
    if damage:
        (root / "r2" / damage).write_bytes(b"tampered")
    code, result, _err = run(capsys, {"state": "switch", "store": str(tmp_path), "name": REPO, "revision": revision})
    assert code == 1 and message in result["msg"], result["msg"]
    assert os.readlink(root / "current") == "r1"
    assert history(root) == ["r1"]
