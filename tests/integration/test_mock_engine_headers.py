# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mock engine (a test double) parses request headers with a fast path of its own (mock_engine.parse_headers);
whatever the input, the result must be the standard library's (http.client.parse_headers), and the running server
must still answer requests with folded, repeated or malformed headers as before."""

from __future__ import annotations

import http.client
import importlib.util
import io
import random
import socket

import pytest
from gateway.harness import MOCK, MockEngine, free_ports

KEY = "mock-headers-key-0123456789"
SPEC = importlib.util.spec_from_file_location("mock_engine", MOCK)
mock_engine = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(mock_engine)

BLOCKS = {
    "plain": b"Host: a\r\nAuthorization: Bearer x\r\n\r\n",
    "forwarded by the gateway": b"Host: 127.0.0.1:8000\r\nX-Request-ID: 5f0c8e3a\r\nX-Forwarded-For: 10.0.0.1\r\n"
    b"X-Forwarded-Proto: https\r\nAuthorization: Bearer x\r\n\r\n",
    "repeated": b"Host: a\r\nX-Forwarded-For: 1\r\nX-Forwarded-For: 2\r\n\r\n",
    "folded": b"Host: a\r\nX-Long: one\r\n two\r\n\r\n",
    "line without colon": b"Host: a\r\nbad line\r\nX: y\r\n\r\n",
    "name with blank": b"Host : a\r\n\r\n",
    "name with inner blank": b"X Y: z\r\nHost: a\r\n\r\n",
    "mbox From line": b"From me: x\r\n\r\n",
    "From header": b"From:x\r\n\r\n",
    "control character in name": b"X\x00: y\r\n\r\n",
    "DEL in name": b"\x7fX: y\r\n\r\n",
    "latin-1 name": "Caf\u00e9: y\r\n\r\n".encode("iso-8859-1"),
    "empty name": b": y\r\nHost: a\r\n\r\n",
    "CR CR LF": b"X: y\r\r\nHost: a\r\n\r\n",
    "lone CR inside a value": b"X: y\rz\r\nHost: a\r\n\r\n",
    "no line end before end of stream": b"Host: a\r\nX: y",
    "tab before value, blanks inside": b"X:\t y  z \r\n\r\n",
    "no blank after colon, trailing blanks": b"Host:a  \r\n\r\n",
    "empty value": b"X-Empty:\r\nHost: a\r\n\r\n",
    "bare LF": b"Host: a\nAccept: */*\n\n",
    "end of stream": b"Host: a\r\n",
    "nothing": b"",
    "body after": b"Content-Length: 4\r\nconnection: close\r\n\r\nbody",
    "latin-1 value": "X-Name: caf\u00e9\r\n\r\n".encode("iso-8859-1"),
}


def parse(function, block):
    stream = io.BufferedReader(io.BytesIO(block))
    message = function(stream)
    return message.items(), [type(defect).__name__ for defect in message.defects], stream.read()


@pytest.mark.parametrize("block", BLOCKS.values(), ids=BLOCKS.keys())
def test_same_result_as_the_standard_library(block):
    assert parse(mock_engine.parse_headers, block) == parse(http.client.parse_headers, block)


def test_same_result_on_random_header_blocks():
    """3,000 blocks (fixed seed): mostly well-formed lines, some with odd separators, blanks, control characters or
    line ends in them, some plain noise; both the fast path and the fallback are taken many times."""
    names = [b"Host", b"X-Forwarded-For", b"From", b"a", b"Z9", b"X Y", b"\xe9", b"", b" X", b"\tX"]
    separators = [b":", b": ", b":\t", b" :", b"::", b""]
    pieces = [b"a", b"value", b" ", b"\t", b":", b"-", b"/", b";", b"=", b"\x00", b"\x7f", b"\xe9", b"\x85", b"\r",
              b"\n", b"\r\n"]
    rng = random.Random(7)
    fast = 0
    for _case in range(3000):
        lines = []
        for _line in range(rng.randint(0, 6)):
            if rng.random() < 0.8:
                alphabet = pieces[:9] if rng.random() < 0.8 else pieces
                value = [rng.choice(alphabet) for _piece in range(rng.randint(0, 4))]
                line = rng.choice(names[:5]) + b": " + b"".join(value) if rng.random() < 0.7 else \
                    rng.choice(names) + rng.choice(separators) + b"".join(value)
            else:
                line = b"".join(rng.choice(pieces + names) for _piece in range(rng.randint(0, 6)))
            lines.append(line + rng.choice([b"\r\n", b"\r\n", b"\n"]))
        block = b"".join(lines) + rng.choice([b"\r\n", b"\n", b"", b"\r\nbody"])
        ours = parse(mock_engine.parse_headers, block)
        assert ours == parse(http.client.parse_headers, block), block
        fast += bool(ours[0]) and not ours[1]
    assert fast > 500, fast  # many well-formed blocks (the fast path) among them: 1,006 with this seed


def test_case_insensitive_lookup_and_repeated_headers():
    message = mock_engine.parse_headers(io.BufferedReader(io.BytesIO(BLOCKS["repeated"])))
    assert message.get("x-forwarded-for") == "1"
    assert message.get_all("X-FORWARDED-FOR") == ["1", "2"]


@pytest.mark.parametrize(("block", "error"), [
    (b"X: " + b"a" * 70000 + b"\r\n\r\n", http.client.LineTooLong),
    (b"".join(b"X-%d: v\r\n" % n for n in range(101)) + b"\r\n", http.client.HTTPException),
])
def test_the_standard_limits_hold(block, error):
    for function in (mock_engine.parse_headers, http.client.parse_headers):
        with pytest.raises(error):
            function(io.BufferedReader(io.BytesIO(block)))


def raw_request(port, text):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(text.encode("iso-8859-1"))
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer.split(b"\r\n", 1)[0].decode()


def test_the_server_answers_odd_headers_as_before(tmp_path):
    (port,) = free_ports(1)
    engine = MockEngine("h", port, tmp_path, KEY)
    try:
        engine.start()
        auth = f"Authorization: Bearer {KEY}\r\n"
        base = "GET /v1/models HTTP/1.1\r\nHost: x\r\n"
        assert raw_request(port, base + auth + "Connection: close\r\n\r\n") == "HTTP/1.1 200 OK"
        assert raw_request(port, base + "X-Forwarded-For: 1\r\nX-Forwarded-For: 2\r\n" + auth
                           + "Connection: close\r\n\r\n") == "HTTP/1.1 200 OK"
        assert raw_request(port, base + "X-Long: one\r\n two\r\n" + auth + "Connection: close\r\n\r\n") \
            == "HTTP/1.1 200 OK"
        assert raw_request(port, base + "Connection: close\r\n\r\n").startswith("HTTP/1.1 401")
        assert raw_request(port, base + "".join(f"X-{n}: v\r\n" for n in range(101)) + "\r\n") \
            == "HTTP/1.1 431 Too many headers"
        assert raw_request(port, base + "X: " + "a" * 70000 + "\r\n\r\n") == "HTTP/1.1 431 Line too long"
    finally:
        engine.stop()
