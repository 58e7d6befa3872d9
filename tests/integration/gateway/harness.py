# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A gateway on loopback for tests and benchmarks: the role's config rendered by ansible-playbook, real nginx
run as a child process from a scratch prefix, mock engines (roles/inference/files/mock_engine.py) as children."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
RENDER = Path(__file__).resolve().parent / "render.yml"
MOCK = ROOT / "roles" / "inference" / "files" / "mock_engine.py"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_ports(count):
    """Ports the kernel hands out now (bound and released at once; a small race, fine on loopback)."""
    socks, ports = [], []
    for _index in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
        ports.append(sock.getsockname()[1])
    for sock in socks:
        sock.close()
    return ports


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class MockEngine:
    def __init__(self, name, port, workdir, api_key, token_delay=0.02, tokens=32, extra=()):
        self.name, self.port, self.workdir = name, port, Path(workdir)
        self.api_key, self.token_delay, self.tokens, self.extra = api_key, token_delay, tokens, list(extra)
        self.request_log = self.workdir / f"{name}.requests"
        self.proc = None

    def start(self):
        env = dict(os.environ, ENGINE_API_KEY=self.api_key)
        cmd = [sys.executable, str(MOCK), "--host", "127.0.0.1", "--port", str(self.port), "--engine-id", self.name,
               "--served-model-name", "deepseek-r1", "--token-delay", str(self.token_delay),
               "--tokens", str(self.tokens), "--request-log", str(self.request_log), "--drain-grace", "10"]
        log = open(self.workdir / f"{self.name}.stderr", "ab")
        self.proc = subprocess.Popen(cmd + self.extra, env=env, stdout=log, stderr=log)
        log.close()
        wait_port(self.port, proc=self.proc)
        return self

    def received(self):
        if not self.request_log.exists():
            return []
        return [line for line in self.request_log.read_text().splitlines() if line]

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def render(workdir, variables, collections_path=None):
    """Run the role's tasks into workdir/etc; returns the completed process (stdout has the play recap)."""
    workdir = Path(workdir)
    conf = workdir / "etc"
    conf.mkdir(parents=True, exist_ok=True)
    for sub in ("modules-enabled", "sites-enabled", "conf.d"):
        (conf / sub).mkdir(exist_ok=True)
    shutil.copy("/etc/nginx/mime.types", conf / "mime.types")
    for sub in ("log", "tmp", "libexec", "sbin"):
        (workdir / sub).mkdir(exist_ok=True)
    base = {
        "gateway_conf_dir": str(conf),
        "gateway_log_dir": str(workdir / "log"),
        "gateway_temp_dir": str(workdir / "tmp"),
        "gateway_pid_file": str(workdir / "nginx.pid"),
        "gateway_libexec_dir": str(workdir / "libexec"),
        "gateway_sbin_dir": str(workdir / "sbin"),
        "gateway_nginx_binary": NGINX,
        "gateway_listen_addresses": ["127.0.0.1"],
        "ansible_python_interpreter": sys.executable,
    }
    base.update(variables)
    varfile = workdir / "vars.json"
    varfile.write_text(json.dumps(base))
    varfile.chmod(0o600)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_path or ROOT / "build" / "collections"),
               ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"
    result = subprocess.run([playbook, "-i", "localhost,", str(RENDER), "-e", f"@{varfile}"], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"rendering the gateway role failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return result


class Nginx:
    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.conf = self.workdir / "etc" / "nginx.conf"
        self.proc = None

    def start(self, port):
        log = open(self.workdir / "nginx.stderr", "ab")
        startup_log = str(self.workdir / "log" / "startup.log")
        self.proc = subprocess.Popen([NGINX, "-c", str(self.conf), "-p", str(self.workdir), "-e", startup_log,
                                      "-g", "daemon off;"],
                                     stdout=log, stderr=log)
        log.close()
        wait_port(port, proc=self.proc)
        return self

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
