# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP fetcher: the one seam between the collection and the network, on the standard library only.

``HttpFetcher.request`` is the only method that opens a connection; everything else (listings,
retries, resume, hashing, atomic rename) is logic on top of it, so tests replace that one method or
point the real one at a local server.

What a download guarantees:

* the body streams in blocks of 256 KiB into ``<final>.partial`` in the destination directory, read and
  written on one thread and hashed on another; SHA-256 (and git's blob SHA-1 when that is what a
  listing gives) is computed while the bytes arrive, never by a second read;
* a ``.partial`` left by an earlier run (even one killed with SIGKILL) is resumed with ``Range``; its
  prefix is hashed again first. A 206 must carry a ``Content-Range`` starting at the requested offset;
  a 200 to a ranged request means the server ignored ``Range``: the partial is truncated and hashing
  restarts from zero;
* 5xx, 408, 429, dropped connections, time-outs and short bodies are retried with exponential
  back-off, resuming from what already arrived;
* the file is fsynced, its size and digests verified, then ``os.replace``-d to its final name. A file
  that fails verification is deleted: it never appears under its final name.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import queue
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed

from ansible_collections.onprem.deepseek.plugins.module_utils._manifest import (
    MIB,
    PARTIAL_SUFFIX,
    check_in_tree,
    fsync_dir,
    git_blob_hasher,
    hash_prefix,
    parse_manifest,
    safe_relpath,
)

DEFAULT_BLOCK_SIZE = 4 * MIB
# Network blocks: the socket read, the write and the hash of one block stay in the CPU's L2 cache at this size.
# Measured on the build machine (1 GiB from a local nginx): 256 KiB blocks ~580-650 MiB/s, 1 MiB ~340, 4 MiB ~270.
STREAM_BLOCK_SIZE = 256 * 1024
STREAM_DEPTH = 4
# Write-back is started (and the page cache released) behind the download every this many bytes
FLUSH_WINDOW = 32 * MIB
USER_AGENT = "onprem.deepseek-model_fetch/1"
CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)
LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?', re.IGNORECASE)
RETRY_STATUS = frozenset([408, 425, 429, 500, 502, 503, 504])
STATUS_HINTS = {
    401: "the endpoint wants credentials: set token (or check that it is still valid)",
    403: "access denied: check the token's permissions and that the model's licence was accepted on the hub",
    404: "not found: check the URL, the repository id, the revision and that the file exists at that revision",
}


class FetchError(Exception):
    """A failure that retrying will not fix (or retries ran out); the message says what to do."""


class RetryableError(Exception):
    """A transient failure: 5xx, dropped connection, time-out, short body."""


class Response:
    """What ``HttpFetcher.request`` returns: a status, a header mapping and a body with ``readinto``."""

    def __init__(self, status, headers, body, reason=""):
        self.status = status
        self.headers = headers
        self.body = body
        self.reason = reason

    def header(self, name):
        value = self.headers.get(name) if self.headers is not None else None
        return value.strip() if isinstance(value, str) else value

    def close(self):
        close = getattr(self.body, "close", None)
        if close is not None:
            close()


class RateLimiter:
    """Shared byte budget across all download threads (bytes per second; 0 = unlimited)."""

    def __init__(self, rate):
        self.rate = int(rate or 0)
        self.lock = threading.Lock()
        self.next_free = time.monotonic()

    def consume(self, nbytes):
        if self.rate <= 0 or nbytes <= 0:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_free)
            self.next_free = start + nbytes / float(self.rate)
            wait = self.next_free - now
        if wait > 0:
            time.sleep(wait)


