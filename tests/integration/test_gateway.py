# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gateway role's real nginx configuration, served by real nginx on loopback, in front of three mock engines.

The configuration is rendered by the role's own tasks (ansible-playbook -c local, tests/integration/gateway/
render.yml): checks, internal CA through community.crypto, every file validated by the role's nginx -t wrapper.
nginx runs as a child of this test from a scratch prefix; the engines are roles/inference/files/mock_engine.py.
Needs the nginx binary (Debian: nginx-light or nginx); skipped with the reason where it is missing.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import resource
import signal
import socket
import ssl
import sys
import threading
import time
from collections import Counter, namedtuple
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway.harness import NGINX, MockEngine, Nginx, free_ports, render

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX),
                                reason="nginx is not installed (apt-get install nginx-light)")

BULK_KEY = "bulk-" + "A1b2C3d4E5f6G7h8" * 15  # 245 characters: the longest keys must fit nginx's map
SMALL_KEY = "small-" + "Z9y8X7w6V5u4T3s2" * 2
ENGINE_KEY = "engine-" + "Q1w2E3r4T5y6U7i8" * 2
WEIGHTS = {"e1": 1, "e2": 2, "e3": 3}
MODEL = "deepseek-r1"
Result = namedtuple("Result", "status engine rid started")


class Gateway:
    def __init__(self, workdir, ports):
        self.workdir = Path(workdir)
        self.https, self.http = ports[0], ports[1]
        self.engine_ports = dict(zip(WEIGHTS, ports[2:]))
        self.engines = {}
        self.nginx = None
        self.ca = self.workdir / "etc" / "onprem-deepseek" / "tls" / "ca.crt"
        self.access_log = self.workdir / "log" / "onprem-deepseek-access.log"

    def context(self, minimum=None, maximum=None):
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if minimum:
            ctx.minimum_version = minimum
        if maximum:
            ctx.maximum_version = maximum
        return ctx

    def connection(self, timeout=30):
        return http.client.HTTPSConnection("127.0.0.1", self.https, timeout=timeout, context=self.context())

    def start_engine(self, name):
        engine = MockEngine(name, self.engine_ports[name], self.workdir, ENGINE_KEY, token_delay=0.02, tokens=32)
        self.engines[name] = engine.start()
        return engine


def request(conn, method, path, key=None, body=None):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = response.read()
    return response.status, dict(response.getheaders()), data


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gateway")
    ports = free_ports(5)
    gw = Gateway(workdir, ports)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    render(workdir, {
        "gateway_https_port": gw.https,
        "gateway_http_port": gw.http,
        "gateway_worker_processes": 2,
        "gateway_worker_connections": 512,
        "gateway_worker_rlimit_nofile": min(4096, hard) if hard != resource.RLIM_INFINITY else 4096,
        "gateway_upstream_servers": [{"name": name, "address": "127.0.0.1", "port": gw.engine_ports[name],
                                      "weight": weight} for name, weight in WEIGHTS.items()],
        "gateway_api_keys": [{"name": "bulk-client", "key": BULK_KEY, "tier": "bulk"},
                             {"name": "small-client", "key": SMALL_KEY, "tier": "default"}],
        "gateway_rate_tiers": {"default": {"rate": "2r/s", "burst": 3},
                               "bulk": {"rate": "100000r/s", "burst": 100000}},
        "gateway_engine_api_key": ENGINE_KEY,
    })
    for name in WEIGHTS:
        gw.start_engine(name)
    gw.nginx = Nginx(workdir).start(gw.https)
    yield gw
    gw.nginx.stop()
    for engine in gw.engines.values():
        engine.stop()


def run_load(gw, total, threads, body, on_progress=None):
    """``total`` POSTs through the gateway from ``threads`` keep-alive clients; returns a list of
    (status, engine, request id, start time)."""
    results, lock = [], threading.Lock()
    counter = iter(range(total))

    def worker():
        conn = gw.connection()
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            started = time.monotonic()
            try:
                status, headers, _body = request(conn, "POST", "/v1/completions", BULK_KEY, body)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = gw.connection()
                status, headers = 0, {}
            with lock:
                results.append(Result(status, headers.get("X-Engine"), headers.get("X-Request-ID"), started))
                done = len(results)
            if on_progress:
                on_progress(done)
        conn.close()

    workers = [threading.Thread(target=worker) for _index in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=120)
    return results


# -- the configuration the role wrote ----------------------------------------------------------------

