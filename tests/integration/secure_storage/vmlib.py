# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Boot the Debian 12 test VM (tests/vm/build.sh) under qemu and run playbooks against it.

One VM per pytest process, shared by test_secure_storage_vm.py and test_secure_storage_no_log.py and shut
down at exit. The guest's disks are sparse raw files in a private directory; its root disk is a throwaway
qcow2 overlay over the cached image. SSH goes to 127.0.0.1 only (qemu user networking with restrict=on: the
guest reaches nothing else), with a key generated here and the guest's host key, exported by the image build,
pinned in a test-local known_hosts file (StrictHostKeyChecking=yes).
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("ONPREM_VM_CACHE", "/var/tmp/onprem-deepseek-vm"))
BOOT_TIMEOUT = int(os.environ.get("ONPREM_VM_BOOT_TIMEOUT", "420"))
MIB = 1024 * 1024

# serial -> size in MiB; the guest sees /dev/disk/by-id/virtio-<serial>
DISKS = {
    "luks-sm4": 64,
    "luks-aes": 64,
    "luks-nolog": 64,
    "data-ext4": 64,
    "data-mbr": 64,
}
EXT4_NOTE = "model weights that must survive: 3f1c9a\n"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def qemu_binary():
    return shutil.which("qemu-system-x86_64")


def accel():
    """kvm only where the host CPU offers hardware virtualisation; /dev/kvm alone is not enough (here it
    exists, accepts the VM and then never runs a guest instruction), so otherwise tcg."""
    wanted = os.environ.get("ONPREM_VM_ACCEL")
    if wanted:
        return wanted
    flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    if os.access("/dev/kvm", os.R_OK | os.W_OK) and re.search(r"^flags\s*:.*\b(vmx|svm)\b", flags, re.MULTILINE):
        return "kvm"
    return "tcg"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_mbr(path: Path):
    """A DOS partition table with one Linux partition from sector 2048 to the end."""
    sectors = path.stat().st_size // 512
    entry = bytes([0x00, 0, 0, 0, 0x83, 0, 0, 0]) + (2048).to_bytes(4, "little")
    entry += (sectors - 2048).to_bytes(4, "little")
    with path.open("r+b") as handle:
        handle.seek(440)
        handle.write(secrets.token_bytes(4) + b"\0\0" + entry + bytes(48) + b"\x55\xaa")


def build_image():
    """Run tests/vm/build.sh (a no-op when the cached image is current)."""
    subprocess.run([str(REPO / "tests" / "vm" / "build.sh")], check=True)


