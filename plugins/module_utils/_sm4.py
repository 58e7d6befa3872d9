# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SM4 (GB/T 32907-2016) primitives and a streaming, chunked SM4-GCM file container.

Private module_utils of onprem.deepseek (leading underscore): the API may change without notice.
The container format is documented byte by byte in docs/sm4-file-format.md.

Design notes:

* All cryptography comes from ``cryptography`` (>= 42), i.e. OpenSSL 3's SM4. Nothing is
  implemented by hand here.
* A file is cut into chunks of ``chunk_size`` plaintext bytes. Every chunk is sealed with
  SM4-GCM under its own nonce (base nonce XOR chunk index) and the associated data
  ``header || index || flag``. A final 48-byte trailer record carries the SHA-256 of the whole
  plaintext, sealed the same way. Tampering, truncation, reordering and a wrong key all fail the
  GCM tag check (or the length/key-id checks that run before it).
* Work is spread over threads: ``cryptography`` releases the GIL while OpenSSL encrypts a
  buffer, and measured SM4-GCM throughput scales ~1.96x from one thread to two on a 2-core host,
  so processes (and their pickling) are not needed. The main thread reads, hashes and writes;
  at most ``2 * workers`` chunks are in flight, so memory stays constant whatever the file size.
* Output goes to ``.<name>.<random>.partial`` in the destination directory, is fsynced and only
  then ``os.replace``d onto the final name; any failure removes the partial file.
