# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sm4_file module through its main(): check/apply/idempotent quartets, trees, refusals,
and that no key material ever reaches a result."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from unittest import mock

import pytest
from ansible.module_utils import basic
from ansible_collections.onprem.deepseek.plugins.module_utils import _sm4
from ansible_collections.onprem.deepseek.plugins.modules import sm4_file

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19

    @contextlib.contextmanager
    def patch_module_args(args=None):
        old = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = old


KEY = bytes.fromhex("8f1e2d3c4b5a69788796a5b4c3d2e1f0")
KEY_HEX = KEY.hex()
OTHER_HEX = "00112233445566778899aabbccddeeff"


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


def _exit_json(self, **kwargs):
    kwargs.setdefault("changed", False)
    raise ExitJson(kwargs)


def _fail_json(self, msg, **kwargs):
    kwargs["msg"] = msg
    kwargs["failed"] = True
    raise FailJson(kwargs)


def run_module(args, check=False, expect_fail=False):
    """Run sm4_file.main() with ``args``; return the raw result dict handed to exit/fail_json."""
    args = dict(args, _ansible_check_mode=check)
    with contextlib.ExitStack() as stack:
        stack.enter_context(patch_module_args(args))
        stack.enter_context(mock.patch.object(basic.AnsibleModule, "exit_json", _exit_json))
        stack.enter_context(mock.patch.object(basic.AnsibleModule, "fail_json", _fail_json))
        expected, other = (FailJson, ExitJson) if expect_fail else (ExitJson, FailJson)
        try:
            sm4_file.main()
        except expected as exc:
            return exc.args[0]
        except other as exc:
            pytest.fail(f"unexpected {'success' if expect_fail else 'failure'}: {exc.args[0]}")
    pytest.fail("the module returned without exit_json or fail_json")


def _write(path, data, mode=None):
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)
    return path


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _tree(root):
    """{relative path: bytes} of every regular file below root."""
    out = {}
    for base, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(base, name)
            if os.path.isfile(path) and not os.path.islink(path):
                out[os.path.relpath(path, root)] = _read(path)
    return out


def _snapshot(root):
    """Every path below root with its mtime and size: proves a check-mode run touched nothing."""
    snap = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            st = os.lstat(path)
            snap[os.path.relpath(path, root)] = (st.st_mtime_ns, st.st_size, stat.S_IMODE(st.st_mode))
    return snap


@pytest.fixture
def key_file(tmp_path):
    return _write(tmp_path / "keys" / "sm4.key", KEY_HEX.encode() + b"\n", 0o600)


def _make_tree(root):
    _write(os.path.join(root, "config.json"), b'{"model_type": "qwen2"}')
    _write(os.path.join(root, "empty.txt"), b"")
    _write(os.path.join(root, "shards", "model-00001-of-00002.safetensors"), os.urandom(300_000))
    _write(os.path.join(root, "shards", "model-00002-of-00002.safetensors"), os.urandom(5_000))
    _write(os.path.join(root, "a", "b", "c", "deep.bin"), os.urandom(4097))
    os.symlink("config.json", os.path.join(root, "link.json"))


# ------------------------------------------------------------------------------------------------
# The quartet: check -> apply -> idempotent -> idempotent check
# ------------------------------------------------------------------------------------------------


def _scenario_encrypt_file(tmp_path, key_file):
    src = _write(tmp_path / "work" / "weights.bin", os.urandom(3 * 1024 * 1024 + 17), 0o640)
    dest = str(tmp_path / "work" / "weights.bin.sm4")
    args = {"src": src, "key_file": key_file, "chunk_size": 65536, "workers": 2}

    def verify():
        assert _sm4.encrypted_is_current(src, dest, KEY)
        assert stat.S_IMODE(os.stat(dest).st_mode) == 0o640
    return args, [dest], verify


def _scenario_encrypt_tree(tmp_path, key_file):
    src = str(tmp_path / "work" / "model")
    _make_tree(src)
    dest = str(tmp_path / "work" / "model.sm4")
    args = {"src": src, "dest": dest, "key": KEY_HEX}

    def verify():
        names = set(_tree(dest))
        assert names == {n + ".sm4" for n in _tree(src)}
        assert "link.json" not in _tree(src)
    return args, [dest], verify


