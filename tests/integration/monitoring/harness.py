"""Helpers for the monitoring tests: render the role's templates with ansible-playbook, run Debian's
Prometheus binaries and the mock engine as child processes on loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "monitoring"
RENDER = Path(__file__).resolve().parent / "render.yml"
MOCK_ENGINE = ROOT / "roles" / "inference" / "files" / "mock_engine.py"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"


def free_ports(count):
    sockets = []
    try:
        for _attempt in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def render(workdir, templates, variables=None, inventory=None):
    """Render [(src under templates/, dest name)] into workdir with the role's defaults; returns workdir."""
    workdir = Path(workdir).resolve()
    varfile = workdir / "render-vars.json"
    data = dict(variables or {})
    data["render_dir"] = str(workdir)
    data["render_templates"] = [{"src": src, "dest": dest} for src, dest in templates]
    data["ansible_python_interpreter"] = sys.executable
    varfile.write_text(json.dumps(data), encoding="utf-8")
    inv = workdir / "inventory.json"
    inv.write_text(json.dumps(inventory or {"all": {"hosts": {"localhost": {}}}}), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"
    result = subprocess.run([playbook, "-i", str(inv), str(RENDER), "-e", f"@{varfile}"], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"rendering failed:\n{result.stdout}\n{result.stderr}")
    return workdir


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


def wait_http(url, timeout=30.0, proc=None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before {url} answered")
        try:
            status, _body = http_get(url, timeout=2)
            if status == 200:
                return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout} s (last error: {last})")


def query(base, expr, timeout=10.0):
    """Run an instant query; returns the decoded JSON answer (status and data, or errorType and error)."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b'{"status": "error", "error": "no body"}')


class Process:
    """A child process whose output goes to a log file; stop() terminates it and waits."""

    def __init__(self, args, log):
        self.args = [str(a) for a in args]
        self.log_path = Path(log)
        self.proc = None

    def start(self):
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        return self.proc

    def log(self):
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
