#!/usr/bin/python
# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sm4_file
short_description: Encrypt and decrypt files and directory trees with SM4-GCM (GB/T 32907)
description:
  - Encrypts a file or a whole directory tree at rest with the Chinese national block cipher SM4
    (GB/T 32907-2016) in GCM mode, decrypts it again, or generates a key file.
  - The output is a documented, chunked container (see C(docs/sm4-file-format.md) in the collection)
    that authenticates every chunk, so tampering, truncation, reordering of chunks and a wrong key
    are all detected and reported, and nothing is written under the destination name.
  - Files are streamed in constant memory, chunks are encrypted on several CPU cores, and the output
    is written to a temporary C(.<name>.<random>.partial) file next to the destination, fsynced,
    and renamed onto the destination only when complete.
  - Idempotent without re-encrypting. For O(state=encrypted) the container's authenticated trailer
    holds the SHA-256 of the plaintext, so a destination that already holds the current source
    under the same key is left alone. For O(state=decrypted) the destination is compared with that
    same digest.
author:
  - onprem.deepseek maintainers (@onprem)
requirements:
  - cryptography >= 42 on the managed host, linked against an OpenSSL 3 that provides SM4
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports what would be encrypted, decrypted, generated or removed; reads sources to compare digests.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  state:
    description:
      - V(encrypted) encrypts O(src) into O(dest).
      - V(decrypted) decrypts the container(s) in O(src) into O(dest).
      - V(key) generates a new random 16-byte key into O(key_file) (mode V(0600), 32 hex digits and a
        newline) unless that file already holds a valid key.
    type: str
    choices: [encrypted, decrypted, key]
    default: encrypted
  src:
    description:
      - The file or directory to encrypt or decrypt.
      - For a directory, every regular file below it is processed; symbolic links and special files
        are skipped and listed in RV(skipped).
      - Required unless O(state=key).
    type: path
  dest:
    description:
      - Where the result goes. An existing directory (or a path ending in C(/)) given for a single
        file receives the file under its own name (with O(suffix) added or removed).
      - Defaults to O(src) with O(suffix) appended (V(encrypted)) or removed (V(decrypted)).
      - For a directory O(src), the tree is mirrored below O(dest); when encrypting, O(suffix) is
        appended to every file name; when decrypting, only files whose names end in O(suffix) are
        decrypted (the suffix is removed) and other files are listed in RV(skipped).
      - Must differ from O(src) and, for a tree, must not lie inside it (or contain it).
    type: path
  key_file:
    description:
      - File that holds the key, as 16 raw bytes or 32 hexadecimal digits.
      - The file must be mode V(0600) or stricter (no access for group or others); the module refuses
        any other mode and says how to fix it.
      - With O(state=key), the file to create.
      - Exactly one of O(key_file) and O(key) is required.
    type: path
  key:
    description:
      - The key as 32 hexadecimal digits, normally from an Ansible Vault variable.
      - Never logged; the module returns only the key's fingerprint (RV(key_id)).
    type: str
  chunk_size:
    description:
      - Plaintext bytes per authenticated chunk when encrypting, between V(4096) and V(67108864) and a
        multiple of 16. Memory use is about 4 x O(chunk_size) x O(workers).
      - Decryption reads the chunk size from the container.
      - A destination that already matches is not re-encrypted just because its chunk size differs.
    type: int
    default: 1048576
  workers:
    description:
      - Number of threads that encrypt or decrypt chunks in parallel; with V(1) all the work runs on one thread.
      - Defaults to the number of CPUs of the managed host, at most 8.
    type: int
  force:
    description:
      - Encrypt or decrypt even when the destination already matches the source.
      - Has no effect with O(state=key); an existing key file is never replaced (remove it yourself
        once no data depends on it).
    type: bool
    default: false
  remove_src:
    description:
      - Remove each source file once its destination is complete and synced (or already matched).
        For a directory O(src), directories left empty are removed too; skipped files are kept.
      - When O(src) no longer exists but the destination does, the task reports no change, so a
        second run stays idempotent.
    type: bool
    default: false
  suffix:
    description:
      - File name suffix of encrypted files, used for default destinations and inside trees.
    type: str
    default: .sm4