"""

from __future__ import annotations

import binascii
import collections
import hashlib
import hmac
import os
import stat
import struct
import tempfile
import traceback
from concurrent.futures import ThreadPoolExecutor

try:
    from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised only where the library is missing
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

    class InvalidTag(Exception):
        """Placeholder so that ``except InvalidTag`` stays valid without the library."""

    class UnsupportedAlgorithm(Exception):
        """Placeholder so that ``except UnsupportedAlgorithm`` stays valid without the library."""


KEY_SIZE = 16
BLOCK_SIZE = 16
TAG_SIZE = 16
NONCE_SIZE = 12
KEY_ID_SIZE = 16

MAGIC = b"ODSM4GCM"
VERSION = 1
ALG_SM4_GCM = 1
HEADER_SIZE = 64
# magic(8) version(1) alg(1) header_len(2) chunk_size(4) plaintext_size(8) base_nonce(12)
# key_id(16) reserved(12)
_HEADER_STRUCT = struct.Struct(">8sBBHIQ12s16s12s")

FLAG_CHUNK = 0
FLAG_LAST_CHUNK = 1
FLAG_TRAILER = 2
TRAILER_PLAINTEXT_SIZE = 32  # SHA-256 of the whole plaintext
TRAILER_SIZE = TRAILER_PLAINTEXT_SIZE + TAG_SIZE

MIN_CHUNK_SIZE = 4096
MAX_CHUNK_SIZE = 64 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 1024 * 1024
MAX_WORKERS = 64

PARTIAL_SUFFIX = ".partial"
_KEY_ID_LABEL = b"onprem.deepseek sm4_file v1 key id"
_HASH_BLOCK = 1024 * 1024

AUTH_FAILED = "authentication failed: wrong key or the file was modified"


class SM4Error(Exception):
    """Base class of every error raised here. Messages never contain key material."""


class SM4KeyError(SM4Error):
    """The key is missing, malformed or stored unsafely."""


class SM4FormatError(SM4Error):
    """The input is not an SM4 container this code can read."""


class SM4AuthenticationError(SM4Error):
    """A tag, the key id or the container length did not verify."""


class SM4SourceChangedError(SM4Error):
    """The source file changed size while it was being read."""


def require_sm4():
    """Raise SM4Error with a clear message when cryptography or its SM4 support is missing."""
    if not HAS_CRYPTOGRAPHY:
        raise SM4Error("the Python library 'cryptography' (>= 42) is required on the target host")
    try:
        enc = Cipher(algorithms.SM4(b"\x00" * KEY_SIZE), modes.GCM(b"\x00" * NONCE_SIZE)).encryptor()
        enc.update(b"\x00" * BLOCK_SIZE)
        enc.finalize()
    except (UnsupportedAlgorithm, ValueError, AttributeError) as exc:
        raise SM4Error(
            f"this host's 'cryptography'/OpenSSL has no SM4-GCM ({type(exc).__name__}); "
            "install cryptography >= 42 built against OpenSSL 3"
        ) from None


# ---------------------------------------------------------------------------------------------
# Primitives
# ---------------------------------------------------------------------------------------------


def _check_key(key):
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
        raise SM4KeyError(f"an SM4 key is exactly {KEY_SIZE} bytes")
    return bytes(key)


def ecb_encryptor(key):
    """A raw SM4-ECB encryptor object (``update`` takes whole 16-byte blocks)."""
    return Cipher(algorithms.SM4(_check_key(key)), modes.ECB()).encryptor()


def ecb_encrypt(key, data):
    """SM4-ECB without padding; ``data`` must be a multiple of 16 bytes."""
    if len(data) % BLOCK_SIZE:
        raise ValueError("ECB data must be a multiple of 16 bytes")
    enc = ecb_encryptor(key)
    return enc.update(data) + enc.finalize()


def ecb_decrypt(key, data):
    """Inverse of :func:`ecb_encrypt`."""
    if len(data) % BLOCK_SIZE:
        raise ValueError("ECB data must be a multiple of 16 bytes")
    dec = Cipher(algorithms.SM4(_check_key(key)), modes.ECB()).decryptor()
    return dec.update(data) + dec.finalize()


def ctr_crypt(key, iv, data):
    """SM4-CTR with a 16-byte initial counter block (the whole block is the big-endian counter,
    as in ``openssl enc -sm4-ctr``). Encryption and decryption are the same operation."""
    if len(iv) != BLOCK_SIZE:
        raise ValueError("the CTR initial counter block is 16 bytes")
    enc = Cipher(algorithms.SM4(_check_key(key)), modes.CTR(bytes(iv))).encryptor()
    return enc.update(data) + enc.finalize()


def gcm_seal(key, nonce, data, aad=b""):
    """SM4-GCM encryption; returns ``ciphertext || 16-byte tag``."""
    enc = Cipher(algorithms.SM4(_check_key(key)), modes.GCM(bytes(nonce))).encryptor()
    if aad:
        enc.authenticate_additional_data(aad)
    out = enc.update(data) + enc.finalize()
    return out + enc.tag


def gcm_open(key, nonce, sealed, aad=b""):
    """SM4-GCM decryption of ``ciphertext || tag``; raises SM4AuthenticationError on a bad tag."""
    if len(sealed) < TAG_SIZE:
        raise SM4AuthenticationError(AUTH_FAILED + " (record shorter than its tag)")
    dec = Cipher(
        algorithms.SM4(_check_key(key)), modes.GCM(bytes(nonce), bytes(sealed[-TAG_SIZE:]))
    ).decryptor()
    if aad:
        dec.authenticate_additional_data(aad)
    out = dec.update(bytes(sealed[:-TAG_SIZE]))
    try:
        return out + dec.finalize()
    except InvalidTag:
        raise SM4AuthenticationError(AUTH_FAILED) from None


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------


def key_id(key):
    """Public fingerprint of a key: HMAC-SHA256(key, label)[:16]. Reveals nothing about the key."""
    return hmac.new(_check_key(key), _KEY_ID_LABEL, hashlib.sha256).digest()[:KEY_ID_SIZE]


def generate_key():
    return os.urandom(KEY_SIZE)


def parse_hex_key(text):
    """A key given as 32 hex digits (surrounding whitespace ignored). The message on error never
    repeats the value."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise SM4KeyError("the key must be 32 hexadecimal digits (16 bytes)") from None
    text = (text or "").strip()
    if len(text) != 2 * KEY_SIZE:
        raise SM4KeyError(
            f"the key must be 32 hexadecimal digits (16 bytes); got {len(text)} characters"
        )
    try:
        return binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        raise SM4KeyError("the key must be 32 hexadecimal digits (16 bytes); it has non-hex characters") from None


def check_key_file_mode(path, st=None):
    """Refuse a key file that group or others can access in any way."""
    st = st if st is not None else os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise SM4KeyError(f"key file {path} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise SM4KeyError(
            f"key file {path} has mode {mode:04o}, which lets group or others read it; it must "
            f"be 0600 or stricter: run 'chmod 600 {path}' (and consider the key exposed if "
            "others could read it)"
        )


