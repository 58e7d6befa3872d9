# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""MOCK ENGINE: a test double for vLLM/SGLang, for CPU-only demos and CI. It does not run a model.

An OpenAI-compatible HTTP server (standard library only, Python 3.9+) that answers like vLLM's:

  GET  /v1/models                 the one served model name; ``root`` is the model directory, as in vLLM
  POST /v1/chat/completions       canned text, token by token; ``"stream": true`` gives SSE chunks
  POST /v1/completions            same for a plain prompt
  GET  /health                    200, or 503 with failure injection
  GET  /metrics                   Prometheus text with vLLM's metric names (vllm:num_requests_running, ...)

/v1/* needs ``Authorization: Bearer <key>`` when a key is set (environment variable named by --api-key-env,
ENGINE_API_KEY by default); /health and /metrics are open, as in vLLM.

Failure injection and pacing (flags, or MOCK_* environment variables of the same name):
  --token-delay S     seconds between tokens (MOCK_TOKEN_DELAY)
  --first-token-delay S  extra delay before the first token (MOCK_FIRST_TOKEN_DELAY)
  --tokens N          tokens per answer unless max_tokens is lower (MOCK_TOKENS)
  --fail-rate F       share of /v1 POSTs answered with HTTP 500 (MOCK_FAIL_RATE)
  --health-fail       /health answers 503 (MOCK_HEALTH_FAIL=1)
  --die-after N       exit abruptly (no cleanup, like a crash) after N completed /v1 POSTs (MOCK_DIE_AFTER)
  --request-log FILE  append the X-Request-ID of every /v1 POST as it arrives (tests use it)
  --model-dir DIR     the model directory a real engine would load (MOCK_MODEL_DIR). The mock reads no file in
                      it; it resolves links once at start, as an engine that loads its weights at start would
                      (``<store>/<repo>/current`` -> the version directory), and reports the result in
                      /v1/models ``root`` and in an ``X-Model-Dir`` header on every answer, so tests can tell
                      which model revision an engine serves after a switch of ``current`` and a restart.

SIGTERM drains like uvicorn: the listening socket closes at once, answers in flight finish (with
``Connection: close``), then the process exits. SIGKILL is a crash.
"""

from __future__ import annotations

import argparse
import email.parser
import http.client
import json
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = (
    "This is the mock engine of onprem.deepseek, a test double that stands in for vLLM or SGLang. "
    "It runs no model: every answer is this same text, sent one word per token so that streaming, "
    "timeouts, balancing and failover can be tested without a GPU. Ask a real engine for real answers."
).split()

# Histogram buckets as vLLM v1 declares them (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
               480.0, 960.0, 1920.0, 7680.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0)
KV_BLOCKS = 1024


def env_default(name, default, kind=str):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if kind is bool:
        return value.strip().lower() in ("1", "true", "yes", "on")
    return kind(value)


class Histogram:
    def __init__(self, buckets):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value):
        self.total += 1
        self.sum += value
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1

    def lines(self, name, labels):
        out = []
        for bound, count in zip(self.buckets, self.counts):
            out.append(f'{name}_bucket{{{labels},le="{bound}"}} {count}')
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.total}')
        out.append(f"{name}_count{{{labels}}} {self.total}")
        out.append(f"{name}_sum{{{labels}}} {self.sum}")
        return out


class State:
    """Counters and failure-injection settings shared by the handler threads."""

    def __init__(self, options):
        self.options = options
        self.lock = threading.Lock()
        self.running = 0
        self.completed = 0
        self.draining = False
        self.last_activity = time.monotonic()
        self.success = {"stop": 0, "length": 0}
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.ttft = Histogram(TTFT_BUCKETS)
        self.e2e = Histogram(E2E_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.request_log = None
        if options.request_log:
            self.request_log = open(options.request_log, "a", buffering=1, encoding="utf-8")

    def log_request(self, request_id):
        if self.request_log is not None:
            with self.lock:
                self.request_log.write(request_id + "\n")
                self.request_log.flush()

    def metrics(self):
        labels = f'model_name="{self.options.served_model_name}",engine="0"'
        with self.lock:
            running = self.running
            kv = min(1.0, running * 16 / KV_BLOCKS)
            lines = [
                "# HELP vllm:num_requests_running Number of requests in model execution batches.",
                "# TYPE vllm:num_requests_running gauge",
                f"vllm:num_requests_running{{{labels}}} {running}",
                "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
                "# TYPE vllm:num_requests_waiting gauge",
                f"vllm:num_requests_waiting{{{labels}}} 0",
                "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
                "# TYPE vllm:kv_cache_usage_perc gauge",
                f"vllm:kv_cache_usage_perc{{{labels}}} {kv}",
                "# HELP vllm:num_preemptions Cumulative number of preemption from the engine.",
                "# TYPE vllm:num_preemptions counter",
                f"vllm:num_preemptions_total{{{labels}}} 0",
                "# HELP vllm:prompt_tokens Number of prefill tokens processed.",
                "# TYPE vllm:prompt_tokens counter",
                f"vllm:prompt_tokens_total{{{labels}}} {self.prompt_tokens}",
                "# HELP vllm:generation_tokens Number of generation tokens processed.",
                "# TYPE vllm:generation_tokens counter",
                f"vllm:generation_tokens_total{{{labels}}} {self.generation_tokens}",
                "# HELP vllm:request_success Count of successfully processed requests.",
                "# TYPE vllm:request_success counter",
            ]
            for reason, count in self.success.items():
                lines.append(f'vllm:request_success_total{{{labels},finished_reason="{reason}"}} {count}')
            for name, hist, text in (
                ("vllm:time_to_first_token_seconds", self.ttft, "Histogram of time to first token in seconds."),
                ("vllm:e2e_request_latency_seconds", self.e2e, "Histogram of e2e request latency in seconds."),
                ("vllm:inter_token_latency_seconds", self.itl, "Histogram of inter-token latency in seconds."),
            ):
                lines += [f"# HELP {name} {text}", f"# TYPE {name} histogram", *hist.lines(name, labels)]
        return "\n".join(lines) + "\n"


MAX_HEADER_LINE = 65536  # http.client's own limits
MAX_HEADERS = 100
HEADER_NAME = re.compile(r"[\041-\071\073-\176]+\Z")  # what email.feedparser accepts as a header name


def parse_headers(fp, _class=http.client.HTTPMessage):
    """http.client.parse_headers without the email parser in the common case.

    The standard library hands every header block to email.feedparser, which costs about 11 us a request on the
    build machine (more than nginx spends proxying one): that made the double slower per forwarded header than
    the real engines, whose HTTP servers (uvicorn with httptools) parse headers in C. Plain ``Name: value`` lines
    are stored as the email parser stores them (``set_raw``, value without leading blanks); anything else (a
    folded line, a line without a colon, a name with blanks or characters outside printable ASCII) goes to the
    standard parser, so the result is the standard library's in every case.
    """
    lines = []
    while True:
        line = fp.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            break
    message = _class()
    for line in lines[:-1]:
        text = line.decode("iso-8859-1")
        text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
        name, colon, value = text.partition(":")
        # a lone CR ends a line for the email parser too
        if not colon or "\r" in value or not HEADER_NAME.match(name):
            return email.parser.Parser(_class=_class).parsestr(b"".join(lines).decode("iso-8859-1"))
        message.set_raw(name, value.lstrip(" \t"))
    return message


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle's algorithm on, the body would wait for the
    # client's delayed ACK (40 ms on Linux) on every keep-alive request. Real engines (uvicorn) set TCP_NODELAY too.
    disable_nagle_algorithm = True
    server_version = "onprem-deepseek-mock-engine/1"
    sys_version = ""
    state: State = None  # set on the subclass by make_server

    # -- plumbing -----------------------------------------------------------------

    def log_message(self, format, *args):
        if self.state.options.access_log:
            # Method, path and status only: headers (the API key) are never logged.
            sys.stderr.write(f"{self.address_string()} {self.command} {self.path.split('?')[0]} {args[1:2]}\n")

    def send_json(self, status, body, extra_headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        self.end_common_headers()
        self.wfile.write(data)

    def end_common_headers(self):
        self.send_header("X-Engine", self.state.options.engine_id)
        if self.state.options.model_dir:
            self.send_header("X-Model-Dir", self.state.options.model_dir)
        if self.state.draining:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def authorized(self):
        key = self.state.options.api_key
        if not key:
            return True
        given = self.headers.get("Authorization", "")
        if given == f"Bearer {key}":
            return True
        self.send_json(401, {"error": "Unauthorized"})
        return False

    def read_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self.send_json(400, {"object": "error", "message": "body is not JSON", "type": "BadRequestError",
                                 "code": 400})
            return None
        if not isinstance(body, dict):
            self.send_json(400, {"object": "error", "message": "body must be a JSON object",
                                 "type": "BadRequestError", "code": 400})
            return None
        return body

    # -- routes -------------------------------------------------------------------

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/health":
            if self.state.options.health_fail:
                self.send_json(503, {"error": "engine unhealthy (mock failure injection)"})
            else:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_common_headers()
        elif path == "/metrics":
            data = self.state.metrics().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_common_headers()
            self.wfile.write(data)
        elif path == "/v1/models":
            if self.authorized():
                name = self.state.options.served_model_name
                self.send_json(200, {"object": "list", "data": [
                    {"id": name, "object": "model", "created": int(time.time()), "owned_by": "onprem-mock",
                     "root": self.state.options.model_dir or name,
                     "max_model_len": self.state.options.max_model_len}]})
        elif path == "/ping":
            self.send_json(200, {"engine": self.state.options.engine_id})
        else:
            self.send_json(404, {"error": "Not Found"})

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        if path not in ("/v1/chat/completions", "/v1/completions"):
            self.send_json(404, {"error": "Not Found"})
            return
        self.state.log_request(self.headers.get("X-Request-ID", "-"))
        if not self.authorized():
            return
        body = self.read_json()
        if body is None:
            return
        options = self.state.options
        if body.get("model") not in (None, options.served_model_name):
            self.send_json(404, {"object": "error", "type": "NotFoundError", "code": 404,
                                 "message": f"The model `{body.get('model')}` does not exist."})
            return
        if options.fail_rate and random.random() < options.fail_rate:
            self.send_json(500, {"object": "error", "type": "InternalServerError", "code": 500,
                                 "message": "mock failure injection"})
            return
        with self.state.lock:
            self.state.running += 1
            self.state.last_activity = time.monotonic()
        try:
            self.complete(path == "/v1/chat/completions", body)
        finally:
            self.finish_request()

    def finish_request(self):
        state = self.state
        with state.lock:
            state.running -= 1
            state.completed += 1
            state.last_activity = time.monotonic()
            die = state.options.die_after and state.completed >= state.options.die_after
        if die:
            sys.stderr.write(f"mock engine {state.options.engine_id}: dying after {state.completed} requests "
                             "(failure injection)\n")
            os._exit(3)

    # -- the answer ---------------------------------------------------------------

    def complete(self, chat, body):
        options = self.state.options
        started = time.monotonic()
        if chat:
            messages = body.get("messages") or []
            prompt = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        else:
            prompt = str(body.get("prompt", ""))
        prompt_tokens = max(1, len(prompt.split()))
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or options.tokens
        count = max(0, min(int(max_tokens), options.tokens))
        tokens = [WORDS[i % len(WORDS)] + " " for i in range(count)]
        reason = "length" if count < options.tokens else "stop"
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        created = int(time.time())
        if body.get("stream"):
            ttft = self.stream(chat, rid, created, tokens, reason, started)
        else:
            ttft = self.wait_tokens(tokens, started)
            text = "".join(tokens)
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": count,
                     "total_tokens": prompt_tokens + count}
            if chat:
                choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
                obj = "chat.completion"
            else:
                choice = {"index": 0, "text": text, "finish_reason": reason}
                obj = "text_completion"
            self.send_json(200, {"id": rid, "object": obj, "created": created, "model": options.served_model_name,
                                 "system_fingerprint": options.engine_id, "choices": [choice], "usage": usage})
        elapsed = time.monotonic() - started
        with self.state.lock:
            self.state.prompt_tokens += prompt_tokens
            self.state.generation_tokens += count
            self.state.success[reason] += 1
            self.state.ttft.observe(ttft)
            self.state.e2e.observe(elapsed)
            if count > 1:
                self.state.itl.observe(options.token_delay)

    def wait_tokens(self, tokens, started):
        options = self.state.options
        if options.first_token_delay:
            time.sleep(options.first_token_delay)
        ttft = time.monotonic() - started
        if options.token_delay and tokens:
            time.sleep(options.token_delay * len(tokens))
        return ttft

    def stream(self, chat, rid, created, tokens, reason, started):
        options = self.state.options
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_common_headers()
        obj = "chat.completion.chunk" if chat else "text_completion"
        base = {"id": rid, "object": obj, "created": created, "model": options.served_model_name}
        if options.first_token_delay:
            time.sleep(options.first_token_delay)
        ttft = None
        if chat:
            self.chunk(dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""},
                                            "finish_reason": None}]))
        for index, token in enumerate(tokens):
            if index and options.token_delay:
                time.sleep(options.token_delay)
            last = index == len(tokens) - 1
            if chat:
                choice = {"index": 0, "delta": {"content": token}, "finish_reason": reason if last else None}
            else:
                choice = {"index": 0, "text": token, "finish_reason": reason if last else None}
            self.chunk(dict(base, choices=[choice]))
            if ttft is None:
                ttft = time.monotonic() - started
        self.write_chunk(b"data: [DONE]\n\n")
        self.write_chunk(b"")
        return ttft if ttft is not None else time.monotonic() - started

    def chunk(self, payload):
        self.write_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def write_chunk(self, data):
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def make_server(options):
    state = State(options)
    handler = type("BoundHandler", (Handler,), {"state": state})
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    server_class = type("BoundServer", (Server,), {"address_family": family})
    server = server_class((options.host, options.port), handler)
    return server, state


def drain_and_exit(server, state, grace):
    """SIGTERM: stop accepting, let answers in flight finish, exit once idle for a moment."""
    state.draining = True
    server.shutdown()
    # Connections the kernel already accepted would be reset by close(): take them all, answer them
    # (with Connection: close), and only then close the listening socket.
    server.socket.setblocking(False)
    while True:
        try:
            conn, address = server.socket.accept()
        except (BlockingIOError, InterruptedError):
            break
        conn.setblocking(True)
        server.process_request(conn, address)
    server.server_close()
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with state.lock:
            idle = state.running == 0 and time.monotonic() - state.last_activity > 0.5
        if idle:
            break
        time.sleep(0.05)
    os._exit(0)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Mock OpenAI-compatible engine (a test double, runs no model)")
    parser.add_argument("--host", default=env_default("MOCK_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=env_default("MOCK_PORT", 8000, int))
    parser.add_argument("--served-model-name", default=env_default("MOCK_SERVED_MODEL_NAME", "mock"))
    parser.add_argument("--max-model-len", type=int, default=env_default("MOCK_MAX_MODEL_LEN", 32768, int))
    parser.add_argument("--api-key-env", default="ENGINE_API_KEY",
                        help="environment variable that holds the API key (empty: no key needed)")
    parser.add_argument("--engine-id", default=env_default("MOCK_ENGINE_ID", socket.gethostname()),
                        help="name sent back in the X-Engine header and system_fingerprint")
    parser.add_argument("--tokens", type=int, default=env_default("MOCK_TOKENS", 16, int))
    parser.add_argument("--token-delay", type=float, default=env_default("MOCK_TOKEN_DELAY", 0.02, float))
    parser.add_argument("--first-token-delay", type=float, default=env_default("MOCK_FIRST_TOKEN_DELAY", 0.0, float))
    parser.add_argument("--fail-rate", type=float, default=env_default("MOCK_FAIL_RATE", 0.0, float))
    parser.add_argument("--health-fail", action="store_true", default=env_default("MOCK_HEALTH_FAIL", False, bool))
    parser.add_argument("--die-after", type=int, default=env_default("MOCK_DIE_AFTER", 0, int))
    parser.add_argument("--drain-grace", type=float, default=env_default("MOCK_DRAIN_GRACE", 30.0, float))
    parser.add_argument("--request-log", default=os.environ.get("MOCK_REQUEST_LOG"))
    parser.add_argument("--access-log", action="store_true", default=env_default("MOCK_ACCESS_LOG", False, bool))
    parser.add_argument("--model-dir", default=env_default("MOCK_MODEL_DIR", ""),
                        help="model directory to report (links resolved once, at start); no file in it is read")
    options = parser.parse_args(argv)
    options.model_dir = os.path.realpath(options.model_dir) if options.model_dir else ""
    options.api_key = os.environ.get(options.api_key_env, "") if options.api_key_env else ""
    if not 0 <= options.fail_rate <= 1:
        parser.error("--fail-rate must be between 0 and 1")
    return options


def main(argv=None):
    options = parse_args(argv)
    # BaseHTTPRequestHandler.parse_request calls http.client.parse_headers; this process is only this server.
    http.client.parse_headers = parse_headers
    server, state = make_server(options)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(
        target=drain_and_exit, args=(server, state, options.drain_grace), daemon=True).start())
    sys.stderr.write(f"mock engine (test double) {options.engine_id} serving {options.served_model_name!r} "
                     f"({options.model_dir or 'no model directory'}) on {options.host}:{server.server_address[1]}, "
                     f"api key {'set' if options.api_key else 'not set'}\n")
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    if state.draining:  # serve_forever returned because SIGTERM's drain thread shut it down
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
