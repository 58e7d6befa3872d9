# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""model_fetch over real sockets against tests/integration/fetch_server.py, which injects faults.

For every fault: the tree is either fully verified or the module fails naming the file; no file with
wrong bytes ever sits under a final name; a run after the fault is gone completes. And a fetch killed
with SIGKILL half-way through a 1 GiB file resumes with at most 5 % more bytes than were missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.onprem.deepseek.plugins.modules import model_fetch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_server import MIB, FetchServer

REPO = "deepseek-ai/Tiny"
BIG = "model-00001-of-00002.safetensors"
SMALL = "model-00002-of-00002.safetensors"
# the directory that holds ansible_collections/, as the module was imported (for the subprocess)
COLLECTIONS = str(Path(model_fetch.__file__).parents[5])


@pytest.fixture
def server():
    with FetchServer(repo=REPO, page_size=2) as srv:
        srv.add("config.json", b'{"model_type": "deepseek_v3", "num_hidden_layers": 61}\n')
        srv.add_generated(BIG, 6 * MIB + 12345, seed=1)
        srv.add_generated(SMALL, 2 * MIB + 7, seed=2)
        srv.add("tokenizer/tokenizer_config.json", b'{"add_bos_token": true}\n')
        yield srv


def source_args(srv, source, store):
    common = {"store": str(store), "timeout": 1, "retries": 2, "backoff": 0.05, "workers": 2, "block_size": MIB}
    if source == "http":
        return dict(common, source="http", url=srv.url + "/mirror/", name=REPO)
    return dict(common, source="huggingface", endpoint=srv.url, repo_id=REPO)


