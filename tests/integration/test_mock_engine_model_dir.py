# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mock engine (a test double) reports the model directory it resolved at start, like an engine that
loaded its weights then: a switch of ``current`` shows only after a restart. molecule/model_update relies on it."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest
from gateway.harness import MockEngine, free_ports

KEY = "mock-model-dir-key-0123456789"


def models(port):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models",
                                     headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return answer.headers.get("X-Model-Dir"), json.load(answer)["data"][0]["root"]


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store" / "onprem" / "demo-model"
    for version in ("v1", "v2"):
        (root / version).mkdir(parents=True)
    os.symlink("v1", root / "current")
    return root


def test_model_dir_is_resolved_at_start_and_reported(tmp_path, store):
    (port,) = free_ports(1)
    engine = MockEngine("a", port, tmp_path, KEY, extra=["--model-dir", str(store / "current")])
    try:
        engine.start()
        assert models(port) == (str(store / "v1"), str(store / "v1"))
        os.replace(_link(store, "v2"), store / "current")
        assert models(port) == (str(store / "v1"), str(store / "v1"))  # still what it loaded at start
        engine.stop()
        engine.start()
        assert models(port) == (str(store / "v2"), str(store / "v2"))
    finally:
        engine.stop()


def test_without_model_dir_root_is_the_served_name(tmp_path):
    (port,) = free_ports(1)
    engine = MockEngine("b", port, tmp_path, KEY)
    try:
        engine.start()
        assert models(port) == (None, "deepseek-r1")
    finally:
        engine.stop()


def _link(store, version):
    tmp = store / ".current.tmp"
    os.symlink(version, tmp)
    return tmp
