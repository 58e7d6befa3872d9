# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Metrics for node_exporter's textfile collector (standard library; `cryptography` used when present).

  onprem_textfile.py tls --out FILE CERT...
      onprem_tls_cert_not_after_seconds{path} (Unix time the certificate stops being valid) and
      onprem_tls_cert_readable{path} (0 when a file is missing or not a PEM certificate).
  onprem_textfile.py gateway-log --out FILE --state FILE LOG
      onprem_gateway_responses_total{code}: API answers (URI /v1/...) in the gateway's JSON access log, counted
      incrementally from the offset kept in the state file; a rotated log is finished from LOG.1 first.

Each output is written to a temporary file and renamed, so node_exporter never reads half a file.
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import subprocess
import sys
import tempfile
import time

try:
    from cryptography import x509
except ImportError:  # the openssl command line is used instead
    x509 = None


def write_atomic(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    fd, partial = tempfile.mkstemp(prefix=".onprem-", suffix=".partial", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise


def label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def not_after(path):
    """Unix time of the certificate's notAfter, or None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    if x509 is not None:
        try:
            cert = x509.load_pem_x509_certificate(data)
        except ValueError:
            return None
        moment = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after
        return calendar.timegm(moment.utctimetuple())
    result = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", path], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0 or "=" not in result.stdout:
        return None
    stamp = result.stdout.strip().split("=", 1)[1]
    return calendar.timegm(time.strptime(stamp.replace(" GMT", ""), "%b %d %H:%M:%S %Y"))


def tls(args):
    lines = [
        "# HELP onprem_tls_cert_not_after_seconds Unix time when the certificate expires.",
        "# TYPE onprem_tls_cert_not_after_seconds gauge",
    ]
    readable = ["# HELP onprem_tls_cert_readable 1 when the certificate file could be read.",
                "# TYPE onprem_tls_cert_readable gauge"]
    for path in args.certs:
        when = not_after(path)
        readable.append(f'onprem_tls_cert_readable{{path="{label(path)}"}} {0 if when is None else 1}')
        if when is not None:
            lines.append(f'onprem_tls_cert_not_after_seconds{{path="{label(path)}"}} {when}')
    write_atomic(args.out, "\n".join(lines + readable) + "\n")
    return 0


def load_state(path):
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
        return {"inode": int(state["inode"]), "offset": int(state["offset"]),
                "counts": {str(k): int(v) for k, v in state["counts"].items()}}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {"inode": 0, "offset": 0, "counts": {}}


def count_lines(path, offset, counts):
    """Count complete lines of path from offset; returns the offset after the last complete line."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        for raw in handle:
            if not raw.endswith(b"\n"):
                break
            offset += len(raw)
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(entry, dict) or not str(entry.get("uri", "")).startswith("/v1/"):
                continue
            code = str(entry.get("status", ""))
            if code.isdigit():
                counts[code] = counts.get(code, 0) + 1
    return offset


def gateway_log(args):
    state = load_state(args.state)
    counts = state["counts"]
    try:
        st = os.stat(args.log)
    except FileNotFoundError:
        st = None
    if st is not None:
        offset = state["offset"]
        if st.st_ino != state["inode"]:
            rotated = args.log + ".1"
            try:
                if state["inode"] and os.stat(rotated).st_ino == state["inode"]:
                    count_lines(rotated, state["offset"], counts)
            except FileNotFoundError:
                pass
            offset = 0
        elif st.st_size < offset:
            offset = 0  # truncated in place (copytruncate)
        offset = count_lines(args.log, offset, counts)
        state = {"inode": st.st_ino, "offset": offset, "counts": counts}
        write_atomic(args.state, json.dumps(state) + "\n")
    lines = ["# HELP onprem_gateway_responses_total API answers (/v1/...) of the gateway by HTTP status.",
             "# TYPE onprem_gateway_responses_total counter"]
    for code in sorted(counts):
        lines.append(f'onprem_gateway_responses_total{{code="{code}"}} {counts[code]}')
    write_atomic(args.out, "\n".join(lines) + "\n")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    cmd = sub.add_parser("tls")
    cmd.add_argument("--out", required=True)
    cmd.add_argument("certs", nargs="*")
    cmd = sub.add_parser("gateway-log")
    cmd.add_argument("--out", required=True)
    cmd.add_argument("--state", required=True)
    cmd.add_argument("log")
    args = parser.parse_args(argv)
    return tls(args) if args.action == "tls" else gateway_log(args)


if __name__ == "__main__":
    sys.exit(main())