def load_key_file(path):
    """Read a key file: 16 raw bytes, or 32 hex digits with optional surrounding whitespace.
    The file must be mode 0600 or stricter."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise SM4KeyError(f"cannot open key file {path}: {exc.strerror}") from None
    try:
        check_key_file_mode(path, os.fstat(fd))
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    if len(data) == KEY_SIZE:
        return data
    try:
        return parse_hex_key(data)
    except SM4KeyError:
        raise SM4KeyError(
            f"key file {path} must hold 16 raw bytes or 32 hexadecimal digits; it has {len(data)} "
            "bytes of another form (create one with state: key)"
        ) from None


def write_key_file(path, key):
    """Create a new key file (hex, mode 0600) atomically; never overwrites an existing file."""
    key = _check_key(key)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=PARTIAL_SUFFIX,
                               dir=directory)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, binascii.hexlify(key) + b"\n")
        os.fsync(fd)
        os.close(fd)
        fd = -1
        # link() fails if the final name exists: no race with a concurrent writer.
        os.link(tmp, path)
    finally:
        if fd >= 0:
            os.close(fd)
        _unlink_quiet(tmp)
    _fsync_dir(directory)


# ---------------------------------------------------------------------------------------------
# Container format
# ---------------------------------------------------------------------------------------------


class Header:
    """The 64-byte container header. ``raw`` is the exact bytes used as associated data."""

    __slots__ = ("alg", "base_nonce", "chunk_size", "key_id", "plaintext_size", "raw", "version")

    def __init__(self, chunk_size, plaintext_size, base_nonce, key_id_bytes, version=VERSION,
                 alg=ALG_SM4_GCM, raw=None):
        self.version = version
        self.alg = alg
        self.chunk_size = chunk_size
        self.plaintext_size = plaintext_size
        self.base_nonce = base_nonce
        self.key_id = key_id_bytes
        if raw is None:
            raw = _HEADER_STRUCT.pack(MAGIC, version, alg, HEADER_SIZE, chunk_size, plaintext_size,
                                      base_nonce, key_id_bytes, b"\x00" * 12)
        self.raw = raw

    @property
    def chunk_count(self):
        return chunk_count(self.plaintext_size, self.chunk_size)

    @property
    def container_size(self):
        return container_size(self.plaintext_size, self.chunk_size)

    @classmethod
    def parse(cls, raw, path="input"):
        if len(raw) < HEADER_SIZE:
            if MAGIC.startswith(raw[:len(MAGIC)]) and raw:
                raise SM4AuthenticationError(
                    f"{path}: {AUTH_FAILED} (the file is shorter than its {HEADER_SIZE}-byte header)"
                )
            raise SM4FormatError(f"{path} is not an SM4 container (too short, no '{MAGIC.decode()}' magic)")
        (magic, version, alg, header_len, chunk_size, plaintext_size, base_nonce, kid,
         reserved) = _HEADER_STRUCT.unpack(raw[:HEADER_SIZE])
        if magic != MAGIC:
            raise SM4FormatError(f"{path} is not an SM4 container (no '{MAGIC.decode()}' magic at offset 0); was it "
                                 "encrypted with state: encrypted?")
        if version != VERSION or alg != ALG_SM4_GCM or header_len != HEADER_SIZE:
            raise SM4FormatError(
                f"{path}: unsupported container version {version} / algorithm {alg} / header length "
                f"{header_len} (this code reads version {VERSION}, algorithm {ALG_SM4_GCM}, header "
                f"length {HEADER_SIZE}); the header may also have been modified"
            )
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise SM4AuthenticationError(f"{path}: {AUTH_FAILED} (chunk size {chunk_size} out of range)")
        if reserved != b"\x00" * 12:
            raise SM4AuthenticationError(f"{path}: {AUTH_FAILED} (reserved header bytes are not zero)")
        return cls(chunk_size, plaintext_size, base_nonce, kid, version=version, alg=alg,
                   raw=bytes(raw[:HEADER_SIZE]))


def chunk_count(plaintext_size, chunk_size):
    """Number of data chunks: at least one (an empty file has one empty, last chunk)."""
    return max(1, -(-plaintext_size // chunk_size))


def container_size(plaintext_size, chunk_size):
    return HEADER_SIZE + plaintext_size + TAG_SIZE * chunk_count(plaintext_size, chunk_size) + TRAILER_SIZE


def record_nonce(base_nonce, index):
    """base nonce XOR the record index as a 96-bit big-endian integer."""
    return (int.from_bytes(base_nonce, "big") ^ index).to_bytes(NONCE_SIZE, "big")


def record_aad(header_raw, index, flag):
    return header_raw + struct.pack(">QB", index, flag)


def validate_chunk_size(chunk_size):
    if not isinstance(chunk_size, int) or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise SM4Error(f"chunk_size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes; "
                       f"got {chunk_size!r}")
    if chunk_size % BLOCK_SIZE:
        raise SM4Error(f"chunk_size must be a multiple of 16 bytes; got {chunk_size}")


def validate_workers(workers):
    if not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise SM4Error(f"workers must be between 1 and {MAX_WORKERS}; got {workers!r}")


def read_header(path):
    with open(path, "rb") as f:
        raw = f.read(HEADER_SIZE)
    return Header.parse(raw, path)


def _seal_record(key, header, index, flag, data):
    return gcm_seal(key, record_nonce(header.base_nonce, index), data,
                    record_aad(header.raw, index, flag))


def _open_record(key, header, index, flag, sealed):
    return gcm_open(key, record_nonce(header.base_nonce, index), sealed,
                    record_aad(header.raw, index, flag))


# ---------------------------------------------------------------------------------------------
# File helpers
# ---------------------------------------------------------------------------------------------


def _unlink_quiet(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(_HASH_BLOCK)
            if not block:
                break
            h.update(block)
    return h.digest()


class _AtomicOutput:
    """``.<name>.<random>.partial`` next to ``dest``; ``commit`` fsyncs and renames it."""

    def __init__(self, dest, mode=None):
        self.dest = dest
        self.directory = os.path.dirname(os.path.abspath(dest))
        self.mode = mode
        fd, self.tmp = tempfile.mkstemp(prefix="." + os.path.basename(dest) + ".",
                                        suffix=PARTIAL_SUFFIX, dir=self.directory)
        self.f = os.fdopen(fd, "wb")
        self.done = False

    def commit(self):
        self.f.flush()
        os.fsync(self.f.fileno())
        if self.mode is not None:
            os.fchmod(self.f.fileno(), self.mode)
        self.f.close()
        os.replace(self.tmp, self.dest)
        self.done = True
        _fsync_dir(self.directory)

    def abort(self):
        if not self.done:
            try:
                self.f.close()
            finally:
                _unlink_quiet(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.abort()
        return False


class _Pipeline:
    """Runs chunk jobs on ``workers`` threads and hands their results back in order.

    With one worker there is no pool: each job runs on the calling thread, which also reads, hashes and
    writes, so ``workers`` is the number of cores the work can use (one worker, one core).

    The caller submits jobs in order; ``submit`` first consumes the oldest result once
    ``depth * workers`` jobs are in flight, so memory is bounded by a ring of
    ``depth * workers + 1`` preallocated input and output buffers: slot ``i % slots`` is only
    reused after the job that used it has been consumed.
    """

    depth = 2

    def __init__(self, workers, in_size, out_size, consume):
        self.limit = self.depth * workers
        self.slots = self.limit + 1
        self.inputs = [bytearray(in_size) for _slot in range(self.slots)]
        self.outputs = [bytearray(out_size) for _slot in range(self.slots)]
        self.consume = consume
        self.pending = collections.deque()
        self.pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None

    def buffers(self, index):
        slot = index % self.slots
        return self.inputs[slot], self.outputs[slot]

    def submit(self, fn, *args):
        if self.pool is None:
            self.consume(fn(*args))
            return
        while len(self.pending) >= self.limit:
            self.consume(self.pending.popleft().result())
        self.pending.append(self.pool.submit(fn, *args))

    def drain(self):
        while self.pending:
            self.consume(self.pending.popleft().result())

    def close(self):
        for fut in self.pending:
            fut.cancel()
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False


def _seal_into(key, header, index, flag, data, out):
    """Encrypt ``data`` (a memoryview) into ``out``; return a memoryview of ciphertext || tag."""
    enc = Cipher(algorithms.SM4(key), modes.GCM(record_nonce(header.base_nonce, index))).encryptor()
    enc.authenticate_additional_data(record_aad(header.raw, index, flag))
    n = enc.update_into(data, out) if len(data) else 0
    enc.finalize()
    out[n:n + TAG_SIZE] = enc.tag
    return memoryview(out)[:n + TAG_SIZE]


def _open_into(key, header, index, flag, sealed, out, path):
    """Authenticate and decrypt ``sealed`` (ciphertext || tag) into ``out``; return a memoryview
    of the plaintext. Nothing is returned (so nothing is written) unless the tag verified."""
    n = len(sealed) - TAG_SIZE
    dec = Cipher(algorithms.SM4(key),
                 modes.GCM(record_nonce(header.base_nonce, index), bytes(sealed[n:]))).decryptor()
    dec.authenticate_additional_data(record_aad(header.raw, index, flag))
    if n:
        dec.update_into(sealed[:n], out)
    try:
        dec.finalize()
    except InvalidTag:
        what = "trailer record" if flag == FLAG_TRAILER else f"chunk {index}"
        raise SM4AuthenticationError(f"{path}: {AUTH_FAILED} ({what})") from None
    return memoryview(out)[:n]


def _read_exact(f, buf, size):
    """Fill ``buf[:size]`` from ``f``; return how many bytes were read (short only at EOF)."""
    view = memoryview(buf)[:size]
    got = 0
    while got < size:
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _source_mode(st):
    return stat.S_IMODE(st.st_mode)


# ---------------------------------------------------------------------------------------------
# Encrypt / decrypt / compare
# ---------------------------------------------------------------------------------------------


def encrypt_file(src, dest, key, chunk_size=DEFAULT_CHUNK_SIZE, workers=1, base_nonce=None):
    """Encrypt ``src`` into the container ``dest``. Returns ``{"size", "sha256"}`` (plaintext).
    ``base_nonce`` exists for known-answer tests only; never pass it otherwise."""
    key = _check_key(key)
    validate_chunk_size(chunk_size)
    validate_workers(workers)
    with open(src, "rb", buffering=0) as fin:
        st = os.fstat(fin.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SM4Error(f"{src} is not a regular file")
        size = st.st_size
        header = Header(chunk_size, size, base_nonce or os.urandom(NONCE_SIZE), key_id(key))
        n = header.chunk_count
        digest = hashlib.sha256()
        with _AtomicOutput(dest, _source_mode(st)) as out:
            out.f.write(header.raw)
            with _Pipeline(workers, chunk_size, chunk_size + TAG_SIZE, out.f.write) as pipe:
                for index in range(n):
                    want = min(chunk_size, size - index * chunk_size)
                    inbuf, outbuf = pipe.buffers(index)
                    if _read_exact(fin, inbuf, want) != want:
                        raise SM4SourceChangedError(f"{src} shrank while it was being encrypted; try "
                                                    "again when nothing writes to it")
                    data = memoryview(inbuf)[:want]
                    digest.update(data)
                    flag = FLAG_LAST_CHUNK if index == n - 1 else FLAG_CHUNK
                    pipe.submit(_seal_into, key, header, index, flag, data, outbuf)
                pipe.drain()
            if fin.read(1):
                raise SM4SourceChangedError(f"{src} grew while it was being encrypted; try again when "
                                            "nothing writes to it")
            out.f.write(_seal_record(key, header, n, FLAG_TRAILER, digest.digest()))
            written = out.f.tell()
            if written != header.container_size:  # pragma: no cover - internal consistency
                raise SM4Error(f"internal error: wrote {written} bytes, expected {header.container_size}")
            out.commit()
    return {"size": size, "sha256": digest.hexdigest()}


def _open_container(path, key):
    """Parse and check the header, key id and exact length of a container file."""
    header = read_header(path)
    if not hmac.compare_digest(header.key_id, key_id(key)):
        raise SM4AuthenticationError(
            f"{path}: {AUTH_FAILED} (the file was sealed with key id {header.key_id.hex()}, "
            f"the given key has key id {key_id(key).hex()})"
        )
    actual = os.stat(path).st_size
    if actual != header.container_size:
        raise SM4AuthenticationError(
            f"{path}: {AUTH_FAILED} (it is {actual} bytes, its header requires "
            f"{header.container_size}: truncated, extended or header edited)"
        )
    return header


def read_trailer_digest(path, key):
    """Authenticate the header and trailer of a container; return (header, plaintext SHA-256).
    Cheap: reads 112 bytes. It does not verify the data chunks."""
    key = _check_key(key)
    header = _open_container(path, key)
    with open(path, "rb") as f:
        f.seek(header.container_size - TRAILER_SIZE)
        sealed = f.read(TRAILER_SIZE)
    try:
        digest = _open_record(key, header, header.chunk_count, FLAG_TRAILER, sealed)
    except SM4AuthenticationError:
        raise SM4AuthenticationError(f"{path}: {AUTH_FAILED} (trailer record)") from None
    return header, digest


def decrypt_file(src, dest, key, workers=1):
    """Decrypt the container ``src`` into ``dest``. Every record is authenticated before its
    plaintext is written (to the partial file); any failure leaves no ``dest``."""
    key = _check_key(key)
    validate_workers(workers)
    header = _open_container(src, key)
    n = header.chunk_count
    cs = header.chunk_size
    digest = hashlib.sha256()
    with open(src, "rb", buffering=0) as fin:
        st = os.fstat(fin.fileno())
        fin.seek(HEADER_SIZE)
        with _AtomicOutput(dest, _source_mode(st)) as out:

            def consume(plain):
                digest.update(plain)
                out.f.write(plain)

            with _Pipeline(workers, cs + TAG_SIZE, cs, consume) as pipe:
                for index in range(n):
                    want = min(cs, header.plaintext_size - index * cs) + TAG_SIZE
                    inbuf, outbuf = pipe.buffers(index)
                    if _read_exact(fin, inbuf, want) != want:
                        raise SM4AuthenticationError(f"{src}: {AUTH_FAILED} (truncated in chunk {index})")
                    flag = FLAG_LAST_CHUNK if index == n - 1 else FLAG_CHUNK
                    pipe.submit(_open_into, key, header, index, flag, memoryview(inbuf)[:want],
                                outbuf, src)
                pipe.drain()
            trailer = bytearray(TRAILER_SIZE)
            if _read_exact(fin, trailer, TRAILER_SIZE) != TRAILER_SIZE:
                raise SM4AuthenticationError(f"{src}: {AUTH_FAILED} (trailer record truncated)")
            expected = _open_into(key, header, n, FLAG_TRAILER, memoryview(trailer),
                                  bytearray(TRAILER_PLAINTEXT_SIZE), src)
            if not hmac.compare_digest(bytes(expected), digest.digest()):
                raise SM4AuthenticationError(f"{src}: {AUTH_FAILED} (SHA-256 of the output does not match the "
                                             "trailer)")
            out.commit()
    return {"size": header.plaintext_size, "sha256": digest.hexdigest()}


def encrypted_is_current(plain_path, enc_path, key):
    """True when ``enc_path`` is a container under ``key`` whose authenticated trailer holds the
    SHA-256 of ``plain_path``. Hashes ``plain_path`` only when the sizes agree. A container that
    is missing, foreign, under another key, or damaged in header/trailer counts as not current."""
    if not os.path.isfile(enc_path):
        return False
    try:
        header, digest = read_trailer_digest(enc_path, key)
    except SM4Error:
        return False
    if header.plaintext_size != os.stat(plain_path).st_size:
        return False
    return hmac.compare_digest(digest, file_sha256(plain_path))


def decrypted_is_current(enc_path, plain_path, key):
    """True when ``plain_path`` already holds the plaintext of the container ``enc_path``
    (same size and SHA-256 as its authenticated trailer). Errors in ``enc_path`` propagate:
    a damaged or wrong-key source must fail loudly, not look current."""
    header, digest = read_trailer_digest(enc_path, key)
    if not os.path.isfile(plain_path) or os.path.islink(plain_path):
        return False
    if os.stat(plain_path).st_size != header.plaintext_size:
        return False
    return hmac.compare_digest(digest, file_sha256(plain_path))
