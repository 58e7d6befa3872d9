# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Acceptance point 4 of issue 5: the secure_storage role for real, on Debian 12's own kernel under qemu.

The VM (tests/vm/build.sh, cached) has five small virtual disks. The tests run in file order on one VM:

1. in one run: sm4-xts on the stock Debian kernel (built without SM4): the role stops naming
   CONFIG_CRYPTO_SM4_GENERIC and the disk stays all zeros; disks holding an ext4 filesystem and a DOS partition
   table: the role refuses both, and the disk images are byte-for-byte unchanged (the ext4 file still reads);
2. with SM4 modules built from the same kernel's source made loadable: --check on fresh disks fails nothing
   and writes nothing;
3. sm4-xts with a key file and aes-xts with a vaulted passphrase: format, open, mkfs, mount, crypttab, fstab;
4. a second run changes nothing;
5. write a file, unmount, close, prove the plaintext is not on the raw disk, reopen with the role, read it back.

Takes several minutes under software emulation, so it runs only with ONPREM_VM_TESTS=1.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "secure_storage"))
import vmlib

pytestmark = vmlib.pytest_marks()

PLAYBOOK = str(vmlib.REPO / "playbooks" / "secure_storage.yml")
FAST_PBKDF = {"algorithm": "argon2id", "memory": 32768, "iteration_count": 4, "parallel": 1}
PASSPHRASE = "aes-" + secrets.token_urlsafe(18)
PROBE = "probe-" + secrets.token_hex(12)


def host(serial, name, cipher, key_source="keyfile"):
    return {
        "secure_storage_device": f"/dev/disk/by-id/virtio-{serial}",
        "secure_storage_name": name,
        "secure_storage_cipher": cipher,
        "secure_storage_key_source": key_source,
        "secure_storage_mount_path": f"/srv/{name}",
        "secure_storage_pbkdf": FAST_PBKDF,
    }


@pytest.fixture(scope="module")
def vm():
    machine = vmlib.shared_vm()
    print(f"VM boot to SSH: {machine.boot_seconds:.0f} s (accel {vmlib.accel()})")
    return machine


@pytest.fixture(scope="module")
def stores(vm):
    """The two volumes: sm4 with a key file, aes with a passphrase from an ansible-vault file."""
    inventory = vm.inventory(
        {
            "store_sm4": host("luks-sm4", "store_sm4", "sm4-xts-plain64"),
            "store_aes": host("luks-aes", "store_aes", "aes-xts-plain64", "passphrase"),
        }
    )
    vault = vm.vault_file("aes-vault.yml", {"secure_storage_passphrase": PASSPHRASE})
    return inventory, ["-e", "onprem_secure_storage_hosts=all", "-e", f"@{vault}"]


def all_zero(path: Path):
    with path.open("rb") as handle:
        return all(not any(block) for block in iter(lambda: handle.read(1 << 20), b""))


def sha256(path: Path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(vm, playbook, inventory, extra, **kwargs):
    result = vm.playbook(playbook, inventory, *extra, **kwargs)
    print(
        f"{Path(playbook).name} {'--check ' if kwargs.get('check') else ''}rc={result.rc} "
        f"{result.seconds:.0f} s {result.recap}"
    )
    return result


def test_refusals_on_stock_kernel_and_disks_with_data(vm):
    """One run, three hosts on the same VM: sm4 on the stock kernel, a disk with ext4, a disk with an MBR."""
    before = {serial: sha256(vm.disk(serial)) for serial in ("data-ext4", "data-mbr")}
    inventory = vm.inventory(
        {
            "store_sm4": host("luks-sm4", "store_sm4", "sm4-xts-plain64"),
            "refuse_ext4": host("data-ext4", "refuse_ext4", "aes-xts-plain64"),
            "refuse_mbr": host("data-mbr", "refuse_mbr", "aes-xts-plain64"),
        }
    )
    result = run(vm, PLAYBOOK, inventory, ["-e", "onprem_secure_storage_hosts=all"])
    assert result.rc != 0, result
    assert {name: r["failed"] for name, r in result.recap.items()} == {
        "store_sm4": 1,
        "refuse_ext4": 1,
        "refuse_mbr": 1,
    }, result
    # the kernel without SM4: stopped before anything, naming the kernel option
    assert "cannot open a sm4-xts-plain64 LUKS volume: no module sm4_generic" in result.flat, result
    assert "CONFIG_CRYPTO_SM4_GENERIC" in result.flat, result
    assert all_zero(vm.disk("luks-sm4")), "the sm4 disk was written although the kernel check failed"
    # the disks with data: refused, and not one byte changed
    assert "Refusing to format /dev/disk/by-id/virtio-data-ext4" in result.flat, result
    assert "signature ext4" in result.flat, result
    assert "Refusing to format /dev/disk/by-id/virtio-data-mbr" in result.flat, result
    assert "signature dos" in result.flat, result
    after = {serial: sha256(vm.disk(serial)) for serial in before}
    assert after == before, "a refused disk was modified"
    debugfs = shutil.which("debugfs") or "/usr/sbin/debugfs"
    note = subprocess.run(
        [debugfs, "-R", "cat /keep.txt", str(vm.disk("data-ext4"))], capture_output=True, text=True, check=True
    ).stdout
    assert note == vmlib.EXT4_NOTE


def test_check_mode_on_fresh_disks(vm, stores):
    inventory, extra = stores
    prepared = run(vm, "install_sm4_modules.yml", inventory, ["--limit", "store_sm4"])
    assert prepared.rc == 0, prepared
    result = run(vm, PLAYBOOK, inventory, extra, check=True)
    assert result.rc == 0, result
    for name in ("store_sm4", "store_aes"):
        assert result.recap[name]["failed"] == 0, result
        assert result.recap[name]["changed"] > 0, result
    assert "mkfs.ext4 and the mount on /srv/store_sm4 would follow" in result.flat, result
    assert all_zero(vm.disk("luks-sm4")), "--check wrote to the sm4 disk"
    assert all_zero(vm.disk("luks-aes")), "--check wrote to the aes disk"


def test_converge_formats_opens_and_mounts(vm, stores):
    inventory, extra = stores
    result = run(vm, PLAYBOOK, inventory, extra)
    assert result.rc == 0, result
    for name in ("store_sm4", "store_aes"):
        assert result.recap[name]["failed"] == 0, result
        assert result.recap[name]["changed"] > 0, result
    verified = run(vm, "verify.yml", inventory, extra)
    assert verified.rc == 0, verified
    assert not all_zero(vm.disk("luks-sm4"))


def test_second_run_changes_nothing(vm, stores):
    inventory, extra = stores
    again = run(vm, PLAYBOOK, inventory, extra)
    assert again.rc == 0, again
    assert {name: r["changed"] for name, r in again.recap.items()} == {"store_sm4": 0, "store_aes": 0}, again


def test_write_close_reopen_read_back(vm, stores):
    inventory, extra = stores
    result = run(vm, "exercise.yml", inventory, [*extra, "-e", f"probe_text={PROBE}"])
    assert result.rc == 0, result
    for name in ("store_sm4", "store_aes"):
        assert result.recap[name]["failed"] == 0, result
    raw = vm.disk("luks-sm4").read_bytes() + vm.disk("luks-aes").read_bytes()
    assert PROBE.encode() not in raw, "plaintext found on a raw encrypted disk"