def test_rendered_config_is_the_roles_and_streaming_safe(gateway):
    conf = (gateway.workdir / "etc" / "conf.d" / "onprem-deepseek.conf").read_text()
    upstream = (gateway.workdir / "etc" / "onprem-deepseek" / "upstream.conf").read_text()
    directives = [line.split("#", 1)[0].strip() for line in conf.splitlines()]
    # the default (gateway_retry_non_idempotent: true) retries a POST whose engine failed before answering
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in directives
    assert "proxy_buffering off;" in conf
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    assert "least_conn;" in upstream
    assert re.search(r"keepalive \d+;", upstream)
    for key in (BULK_KEY, SMALL_KEY, ENGINE_KEY):
        assert key not in conf and key not in upstream
    keys_map = gateway.workdir / "etc" / "onprem-deepseek" / "api-keys.map"
    assert oct(keys_map.stat().st_mode & 0o777) == "0o640"
    assert BULK_KEY in keys_map.read_text()
    assert oct((gateway.workdir / "etc" / "onprem-deepseek" / "engine-auth.conf").stat().st_mode & 0o777) == "0o640"


# -- balance -----------------------------------------------------------------------------------------

def test_weighted_balance_within_ten_percent_over_3000_requests(gateway):
    results = run_load(gateway, 3000, 6, {"model": MODEL, "prompt": "hello", "max_tokens": 1})
    statuses = Counter(result.status for result in results)
    assert statuses == {200: 3000}, statuses
    share = Counter(result.engine for result in results)
    total_weight = sum(WEIGHTS.values())
    print("balance over 3000 requests:", dict(share))
    for name, weight in WEIGHTS.items():
        expected = 3000 * weight / total_weight
        assert abs(share[name] - expected) <= 0.10 * expected, (name, share[name], expected)


# -- keys and limits -----------------------------------------------------------------------------------

def test_401_without_key_or_with_a_wrong_one_and_200_with_one(gateway):
    conn = gateway.connection()
    status, headers, body = request(conn, "GET", "/v1/models")
    assert status == 401
    assert headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert json.loads(body)["error"]["code"] == 401
    status = request(conn, "GET", "/v1/models", key="wrong-" + BULK_KEY)[0]
    assert status == 401
    # The engines accept only ENGINE_KEY: a 200 means the gateway swapped the client's key for the engine's.
    status, headers, body = request(conn, "GET", "/v1/models", key=BULK_KEY)
    assert status == 200
    assert json.loads(body)["data"][0]["id"] == MODEL
    assert headers.get("X-Engine") in WEIGHTS
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    status, _headers, body = request(conn, "POST", "/v1/chat/completions", BULK_KEY, chat)
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == "This is the mock "
    conn.close()


def test_429_beyond_the_per_key_rate(gateway):
    time.sleep(2.5)  # let the small tier's bucket (2 r/s, burst 3) refill
    conn = gateway.connection()
    statuses = [request(conn, "GET", "/v1/models", key=SMALL_KEY)[0] for _index in range(10)]
    conn.close()
    # 1 + burst 3 pass at once; the rest of a burst of 10 within ~0.1 s are over 2 r/s
    assert statuses[:4] == [200] * 4, statuses
    assert statuses.count(429) >= 5, statuses
    assert set(statuses) <= {200, 429}
    # another key is not affected by this key's limit
    conn = gateway.connection()
    assert request(conn, "GET", "/v1/models", key=BULK_KEY)[0] == 200
    conn.close()


# -- streaming -----------------------------------------------------------------------------------------

