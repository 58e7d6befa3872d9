# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SHA256SUMS manifests, safe relative paths, streaming hashing and the verified-state cache.

A manifest is the ``sha256sum`` format: one ``<64 hex>  <relative path>`` per line (``<hex> *<path>``,
binary mode, is read too). Paths are POSIX, relative to the tree root; an absolute path, a ``..``
component, a backslash, a NUL or an empty name is refused, and so is a file whose real path (links
resolved) leaves the tree.

The verified-state cache is a JSON file in the tree that records, for every file verified so far,
``size``, ``mtime_ns``, ``inode`` and ``sha256``. A later run that finds the same (size, mtime_ns,
inode) and the same expected digest trusts the file without reading it; anything else (a touched,
replaced or resized file) is hashed again. ``verify=full`` ignores the cache.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import re
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor

MIB = 1024 * 1024
BLOCK_SIZE = 4 * MIB
MANIFEST_NAME = "SHA256SUMS"
STATE_NAME = ".model_fetch_state.json"
PARTIAL_SUFFIX = ".partial"
STATE_VERSION = 1
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


class ManifestError(Exception):
    """A manifest or a path in it that cannot be used; the message says which line and why."""


def safe_relpath(name):
    """Return the normalised relative POSIX path for a manifest entry, or raise ManifestError."""
    if not isinstance(name, str) or not name:
        raise ManifestError("empty path")
    if "\x00" in name or "\n" in name or "\r" in name:
        raise ManifestError(f"path {name!r} contains a NUL or newline")
    if "\\" in name:
        raise ManifestError(f"path {name!r} contains a backslash; manifests use '/' only")
    if name.startswith("/"):
        raise ManifestError(f"absolute path {name!r} refused: manifest paths are relative to the tree")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts:
        raise ManifestError(f"path {name!r} names the tree itself, not a file")
    if ".." in parts:
        raise ManifestError(f"path {name!r} refused: '..' would leave the tree")
    return "/".join(parts)


def check_in_tree(root, rel):
    """Raise ManifestError when ``root/rel`` resolves (through links) to a place outside ``root``."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, *rel.split("/")))
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise ManifestError(f"{rel} resolves to {real}, outside {real_root}: links out of the tree are refused")
    return real


def parse_manifest(text, source="SHA256SUMS"):
    """Parse SHA256SUMS text into an ordered dict {relative path: sha256 hex (lower case)}."""
    entries = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = LINE.match(line)
        if not match:
            raise ManifestError(f"{source} line {number}: expected '<64 hex digits>  <relative path>', got {line!r}")
        try:
            rel = safe_relpath(match.group(2))
        except ManifestError as exc:
            raise ManifestError(f"{source} line {number}: {exc}") from None
        digest = match.group(1).lower()
        if entries.get(rel, digest) != digest:
            raise ManifestError(f"{source} line {number}: {rel} is listed twice with different digests")
        entries[rel] = digest
    return entries


def format_manifest(entries):
    """SHA256SUMS text for {relative path: sha256}, sorted by path (stable across runs)."""
    return "".join(f"{entries[rel]}  {rel}\n" for rel in sorted(entries))


def select(paths, include=None, exclude=None):
    """Keep paths matching any include glob (all when none) and no exclude glob (fnmatch on the relative path)."""
    kept = []
    for rel in paths:
        if include and not any(fnmatch.fnmatchcase(rel, pat) for pat in include):
            continue
        if exclude and any(fnmatch.fnmatchcase(rel, pat) for pat in exclude):
            continue
        kept.append(rel)
    return kept


def hash_file(path, block_size=BLOCK_SIZE, limit=None, algorithm="sha256"):
    """Stream a file through a hash; return (hexdigest, bytes read). ``limit`` stops after that many bytes."""
    digest = hashlib.new(algorithm)
    buf = bytearray(block_size)
    view = memoryview(buf)
    total = 0
    with open(path, "rb", buffering=0) as handle:
        while limit is None or total < limit:
            want = block_size if limit is None else min(block_size, limit - total)
            got = handle.readinto(view[:want])
            if not got:
                break
            digest.update(view[:got])
            total += got
    return digest.hexdigest(), total


def hash_prefix(path, length, hasher, block_size=BLOCK_SIZE):
    """Feed the first ``length`` bytes of ``path`` into ``hasher``; return how many were read."""
    buf = bytearray(block_size)
    view = memoryview(buf)
    total = 0
    with open(path, "rb", buffering=0) as handle:
        while total < length:
            got = handle.readinto(view[:min(block_size, length - total)])
            if not got:
                break
            hasher.update(view[:got])
            total += got
    return total


def fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, data, mode=0o644):
    """Write bytes or text to ``path`` through a temporary file in the same directory, fsync, then rename."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def stat_key(st):
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


