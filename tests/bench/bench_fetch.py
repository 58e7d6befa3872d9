# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""model_fetch figures, printed as `BENCH <name> <value> <unit>` lines on stdout (details on stderr).

    verify_hashlib_ratio     verify_tree (one worker, no cache) MB/s ÷ a plain `hashlib.sha256` read loop, same files
    verify_parallel_speedup  verify_tree with 2 workers ÷ with 1 worker on many files
    verify_cached_s_163      model_fetch module (subprocess, as Ansible runs it) re-run on an unchanged 163-file tree
    get_url_rerun_s_163      ansible.builtin.get_url with checksum: re-run of the same 163 files via ansible-playbook
    download_curl_ratio      HttpFetcher.download MB/s ÷ curl MB/s, same file from a local nginx (both fsynced)

Every throughput runs --rounds times, interleaved, and the fastest round counts (the host is shared).
Files live in a temporary directory under --dir or $TMPDIR, removed at the end; nginx runs as this
process's child on a loopback port with a temporary configuration and is stopped at the end.

Usage: PYTHONPATH=build/collections .venv/bin/python tests/bench/bench_fetch.py [--verify-mib 1024]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ansible_collections.onprem.deepseek.plugins.module_utils import _fetch, _manifest

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def bench_line(name, value, unit):
    print(f"BENCH {name} {value:.2f} {unit}", flush=True)


def write_random(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(MIB)
    with open(path, "wb") as handle:
        left = size
        while left > 0:
            handle.write(block[:min(left, MIB)])
            left -= MIB
        handle.flush()
        os.fsync(handle.fileno())


def plain_hashlib(paths):
    """The reference: the usual loop, read 4 MiB, update, one file after the other."""
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda h=handle: h.read(4 * MIB), b""):
                digest.update(block)
        digest.hexdigest()


def timed(fn):
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def warm(paths):
    """Read the files once so every contender hashes from the page cache."""
    plain_hashlib(paths)


def bench_verify(work, total_mib, rounds):
    files = 16
    size = total_mib * MIB // files
    tree = work / "verify"
    for i in range(files):
        write_random(tree / f"model-{i:05d}-of-{files:05d}.safetensors", size)
    paths = sorted(tree.glob("*.safetensors"))
    expected = {p.name: _manifest.hash_file(p)[0] for p in paths}
    warm(paths)
    best = {"hashlib": 1e9, "ours1": 1e9, "ours2": 1e9}
    for rnd in range(rounds):
        best["hashlib"] = min(best["hashlib"], timed(lambda: plain_hashlib(paths)))
        best["ours1"] = min(best["ours1"], timed(lambda: _check(tree, expected, 1)))
        best["ours2"] = min(best["ours2"], timed(lambda: _check(tree, expected, 2)))
        log(f"round {rnd + 1}: hashlib {total_mib / best['hashlib']:.0f} MiB/s, verify_tree 1 worker "
            f"{total_mib / best['ours1']:.0f} MiB/s, 2 workers {total_mib / best['ours2']:.0f} MiB/s (best so far)")
    bench_line("verify_hashlib_ratio", best["hashlib"] / best["ours1"], "ratio")
    bench_line("verify_parallel_speedup", best["ours1"] / best["ours2"], "ratio")
    shutil.rmtree(tree)