class Progress:
    """Counts files and bytes across threads; ``snapshot`` gives done/total, rate and ETA."""

    def __init__(self, files_total=0, bytes_total=0, callback=None, interval=1.0):
        self.lock = threading.Lock()
        self.files_total = files_total
        self.bytes_total = bytes_total
        self.files_done = 0
        self.bytes_done = 0
        self.started = time.monotonic()
        self.callback = callback
        self.interval = interval
        self.last_report = 0.0

    def add_bytes(self, nbytes):
        with self.lock:
            self.bytes_done += nbytes
        self._maybe_report()

    def file_done(self):
        with self.lock:
            self.files_done += 1
        self._maybe_report(force=True)

    def snapshot(self):
        with self.lock:
            elapsed = max(time.monotonic() - self.started, 1e-6)
            rate = self.bytes_done / elapsed
            left = max(self.bytes_total - self.bytes_done, 0)
            return {
                "files_done": self.files_done,
                "files_total": self.files_total,
                "bytes_done": self.bytes_done,
                "bytes_total": self.bytes_total,
                "rate_bytes_per_s": int(rate),
                "eta_s": int(left / rate) if rate > 0 else None,
                "elapsed_s": round(elapsed, 1),
            }

    def _maybe_report(self, force=False):
        if self.callback is None:
            return
        now = time.monotonic()
        if not force and now - self.last_report < self.interval:
            return
        self.last_report = now
        try:
            self.callback(self.snapshot())
        except OSError:
            pass