def _scenario_decrypt_file(tmp_path, key_file):
    plain = _write(tmp_path / "orig" / "archive.tar", os.urandom(200_000))
    src = str(tmp_path / "work" / "archive.tar.sm4")
    os.makedirs(os.path.dirname(src))
    _sm4.encrypt_file(plain, src, KEY, chunk_size=4096)
    dest = str(tmp_path / "work" / "archive.tar")
    args = {"state": "decrypted", "src": src, "key_file": key_file}

    def verify():
        assert _read(dest) == _read(plain)
    return args, [dest], verify


def _scenario_decrypt_tree(tmp_path, key_file):
    plain = str(tmp_path / "orig" / "model")
    _make_tree(plain)
    enc = str(tmp_path / "work" / "model.sm4")
    run_module({"src": plain, "dest": enc, "key": KEY_HEX})
    _write(os.path.join(enc, "README.txt"), b"not encrypted, no suffix: skipped")
    dest = str(tmp_path / "work" / "model")
    args = {"state": "decrypted", "src": enc, "key": KEY_HEX, "workers": 1}

    def verify():
        assert _tree(dest) == _tree(plain)
    return args, [dest], verify


def _scenario_encrypt_remove_src(tmp_path, key_file):
    src = _write(tmp_path / "work" / "audit.log", b"type=SYSCALL msg=audit(1718000000.000:1)\n" * 1000)
    data = _read(src)
    dest = str(tmp_path / "work" / "audit.log.sm4")
    args = {"src": src, "key_file": key_file, "remove_src": True}

    def verify():
        assert not os.path.exists(src)
        out = str(tmp_path / "check.out")
        _sm4.decrypt_file(dest, out, KEY)
        assert _read(out) == data
        os.unlink(out)
    return args, [dest], verify


def _scenario_key(tmp_path, key_file):
    dest = str(tmp_path / "work" / "new.key")
    os.makedirs(os.path.dirname(dest))
    args = {"state": "key", "key_file": dest}

    def verify():
        assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
        assert len(_sm4.load_key_file(dest)) == 16
    return args, [dest], verify


SCENARIOS = {
    "encrypt-file": _scenario_encrypt_file,
    "encrypt-tree": _scenario_encrypt_tree,
    "decrypt-file": _scenario_decrypt_file,
    "decrypt-tree": _scenario_decrypt_tree,
    "encrypt-remove-src": _scenario_encrypt_remove_src,
    "key": _scenario_key,
}


@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_quartet(tmp_path, key_file, scenario):
    args, outputs, verify = scenario(tmp_path, key_file)
    work = str(tmp_path / "work")
    before = _snapshot(work)

    first = run_module(args, check=True)
    assert first["changed"] is True
    assert _snapshot(work) == before, "check mode must not touch the file system"
    assert not any(os.path.exists(p) for p in outputs)

    second = run_module(args)
    assert second["changed"] is True
    assert all(os.path.exists(p) for p in outputs)
    verify()
    after_apply = _snapshot(work)

    third = run_module(args)
    assert third["changed"] is False
    assert _snapshot(work) == after_apply, "an idempotent run must not rewrite anything"

    fourth = run_module(args, check=True)
    assert fourth["changed"] is False
    assert _snapshot(work) == after_apply
    if "key_id" in second:
        assert third["key_id"] == second["key_id"] == fourth["key_id"]


# ------------------------------------------------------------------------------------------------
# Behaviour details
# ------------------------------------------------------------------------------------------------