class StateCache:
    """The verified-state cache of one tree: {relative path: {size, mtime_ns, inode, sha256}}."""

    def __init__(self, root, name=STATE_NAME):
        self.root = root
        self.path = os.path.join(root, name)
        self.entries = {}
        self.dirty = False
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            if isinstance(data, dict) and data.get("version") == STATE_VERSION and isinstance(data.get("files"), dict):
                self.entries = data["files"]
        except (OSError, ValueError):
            self.entries = {}

    def trusted(self, rel, st, expect):
        """True when ``rel`` was verified against the same digests and its stat has not changed since.

        ``expect`` is a SHA-256 hex string or an expectation dict (``sha256`` and/or ``git_sha1``).
        """
        entry = self.entries.get(rel)
        expect = expectation(expect)
        if not isinstance(entry, dict) or not entry.get("sha256"):
            return False
        if not (expect["sha256"] or expect["git_sha1"]):
            return False
        for key in ("sha256", "git_sha1"):
            if expect[key] and entry.get(key) != expect[key]:
                return False
        return all(entry.get(key) == value for key, value in stat_key(st).items())

    def record(self, rel, st, sha256, git_sha1=None):
        entry = dict(stat_key(st), sha256=sha256)
        if git_sha1:
            entry["git_sha1"] = git_sha1
        if self.entries.get(rel) != entry:
            self.entries[rel] = entry
            self.dirty = True

    def forget(self, rel):
        if self.entries.pop(rel, None) is not None:
            self.dirty = True

    def prune(self, keep):
        for rel in [rel for rel in self.entries if rel not in keep]:
            self.forget(rel)

    def save(self):
        if not self.dirty:
            return False
        atomic_write(self.path, json.dumps({"version": STATE_VERSION, "files": self.entries}, sort_keys=True))
        self.dirty = False
        return True


def expectation(value):
    """Normalise what a file must match: a SHA-256 hex string, or a dict with ``sha256``, ``git_sha1``, ``size``."""
    if isinstance(value, str):
        return {"sha256": value.lower(), "git_sha1": None, "size": None}
    return {"sha256": (value.get("sha256") or "").lower() or None,
            "git_sha1": (value.get("git_sha1") or "").lower() or None,
            "size": value.get("size")}


def git_blob_hasher(size):
    """SHA-1 the way git names a blob: over ``blob <size>\\0`` and the content (the ``oid`` of a tree listing)."""
    hasher = hashlib.sha1(usedforsecurity=False) if _SHA1_FLAG else hashlib.sha1()
    hasher.update(b"blob %d\x00" % size)
    return hasher


try:
    hashlib.sha1(usedforsecurity=False)
    _SHA1_FLAG = True
except TypeError:  # Python < 3.9
    _SHA1_FLAG = False


def hash_for(path, expect, block_size=BLOCK_SIZE):
    """Hash a file once for everything ``expect`` asks; return {'sha256', 'git_sha1', 'size'}."""
    size = os.path.getsize(path)
    hashers = [hashlib.sha256()]
    if expect.get("git_sha1"):
        hashers.append(git_blob_hasher(size))
    buf = bytearray(block_size)
    view = memoryview(buf)
    total = 0
    with open(path, "rb", buffering=0) as handle:
        while True:
            got = handle.readinto(view)
            if not got:
                break
            for hasher in hashers:
                hasher.update(view[:got])
            total += got
    return {"sha256": hashers[0].hexdigest(), "git_sha1": hashers[1].hexdigest() if len(hashers) > 1 else None,
            "size": total}


def mismatch(expect, got):
    """Why a file does not match its expectation, or None when it does."""
    if expect.get("size") is not None and got["size"] != expect["size"]:
        return f"size {got['size']} bytes, expected {expect['size']}"
    if expect.get("sha256") and got["sha256"] != expect["sha256"]:
        return f"SHA-256 {got['sha256']}, expected {expect['sha256']}"
    if expect.get("git_sha1") and got.get("git_sha1") != expect["git_sha1"]:
        return f"git blob SHA-1 {got.get('git_sha1')}, expected {expect['git_sha1']}"
    return None