class _NoAuthOnOtherHost(urllib.request.HTTPRedirectHandler):
    """Follow redirects (hubs send LFS files to a CDN) but never carry the token to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            for name in list(new.headers):
                if name.lower() == "authorization":
                    del new.headers[name]
            new.unredirected_hdrs.pop("Authorization", None)
        return new


def _parse_content_range(value):
    match = CONTENT_RANGE.match(value or "")
    if not match:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), int(match.group(2)), total


def _content_length(response):
    value = response.header("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class HttpFetcher:
    """Downloads with resume, retries, streaming SHA-256 and atomic rename. ``request`` is the seam."""

    def __init__(self, timeout=60, ca_path=None, proxy=None, token=None, validate_certs=True, retries=5,
                 backoff=1.0, backoff_max=30.0, block_size=DEFAULT_BLOCK_SIZE, bandwidth=0, headers=None,
                 sleep=time.sleep):
        self.timeout = timeout
        self.token = token
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.block_size = min(max(int(block_size), MIB), 8 * MIB)
        self.limiter = RateLimiter(bandwidth)
        self.extra_headers = dict(headers or {})
        self.sleep = sleep
        self._opener = self._build_opener(ca_path, proxy, validate_certs)

    # ---- the seam -----------------------------------------------------------------------------------
    @staticmethod
    def _build_opener(ca_path, proxy, validate_certs):
        context = ssl.create_default_context(cafile=ca_path) if ca_path else ssl.create_default_context()
        if not validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        proxies = {"http": proxy, "https": proxy} if proxy else None
        return urllib.request.build_opener(
            urllib.request.ProxyHandler(proxies),
            urllib.request.HTTPSHandler(context=context),
            _NoAuthOnOtherHost(),
        )

    def request(self, url, headers=None, method="GET"):
        """Open ``url``; return a Response for any HTTP status. Raise RetryableError for network failures."""
        all_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        all_headers.update(self.extra_headers)
        if self.token:
            all_headers["Authorization"] = "Bearer " + self.token
        all_headers.update(headers or {})
        req = urllib.request.Request(url, headers=all_headers, method=method)
        try:
            resp = self._opener.open(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.headers, exc, exc.reason)
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLError):
                raise FetchError(f"TLS to {_origin(url)} failed ({exc.reason}): set ca_path to the CA bundle that "
                                 "signed the endpoint's certificate") from None
            raise RetryableError(f"cannot reach {_origin(url)}: {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise RetryableError(f"cannot reach {_origin(url)}: {exc}") from None
        return Response(resp.status, resp.headers, resp, resp.reason)

    # ---- small requests ------------------------------------------------------------------------------
    def _with_retries(self, what, func):
        attempt = 0
        while True:
            try:
                return func()
            except (RetryableError, OSError, http.client.HTTPException) as exc:
                attempt += 1
                if attempt > self.retries:
                    raise FetchError(f"{what}: gave up after {attempt} attempts, last error: {exc}") from None
                self.sleep(min(self.backoff * 2 ** (attempt - 1), self.backoff_max))

    def get_bytes(self, url, limit=64 * MIB, what=None):
        """GET a small document (listing, manifest); return (bytes, Response)."""
        def once():
            resp = self.request(url)
            try:
                if resp.status in RETRY_STATUS:
                    raise RetryableError(f"HTTP {resp.status} from {_redact(url)}")
                if resp.status != 200:
                    hint = STATUS_HINTS.get(resp.status, "check the URL and the endpoint")
                    raise FetchError(f"{what or _redact(url)}: HTTP {resp.status} {resp.reason}: {hint}")
                data = resp.body.read(limit + 1)
                length = _content_length(resp)
                if length is not None and len(data) < length:
                    raise RetryableError(f"short body from {_redact(url)}: {len(data)} of {length} bytes")
            finally:
                resp.close()
            if len(data) > limit:
                raise FetchError(f"{what or _redact(url)}: larger than {limit} bytes; is this the right URL?")
            return data, resp
        return self._with_retries(what or _redact(url), once)

    def get_json(self, url, what=None):
        data, resp = self.get_bytes(url, what=what)
        try:
            return json.loads(data.decode("utf-8")), resp
        except ValueError as exc:
            raise FetchError(f"{what or _redact(url)}: the answer is not JSON ({exc}); "
                             "is this an API endpoint?") from None

    def head_size(self, url, what=None):
        """Size of a remote file from HEAD (None when the server does not say)."""
        def once():
            resp = self.request(url, method="HEAD")
            resp.close()
            if resp.status in RETRY_STATUS:
                raise RetryableError(f"HTTP {resp.status}")
            if resp.status != 200:
                hint = STATUS_HINTS.get(resp.status, "check the mirror")
                raise FetchError(f"{what or _redact(url)}: HTTP {resp.status} {resp.reason}: {hint}")
            return _content_length(resp)
        return self._with_retries(what or _redact(url), once)

    # ---- downloads -----------------------------------------------------------------------------------
    def _open_http(self, url):
        def open_at(offset):
            resp = self.request(url, {"Range": f"bytes={offset}-"} if offset else None)
            status = resp.status
            if status == 206:
                parsed = _parse_content_range(resp.header("Content-Range"))
                if parsed is None or parsed[0] != offset:
                    resp.close()
                    raise _Restart(f"206 with Content-Range {resp.header('Content-Range')!r} for offset {offset}")
                return resp.body, offset, parsed[2], _content_length(resp), resp
            if status == 200:
                return resp.body, 0, _content_length(resp), _content_length(resp), resp
            if status == 416 and offset:
                match = UNSATISFIED_RANGE.match(resp.header("Content-Range") or "")
                resp.close()
                if match and int(match.group(1)) == offset:
                    return None, offset, offset, 0, None
                raise _Restart(f"416 for offset {offset}")
            resp.close()
            if status in RETRY_STATUS:
                raise RetryableError(f"HTTP {status} {resp.reason}")
            hint = STATUS_HINTS.get(status, "check the mirror")
            raise FetchError(f"HTTP {status} {resp.reason} for {_redact(url)}: {hint}")
        return open_at

    @staticmethod
    def _open_local(path):
        def open_at(offset):
            try:
                handle = open(path, "rb", buffering=0)
            except FileNotFoundError:
                raise FetchError(f"{path} does not exist in the source tree: the medium is incomplete") from None
            except OSError as exc:
                raise RetryableError(f"cannot read {path}: {exc.strerror}") from None
            total = os.fstat(handle.fileno()).st_size
            if offset > total:
                handle.close()
                raise _Restart(f"partial is longer ({offset}) than the source ({total})")
            handle.seek(offset)
            return handle, offset, total, total - offset, None
        return open_at

    def download(self, url, dest, sha256=None, size=None, git_sha1=None, progress=None):
        """Fetch ``url`` to ``dest`` (see the module docstring); return a dict describing the transfer."""
        return self._transfer(self._open_http(url), dest, sha256, size, git_sha1, progress, _redact(url))

    def copy(self, src, dest, sha256=None, size=None, git_sha1=None, progress=None):
        """Same guarantees as ``download`` for a file on a local or mounted file system."""
        return self._transfer(self._open_local(src), dest, sha256, size, git_sha1, progress, src)

    def _transfer(self, open_at, dest, sha256, size, git_sha1, progress, origin):
        partial = dest + PARTIAL_SUFFIX
        attempt = 0
        mismatches = 0
        transferred = 0
        resumed_from = None
        restarts = 0
        last_error = None
        while True:
            offset = os.path.getsize(partial) if os.path.exists(partial) else 0
            if size is not None and offset > size:
                offset = 0
            if resumed_from is None:
                resumed_from = offset
            try:
                outcome = self._receive(open_at, partial, offset, size, git_sha1, progress)
            except _Restart as exc:
                restarts += 1
                last_error = str(exc)
                _truncate(partial)
                if restarts > self.retries + 1:
                    raise FetchError(f"server keeps answering ranges wrongly ({exc})") from None
                continue
            except (RetryableError, OSError, http.client.HTTPException) as exc:
                transferred += getattr(exc, "received", 0)
                attempt += 1
                last_error = _describe(exc)
                if attempt > self.retries:
                    raise FetchError(f"gave up after {attempt} attempts ({last_error}); the {PARTIAL_SUFFIX} file "
                                     "is kept, run again to resume") from None
                self.sleep(min(self.backoff * 2 ** (attempt - 1), self.backoff_max))
                continue
            transferred += outcome["received"]
            got = outcome["digests"]
            reason = _mismatch(size, sha256, git_sha1, got)
            if reason is not None:
                os.unlink(partial)
                mismatches += 1
                attempt += 1
                if mismatches > 1 or attempt > self.retries:
                    raise FetchError(f"{reason} after download from {origin}; the bad copy was deleted. The source "
                                     "serves different bytes than its manifest: check the mirror, then run again")
                last_error = reason
                continue
            os.replace(partial, dest)
            fsync_dir(os.path.dirname(dest) or ".")
            return {"sha256": got["sha256"], "git_sha1": got.get("git_sha1"), "size": got["size"],
                    "transferred": transferred, "resumed_from": resumed_from, "attempts": attempt + 1,
                    "restarts": restarts, "last_error": last_error}

    def _receive(self, open_at, partial, offset, size, git_sha1, progress):
        """One attempt: open at ``offset``, stream to the partial file, return digests of the whole file."""
        if size is not None and offset == size and offset > 0:
            body, start, total, length, resp = None, offset, size, 0, None
        else:
            body, start, total, length, resp = open_at(offset)
        try:
            if start == 0 and offset:
                offset = 0  # Range ignored (200): restart the file and its hash from zero
            if total is None and length is not None:
                total = start + length
            if size is not None and total is not None and total != size:
                raise RetryableError(f"the server announces {total} bytes, the listing {size}")
            want = total if total is not None else size
            hashers = [hashlib.sha256()]
            if git_sha1:
                hashers.append(git_blob_hasher(size if size is not None else want or 0))
            if offset:
                for hasher in hashers:
                    hash_prefix(partial, offset, hasher, self.block_size)
            position, received = self._stream(body, partial, offset, want, hashers, progress)
            if want is not None and position < want:
                err = RetryableError(f"short body: {position} of {want} bytes")
                err.received = received
                raise err
            return {"received": received, "digests": {
                "sha256": hashers[0].hexdigest(), "git_sha1": hashers[1].hexdigest() if git_sha1 else None,
                "size": position}}
        finally:
            if resp is not None:
                resp.close()
            elif body is not None:
                body.close()

    def _stream(self, body, partial, offset, want, hashers, progress):
        """Copy ``body`` into ``partial`` from ``offset``, hashing as it goes; fsync; return (end, bytes received).

        This thread reads a block and writes it; a :class:`_BlockSink` thread hashes it while the next block is
        read and written (socket reads, file writes and SHA-256 of large blocks all release the GIL, and the two
        halves cost about the same CPU). Every block read is on disk before the next read, so a resume finds the
        partial file equal to what was received."""
        position = offset
        received = 0
        flushed = offset
        with open(partial, "r+b" if os.path.exists(partial) else "wb", buffering=0) as out:
            out.seek(offset)
            out.truncate(offset)
            sink = _BlockSink(hashers, min(self.block_size, STREAM_BLOCK_SIZE), STREAM_DEPTH)
            try:
                while body is not None:
                    view = sink.free_block()
                    # read one byte past the expected end, to notice a body longer than announced
                    chunk = view if want is None else view[:min(len(view), max(want - position, 0) + 1)]
                    try:
                        got = _readinto(body, chunk)
                    except (OSError, http.client.HTTPException) as exc:
                        sink.release(view)
                        err = RetryableError(f"connection lost at byte {position}: {_describe(exc)}")
                        err.received = received
                        raise err from None
                    if not got:
                        sink.release(view)
                        break
                    _write_all(out, view[:got])
                    sink.submit(view, got)
                    position += got
                    received += got
                    if position >= flushed + FLUSH_WINDOW:
                        flushed = _flush_behind(out, flushed, position)
                    if progress is not None:
                        progress.add_bytes(got)
                    self.limiter.consume(got)
                    if want is not None and position > want:
                        break
            finally:
                sink.close()
            os.fsync(out.fileno())
        return position, received


class _BlockSink:
    """Feeds blocks to the hashers on a thread of its own, in order.

    ``free_block`` hands out one of ``depth`` reusable buffers (waiting while all are queued), ``submit`` queues
    the first ``n`` bytes of one, ``close`` waits until every queued block is hashed and re-raises the hashing
    thread's error if it had one."""

    def __init__(self, hashers, block_size, depth=3):
        self.hashers = hashers
        self.free = queue.Queue()
        for _index in range(depth):
            self.free.put(memoryview(bytearray(block_size)))
        self.work = queue.Queue()
        self.error = None
        self.thread = threading.Thread(target=self._run, name="onprem-fetch-sink", daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            item = self.work.get()
            if item is None:
                return
            view, count = item
            if self.error is None:
                try:
                    block = view[:count]
                    for hasher in self.hashers:
                        hasher.update(block)
                except BaseException as exc:  # pylint: disable=broad-exception-caught
                    self.error = exc
            self.free.put(view)

    def free_block(self):
        self._raise()
        return self.free.get()

    def release(self, view):
        self.free.put(view)

    def submit(self, view, count):
        self.work.put((view, count))

    def close(self):
        self.work.put(None)
        self.thread.join()
        self._raise()

    def _raise(self):
        if self.error is not None:
            raise self.error


class _Restart(Exception):
    """The server answered a ranged request in a way that forces a restart from byte 0."""


def _flush_behind(out, flushed, position):
    """Start writing back what arrived since ``flushed`` and let the page cache drop what is already on disk.

    POSIX_FADV_DONTNEED on Linux starts write-back of dirty pages in the range and drops the clean ones, so a
    700 GB download neither floods the page cache (pushing out everything else on the host) nor leaves
    gigabytes of dirty pages for the final fsync. Advising the two last windows drops the older one, written
    back since the previous call. Returns the new ``flushed`` mark."""
    start = max(0, flushed - FLUSH_WINDOW)
    try:
        os.posix_fadvise(out.fileno(), start, position - start, os.POSIX_FADV_DONTNEED)
    except (AttributeError, OSError):  # not on this platform or file system: only a cache hint
        pass
    return position


def _write_all(out, block):
    written = 0
    while written < len(block):
        written += out.write(block[written:])


def _readinto(body, view):
    readinto = getattr(body, "readinto", None)
    if readinto is not None:
        return readinto(view)
    data = body.read(len(view))
    view[:len(data)] = data
    return len(data)


def _truncate(path):
    if os.path.exists(path):
        with open(path, "r+b") as handle:
            handle.truncate(0)


def _mismatch(size, sha256, git_sha1, got):
    if size is not None and got["size"] != size:
        return f"size {got['size']} bytes, expected {size}"
    if sha256 and got["sha256"] != sha256.lower():
        return f"SHA-256 {got['sha256']}, expected {sha256.lower()}"
    if git_sha1 and got.get("git_sha1") != git_sha1.lower():
        return f"git blob SHA-1 {got.get('git_sha1')}, expected {git_sha1.lower()}"
    return None


def _describe(exc):
    text = str(exc) or type(exc).__name__
    if isinstance(exc, socket.timeout) or "timed out" in text:
        return "timed out: " + text
    return text


def _origin(url):
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _redact(url):
    """A URL fit for messages: no user:password part, no query string (signed URLs carry credentials)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


# ---- sources: each returns a list of entries {path, size, sha256, git_sha1, url|src} ------------------
def quote_path(rel):
    return urllib.parse.quote(rel, safe="/")


def list_http(fetcher, base_url, manifest_name="SHA256SUMS", manifest_sha256=None):
    """A plain mirror: ``<base>/<manifest>`` lists the files; sizes come from HEAD."""
    base = base_url.rstrip("/") + "/"
    data, _resp = fetcher.get_bytes(base + quote_path(manifest_name), what=f"manifest {_redact(base)}{manifest_name}")
    digest = hashlib.sha256(data).hexdigest()
    if manifest_sha256 and digest != manifest_sha256.lower():
        raise FetchError(f"the manifest at {_redact(base)}{manifest_name} has SHA-256 {digest}, expected "
                         f"{manifest_sha256.lower()}: the mirror does not serve the manifest you pinned")
    entries = parse_manifest(data.decode("utf-8"), source=manifest_name)
    return [{"path": rel, "size": None, "sha256": sha, "git_sha1": None, "url": base + quote_path(rel)}
            for rel, sha in entries.items()], digest


def list_local(root, manifest_name="SHA256SUMS", manifest_sha256=None):
    """A directory (NFS, removable medium, unpacked bundle) with its manifest."""
    manifest = os.path.join(root, manifest_name)
    try:
        with open(manifest, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise FetchError(f"cannot read the manifest {manifest}: {exc.strerror}; write one with "
                         "onprem.deepseek.model_manifest on a verified copy") from None
    digest = hashlib.sha256(data).hexdigest()
    if manifest_sha256 and digest != manifest_sha256.lower():
        raise FetchError(f"{manifest} has SHA-256 {digest}, expected {manifest_sha256.lower()}")
    files = []
    for rel, sha in parse_manifest(data.decode("utf-8"), source=manifest).items():
        src = check_in_tree(root, rel)
        try:
            size = os.path.getsize(src)
        except OSError:
            size = None
        files.append({"path": rel, "size": size, "sha256": sha, "git_sha1": None, "src": src})
    return files, digest


def list_huggingface(fetcher, endpoint, repo_id, revision="main"):
    """HF-compatible endpoint: tree API (paginated by ``Link``), SHA-256 from ``lfs.oid``.

    Files kept in git rather than LFS have no SHA-256 in the listing; they carry the git blob SHA-1
    (``oid``), which the download checks, and their SHA-256 is computed while they stream in.
    Returns (files, commit) where commit is the resolved commit id or None.
    """
    ep = endpoint.rstrip("/")
    repo = quote_path(repo_id)
    rev = urllib.parse.quote(revision, safe="")
    commit = None
    try:
        info, _resp = fetcher.get_json(f"{ep}/api/models/{repo}/revision/{rev}", what=f"{repo_id}@{revision}")
        if isinstance(info, dict) and re.match(r"^[0-9a-f]{40}$", str(info.get("sha", ""))):
            commit = info["sha"]
    except FetchError as exc:
        if "HTTP 401" in str(exc) or "HTTP 403" in str(exc):
            raise
    listed_rev = urllib.parse.quote(commit or revision, safe="")
    url = f"{ep}/api/models/{repo}/tree/{listed_rev}?recursive=true"
    files = []
    pages = 0
    while url:
        pages += 1
        if pages > 10000:
            raise FetchError(f"{repo_id}: tree listing does not end (more than 10000 pages)")
        items, resp = fetcher.get_json(url, what=f"tree listing of {repo_id}@{revision}")
        if not isinstance(items, list):
            raise FetchError(f"tree listing of {repo_id}@{revision} is not a list: is {ep} an HF-compatible endpoint?")
        for item in items:
            if not isinstance(item, dict) or item.get("type") != "file":
                continue
            rel = safe_relpath(item.get("path", ""))
            lfs = item.get("lfs") or {}
            sha = lfs.get("oid") if isinstance(lfs, dict) else None
            if sha and sha.startswith("sha256:"):
                sha = sha[len("sha256:"):]
            files.append({
                "path": rel, "size": item.get("size"), "sha256": sha.lower() if sha else None,
                "git_sha1": None if sha else (item.get("oid") or None),
                "url": f"{ep}/{repo}/resolve/{listed_rev}/{quote_path(rel)}",
            })
        match = LINK_NEXT.search(resp.header("Link") or "")
        url = urllib.parse.urljoin(url, match.group(1)) if match else None
    return files, commit


def list_modelscope(fetcher, endpoint, model_id, revision="master"):
    """ModelScope: ``/api/v1/models/{id}/repo/files`` gives ``Data.Files[]`` with ``Path``, ``Size``, ``Sha256``."""
    ep = endpoint.rstrip("/")
    mid = quote_path(model_id)
    rev = urllib.parse.quote(revision, safe="")
    doc, _resp = fetcher.get_json(f"{ep}/api/v1/models/{mid}/repo/files?Revision={rev}&Recursive=true",
                                  what=f"file list of {model_id}@{revision}")
    data = doc.get("Data") if isinstance(doc, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("Files"), list):
        message = doc.get("Message") if isinstance(doc, dict) else None
        raise FetchError(f"file list of {model_id}@{revision} has no Data.Files ({message or 'unexpected shape'}): "
                         "check the model id and the revision")
    files = []
    for item in data["Files"]:
        if not isinstance(item, dict) or item.get("Type", "blob") != "blob":
            continue
        rel = safe_relpath(item.get("Path", ""))
        sha = item.get("Sha256") or None
        files.append({
            "path": rel, "size": item.get("Size"), "sha256": sha.lower() if sha else None, "git_sha1": None,
            "url": f"{ep}/api/v1/models/{mid}/repo?Revision={rev}&FilePath={urllib.parse.quote(rel, safe='')}",
        })
    return files, None


# ---- many files at once ------------------------------------------------------------------------------
def fetch_many(fetcher, jobs, workers=4, progress=None):
    """Run jobs ({path, dest, sha256, size, git_sha1, url|src}) on a thread pool.

    Returns (done {rel: transfer dict}, failed {rel: message}). One file's failure does not stop the others.
    """
    done, failed = {}, {}

    def one(job):
        os.makedirs(os.path.dirname(job["dest"]), exist_ok=True)
        kwargs = {"sha256": job.get("sha256"), "size": job.get("size"), "git_sha1": job.get("git_sha1"),
                  "progress": progress}
        if job.get("src"):
            return fetcher.copy(job["src"], job["dest"], **kwargs)
        return fetcher.download(job["url"], job["dest"], **kwargs)

    with ThreadPoolExecutor(max_workers=max(1, min(int(workers), len(jobs) or 1))) as pool:
        futures = {pool.submit(one, job): job["path"] for job in jobs}
        for future in as_completed(futures):
            rel = futures[future]
            try:
                done[rel] = future.result()
            except FetchError as exc:
                failed[rel] = str(exc)
            except OSError as exc:
                failed[rel] = f"local file system error: {exc}"
            if progress is not None:
                progress.file_done()
    return done, failed
