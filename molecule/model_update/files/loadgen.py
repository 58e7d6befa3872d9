# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Load generator for molecule/model_update: steady, bounded traffic through the gateway during a rollout.

Sends one chat completion every 1/--rate seconds (at most --concurrency at once), each on a new connection,
with the client key from the LOADGEN_KEY environment variable, and records every answer: HTTP status, the engine
that answered (X-Engine) and the model directory it serves (X-Model-Dir, reported by the mock engine). Stops when
--stop-file appears (or after --max-seconds), waits for the requests still running, and writes a JSON summary to
--out (atomically). A request counts as failed unless it got HTTP 200 with a JSON answer that has a choice.
Standard library only, so it runs with the target's /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import threading
import time


def one_request(args, context, key, started):
    sent = time.monotonic() - started
    record = {"t": round(sent, 3)}
    try:
        conn = http.client.HTTPSConnection(args.host, args.port, context=context, timeout=args.timeout)
        body = json.dumps({"model": args.model, "max_tokens": 4,
                           "messages": [{"role": "user", "content": "Hello during the rollout"}]})
        conn.request("POST", "/v1/chat/completions", body=body,
                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                              "Connection": "close"})
        answer = conn.getresponse()
        data = answer.read()
        conn.close()
        record.update(status=answer.status, engine=answer.getheader("X-Engine"),
                      model_dir=answer.getheader("X-Model-Dir"))
        if answer.status == 200:
            choices = json.loads(data).get("choices") or []
            record["ok"] = bool(choices)
        else:
            record.update(ok=False, error=data[:200].decode("utf-8", "replace"))
    except (OSError, ValueError, http.client.HTTPException) as exc:
        record.update(ok=False, status=None, error=f"{type(exc).__name__}: {exc}")
    record["latency"] = round(time.monotonic() - started - sent, 3)
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--ca", required=True, help="CA certificate that signed the gateway's certificate")
    parser.add_argument("--model", required=True)
    parser.add_argument("--rate", type=float, default=8.0, help="requests per second")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    key = os.environ.get("LOADGEN_KEY", "")
    if not key:
        parser.error("set LOADGEN_KEY to the client API key")
    context = ssl.create_default_context(cafile=args.ca)
    records, lock, slots = [], threading.Lock(), threading.BoundedSemaphore(args.concurrency)
    started = time.monotonic()

    def worker():
        try:
            record = one_request(args, context, key, started)
            with lock:
                records.append(record)
        finally:
            slots.release()

    threads, tick = [], 0
    while not os.path.exists(args.stop_file) and time.monotonic() - started < args.max_seconds:
        slots.acquire()
        thread = threading.Thread(target=worker)
        thread.start()
        threads.append(thread)
        tick += 1
        time.sleep(max(0.0, started + tick / args.rate - time.monotonic()))
    for thread in threads:
        thread.join()
    records.sort(key=lambda r: r["t"])
    failed = [r for r in records if not r["ok"]]
    summary = {
        "total": len(records),
        "failed": len(failed),
        "failures": failed[:20],
        "seconds": round(time.monotonic() - started, 1),
        "stopped_by": "stop file" if os.path.exists(args.stop_file) else "max-seconds",
        "engines": sorted({r.get("engine") for r in records if r.get("engine")}),
        "model_dirs_in_order": [r.get("model_dir") for r in records],
        "max_latency": max((r["latency"] for r in records), default=None),
    }
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(summary, handle)
    os.replace(tmp, args.out)
    print(json.dumps({k: v for k, v in summary.items() if k != "model_dirs_in_order"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