class Vm:
    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="onprem-vm-"))
        self.port = _free_port()
        self.proc = None
        self.boot_seconds = None
        self.runs = 0
        self.vault_password_file = self.tmp / "vault-password"
        self.vault_password_file.write_text(secrets.token_hex(16) + "\n", encoding="utf-8")
        self.vault_password_file.chmod(0o600)

    # -- lifecycle -------------------------------------------------------------------------------------
    def prepare_disks(self):
        for serial, mib in DISKS.items():
            disk = self.tmp / f"{serial}.raw"
            with disk.open("wb") as handle:
                handle.truncate(mib * MIB)
        content = self.tmp / "ext4-content"
        content.mkdir()
        (content / "keep.txt").write_text(EXT4_NOTE, encoding="utf-8")
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-L", "precious", "-d", str(content), str(self.disk("data-ext4"))],
            check=True,
        )
        write_mbr(self.disk("data-mbr"))

    def disk(self, serial):
        return self.tmp / f"{serial}.raw"

    def start(self):
        key = self.tmp / "id_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "onprem-vm-test", "-f", str(key)], check=True
        )
        host_key = (CACHE / "ssh_host_ed25519_key.pub").read_text(encoding="utf-8").split()
        (self.tmp / "known_hosts").write_text(
            f"[127.0.0.1]:{self.port} {host_key[0]} {host_key[1]}\n", encoding="utf-8"
        )
        overlay = self.tmp / "root.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(CACHE / "root.qcow2"), str(overlay)],
            check=True,
        )
        pubkey = base64.b64encode((self.tmp / "id_ed25519.pub").read_bytes()).decode()
        cmd = [
            qemu_binary(), "-machine", "pc", "-accel", accel(), "-smp", "1",
            "-cpu", os.environ.get("ONPREM_VM_CPU", "max"),
            "-m", os.environ.get("ONPREM_VM_MEMORY", "1024"), "-nodefaults", "-display", "none",
            "-serial", f"file:{self.tmp / 'console.log'}",
            "-kernel", str(CACHE / "vmlinuz"), "-initrd", str(CACHE / "initrd.img"),
            "-append", f"root=LABEL=onprem-root ro console=ttyS0 onprem.authorized_key={pubkey}",
            "-drive", f"file={overlay},if=none,id=root,format=qcow2",
            "-device", "virtio-blk-pci,drive=root,serial=root",
            "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{self.port}-:22",
            "-device", "virtio-net-pci,netdev=n0",
        ]  # fmt: skip
        for serial in DISKS:
            cmd += ["-drive", f"file={self.disk(serial)},if=none,id={serial},format=raw,cache=unsafe"]
            cmd += ["-device", f"virtio-blk-pci,drive={serial},serial={serial}"]
        start = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.tmp / "qemu.log").open("wb"),
            start_new_session=True,
        )
        while time.monotonic() - start < BOOT_TIMEOUT:
            if self.proc.poll() is not None:
                raise RuntimeError(f"qemu exited {self.proc.returncode}: {(self.tmp / 'qemu.log').read_text()}")
            probe = subprocess.run([*self.ssh_command(), "true"], capture_output=True, timeout=60, check=False)
            if probe.returncode == 0:
                self.boot_seconds = time.monotonic() - start
                return
            time.sleep(2)
        raise RuntimeError(f"no SSH after {BOOT_TIMEOUT}s; console tail:\n{self.console_tail()}")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if os.environ.get("ONPREM_VM_KEEP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)

    def console_tail(self, lines=40):
        log = self.tmp / "console.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    # -- talking to the guest --------------------------------------------------------------------------
    def ssh_options(self):
        return [
            "-o", f"UserKnownHostsFile={self.tmp / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
            "-o", "HostKeyAlgorithms=ssh-ed25519", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10",
        ]  # fmt: skip

    def ssh_command(self):
        return ["ssh", "-i", str(self.tmp / "id_ed25519"), "-p", str(self.port), *self.ssh_options(), "root@127.0.0.1"]

    def ssh(self, command):
        return subprocess.run([*self.ssh_command(), command], capture_output=True, text=True, timeout=300, check=False)

    def inventory(self, hosts):
        """hosts: {alias: {var: value}}; all aliases are this VM."""
        lines = ["all:", "  vars:"]
        common = {
            "ansible_host": "127.0.0.1",
            "ansible_port": self.port,
            "ansible_user": "root",
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_private_key_file": str(self.tmp / "id_ed25519"),
            "ansible_ssh_common_args": " ".join(self.ssh_options()),
        }
        lines += [f"    {k}: {_yaml_scalar(v)}" for k, v in common.items()]
        lines.append("  hosts:")
        for alias, variables in hosts.items():
            lines.append(f"    {alias}:")
            lines += [f"      {k}: {_yaml_scalar(v)}" for k, v in variables.items()]
        path = self.tmp / f"inventory-{secrets.token_hex(4)}.yml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def vault_file(self, name, variables):
        """An ansible-vault encrypted vars file."""
        plain = "---\n" + "".join(f"{k}: {_yaml_scalar(v)}\n" for k, v in variables.items())
        path = self.tmp / name
        path.write_text(plain, encoding="utf-8")
        path.chmod(0o600)
        subprocess.run(
            [_tool("ansible-vault"), "encrypt", "--vault-password-file", str(self.vault_password_file), str(path)],
            check=True,
            capture_output=True,
            env=ansible_env(),
        )
        return path

    def playbook(self, playbook, inventory, *extra, check=False, verbosity=0):
        # --forks 1: the inventory's hosts are aliases of one machine; run in parallel, two of them would
        # rewrite the same /etc/fstab and /etc/crypttab at once and lose each other's line.
        cmd = [_tool("ansible-playbook"), "-i", str(inventory), "--forks", "1"]
        cmd += ["--vault-password-file", str(self.vault_password_file)]
        if check:
            cmd.append("--check")
        if verbosity:
            cmd.append("-" + "v" * verbosity)
        cmd += [*extra, str(HERE / playbook)]
        start = time.monotonic()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=ansible_env(), cwd=REPO, timeout=1800, check=False
        )
        result = Result(proc, time.monotonic() - start)
        self.runs += 1
        log = self.tmp / f"run-{self.runs:02d}-{Path(playbook).stem}{'-check' if check else ''}.log"
        log.write_text(f"$ {' '.join(cmd)}\n{result.out}", encoding="utf-8")
        return result


class Result:
    def __init__(self, proc, seconds):
        self.rc = proc.returncode
        self.out = proc.stdout + proc.stderr
        # the yaml result format folds long messages over several lines
        self.flat = " ".join(self.out.split())
        self.seconds = seconds
        self.recap = {
            m[0]: {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]), "failed": int(m[4])}
            for m in RECAP.findall(proc.stdout)
        }

    def __str__(self):
        return f"rc={self.rc} after {self.seconds:.0f} s, recap {self.recap}, output tail:\n{self.out[-6000:]}"

    __repr__ = __str__


def _yaml_scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)  # flow-style YAML
    return "'" + str(value).replace("'", "''") + "'"


def _tool(name):
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def ansible_env():
    env = dict(os.environ)
    collections = REPO / "build" / "collections"
    if not (collections / "ansible_collections" / "onprem" / "deepseek").exists():
        private = Path(tempfile.gettempdir()) / "onprem-vm-collections"
        link = private / "ansible_collections" / "onprem" / "deepseek"
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(REPO)
        collections = private
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_TIMEOUT="60",
        ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
    )
    return env


_shared = {}


def shared_vm():
    """The one VM of this pytest process (booted on first use, stopped at exit)."""
    if "vm" not in _shared:
        build_image()
        vm = Vm()
        atexit.register(vm.stop)
        vm.prepare_disks()
        vm.start()
        _shared["vm"] = vm
    return _shared["vm"]


def pytest_marks():
    """The skip conditions every VM test module shares: qemu installed, and the opt-in ONPREM_VM_TESTS=1."""
    return [
        pytest.mark.skipif(
            qemu_binary() is None,
            reason="qemu-system-x86_64 is not installed (apt-get install qemu-system-x86 qemu-utils)",
        ),
        pytest.mark.skipif(os.environ.get("ONPREM_VM_TESTS") != "1",
                           reason="VM tests take minutes: set ONPREM_VM_TESTS=1"),
    ]