def _check(tree, expected, workers):
    result = _manifest.verify_tree(str(tree), expected, cache=None, mode="full", workers=workers)
    assert len(result["ok"]) == len(expected), result["bad"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_nginx(docroot, work):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        return None, None
    port = free_port()
    conf_dir = work / "nginx"
    conf_dir.mkdir()
    conf = conf_dir / "nginx.conf"
    conf.write_text(f"""
daemon off;
worker_processes 1;
pid {conf_dir}/nginx.pid;
error_log {conf_dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {conf_dir}/body;
    proxy_temp_path {conf_dir}/proxy;
    fastcgi_temp_path {conf_dir}/fastcgi;
    uwsgi_temp_path {conf_dir}/uwsgi;
    scgi_temp_path {conf_dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {docroot};
    }}
}}
""")
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(conf_dir)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _attempt in range(50):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    return None, None


def bench_download(work, size_mib, rounds):
    curl = shutil.which("curl")
    docroot = work / "www"
    write_random(docroot / "shard.safetensors", size_mib * MIB)
    digest = _manifest.hash_file(docroot / "shard.safetensors")[0]
    os.chmod(work, 0o755)  # nginx workers run as an unprivileged user
    proc, port = start_nginx(docroot, work)
    if proc is None or curl is None:
        log("download_curl_ratio skipped: nginx or curl missing (apt-get install -y nginx-light curl)")
        return
    url = f"http://127.0.0.1:{port}/shard.safetensors"
    out = work / "out"
    out.mkdir()
    fetcher = _fetch.HttpFetcher(timeout=30, retries=0, block_size=4 * MIB)
    best = {"curl": 1e9, "ours": 1e9}
    try:
        for rnd in range(rounds):
            target = out / "curl.bin"
            best["curl"] = min(best["curl"], timed(lambda t=target: _curl(curl, url, t)))
            target.unlink()
            target = out / "ours.bin"
            best["ours"] = min(best["ours"], timed(lambda t=target: fetcher.download(url, str(t), sha256=digest)))
            target.unlink()
            log(f"round {rnd + 1}: curl {size_mib / best['curl']:.0f} MiB/s, HttpFetcher (SHA-256 while streaming, "
                f"fsync, rename) {size_mib / best['ours']:.0f} MiB/s (best so far)")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    bench_line("download_curl_ratio", best["curl"] / best["ours"], "ratio")


def _curl(curl, url, target):
    subprocess.run([curl, "-sS", "-f", "-o", str(target), url], check=True)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def bench_rerun_163(work, shard_kib):
    """163 shards, as DeepSeek-V3 has: our verify re-run vs get_url's re-run, both through Ansible's module path."""
    src = work / "src163"
    names = [f"model-{i:05d}-of-000163.safetensors" for i in range(1, 164)]
    for name in names:
        write_random(src / name, shard_kib * 1024)
    sums = {name: _manifest.hash_file(src / name)[0] for name in names}
    (src / "SHA256SUMS").write_text(_manifest.format_manifest(sums))
    store = work / "store163"
    env = dict(os.environ, PYTHONPATH=str(Path(_manifest.__file__).parents[5]))
    args = {"source": "local", "src": str(src), "name": "deepseek-ai/DeepSeek-V3", "revision": "bench",
            "store": str(store), "space_reserve": 0}
    args_file = work / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    cmd = [sys.executable, "-m", "ansible_collections.onprem.deepseek.plugins.modules.model_fetch", str(args_file)]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert json.loads(first.stdout)["changed"] is True
    started = time.perf_counter()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    ours = time.perf_counter() - started
    result = json.loads(again.stdout)
    assert result["changed"] is False and result["hashed"] == 0, result
    log(f"model_fetch re-run on 163 files x {shard_kib} KiB: {ours:.2f} s, hashed {result['hashed']} files")
    bench_line("verify_cached_s_163", ours, "s")

    playbook = work / "get_url.yml"
    dest = work / "get_url"
    dest.mkdir()
    playbook.write_text(json.dumps([{
        "name": "get_url with checksums", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Download", "ansible.builtin.get_url": {
            "url": "file://" + str(src) + "/{{ item.key }}", "dest": str(dest) + "/{{ item.key }}",
            "checksum": "sha256:{{ item.value }}"}, "loop": "{{ sums | dict2items }}",
            "loop_control": {"label": "{{ item.key }}"}}]}]))
    (work / "sums.json").write_text(json.dumps({"sums": sums}))
    ansible_playbook = shutil.which("ansible-playbook", path=os.path.dirname(sys.executable)) or "ansible-playbook"
    pb = [ansible_playbook, "-i", "localhost,", "-c", "local", "-e", f"@{work / 'sums.json'}",
          "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)]
    penv = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0")
    for name in names:  # what a first get_url run leaves behind; the timed run is the re-run
        shutil.copy2(src / name, dest / name)
    started = time.perf_counter()
    rerun = subprocess.run(pb, env=penv, capture_output=True, text=True, check=True)
    theirs = time.perf_counter() - started
    assert "changed=0" in rerun.stdout, rerun.stdout[-2000:]
    log(f"get_url re-run on the same 163 files (ansible-playbook, one task looping): {theirs:.2f} s")
    bench_line("get_url_rerun_s_163", theirs, "s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=None, help="where the temporary files go (default $TMPDIR)")
    parser.add_argument("--verify-mib", type=int, default=1024, help="total size of the verify set")
    parser.add_argument("--download-mib", type=int, default=1024, help="size of the file nginx serves")
    parser.add_argument("--shard-kib", type=int, default=1024, help="size of each of the 163 shards")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parts", default="verify,rerun,download", help="comma-separated subset to run")
    opts = parser.parse_args()
    parts = set(opts.parts.split(","))
    work = Path(tempfile.mkdtemp(prefix="bench-fetch-", dir=opts.dir))
    log(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; files in {work}")
    try:
        if "verify" in parts:
            bench_verify(work, opts.verify_mib, opts.rounds)
        if "rerun" in parts:
            bench_rerun_163(work, opts.shard_kib)
        if "download" in parts:
            bench_download(work, opts.download_mib, opts.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
