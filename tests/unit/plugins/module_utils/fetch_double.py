# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test double for the network seam: ``MemoryFetcher`` is the real HttpFetcher with ``request`` answered
from an in-memory site (plain mirror, HF-compatible API, ModelScope API) instead of a socket.

Everything above ``request`` (listings, Range resume, hashing, retries, atomic rename) is the real code.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import re
import urllib.parse

from ansible_collections.onprem.deepseek.plugins.module_utils._fetch import HttpFetcher, Response

BASE = "http://models.test"
REPO = "deepseek-ai/Tiny"
COMMIT = "86a6b1e5c9f6a2e0c3f1d4b7e8a9c0d1e2f3a4b5"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def git_sha1(data):
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


class MemorySite:
    """Files by relative path; faults by path, consumed one per GET: ignore_range, bad_range, corrupt, error500."""

    def __init__(self, files, page_size=2, lfs_min_size=32):
        self.files = collections.OrderedDict(files)
        self.page_size = page_size
        self.lfs_min_size = lfs_min_size
        self.faults = collections.defaultdict(list)
        self.sent = collections.Counter()
        self.requests = []
        self.manifest_text = None

    def manifest(self):
        if self.manifest_text is not None:
            return self.manifest_text
        return "".join(f"{sha256(data)}  {rel}\n" for rel, data in self.files.items())

    def hf_tree(self):
        items = []
        for rel, data in self.files.items():
            item = {"type": "file", "oid": git_sha1(data), "size": len(data), "path": rel}
            if len(data) >= self.lfs_min_size:
                item["lfs"] = {"oid": sha256(data), "size": len(data), "pointerSize": 135}
            items.append(item)
        return items

    def answer(self, url, headers, method):
        parts = urllib.parse.urlsplit(url)
        path = urllib.parse.unquote(parts.path)
        query = urllib.parse.parse_qs(parts.query)
        self.requests.append((method, url, headers.get("Range")))
        routes = (
            (r"^/mirror/SHA256SUMS$", lambda m: _ok(self.manifest().encode())),
            (r"^/mirror/(.+)$", lambda m: self.file(m.group(1), headers, method)),
            (rf"^/api/models/{REPO}/revision/main$", lambda m: _ok(json.dumps({"id": REPO, "sha": COMMIT}).encode())),
            (rf"^/api/models/{REPO}/tree/([^/]+)$", lambda m: self.tree(parts, query)),
            (rf"^/{REPO}/resolve/([^/]+)/(.+)$", lambda m: self.file(m.group(2), headers, method)),
            (rf"^/api/v1/models/{REPO}/repo/files$", lambda m: self.modelscope_files()),
            (rf"^/api/v1/models/{REPO}/repo$", lambda m: self.file(query["FilePath"][0], headers, method)),
        )
        for pattern, action in routes:
            match = re.match(pattern, path)
            if match:
                return action(match)
        return Response(404, {}, io.BytesIO(b""), "Not Found")

    def tree(self, parts, query):
        items = self.hf_tree()
        cursor = int(query.get("cursor", ["0"])[0])
        extra = {}
        if cursor + self.page_size < len(items):
            extra["Link"] = f'<{BASE}{parts.path}?recursive=true&cursor={cursor + self.page_size}>; rel="next"'
        return _ok(json.dumps(items[cursor:cursor + self.page_size]).encode(), extra)

    def modelscope_files(self):
        files = [{"Path": rel, "Name": rel.rsplit("/", 1)[-1], "Type": "blob", "Size": len(data),
                  "Sha256": sha256(data)} for rel, data in self.files.items()]
        return _ok(json.dumps({"Code": 200, "Data": {"Files": files}}).encode())

    def file(self, rel, headers, method):
        data = self.files.get(rel)
        if data is None:
            return Response(404, {}, io.BytesIO(b""), "Not Found")
        if method == "HEAD":
            return Response(200, {"Content-Length": str(len(data))}, io.BytesIO(b""), "OK")
        fault = self.faults[rel].pop(0) if self.faults[rel] else None
        if fault == "error500":
            return Response(500, {}, io.BytesIO(b""), "Internal Server Error")
        if fault == "corrupt":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        match = re.match(r"^bytes=(\d+)-$", headers.get("Range") or "")
        if match and fault != "ignore_range":
            start = int(match.group(1))
            reported = start + 1 if fault == "bad_range" else start
            body = data[start:]
            self.sent[rel] += len(body)
            return Response(206, {"Content-Range": f"bytes {reported}-{len(data) - 1}/{len(data)}",
                                  "Content-Length": str(len(body))}, io.BytesIO(body), "Partial Content")
        self.sent[rel] += len(data)
        return Response(200, {"Content-Length": str(len(data))}, io.BytesIO(data), "OK")


def _ok(body, extra=None):
    headers = {"Content-Length": str(len(body))}
    headers.update(extra or {})
    return Response(200, headers, io.BytesIO(body), "OK")


class MemoryFetcher(HttpFetcher):
    """HttpFetcher whose one network method answers from a MemorySite; no sleeping between retries."""

    def __init__(self, site, **options):
        options.setdefault("retries", 2)
        options.setdefault("backoff", 0)
        super().__init__(sleep=lambda _seconds: None, **options)
        self.site = site

    def request(self, url, headers=None, method="GET"):
        return self.site.answer(url, dict(headers or {}), method)
