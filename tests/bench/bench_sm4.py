# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SM4 file encryption figures, printed as `BENCH <name> <value> <unit>` lines on stdout.

    sm4_openssl_ratio     one worker (encrypt_file, SM4-GCM container, fsynced) / `openssl enc -sm4-ctr`
                          (fsynced too) on the same file: >= 1 means as fast as the OpenSSL tool
    sm4_parallel_speedup  encrypt_file with 2 workers / with 1 worker, same file
    sm4_gmssl_speedup     one worker (MB/s on the big file, I/O included) / pure-Python gmssl SM4-ECB
                          (MB/s on a small in-memory sample); skipped with a message if gmssl is missing
    sm4_peak_rss_mb       peak RSS of a child process that encrypts a 2 GiB file (2 workers), from
                          resource.getrusage(RUSAGE_CHILDREN)

Every configuration runs --rounds times, interleaved, and the fastest round counts (the build host
is shared, so the minimum is the figure least disturbed by other load). Details go to stderr.
All files live in a temporary directory (under --dir or $TMPDIR) that is removed at the end.

Usage: .venv/bin/python tests/bench/bench_sm4.py [--size-mib 512] (PYTHONPATH=build/collections optional)
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from ansible_collections.onprem.deepseek.plugins.module_utils import _sm4
except ImportError:  # run without PYTHONPATH: use the checkout's build/collections link (`make collection`)
    _default = Path(__file__).resolve().parents[2] / "build" / "collections"
    sys.path.insert(0, os.environ.get("ONPREM_COLLECTIONS_PATH", str(_default)))
    from ansible_collections.onprem.deepseek.plugins.module_utils import _sm4

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
MIB = 1024 * 1024


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def bench_line(name, value, unit):
    print(f"BENCH {name} {value:.2f} {unit}", flush=True)


def make_random_file(path, size_mib):
    with open(path, "wb") as f:
        f.writelines(os.urandom(MIB) for _block in range(size_mib))
        f.flush()
        os.fsync(f.fileno())


def timed(fn):
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def cpu_seconds():
    """CPU time (user + system) of this process and its waited-for children so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_openssl(src, dest):
    subprocess.run(
        ["openssl", "enc", "-sm4-ctr", "-K", KEY.hex(), "-iv", "00" * 16, "-nosalt", "-in", src, "-out", dest],
        check=True,
    )
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)  # encrypt_file fsyncs its output; make the comparison fair
    finally:
        os.close(fd)


def peak_rss_mb(workdir, size_gib=2):
    """Encrypt a size_gib file in a child; return its peak RSS in MB (ru_maxrss is KiB on Linux).
    The input is sparse (content does not change memory use) so the host needs no extra 2 GiB."""
    src = os.path.join(workdir, "rss-input.bin")
    with open(src, "wb") as f:
        f.truncate(size_gib * 1024 * MIB)
    dest = src + ".sm4"
    child = (
        "import sys\n"
        "from ansible_collections.onprem.deepseek.plugins.module_utils import _sm4\n"
        "_sm4.encrypt_file(sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), workers=2)\n"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", child, src, dest, KEY.hex()], check=True,
                   env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak_kib <= before:
        log(f"warning: an earlier child had a higher peak RSS ({before} KiB)")
    log(f"peak RSS run: {size_gib} GiB encrypted in {elapsed:.1f} s ({size_gib * 1024 / elapsed:.0f} MiB/s), "
        f"container {os.path.getsize(dest) / MIB:.0f} MiB")
    os.unlink(src)
    os.unlink(dest)
    return peak_kib / 1024


def gmssl_mib_per_s(sample_kib):
    try:
        from gmssl.sm4 import SM4_ENCRYPT, CryptSM4  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    sample = os.urandom(sample_kib * 1024)
    crypt = CryptSM4()
    crypt.set_key(KEY, SM4_ENCRYPT)
    seconds = timed(lambda: crypt.crypt_ecb(sample))
    return sample_kib / 1024 / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=512, help="size of the throughput file (default 512)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per configuration (default 3)")
    parser.add_argument("--gmssl-sample-kib", type=int, default=128, help="gmssl sample size (default 128)")
    parser.add_argument("--rss-gib", type=int, default=2, help="file size for the peak RSS run (default 2)")
    parser.add_argument("--dir", default=None, help="where to put the temporary files (default $TMPDIR)")
    args = parser.parse_args()

    if shutil.which("openssl") is None:
        log("openssl is not on PATH: sm4_openssl_ratio cannot be measured")
    workdir = tempfile.mkdtemp(prefix="bench-sm4-", dir=args.dir)
    try:
        log(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; files in {workdir}")
        rss = peak_rss_mb(workdir, args.rss_gib)

        src = os.path.join(workdir, "input.bin")
        make_random_file(src, args.size_mib)
        out = os.path.join(workdir, "output.bin")
        runs = {
            "openssl": lambda: run_openssl(src, out),
            "1 worker": lambda: _sm4.encrypt_file(src, out, KEY, workers=1),
            "2 workers": lambda: _sm4.encrypt_file(src, out, KEY, workers=2),
        }
        if shutil.which("openssl") is None:
            del runs["openssl"]
        best = {name: float("inf") for name in runs}
        for round_no in range(1, args.rounds + 1):
            for name, fn in runs.items():
                cpu_before = cpu_seconds()
                seconds = timed(fn)
                cpu = cpu_seconds() - cpu_before
                os.unlink(out)
                best[name] = min(best[name], seconds)
                log(f"round {round_no}: {name:9s} {args.size_mib / seconds:7.1f} MiB/s ({seconds:.2f} s wall, "
                    f"{cpu:.2f} s CPU = {cpu / seconds:.2f} cores busy)")
        rate = {name: args.size_mib / seconds for name, seconds in best.items()}
        log("best: " + ", ".join(f"{name} {mibs:.1f} MiB/s" for name, mibs in rate.items()))
        log(f"load average after the runs: {os.getloadavg()[0]:.2f}")

        if "openssl" in rate:
            bench_line("sm4_openssl_ratio", rate["1 worker"] / rate["openssl"], "ratio")
        bench_line("sm4_parallel_speedup", rate["2 workers"] / rate["1 worker"], "ratio")
        gmssl_rate = gmssl_mib_per_s(args.gmssl_sample_kib)
        if gmssl_rate is None:
            log("gmssl is not importable (pip install gmssl): sm4_gmssl_speedup skipped")
        else:
            log(f"gmssl SM4-ECB: {gmssl_rate:.3f} MiB/s on a {args.gmssl_sample_kib} KiB sample")
            bench_line("sm4_gmssl_speedup", rate["1 worker"] / gmssl_rate, "ratio")
        bench_line("sm4_peak_rss_mb", rss, "MB")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