def free_port():
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        model_fetch.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(8 * MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def assert_no_corrupt_final_file(store, truth):
    """Every file under a final name in every version directory has the right bytes."""
    model = Path(store) / REPO
    if not model.exists():
        return
    for version in model.iterdir():
        if version.name.startswith(".") or version.is_symlink() or not version.is_dir():
            continue
        for path in version.rglob("*"):
            rel = path.relative_to(version).as_posix()
            if rel in truth:
                assert sha256_file(path) == truth[rel], f"{rel} is under its final name with wrong bytes"


def assert_verified(result, truth):
    current = Path(result["current"])
    assert current.is_symlink() and current.resolve() == Path(result["path"]).resolve()
    found = {rel: sha256_file(current / rel) for rel in truth}
    assert found == truth


# (fault, options, times, which source, whether retries can get through)
FAULTS = [
    ("drop", {"at": MIB + 100}, 1, "huggingface", True),
    ("drop", {"at": MIB + 100}, -1, "http", False),
    ("corrupt", {"at": 3 * MIB}, 1, "http", True),
    ("corrupt", {"at": 3 * MIB}, -1, "huggingface", False),
    ("truncate", {"at": 2 * MIB}, 1, "huggingface", True),
    ("truncate", {"at": 2 * MIB}, -1, "http", False),
    ("error500", {}, 1, "http", True),
    ("error500", {}, -1, "huggingface", False),
    ("notfound", {}, 1, "huggingface", False),
    ("bad_length", {"delta": 4096}, 1, "http", True),
    ("bad_length", {"delta": 4096}, -1, "huggingface", False),
    ("slow", {"delay": 2.5}, 1, "huggingface", True),
]


@pytest.mark.parametrize("fault, options, times, source, recovers", FAULTS,
                         ids=[f"{f[0]}-{'once' if f[2] == 1 else 'always'}-{f[3]}" for f in FAULTS])
def test_fault(capsys, server, tmp_path, fault, options, times, source, recovers):
    truth = server.truth()
    server.fault(BIG, fault, times=times, **options)
    args = source_args(server, source, tmp_path)
    code, result = run(capsys, args)
    assert_no_corrupt_final_file(tmp_path, truth)
    if recovers:
        assert code == 0, result.get("msg")
        assert result["changed"] is True
        assert_verified(result, truth)
    else:
        assert code == 1
        assert BIG in result["msg"] and BIG in result["failed_files"]
        assert "run again" in result["msg"]
        assert not (tmp_path / REPO / "current").exists()
        assert not (Path(result["path"]) / BIG).exists()
        # the other files completed and stay; only the failed one is fetched on the next run
        assert sorted(result["fetched"]) == sorted(rel for rel in truth if rel != BIG)
    server.clear_faults()
    server.reset_counts()
    code, again = run(capsys, args)
    assert code == 0, again.get("msg")
    assert_verified(again, truth)
    assert again["fetched"] == ([] if recovers else [BIG])
    assert again["changed"] is (not recovers)
    assert_no_corrupt_final_file(tmp_path, truth)


def test_drop_then_ignored_range_restarts_and_verifies(capsys, server, tmp_path):
    """A dropped connection leaves a partial; the server then ignores Range: the file restarts from zero."""
    truth = server.truth()
    server.fault(BIG, "drop", at=2 * MIB)
    server.fault(BIG, "ignore_range")
    code, result = run(capsys, source_args(server, "huggingface", tmp_path))
    assert code == 0, result.get("msg")
    assert_verified(result, truth)
    ranged = [r for r in server.requests if r[0] == "GET" and BIG in r[1] and r[2]]
    assert ranged and ranged[0][2] == f"bytes={2 * MIB}-"
    assert server.sent[BIG] == 2 * MIB + server.files[BIG].size


def test_resume_sends_only_the_missing_bytes(capsys, server, tmp_path):
    server.fault(BIG, "drop", at=4 * MIB)
    code, result = run(capsys, source_args(server, "http", tmp_path))
    assert code == 0, result.get("msg")
    assert server.sent[BIG] == server.files[BIG].size  # 4 MiB, then exactly the rest
    assert_verified(result, server.truth())


def test_token_sent_and_never_printed(capsys, server, tmp_path):
    token = "hf_integration_SECRET_42"
    args = dict(source_args(server, "huggingface", tmp_path), token=token)
    server.fault(BIG, "notfound")
    with patch_module_args(args), pytest.raises(SystemExit):
        model_fetch.main()
    out = capsys.readouterr().out
    assert "HTTP 404" in out and token not in out
    assert all(auth == f"Bearer {token}" for _cmd, _path, _range, auth in server.requests)


def test_fanout_peer_fetches_from_a_seed_with_a_pinned_manifest(capsys, server, tmp_path):
    """The seed's verified tree, served by python3 -m http.server as the role does, feeds a peer."""
    code, seed = run(capsys, source_args(server, "huggingface", tmp_path / "seed"))
    assert code == 0
    proc = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1",
                             "--directory", seed["path"]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        port = int(line.split("port ")[1].split()[0])
        peer_args = {"source": "http", "url": f"http://127.0.0.1:{port}/", "name": REPO, "revision": seed["revision"],
                     "manifest_sha256": seed["manifest_sha256"], "store": str(tmp_path / "peer"),
                     "bandwidth_limit": 64 * MIB, "retries": 1, "backoff": 0.05}
        code, peer = run(capsys, peer_args)
        assert code == 0, peer.get("msg")
        assert_verified(peer, server.truth())
        assert peer["manifest_sha256"] == seed["manifest_sha256"]
        code, pinned = run(capsys, dict(peer_args, manifest_sha256="f" * 64, store=str(tmp_path / "peer2")))
        assert code == 1 and "pinned" in pinned["msg"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_kill_9_half_way_then_resume(server, tmp_path):
    """SIGKILL during a 1 GiB file, run again: the server sends at most 1.05 x the missing bytes."""
    size = 1024 * MIB
    free = shutil.disk_usage(tmp_path).free
    if free < 3 * size:
        pytest.skip(f"needs {3 * size >> 20} MiB free under {tmp_path}, has {free >> 20} MiB")
    huge = "model-00001-of-00001.safetensors"
    server.files.clear()
    server.add("config.json", b'{"model_type": "deepseek_v3"}\n')
    blob = server.add_generated(huge, size, seed=7)
    truth = server.truth()
    server.fault(huge, "pause", at=size // 2, timeout=60)
    args_file = tmp_path / "args.json"
    args = {"source": "huggingface", "endpoint": server.url, "repo_id": REPO, "store": str(tmp_path / "store"),
            "timeout": 30, "retries": 1, "backoff": 0.1}
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=COLLECTIONS + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "ansible_collections.onprem.deepseek.plugins.modules.model_fetch", str(args_file)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert server.paused.wait(120), "the fetch never reached the middle of the file"
        partial = next((tmp_path / "store").rglob(huge + ".partial"))
        deadline = time.monotonic() + 20
        last = -1
        while time.monotonic() < deadline:  # wait until the client has written what the socket delivered
            now = partial.stat().st_size
            if now == last:
                break
            last = now
            time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.release()
    assert proc.returncode == -signal.SIGKILL
    assert not (partial.parent / huge).exists()
    have = partial.stat().st_size
    assert size // 4 < have <= size // 2
    missing = size - have
    server.reset_counts()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    result = json.loads(rerun.stdout)
    assert rerun.returncode == 0, result.get("msg")
    assert server.sent[huge] <= 1.05 * missing, (server.sent[huge], missing)
    assert server.sent[huge] >= missing
    assert result["fetched"] == [huge] and result["changed"] is True
    assert sha256_file(Path(result["path"]) / huge) == truth[huge] == blob.sha256()
    assert not partial.exists()
    print(f"kill -9 at {have} of {size} bytes; second run sent {server.sent[huge]} for {missing} missing "
          f"({server.sent[huge] / missing:.4f}x)")


def test_role_fans_out_from_seed_to_peer_and_is_idempotent(server, tmp_path):
    """playbooks/model_fetch.yml on two local hosts: the seed fetches from the HF-compatible server,
    serves its verified tree, the peer fetches from the seed; the second run changes nothing."""
    root = Path(__file__).resolve().parents[2]
    port = free_port()
    inventory = tmp_path / "hosts.yml"
    hosts = {name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                    "ansible_become": False, "model_fetch_store": str(tmp_path / name)}
             for name in ("seed", "peer")}
    inventory.write_text(json.dumps({"all": {"children": {"gpu_nodes": {"hosts": hosts}}, "vars": {
        "model_fetch_source": "huggingface", "model_fetch_endpoint": server.url, "model_fetch_repo_id": REPO,
        "model_fetch_seed_address": "127.0.0.1", "model_fetch_seed_port": port,
        "model_fetch_progress_interval": 2, "model_fetch_space_reserve": 0,
        "model_fetch_fanout_bandwidth_limit": 256 * MIB}}}))
    # One async job directory for the job and its status checks, whatever HOME the test runs under
    # (become on a local connection may otherwise expand ~ to two different homes).
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_CONFIG=str(root / "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_ASYNC_DIR=str(tmp_path / "async"))
    playbook = shutil.which("ansible-playbook", path=os.path.dirname(sys.executable)) or "ansible-playbook"
    cmd = [playbook, "-i", str(inventory), str(root / "playbooks" / "model_fetch.yml")]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    for name in ("seed", "peer"):
        current = tmp_path / name / REPO / "current"
        assert {rel: sha256_file(current / rel) for rel in server.truth()} == server.truth()
    peer_requests = [r for r in server.requests if r[0] == "GET" and BIG in r[1]]
    assert len(peer_requests) == 1  # the source served the big file once: to the seed only
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stdout[-4000:]
    recap = [line for line in second.stdout.splitlines() if line.startswith(("seed ", "peer "))]
    assert len(recap) == 2 and all("changed=0" in line and "failed=0" in line for line in recap), recap
