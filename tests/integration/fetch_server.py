# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A model server for the tests: plain mirror, HF-compatible API and ModelScope API, with injected faults.

Threaded, bound to 127.0.0.1 on an ephemeral port. Files are held in memory or generated block by block
(``add_generated``: a multi-GB file costs 1 MiB of memory and no disk). It counts the body bytes it sent
per file, and applies faults per file path, in order, one per GET of that file:

    drop          close the connection after ``at`` body bytes (Content-Length announced the full body)
    corrupt       flip one byte at file offset ``at``
    truncate      announce and send only the first ``at`` bytes (a consistent but short answer)
    error500      answer 500
    notfound      answer 404
    ignore_range  answer 200 with the full body even to a Range request
    bad_length    announce ``delta`` more bytes in Content-Length than the body has
    slow          wait ``delay`` seconds before the body (longer than the client's time-out)
    pause         send ``at`` bytes, then stall until ``release()`` (used to kill a client half-way)

A fault with ``times: -1`` applies to every request. Layouts:

    /mirror/<path>, /mirror/SHA256SUMS                                  plain mirror
    /api/models/<org>/<name>/revision/<rev>                             HF revision info (sha)
    /api/models/<org>/<name>/tree/<rev>?recursive=true[&cursor=N]       HF tree, ``page_size`` per page, Link
    /<org>/<name>/resolve/<rev>/<path>                                  HF download (Range)
    /api/v1/models/<org>/<name>/repo/files?Revision=&Recursive=true     ModelScope list
    /api/v1/models/<org>/<name>/repo?Revision=&FilePath=<path>          ModelScope download (Range)
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MIB = 1024 * 1024
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Blob:
    """File content: bytes in memory, or a generated body of ``size`` bytes (1 MiB pattern, block index stamped)."""

    def __init__(self, data=None, size=None, seed=0):
        self.data = data
        self.size = len(data) if data is not None else size
        self.pattern = None if data is not None else hashlib.shake_256(b"blob-%d" % seed).digest(MIB)
        self._sha256 = None

    def read(self, offset, length):
        if self.data is not None:
            return self.data[offset:offset + length]
        out = bytearray()
        end = min(offset + length, self.size)
        while offset < end:
            block, inner = divmod(offset, MIB)
            piece = bytearray(self.pattern[inner:min(MIB, inner + end - offset)])
            stamp = block.to_bytes(8, "big")
            for i in range(inner, min(8, inner + len(piece))):
                piece[i - inner] = stamp[i]
            out += piece
            offset += len(piece)
        return bytes(out)

    def sha256(self):
        if self._sha256 is None:
            digest = hashlib.sha256()
            for offset in range(0, self.size, 8 * MIB):
                digest.update(self.read(offset, 8 * MIB))
            self._sha256 = digest.hexdigest()
        return self._sha256

    def git_sha1(self):
        digest = hashlib.sha1(b"blob %d\x00" % self.size)
        for offset in range(0, self.size, 8 * MIB):
            digest.update(self.read(offset, 8 * MIB))
        return digest.hexdigest()


class FetchServer:
    """Start with ``with FetchServer() as srv``; ``srv.url`` is the base URL."""

    def __init__(self, repo="deepseek-ai/Tiny", page_size=2, lfs_min_size=64):
        self.repo = repo
        self.page_size = page_size
        self.lfs_min_size = lfs_min_size
        self.files = collections.OrderedDict()
        self.faults = collections.defaultdict(list)
        self.sent = collections.Counter()
        self.requests = []
        self.lock = threading.Lock()
        self.paused = threading.Event()
        self.release_event = threading.Event()
        self.manifest_override = None
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = None

    # ---- configuration ---------------------------------------------------------------------------
    def add(self, rel, data):
        self.files[rel] = Blob(data=data)
        return self.files[rel]

    def add_generated(self, rel, size, seed=1):
        self.files[rel] = Blob(size=size, seed=seed)
        return self.files[rel]

    def fault(self, rel, kind, times=1, **options):
        with self.lock:
            self.faults[rel].append(dict(options, kind=kind, times=times))

    def clear_faults(self):
        with self.lock:
            self.faults.clear()

    def release(self):
        self.release_event.set()

    def reset_counts(self):
        with self.lock:
            self.sent.clear()
            del self.requests[:]

    def manifest(self):
        if self.manifest_override is not None:
            return self.manifest_override
        return "".join(f"{blob.sha256()}  {rel}\n" for rel, blob in self.files.items())

    def truth(self):
        return {rel: blob.sha256() for rel, blob in self.files.items()}

    # ---- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- helpers for the handler ---------------------------------------------------------------------
    def take_fault(self, rel):
        with self.lock:
            queue = self.faults.get(rel)
            if not queue:
                return None
            fault = queue[0]
            if fault["times"] > 0:
                fault["times"] -= 1
                if fault["times"] == 0:
                    queue.pop(0)
            return dict(fault)

    def count(self, rel, nbytes):
        with self.lock:
            self.sent[rel] += nbytes

    def hf_tree(self):
        items = []
        for rel, blob in self.files.items():
            item = {"type": "file", "oid": blob.git_sha1(), "size": blob.size, "path": rel}
            if blob.size >= self.lfs_min_size:
                item["lfs"] = {"oid": blob.sha256(), "size": blob.size, "pointerSize": 134}
            items.append(item)
        dirs = sorted({rel.rsplit("/", 1)[0] for rel in self.files if "/" in rel})
        items += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in dirs]
        return items

    def ms_files(self):
        return [{"Name": rel.rsplit("/", 1)[-1], "Path": rel, "Type": "blob", "Size": blob.size,
                 "Sha256": blob.sha256(), "IsLFS": blob.size >= self.lfs_min_size} for rel, blob in self.files.items()]