notes:
  - Deciding whether a destination is current reads the whole plaintext once to hash it (SHA-256,
    typically above 1 GB/s) when the sizes match; the container's data chunks are not decrypted
    for that check.
  - New files take the permission bits of their source file. A key file is created with mode V(0600).
  - A run that is killed leaves at most a C(.<name>.<random>.partial) file next to the destination,
    never a partial file under the destination name.
  - Keys are never written to the task result or logs; RV(key_id) is a one-way fingerprint that lets
    you tell keys apart.
  - The container format, byte by byte, with a standalone decryption example that needs only the
    C(cryptography) library, is in C(docs/sm4-file-format.md) of this collection.
"""

EXAMPLES = r"""
- name: Generate a key file on the host (kept if it already exists)
  onprem.deepseek.sm4_file:
    state: key
    key_file: /etc/onprem-deepseek/keys/backup.key

- name: Encrypt an audit log archive with that key
  onprem.deepseek.sm4_file:
    src: /var/log/audit/archive-2025-06.tar
    dest: /srv/backup/archive-2025-06.tar.sm4
    key_file: /etc/onprem-deepseek/keys/backup.key

- name: Encrypt a model directory for removable media with a vaulted key, using 8 cores
  onprem.deepseek.sm4_file:
    src: /srv/models/DeepSeek-R1-Distill-Qwen-7B
    dest: /media/usb/DeepSeek-R1-Distill-Qwen-7B.sm4
    key: "{{ vault_sm4_media_key }}"
    workers: 8

- name: Decrypt it on the air-gapped side and drop the encrypted copy
  onprem.deepseek.sm4_file:
    state: decrypted
    src: /srv/import/DeepSeek-R1-Distill-Qwen-7B.sm4
    dest: /srv/models/DeepSeek-R1-Distill-Qwen-7B
    key: "{{ vault_sm4_media_key }}"
    remove_src: true
"""

RETURN = r"""
src:
  description: The source path, absolute.
  returned: when O(state) is V(encrypted) or V(decrypted)
  type: str
  sample: /srv/models/DeepSeek-R1-Distill-Qwen-7B
dest:
  description:
    - The destination path, absolute (for O(state=key), the key file).
    - As for other file modules, Ansible adds C(owner), C(group), C(mode), C(size) and C(state)
      (V(file) or V(directory)) of this path when it exists.
  returned: always
  type: str
  sample: /media/usb/DeepSeek-R1-Distill-Qwen-7B.sm4
key_id:
  description:
    - Fingerprint of the key (first 16 bytes of HMAC-SHA256 keyed with it), as stored in container
      headers. It identifies a key without revealing it.
    - Not returned in check mode for a key file that does not exist yet.
  returned: success
  type: str
  sample: 5b0c3b1c3e6f2a4d8e9f00112233aabb
files:
  description: One entry per source file considered.
  returned: when O(state) is V(encrypted) or V(decrypted)
  type: list
  elements: dict
  contains:
    src:
      description: Source file.
      type: str
      sample: /srv/models/DeepSeek-R1-Distill-Qwen-7B/config.json
    dest:
      description: Destination file.
      type: str
      sample: /media/usb/DeepSeek-R1-Distill-Qwen-7B.sm4/config.json.sm4
    action:
      description: V(encrypt) or V(decrypt) when the file was (or in check mode would be) written, V(none) when
        the destination already matched.
      type: str
      sample: encrypt
    size:
      description: Plaintext size in bytes.
      type: int
      sample: 1234
    src_removed:
      description: Whether the source file was (or in check mode would be) removed.
      type: bool
      sample: false
skipped:
  description: Files below a source directory that were not processed (symbolic links, special files,
    and when decrypting, files without O(suffix)).
  returned: when O(state) is V(encrypted) or V(decrypted)
  type: list
  elements: str
  sample: [/srv/import/models.sm4/README.txt]
bytes:
  description: Plaintext bytes encrypted or decrypted by this run (0 in check mode).
  returned: when O(state) is V(encrypted) or V(decrypted)
  type: int
  sample: 15231234048
workers:
  description: Number of worker threads used.
  returned: when O(state) is V(encrypted) or V(decrypted)
  type: int
  sample: 8
