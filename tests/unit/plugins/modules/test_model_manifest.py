# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""model_manifest as Ansible runs it, on real files in a temporary directory."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.onprem.deepseek.plugins.module_utils import _manifest
from ansible_collections.onprem.deepseek.plugins.modules import model_manifest

FILES = {
    "config.json": b"{}\n",
    "model-00001-of-00002.safetensors": b"a" * 5000,
    "model-00002-of-00002.safetensors": b"b" * 7000,
    "nested/dir/tokenizer.json": b'{"x": 1}',
}


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "model"
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        model_manifest.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


def expected_text():
    return "".join(f"{hashlib.sha256(FILES[rel]).hexdigest()}  {rel}\n" for rel in sorted(FILES))


def test_quartet(capsys, tree):
    args = {"path": str(tree)}
    code, check = run(capsys, dict(args, _ansible_check_mode=True))
    assert code == 0 and check["changed"] is True and check["files"] == len(FILES)
    assert not (tree / "SHA256SUMS").exists()

    code, apply = run(capsys, dict(args, _ansible_diff=True))
    assert code == 0 and apply["changed"] is True
    assert (tree / "SHA256SUMS").read_text() == expected_text()
    assert apply["sha256"] == hashlib.sha256(expected_text().encode()).hexdigest()
    assert apply["diff"]["after"] == expected_text()

    code, again = run(capsys, args)
    assert code == 0 and again["changed"] is False and again["hashed"] == 0

    code, again_check = run(capsys, dict(args, _ansible_check_mode=True))
    assert code == 0 and again_check["changed"] is False


def test_check_state_names_every_bad_file(capsys, tree):
    run(capsys, {"path": str(tree)})
    code, good = run(capsys, {"path": str(tree), "state": "check", "verify": "full"})
    assert code == 0 and good["changed"] is False and good["bad"] == {} and good["hashed"] == len(FILES)
    (tree / "config.json").write_bytes(b"{ }\n")
    (tree / "nested/dir/tokenizer.json").unlink()
    code, bad = run(capsys, {"path": str(tree), "state": "check"})
    assert code == 1
    assert set(bad["bad"]) == {"config.json", "nested/dir/tokenizer.json"}
    assert bad["bad"]["nested/dir/tokenizer.json"] == "missing"
    assert bad["bad"]["config.json"].startswith("SHA-256 ")
    assert "2 of 4 files" in bad["msg"] and "config.json" in bad["msg"]


def test_check_without_manifest(capsys, tree):
    code, result = run(capsys, {"path": str(tree), "state": "check"})
    assert code == 1 and "does not exist" in result["msg"]


@pytest.mark.parametrize("name, why", [
    ("/etc/passwd", "absolute path"),
    ("../outside", "'..' would leave the tree"),
    ("a/../../outside", "'..' would leave the tree"),
    ("a\\b", "backslash"),
])
def test_manifest_entries_refused(capsys, tree, name, why):
    (tree / "SHA256SUMS").write_text(f"{'0' * 64}  {name}\n")
    code, result = run(capsys, {"path": str(tree), "state": "check"})
    assert code == 1 and why in result["msg"] and "line 1" in result["msg"]


def test_link_out_of_tree_refused(capsys, tree, tmp_path):
    (tmp_path / "secret").write_bytes(b"secret")
    (tree / "leak").symlink_to(tmp_path / "secret")
    code, result = run(capsys, {"path": str(tree)})
    assert code == 1 and "links out of the tree are refused" in result["msg"]
    (tree / "SHA256SUMS").write_text(f"{hashlib.sha256(b'secret').hexdigest()}  leak\n")
    code, checked = run(capsys, {"path": str(tree), "state": "check"})
    assert code == 1 and "leak" in checked["bad"]


def test_link_inside_tree_allowed(capsys, tree):
    (tree / "alias.json").symlink_to("config.json")
    code, result = run(capsys, {"path": str(tree)})
    assert code == 0 and result["files"] == len(FILES) + 1


def test_cache_touch_rehashes_only_that_file(capsys, tree):
    run(capsys, {"path": str(tree)})
    target = tree / "model-00001-of-00002.safetensors"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    code, touched = run(capsys, {"path": str(tree), "state": "check"})
    assert code == 0 and touched["hashed"] == 1
    code, cached = run(capsys, {"path": str(tree), "state": "check"})
    assert cached["hashed"] == 0
    code, full = run(capsys, {"path": str(tree), "state": "check", "verify": "full"})
    assert full["hashed"] == len(FILES)


def test_same_size_rewrite_with_same_mtime_but_new_inode_is_rehashed(capsys, tree):
    run(capsys, {"path": str(tree)})
    target = tree / "config.json"
    st = target.stat()
    replacement = tree / "config.json.new"
    replacement.write_bytes(b"[]\n")
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(replacement, target)
    code, result = run(capsys, {"path": str(tree), "state": "check"})
    assert code == 1 and "config.json" in result["bad"] and result["hashed"] == 1


@pytest.mark.parametrize("text, error", [
    ("zz  file\n", "expected '<64 hex digits>  <relative path>'"),
    (f"{'a' * 64}  f\n{'b' * 64}  f\n", "listed twice"),
])
def test_parse_errors(text, error):
    with pytest.raises(_manifest.ManifestError, match=error):
        _manifest.parse_manifest(text)