def test_sse_first_token_reaches_the_client_before_the_engine_finishes(gateway):
    ctx = gateway.context()
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", gateway.https), timeout=30),
                           server_hostname="127.0.0.1")
    body = json.dumps({"model": MODEL, "stream": True, "max_tokens": 32,
                       "messages": [{"role": "user", "content": "stream please"}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {BULK_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    started = time.monotonic()
    sock.sendall(head + body)
    received, first_token_at = b"", None
    while True:
        data = sock.recv(65536)
        if not data:
            break
        received += data
        if first_token_at is None and b'"content": "This "' in received:
            first_token_at = time.monotonic() - started
    total = time.monotonic() - started
    sock.close()
    assert b"HTTP/1.1 200" in received.split(b"\r\n", 1)[0]
    assert b"text/event-stream" in received
    assert received.count(b"data: ") == 34  # role chunk + 32 tokens + [DONE]
    assert b"data: [DONE]" in received
    # 32 tokens 20 ms apart: the engine needs >= 0.62 s; the first token must not wait for the end
    print(f"SSE: first token after {first_token_at * 1000:.1f} ms, stream finished after {total * 1000:.1f} ms")
    assert total >= 0.6
    assert first_token_at is not None and first_token_at < 0.25 * total


# -- TLS -----------------------------------------------------------------------------------------------

def test_tls_1_1_refused_tls_1_2_and_1_3_accepted(gateway):
    old = gateway.context(ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all: the refusal is the server's
    with pytest.raises(ssl.SSLError) as refused:
        with socket.create_connection(("127.0.0.1", gateway.https), timeout=10) as raw:
            old.wrap_socket(raw, server_hostname="127.0.0.1")
    assert re.search(r"PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|WRONG_SSL_VERSION", str(refused.value)), refused.value
    for version, name in ((ssl.TLSVersion.TLSv1_3, "TLSv1.3"), (ssl.TLSVersion.TLSv1_2, "TLSv1.2")):
        ctx = gateway.context(version, version)
        with socket.create_connection(("127.0.0.1", gateway.https), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() == name
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert tls.recv(100).startswith(b"HTTP/1.1 200")


# -- failover ------------------------------------------------------------------------------------------

def kill_during_load(gateway, victim, sig, total=600, after=150):
    killed_at = {}

    def progress(done):
        if done == after and not killed_at:
            killed_at["t"] = time.monotonic()
            gateway.engines[victim].signal(sig)

    results = run_load(gateway, total, 6, {"model": MODEL, "prompt": "x", "max_tokens": 1}, progress)
    gateway.engines[victim].proc.wait(timeout=30)
    return results, killed_at["t"]


def restart(gateway, name):
    gateway.engines[name].stop()
    gateway.start_engine(name)


def test_engine_stopped_under_load_no_request_fails(gateway):
    """SIGTERM (kill, systemctl stop, podman stop): the engine closes its port, finishes what it has; the
    gateway sends new requests elsewhere (connection refused is retried), so not one request fails."""
    results, killed_at = kill_during_load(gateway, "e2", signal.SIGTERM)
    statuses = Counter(result.status for result in results)
    assert statuses == {200: 600}, statuses
    after = [result.engine for result in results if result.started > killed_at + 1.0]
    assert after and "e2" not in after
    restart(gateway, "e2")


def test_engine_crashed_under_load_no_request_fails_and_held_ones_are_replayed(gateway):
    """SIGKILL: the requests the crashed engine held die with it; nginx sees the connection reset before any
    response byte and (non_idempotent, the default) runs them on another engine. Not one request fails, every
    request is answered once, and the log shows each replayed one went to the crashed engine first."""
    for name in WEIGHTS:
        gateway.engines[name].request_log.write_text("")
    results, killed_at = kill_during_load(gateway, "e3", signal.SIGKILL)
    statuses = Counter(result.status for result in results)
    time.sleep(1.5)  # the access log is buffered, flushed every second
    log = {entry["request_id"]: entry for entry in map(json.loads, gateway.access_log.read_text().splitlines())}
    victim = f"127.0.0.1:{gateway.engine_ports['e3']}"
    rids = [result.rid for result in results]
    replayed = [log[rid] for rid in rids if "," in log[rid]["upstream_addr"]]
    print(f"SIGKILL under load: {statuses[200]} of {len(results)} answered 200, {len(replayed)} replayed "
          "on another engine")
    assert statuses == {200: 600}, statuses
    assert len(set(rids)) == len(rids)
    for entry in replayed:  # first the crashed engine, then one that answered
        first, second = (part.strip() for part in entry["upstream_addr"].split(",", 1))
        assert first == victim and second != victim, entry
        assert entry["upstream_status"].split(",")[-1].strip() == "200", entry
    received = {name: set(engine.received()) for name, engine in gateway.engines.items()}
    answered_elsewhere = received["e1"] | received["e2"]
    assert all(entry["request_id"] in answered_elsewhere for entry in replayed)
    late = [result.engine for result in results if result.started > killed_at + 1.0]
    assert late and "e3" not in late
    restart(gateway, "e3")


# -- logs (last: sees every request above) -------------------------------------------------------------

def test_no_key_in_the_access_log_and_the_client_name_is(gateway):
    time.sleep(1.5)  # the access log is buffered, flushed every second
    text = gateway.access_log.read_text()
    entries = [json.loads(line) for line in text.splitlines()]
    assert len(entries) > 3000
    for key in (BULK_KEY, SMALL_KEY, ENGINE_KEY, "Bearer"):
        assert key not in text
    for log in (gateway.workdir / "log").iterdir():
        content = log.read_text(errors="replace")
        assert BULK_KEY not in content and SMALL_KEY not in content and ENGINE_KEY not in content, log
    clients = Counter(entry["client"] for entry in entries)
    assert clients["bulk-client"] > 3000 and clients["small-client"] >= 10 and clients[""] >= 2
    sample = next(entry for entry in entries if entry["status"] == 200 and entry["upstream_addr"])
    assert float(sample["request_time"]) >= 0 and sample["upstream_response_time"] != ""
    assert {entry["status"] for entry in entries} >= {200, 401, 429}