"""

import os
import stat

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.onprem.deepseek.plugins.module_utils import _sm4


def _default_workers():
    return max(1, min(8, os.cpu_count() or 1))


def _inside(path, parent):
    path = os.path.realpath(path)
    parent = os.path.realpath(parent)
    return path == parent or path.startswith(parent.rstrip(os.sep) + os.sep)


class SM4FileRunner:
    """Plans and applies one task. All failures are raised as _sm4.SM4Error with a message that
    says what to do; ``main`` turns them into fail_json."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.state = self.params["state"]
        self.suffix = self.params["suffix"]
        self.result = {"changed": False}

    # ----- keys ------------------------------------------------------------------------------

    def load_key(self):
        if self.params["key_file"]:
            return _sm4.load_key_file(self.params["key_file"])
        return _sm4.parse_hex_key(self.params["key"])

    def run_key(self):
        path = os.path.abspath(self.params["key_file"])
        self.result["dest"] = path
        if os.path.lexists(path):
            key = _sm4.load_key_file(path)
            self.result["key_id"] = _sm4.key_id(key).hex()
            self.result["msg"] = f"key file {path} already holds a valid key; it was left unchanged"
            return
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise _sm4.SM4Error(f"directory {directory} does not exist; create it first (owned by root, mode 0700)")
        self.result["changed"] = True
        if self.module.check_mode:
            self.result["msg"] = f"a new key would be generated in {path}"
            return
        key = _sm4.generate_key()
        _sm4.write_key_file(path, key)
        self.result["key_id"] = _sm4.key_id(key).hex()
        self.result["msg"] = f"generated a new key in {path}"

    # ----- planning --------------------------------------------------------------------------

    def _dest_name(self, name):
        if self.state == "encrypted":
            return name + self.suffix
        if self.suffix and name.endswith(self.suffix) and len(name) > len(self.suffix):
            return name[: -len(self.suffix)]
        return None

    def _default_dest(self, src):
        dest = self._dest_name(src.rstrip(os.sep))
        if dest is None:
            raise _sm4.SM4Error(f"{src} does not end in '{self.suffix}', so there is no default dest; give dest")
        return dest

    def plan(self, src, dest):
        """Return (pairs, skipped): pairs of (src_file, dest_file) in a stable order."""
        if os.path.isdir(src):
            return self._plan_tree(src, dest)
        return self._plan_file(src, dest)

    def _plan_file(self, src, dest):
        if not stat.S_ISREG(os.lstat(src).st_mode):
            raise _sm4.SM4Error(f"{src} is not a regular file or a directory")
        if self.params["dest"] and (self.params["dest"].endswith(os.sep) or os.path.isdir(dest)):
            name = self._dest_name(os.path.basename(src))
            if name is None:
                raise _sm4.SM4Error(f"{src} does not end in '{self.suffix}'; give the full dest file name")
            dest = os.path.join(dest, name)
        if os.path.realpath(src) == os.path.realpath(dest):
            raise _sm4.SM4Error(
                "src and dest are the same file; in-place encryption is not supported: give "
                "another dest and remove_src: true"
            )
        return [(src, dest)], []

    def _plan_tree(self, src, dest):
        if os.path.lexists(dest) and not os.path.isdir(dest):
            raise _sm4.SM4Error(f"src {src} is a directory but dest {dest} exists and is not one")
        if _inside(dest, src) or _inside(src, dest):
            raise _sm4.SM4Error(f"dest {dest} and src {src} overlap; give a dest outside the source tree")
        pairs, skipped = [], []
        for root, dirs, files in os.walk(src):
            dirs.sort()
            # os.walk does not descend into symlinked directories; report them.
            skipped.extend(os.path.join(root, d) for d in dirs if os.path.islink(os.path.join(root, d)))
            rel_root = os.path.relpath(root, src)
            for name in sorted(files):
                path = os.path.join(root, name)
                out_name = self._dest_name(name)
                if out_name is None or not stat.S_ISREG(os.lstat(path).st_mode):
                    skipped.append(path)
                else:
                    pairs.append((path, os.path.normpath(os.path.join(dest, rel_root, out_name))))
        return pairs, skipped

    def is_current(self, src, dest, key):
        if self.state == "encrypted":
            return _sm4.encrypted_is_current(src, dest, key)
        return _sm4.decrypted_is_current(src, dest, key)

    # ----- apply -----------------------------------------------------------------------------

    def run_files(self):
        p = self.params
        src = os.path.abspath(p["src"])
        dest = os.path.abspath(p["dest"]) if p["dest"] else self._default_dest(src)
        if p["dest"] and p["dest"].endswith(os.sep):
            dest += os.sep
        workers = p["workers"] if p["workers"] is not None else _default_workers()
        _sm4.validate_workers(workers)
        if self.state == "encrypted":
            _sm4.validate_chunk_size(p["chunk_size"])
        key = self.load_key()
        self.result.update(src=src, dest=dest.rstrip(os.sep) or os.sep, key_id=_sm4.key_id(key).hex(),
                           files=[], skipped=[], bytes=0, workers=workers)

        if not os.path.lexists(src):
            if p["remove_src"] and os.path.lexists(dest):
                self.result["msg"] = f"{src} is gone and {dest} exists (remove_src): nothing to do"
                return
            raise _sm4.SM4Error(f"src {src} does not exist")

        pairs, skipped = self.plan(src, dest)
        self.result["skipped"] = skipped
        for file_src, file_dest in pairs:
            self.result["files"].append(self.process(file_src, file_dest, key, workers))
        if p["remove_src"]:
            self.remove_sources(src)
        written = sum(1 for entry in self.result["files"] if entry["action"] != "none")
        verb = "would be " if self.module.check_mode else ""
        self.result["msg"] = (
            f"{len(pairs)} file(s): {written} {verb}{self.state}, {len(pairs) - written} already up to date, "
            f"{len(skipped)} skipped"
        )

    def process(self, src, dest, key, workers):
        """Encrypt or decrypt one file unless its destination is current; return its entry."""
        entry = {"src": src, "dest": dest, "action": "none", "src_removed": False}
        if self.params["force"] or not self.is_current(src, dest, key):
            entry["action"] = "encrypt" if self.state == "encrypted" else "decrypt"
            self.result["changed"] = True
        if entry["action"] == "none" or self.module.check_mode:
            entry["size"] = (os.path.getsize(src) if self.state == "encrypted"
                             else _sm4.read_header(src).plaintext_size)
            return entry
        parent = os.path.dirname(dest)
        if not os.path.isdir(parent):
            os.makedirs(parent)
        if self.state == "encrypted":
            done = _sm4.encrypt_file(src, dest, key, self.params["chunk_size"], workers)
        else:
            done = _sm4.decrypt_file(src, dest, key, workers)
        entry["size"] = done["size"]
        self.result["bytes"] += done["size"]
        return entry

    def remove_sources(self, src):
        check = self.module.check_mode
        for entry in self.result["files"]:
            entry["src_removed"] = True
            self.result["changed"] = True
            if not check:
                os.unlink(entry["src"])
        if check or not os.path.isdir(src):
            return
        # Remove directories left empty, deepest first; keep any that still hold skipped files.
        for root, _dirs, _files in os.walk(src, topdown=False):
            try:
                os.rmdir(root)
            except OSError:
                pass


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "default": "encrypted", "choices": ["encrypted", "decrypted", "key"]},
            "src": {"type": "path"},
            "dest": {"type": "path"},
            "key_file": {"type": "path", "no_log": False},
            "key": {"type": "str", "no_log": True},
            "chunk_size": {"type": "int", "default": _sm4.DEFAULT_CHUNK_SIZE},
            "workers": {"type": "int"},
            "force": {"type": "bool", "default": False},
            "remove_src": {"type": "bool", "default": False},
            "suffix": {"type": "str", "default": ".sm4"},
        },
        mutually_exclusive=[("key", "key_file")],
        required_one_of=[("key", "key_file")],
        required_if=[
            ("state", "key", ("key_file",)),
            ("state", "encrypted", ("src",)),
            ("state", "decrypted", ("src",)),
        ],
        supports_check_mode=True,
    )
    if not _sm4.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography >= 42"), exception=_sm4.CRYPTOGRAPHY_IMPORT_ERROR)

    runner = SM4FileRunner(module)
    try:
        _sm4.require_sm4()
        if runner.state == "key":
            runner.run_key()
        else:
            runner.run_files()
    except _sm4.SM4Error as exc:
        runner.result.pop("msg", None)
        module.fail_json(msg=str(exc), **runner.result)
    except OSError as exc:
        runner.result.pop("msg", None)
        target = f" ({exc.filename})" if exc.filename else ""
        module.fail_json(msg=f"{exc.strerror or exc}{target}; check the path and its permissions", **runner.result)
    module.exit_json(**runner.result)


if __name__ == "__main__":
    main()
