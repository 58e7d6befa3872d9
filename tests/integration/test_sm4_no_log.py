# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real `ansible-playbook -vvv` run of onprem.deepseek.sm4_file (key generation, encryption and
decryption with a key file and with a vaulted `key:` variable, a wrong-key failure, and the results
printed with debug) must not show any key: not as hex, not as raw bytes, not as base64."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VAULT_KEY_HEX = "c0ffee00deadbeef0123456789abcdef"
WRONG_KEY_HEX = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
VAULT_PASSWORD = "test-vault-password-not-a-secret"


def _tool(name):
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed next to {sys.executable} nor on PATH")
    return found


def _collections_path(tmp_path):
    """ONPREM_COLLECTIONS_PATH if set (it must hold ansible_collections/onprem/deepseek), else the
    repository's build/collections, else a private one that links this checkout."""
    configured = os.environ.get("ONPREM_COLLECTIONS_PATH")
    if configured:
        return configured
    default = REPO / "build" / "collections"
    if (default / "ansible_collections" / "onprem" / "deepseek" / "plugins" / "modules" / "sm4_file.py").exists():
        return str(default)
    private = tmp_path / "collections"
    (private / "ansible_collections" / "onprem").mkdir(parents=True)
    (private / "ansible_collections" / "onprem" / "deepseek").symlink_to(REPO)
    return str(private)


PLAYBOOK = """
- name: Exercise sm4_file with every kind of key
  hosts: localhost
  gather_facts: false
  vars_files:
    - vault.yml
  vars:
    work: "{work}"
  tasks:
    - name: Generate a key file
      onprem.deepseek.sm4_file:
        state: key
        key_file: "{{{{ work }}}}/keys/data.key"
      register: generated

    - name: Encrypt with the key file
      onprem.deepseek.sm4_file:
        src: "{{{{ work }}}}/plain/report.csv"
        dest: "{{{{ work }}}}/enc/report.csv.sm4"
        key_file: "{{{{ work }}}}/keys/data.key"
      register: with_file

    - name: Encrypt a tree with the vaulted key variable
      onprem.deepseek.sm4_file:
        src: "{{{{ work }}}}/plain"
        dest: "{{{{ work }}}}/tree.sm4"
        key: "{{{{ vault_sm4_key }}}}"
      register: with_var

    - name: Decrypt the tree with the vaulted key variable
      onprem.deepseek.sm4_file:
        state: decrypted
        src: "{{{{ work }}}}/tree.sm4"
        dest: "{{{{ work }}}}/restored"
        key: "{{{{ vault_sm4_key }}}}"
      register: decrypted

    - name: Decrypt with the wrong key, and check the failure
      block:
        - name: Decrypt with the wrong key
          onprem.deepseek.sm4_file:
            state: decrypted
            src: "{{{{ work }}}}/enc/report.csv.sm4"
            dest: "{{{{ work }}}}/wrong.csv"
            key: "{wrong}"
      rescue:
        - name: The failure says what happened
          ansible.builtin.assert:
            that:
              - "'authentication failed: wrong key or the file was modified' in ansible_failed_result.msg"

    - name: Show every result in full
      ansible.builtin.debug:
        var: item
      loop:
        - "{{{{ generated }}}}"
        - "{{{{ with_file }}}}"
        - "{{{{ with_var }}}}"
        - "{{{{ decrypted }}}}"
"""


def test_no_key_material_in_verbose_output(tmp_path):
    playbook_bin = _tool("ansible-playbook")
    vault_bin = _tool("ansible-vault")
    work = tmp_path / "work"
    (work / "keys").mkdir(parents=True)
    os.chmod(work / "keys", 0o700)
    (work / "plain" / "sub").mkdir(parents=True)
    (work / "enc").mkdir()
    (work / "plain" / "report.csv").write_text("id,amount\n1,100\n2,250\n")
    (work / "plain" / "sub" / "notes.txt").write_text("quarterly notes\n")

    password_file = tmp_path / "vault-pass"
    password_file.write_text(VAULT_PASSWORD + "\n")
    password_file.chmod(0o600)
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=_collections_path(tmp_path),
        ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"),  # not the checkout's ansible.cfg
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_VAULT_PASSWORD_FILE=str(password_file),
    )
    (tmp_path / "ansible.cfg").write_text("[defaults]\nstdout_callback = ansible.builtin.default\n")

    vaulted = subprocess.run(
        [vault_bin, "encrypt_string", "--name", "vault_sm4_key", VAULT_KEY_HEX],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )
    assert vaulted.returncode == 0, vaulted.stderr
    assert VAULT_KEY_HEX not in vaulted.stdout
    (tmp_path / "vault.yml").write_text(vaulted.stdout)
    (tmp_path / "site.yml").write_text(PLAYBOOK.format(work=work, wrong=WRONG_KEY_HEX))
    (tmp_path / "inventory").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )

    run = subprocess.run(
        [playbook_bin, "-vvv", "-i", "inventory", "site.yml"],
        capture_output=True, env=env, cwd=tmp_path, timeout=300, check=False,
    )
    output = run.stdout + b"\n" + run.stderr
    text = output.decode("utf-8", errors="replace")
    assert run.returncode == 0, text[-4000:]
    assert "failed=0" in text and "rescued=1" in text, text[-2000:]

    # The tasks really ran and did their work.
    generated_key_file = work / "keys" / "data.key"
    assert stat.S_IMODE(generated_key_file.stat().st_mode) == 0o600
    assert (work / "restored" / "report.csv").read_text() == "id,amount\n1,100\n2,250\n"
    assert (work / "restored" / "sub" / "notes.txt").read_text() == "quarterly notes\n"
    assert "key_id" in text and "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in text

    generated_hex = generated_key_file.read_text().strip()
    for hex_key in (VAULT_KEY_HEX, generated_hex, WRONG_KEY_HEX):
        raw = bytes.fromhex(hex_key)
        for needle in (hex_key.lower().encode(), hex_key.upper().encode(), raw,
                       base64.b64encode(raw), base64.b64encode(hex_key.encode())):
            assert needle not in output, f"key material ({len(needle)} bytes) found in ansible-playbook -vvv output"