def test_tree_round_trip_and_skips(tmp_path):
    src = str(tmp_path / "model")
    _make_tree(src)
    os.mkfifo(os.path.join(src, "a", "fifo"))
    enc, back = str(tmp_path / "model.sm4"), str(tmp_path / "model.back")
    res = run_module({"src": src, "dest": enc, "key": KEY_HEX, "workers": 3})
    assert sorted(res["skipped"]) == sorted([os.path.join(src, "a", "fifo"), os.path.join(src, "link.json")])
    assert {f["action"] for f in res["files"]} == {"encrypt"}
    assert res["bytes"] == sum(len(v) for v in _tree(src).values())
    run_module({"state": "decrypted", "src": enc, "dest": back, "key": KEY_HEX})
    assert _tree(back) == _tree(src)
    assert not os.path.lexists(os.path.join(back, "link.json"))


def test_changed_source_is_encrypted_again(tmp_path, key_file):
    src = _write(tmp_path / "f.bin", b"a" * 10000)
    args = {"src": src, "key_file": key_file}
    assert run_module(args)["changed"] is True
    assert run_module(args)["changed"] is False
    _write(src, b"a" * 9999 + b"b")  # same size, different content
    res = run_module(args)
    assert res["changed"] is True and res["files"][0]["action"] == "encrypt"
    assert _sm4.encrypted_is_current(src, src + ".sm4", KEY)


def test_new_key_re_encrypts_and_force_rewrites(tmp_path, key_file):
    src = _write(tmp_path / "f.bin", os.urandom(5000))
    dest = src + ".sm4"
    run_module({"src": src, "key_file": key_file})
    res = run_module({"src": src, "key": OTHER_HEX})
    assert res["changed"] is True
    assert _sm4.read_header(dest).key_id == _sm4.key_id(bytes.fromhex(OTHER_HEX))
    nonce_before = _sm4.read_header(dest).base_nonce
    assert run_module({"src": src, "key": OTHER_HEX, "force": True})["changed"] is True
    assert _sm4.read_header(dest).base_nonce != nonce_before


def test_dest_directory_for_single_file(tmp_path, key_file):
    src = _write(tmp_path / "in" / "notes.txt", b"hello")
    os.makedirs(tmp_path / "out")
    res = run_module({"src": src, "dest": str(tmp_path / "out"), "key_file": key_file})
    assert res["files"][0]["dest"] == str(tmp_path / "out" / "notes.txt.sm4")
    assert os.path.isfile(tmp_path / "out" / "notes.txt.sm4")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660], ids=lambda m: f"{m:04o}")
def test_key_file_with_loose_mode_is_refused(tmp_path, key_file, mode):
    os.chmod(key_file, mode)
    src = _write(tmp_path / "f.bin", b"secret data")
    res = run_module({"src": src, "key_file": key_file}, expect_fail=True)
    assert "chmod 600" in res["msg"]
    assert f"{mode:04o}" in res["msg"]
    assert not os.path.exists(src + ".sm4")


def test_existing_key_file_with_loose_mode_is_refused_by_state_key(tmp_path, key_file):
    os.chmod(key_file, 0o644)
    res = run_module({"state": "key", "key_file": key_file}, expect_fail=True)
    assert "chmod 600" in res["msg"]


def test_state_key_keeps_an_existing_key(tmp_path, key_file):
    res = run_module({"state": "key", "key_file": key_file, "force": True})
    assert res["changed"] is False
    assert res["key_id"] == _sm4.key_id(KEY).hex()
    assert _sm4.load_key_file(key_file) == KEY


def test_state_key_missing_directory(tmp_path):
    res = run_module({"state": "key", "key_file": str(tmp_path / "nope" / "k")}, expect_fail=True)
    assert "does not exist; create it first" in res["msg"]