def _handler(server):
    repo = re.escape(server.repo)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self.route(head=True)

        def do_GET(self):
            self.route(head=False)

        def route(self, head):
            parts = urllib.parse.urlsplit(self.path)
            path = urllib.parse.unquote(parts.path)
            query = urllib.parse.parse_qs(parts.query)
            with server.lock:
                server.requests.append((self.command, self.path, self.headers.get("Range"),
                                        self.headers.get("Authorization")))
            routes = (
                (r"^/mirror/SHA256SUMS$", lambda m: self.send_small(server.manifest().encode(), "text/plain", head)),
                (r"^/mirror/(.+)$", lambda m: self.send_file(m.group(1), head)),
                (rf"^/api/models/{repo}/revision/([^/]+)$",
                 lambda m: self.send_json({"id": server.repo, "sha": COMMIT}, head)),
                (rf"^/api/models/{repo}/tree/([^/]+)$", lambda m: self.tree(parts, query, head)),
                (rf"^/{repo}/resolve/([^/]+)/(.+)$",
                 lambda m: self.send_file(m.group(2), head, {"X-Repo-Commit": COMMIT})),
                (rf"^/api/v1/models/{repo}/repo/files$", lambda m: self.send_json(
                    {"Code": 200, "Data": {"Files": server.ms_files()}, "Success": True}, head)),
                (rf"^/api/v1/models/{repo}/repo$", lambda m: self.send_file(query.get("FilePath", [""])[0], head)),
            )
            for pattern, action in routes:
                match = re.match(pattern, path)
                if match:
                    return action(match)
            return self.send_status(404)

        def tree(self, parts, query, head):
            fault = server.take_fault("@tree")
            if fault and fault["kind"] == "error500":
                return self.send_status(500)
            items = server.hf_tree()
            cursor = int(query.get("cursor", ["0"])[0])
            page = items[cursor:cursor + server.page_size]
            link = None
            if cursor + server.page_size < len(items):
                link = f'<{server.url}{parts.path}?recursive=true&cursor={cursor + server.page_size}>; rel="next"'
            return self.send_json(page, head, link)

        def send_status(self, code):
            body = json.dumps({"error": code}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def send_small(self, body, ctype, head, extra=None):
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def send_json(self, obj, head, link=None):
            self.send_small(json.dumps(obj).encode(), "application/json", head, {"Link": link} if link else None)

        def send_file(self, rel, head, extra=None):
            blob = server.files.get(rel)
            if blob is None:
                return self.send_status(404)
            fault = None if head else server.take_fault(rel)
            kind = fault["kind"] if fault else None
            if kind == "error500":
                return self.send_status(500)
            if kind == "notfound":
                return self.send_status(404)
            start = 0
            ranged = self.headers.get("Range")
            match = re.match(r"^bytes=(\d+)-(\d*)$", ranged or "")
            if match and kind != "ignore_range":
                start = int(match.group(1))
                if start >= blob.size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{blob.size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
            end = blob.size
            if kind == "truncate":
                end = min(end, start + fault.get("at", blob.size // 2))
            length = end - start
            announced = length + (fault.get("delta", 1000) if kind == "bad_length" else 0)
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{blob.size}")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(announced))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{blob.sha256()}"')
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if head:
                return None
            if kind == "slow":
                time.sleep(fault.get("delay", 3.0))
            self.stream(rel, blob, start, end, fault)
            return None

        def stream(self, rel, blob, start, end, fault):
            kind = fault["kind"] if fault else None
            position = start
            sent_here = 0
            chunk = 1024 * 1024
            try:
                while position < end:
                    piece = blob.read(position, min(chunk, end - position))
                    if kind == "corrupt" and position <= fault.get("at", 0) < position + len(piece):
                        at = fault.get("at", 0) - position
                        piece = piece[:at] + bytes([piece[at] ^ 0xFF]) + piece[at + 1:]
                    if kind in ("drop", "pause") and sent_here + len(piece) >= fault.get("at", 0):
                        piece = piece[:max(fault.get("at", 0) - sent_here, 0)]
                        self.wfile.write(piece)
                        server.count(rel, len(piece))
                        self.wfile.flush()
                        if kind == "pause":
                            server.paused.set()
                            server.release_event.wait(fault.get("timeout", 60))
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self.wfile.write(piece)
                    server.count(rel, len(piece))
                    sent_here += len(piece)
                    position += len(piece)
            except (BrokenPipeError, ConnectionResetError, OSError):
                return

    return Handler


def main():
    """Serve a directory-less demo repo until interrupted (handy for poking with curl)."""
    with FetchServer(page_size=50) as srv:
        srv.add("config.json", b'{"model_type": "deepseek_v3"}\n')
        srv.add_generated("model-00001-of-00002.safetensors", 8 * MIB, seed=1)
        srv.add_generated("model-00002-of-00002.safetensors", 8 * MIB, seed=2)
        print(srv.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