def _classify(root, rel, expect, cache, mode):
    """Decide from stat alone: ('ok', sha256) from the cache, ('missing',), ('bad', reason) or ('hash', path)."""
    path = os.path.join(root, *rel.split("/"))
    reason = None
    try:
        check_in_tree(root, rel)
        st = os.stat(path)
    except ManifestError as exc:
        return ("bad", str(exc))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return ("missing",)
        return ("bad", f"cannot stat: {exc.strerror}")
    if not stat.S_ISREG(st.st_mode):
        reason = "not a regular file"
    elif expect["size"] is not None and st.st_size != expect["size"]:
        reason = f"size {st.st_size} bytes, expected {expect['size']}"
    if reason is not None:
        if cache is not None:
            cache.forget(rel)
        return ("bad", reason)
    if mode == "cached" and cache is not None and cache.trusted(rel, st, expect):
        return ("ok", cache.entries[rel]["sha256"])
    return ("hash", path)


def verify_tree(root, expected, cache=None, mode="cached", workers=2, block_size=BLOCK_SIZE):
    """Check every file of ``expected`` ({rel: sha256 hex or expectation dict}) under ``root``.

    Returns a dict with ``ok`` ({rel: sha256}), ``bad`` ({rel: reason}), ``missing`` (rel list),
    ``hashed`` (rel list of files read this time) and ``hashed_bytes``. Files are hashed in parallel
    threads (hashlib releases the GIL on large buffers, so threads use several cores). With
    ``mode='cached'`` a file whose stat matches its cache entry for the same digests is not read.
    ``cache`` is updated in memory; the caller saves it.
    """
    result = {"ok": {}, "bad": {}, "missing": [], "hashed": [], "hashed_bytes": 0}
    to_hash = []
    for rel in sorted(expected):
        expect = expectation(expected[rel])
        verdict = _classify(root, rel, expect, cache, mode)
        if verdict[0] == "hash":
            to_hash.append((rel, verdict[1], expect))
        elif verdict[0] == "missing":
            result["missing"].append(rel)
        elif verdict[0] == "bad":
            result["bad"][rel] = verdict[1]
        else:
            result["ok"][rel] = verdict[1]

    def one(item):
        rel, path, expect = item
        before = os.stat(path)
        return rel, before, expect, hash_for(path, expect, block_size)

    if to_hash:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(to_hash)))) as pool:
            for rel, before, expect, got in pool.map(one, to_hash):
                result["hashed"].append(rel)
                result["hashed_bytes"] += got["size"]
                reason = mismatch(expect, got)
                if reason is None:
                    result["ok"][rel] = got["sha256"]
                    if cache is not None:
                        cache.record(rel, before, got["sha256"], got.get("git_sha1"))
                else:
                    result["bad"][rel] = reason
                    if cache is not None:
                        cache.forget(rel)
    return result


def walk_tree(root, skip=(MANIFEST_NAME, STATE_NAME)):
    """Relative paths of the regular files under ``root`` (links inside the tree followed, links out refused)."""
    found = []
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if rel in skip or name.endswith(PARTIAL_SUFFIX):
                continue
            check_in_tree(real_root, rel)
            if os.path.isfile(full):
                found.append(rel)
    return found


def build_manifest(root, include=None, exclude=None, workers=2, cache=None, mode="cached"):
    """Hash every file of ``root`` (cache permitting) and return {rel: sha256}."""
    rels = select(walk_tree(root), include, exclude)
    entries = {}
    to_hash = []
    for rel in rels:
        st = os.stat(os.path.join(root, *rel.split("/")))
        entry = cache.entries.get(rel) if cache is not None and mode == "cached" else None
        if isinstance(entry, dict) and cache.trusted(rel, st, entry.get("sha256")):
            entries[rel] = entry["sha256"]
        else:
            to_hash.append(rel)

    def one(rel):
        path = os.path.join(root, *rel.split("/"))
        before = os.stat(path)
        return rel, before, hash_file(path)[0]

    if to_hash:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(to_hash)))) as pool:
            for rel, before, digest in pool.map(one, to_hash):
                entries[rel] = digest
                if cache is not None:
                    cache.record(rel, before, digest)
    return entries, to_hash