@pytest.mark.parametrize(
    ("damage", "key"),
    [pytest.param("none", OTHER_HEX, id="wrong-key"),
     pytest.param("flip", KEY_HEX, id="flipped-byte"),
     pytest.param("truncate", KEY_HEX, id="truncated")],
)
def test_decrypt_failures_say_what_happened(tmp_path, damage, key):
    plain = _write(tmp_path / "p.bin", os.urandom(3 * 4096 + 1))
    enc = str(tmp_path / "p.bin.sm4")
    _sm4.encrypt_file(plain, enc, KEY, chunk_size=4096)
    if damage == "flip":
        blob = bytearray(_read(enc))
        blob[64 + 4096 + 16 + 7] ^= 1
        _write(enc, bytes(blob))
    elif damage == "truncate":
        os.truncate(enc, 64 + 2 * (4096 + 16))
    dest = str(tmp_path / "restored.bin")
    res = run_module({"state": "decrypted", "src": enc, "dest": dest, "key": key}, expect_fail=True)
    assert "authentication failed: wrong key or the file was modified" in res["msg"]
    assert not os.path.exists(dest)
    assert [n for n in os.listdir(tmp_path) if n.endswith(".partial")] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param({"src": "{d}/missing"}, "does not exist", id="missing-src"),
        pytest.param({"src": "{d}/f", "dest": "{d}/f"}, "in-place encryption is not supported", id="same-file"),
        pytest.param({"src": "{d}/f", "state": "decrypted"}, "give dest", id="decrypt-no-suffix-no-dest"),
        pytest.param({"src": "{d}/tree", "dest": "{d}/tree/inner"}, "overlap", id="dest-inside-src"),
        pytest.param({"src": "{d}/f", "chunk_size": 1000}, "chunk_size must be between", id="chunk-size"),
        pytest.param({"src": "{d}/f", "workers": 0}, "workers must be between", id="workers"),
        pytest.param({"src": "{d}/f", "key": "abc"}, "32 hexadecimal digits", id="short-key"),
    ],
)
def test_refusals(tmp_path, args, message):
    _write(tmp_path / "f", b"data")
    _write(tmp_path / "tree" / "x", b"data")
    args = {k: v.format(d=tmp_path) if isinstance(v, str) else v for k, v in args.items()}
    args.setdefault("key", KEY_HEX)
    res = run_module(args, expect_fail=True)
    assert message in res["msg"]


def test_remove_src_tree_keeps_skipped_files(tmp_path):
    src = str(tmp_path / "enc")
    plain = str(tmp_path / "plain")
    _make_tree(plain)
    run_module({"src": plain, "dest": src, "key": KEY_HEX})
    _write(os.path.join(src, "keep.me"), b"no suffix")
    out = str(tmp_path / "out")
    res = run_module({"state": "decrypted", "src": src, "dest": out, "key": KEY_HEX, "remove_src": True})
    assert res["changed"] is True
    assert all(f["src_removed"] for f in res["files"])
    assert _tree(src) == {"keep.me": b"no suffix"}
    assert not os.path.exists(os.path.join(src, "shards"))


# ------------------------------------------------------------------------------------------------
# Secrets never reach a result
# ------------------------------------------------------------------------------------------------


def _assert_no_key_material(text, key):
    for needle in (key.hex(), key.hex().upper(), key.decode("latin-1")):
        assert needle not in text


@pytest.mark.parametrize("use_key_file", [True, False], ids=["key_file", "key"])
@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_no_key_in_results(tmp_path, key_file, use_key_file, outcome):
    src = _write(tmp_path / "f.bin", os.urandom(10000))
    args = {"src": src}
    args.update({"key_file": key_file} if use_key_file else {"key": KEY_HEX})
    if outcome == "failure":
        _sm4.encrypt_file(src, src + ".sm4", bytes.fromhex(OTHER_HEX))  # the right key is another
        args.update(state="decrypted", src=src + ".sm4", dest=str(tmp_path / "out"))
    res = run_module(args, expect_fail=outcome == "failure")
    assert res.get("key_id") == _sm4.key_id(KEY).hex() or outcome == "failure"
    _assert_no_key_material(json.dumps(res), KEY)


def test_no_key_in_real_module_output(tmp_path, capsys):
    """Through the real exit_json (JSON on stdout, as Ansible reads it), not a patched one."""
    src = _write(tmp_path / "f.bin", os.urandom(1000))
    with patch_module_args({"src": src, "key": KEY_HEX}), pytest.raises(SystemExit) as exited:
        sm4_file.main()
    assert exited.value.code == 0
    out = capsys.readouterr().out
    result = json.loads(out)
    assert result["changed"] is True
    assert result["invocation"]["module_args"]["key"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    _assert_no_key_material(out, KEY)
