# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SM4 primitives of module_utils/_sm4.py agree with the OpenSSL command line tool
(`openssl enc -sm4-ctr` / `-sm4-ecb`, raw key and IV, no padding), in both directions."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    from ansible_collections.onprem.deepseek.plugins.module_utils import _sm4
except ImportError:
    # Plain `pytest tests/integration` without PYTHONPATH: use ONPREM_COLLECTIONS_PATH or the
    # checkout's build/collections link (`make collection`), as Ansible itself would.
    _default = Path(__file__).resolve().parents[2] / "build" / "collections"
    sys.path.insert(0, os.environ.get("ONPREM_COLLECTIONS_PATH", str(_default)))
    from ansible_collections.onprem.deepseek.plugins.module_utils import _sm4


def _openssl_sm4_ciphers():
    exe = shutil.which("openssl")
    if exe is None:
        return None, set()
    listing = subprocess.run([exe, "enc", "-ciphers"], capture_output=True, text=True, check=False)
    return exe, {word.lstrip("-").lower() for word in listing.stdout.split()}


OPENSSL, CIPHERS = _openssl_sm4_ciphers()
pytestmark = pytest.mark.skipif(
    OPENSSL is None or not {"sm4-ctr", "sm4-ecb"} <= CIPHERS,
    reason="the openssl command line tool is missing or its 'openssl enc -ciphers' lists no sm4-ctr/sm4-ecb",
)


def _data(n, seed):
    return hashlib.shake_256(b"openssl-%d" % seed).digest(n) if n else b""


def _openssl(cipher, key, data, iv=None, decrypt=False):
    cmd = [OPENSSL, "enc", "-" + cipher, "-K", key.hex(), "-nopad", "-nosalt"]
    if iv is not None:
        cmd += ["-iv", iv.hex()]
    if decrypt:
        cmd.append("-d")
    done = subprocess.run(cmd, input=data, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


KEYS = {
    "gbt-key": bytes.fromhex("0123456789abcdeffedcba9876543210"),
    "random-key": _data(16, 99),
}
IVS = {
    "zero-iv": bytes(16),
    "random-iv": _data(16, 7),
    "low64-overflow": bytes.fromhex("0000000000000000fffffffffffffffe"),
    "full-overflow": bytes.fromhex("fffffffffffffffffffffffffffffffe"),
}


@pytest.mark.parametrize("size", [1, 15, 16, 17, 1000, 65536 + 5, 1024 * 1024])
@pytest.mark.parametrize("iv", list(IVS.values()), ids=list(IVS))
@pytest.mark.parametrize("key", list(KEYS.values()), ids=list(KEYS))
def test_ctr_matches_openssl(key, iv, size):
    plain = _data(size, size)
    ours = _sm4.ctr_crypt(key, iv, plain)
    assert ours == _openssl("sm4-ctr", key, plain, iv=iv)
    assert _openssl("sm4-ctr", key, ours, iv=iv, decrypt=True) == plain
    assert _sm4.ctr_crypt(key, iv, ours) == plain


@pytest.mark.parametrize("blocks", [1, 2, 255, 4096])
@pytest.mark.parametrize("key", list(KEYS.values()), ids=list(KEYS))
def test_ecb_matches_openssl(key, blocks):
    plain = _data(16 * blocks, blocks)
    ours = _sm4.ecb_encrypt(key, plain)
    assert ours == _openssl("sm4-ecb", key, plain)
    assert _openssl("sm4-ecb", key, ours, decrypt=True) == plain
    assert _sm4.ecb_decrypt(key, ours) == plain


def test_ecb_gbt_vector_through_openssl():
    """GB/T 32907-2016 example 1 through the command line tool too, so a broken tool is noticed."""
    key = KEYS["gbt-key"]
    assert _openssl("sm4-ecb", key, key).hex() == "681edf34d206965e86b3e94f536e4246"
