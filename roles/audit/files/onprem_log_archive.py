# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Archive rotated logs for the audit trail (run daily by onprem-deepseek-log-archive.timer).

  onprem_log_archive.py run --audit-log /var/log/audit/audit.log --archive-dir DIR --retention-days N
                            [--key-file KEY --encrypt-dir DIR ...]
    1. auditd's rotated files (audit.log.1, .2, ...; closed, kept by max_log_file_action = KEEP_LOGS) are
       compressed into DIR/audit-<time>.log.gz, oldest first, and removed.
    2. With --key-file: every *.gz in each --encrypt-dir is encrypted with SM4-GCM into the container of
       onprem.deepseek.sm4_file (docs/sm4-file-format.md), verified, and the plaintext removed.
       Numbered names (access.log.3.gz) get a time stamp (access.log-<time>.gz.sm4) so that the next
       rotation cannot collide with them.
    3. Archives (*.gz, *.sm4) older than N days are removed from DIR and from each --encrypt-dir (before
       step 2, so that nothing is encrypted only to be removed).
  onprem_log_archive.py check-sm4 --key-file KEY
    Exit 1 with the reason when SM4-GCM or the key file is unusable here.

One log line per action. The SM4 code is the collection's plugins/module_utils/_sm4.py, installed next to
this script as _onprem_sm4.py (it imports nothing from Ansible).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import _onprem_sm4 as sm4
except ImportError:
    sm4 = None


def stamp(mtime):
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(mtime))


def unique(path):
    if not os.path.exists(path):
        return path
    base, ext = path, ""
    for suffix in (".log.gz", ".gz.sm4", ".sm4", ".gz"):
        if path.endswith(suffix):
            base, ext = path[: -len(suffix)], suffix
            break
    n = 1
    while os.path.exists(f"{base}.{n}{ext}"):
        n += 1
    return f"{base}.{n}{ext}"


def archive_audit(audit_log, archive_dir):
    rotated = []
    for path in glob.glob(audit_log + ".*"):
        suffix = path[len(audit_log) + 1:]
        if suffix.isdigit():
            rotated.append((int(suffix), path))
    for _stamp, path in sorted(rotated, reverse=True):
        st = os.stat(path)
        dest = unique(os.path.join(archive_dir, f"audit-{stamp(st.st_mtime)}.log.gz"))
        partial = dest + ".partial"
        with open(path, "rb") as src, gzip.open(partial, "wb") as out:
            shutil.copyfileobj(src, out, 1024 * 1024)
        os.chmod(partial, 0o640)
        os.utime(partial, (st.st_mtime, st.st_mtime))
        os.replace(partial, dest)
        os.unlink(path)
        print(f"archived {path} -> {dest}", flush=True)


def encrypted_name(path, mtime):
    directory, name = os.path.split(path)
    match = re.match(r"^(.*?)(\.\d+)?\.gz$", name)
    if match and match.group(2):
        name = f"{match.group(1)}-{stamp(mtime)}.gz"
    return unique(os.path.join(directory, name + ".sm4"))


def encrypt_dir(sm4, key, directory):
    for path in sorted(glob.glob(os.path.join(directory, "*.gz"))):
        st = os.stat(path)
        dest = encrypted_name(path, st.st_mtime)
        sm4.encrypt_file(path, dest, key)
        _header, sealed_digest = sm4.read_trailer_digest(dest, key)
        if sm4.file_sha256(path) != sealed_digest:
            raise SystemExit(f"{dest}: digest does not match {path}; plaintext kept")
        os.utime(dest, (st.st_mtime, st.st_mtime))
        os.unlink(path)
        print(f"encrypted {path} -> {dest} (SM4-GCM, key id {sm4.key_id(key).hex()[:16]})", flush=True)


def expire(directories, days):
    limit = time.time() - days * 86400
    for directory in directories:
        for path in glob.glob(os.path.join(directory, "*.gz")) + glob.glob(os.path.join(directory, "*.sm4")):
            if os.stat(path).st_mtime < limit:
                os.unlink(path)
                print(f"expired {path} (older than {days} days)", flush=True)


def load_sm4(key_file):
    if sm4 is None:
        raise RuntimeError(f"_onprem_sm4.py (the collection's SM4 code) is missing next to {__file__}")
    sm4.require_sm4()
    return sm4, sm4.load_key_file(key_file)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run")
    run.add_argument("--audit-log", required=True)
    run.add_argument("--archive-dir", required=True)
    run.add_argument("--retention-days", type=int, required=True)
    run.add_argument("--key-file")
    run.add_argument("--encrypt-dir", action="append", default=[])
    check = sub.add_parser("check-sm4")
    check.add_argument("--key-file", required=True)
    args = parser.parse_args(argv)
    if args.action == "check-sm4":
        try:
            _key_id, key = load_sm4(args.key_file)
        except Exception as exc:  # the SM4 errors, ImportError, OSError: all end in one clear line
            print(f"cannot encrypt archives with SM4-GCM here: {exc}", file=sys.stderr)
            return 1
        print(f"SM4-GCM available, key file {args.key_file} usable")
        return 0
    os.makedirs(args.archive_dir, exist_ok=True)
    archive_audit(args.audit_log, args.archive_dir)
    expire([args.archive_dir, *args.encrypt_dir], args.retention_days)
    if args.key_file:
        sm4, key = load_sm4(args.key_file)
        for directory in args.encrypt_dir:
            if os.path.isdir(directory):
                encrypt_dir(sm4, key, directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
