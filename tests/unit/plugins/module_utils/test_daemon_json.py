# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The daemon.json merge rules, table-driven over the shapes real daemon.json files have."""

from __future__ import annotations

import json

import pytest
from ansible_collections.onprem.deepseek.plugins.module_utils._daemon_json import (
    DaemonJsonError,
    deep_merge,
    merge,
    parse,
    render,
)

NVIDIA = {"nvidia": {"path": "nvidia-container-runtime", "args": []}}


@pytest.mark.parametrize("current, runtimes, default, settings, expected", [
    # a fresh host
    ({}, NVIDIA, None, {}, {"runtimes": NVIDIA}),
    # user keys kept, other runtimes kept
    ({"log-driver": "local", "runtimes": {"crun": {"path": "crun"}}}, NVIDIA, None, {},
     {"log-driver": "local", "runtimes": {"crun": {"path": "crun"}, **NVIDIA}}),
    # an old nvidia entry (nvidia-docker2 style, with runtimeArgs) is replaced whole
    ({"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []}}}, NVIDIA, None, {},
     {"runtimes": NVIDIA}),
    # default runtime set, then left alone when not given
    ({}, NVIDIA, "nvidia", {}, {"runtimes": NVIDIA, "default-runtime": "nvidia"}),
    ({"default-runtime": "nvidia", "runtimes": NVIDIA}, NVIDIA, None, {},
     {"default-runtime": "nvidia", "runtimes": NVIDIA}),
    # unset removes our default only
    ({"default-runtime": "nvidia", "runtimes": NVIDIA}, NVIDIA, "", {}, {"runtimes": NVIDIA}),
    ({"default-runtime": "runc"}, NVIDIA, "", {}, {"default-runtime": "runc", "runtimes": NVIDIA}),
    # runc is always known
    ({}, {}, "runc", {}, {"default-runtime": "runc"}),
    # settings merge deeply, lists replace
    ({"log-opts": {"max-size": "10m"}, "registry-mirrors": ["https://a"]}, {}, None,
     {"log-opts": {"max-file": "3"}, "registry-mirrors": ["https://b"]},
     {"log-opts": {"max-size": "10m", "max-file": "3"}, "registry-mirrors": ["https://b"]}),
])
def test_merge(current, runtimes, default, settings, expected):
    before = json.dumps(current, sort_keys=True)
    assert merge(current, runtimes, default, settings) == expected
    assert json.dumps(current, sort_keys=True) == before, "merge changed its input"


def test_merge_is_idempotent():
    once = merge({"debug": True}, NVIDIA, "nvidia", {"live-restore": True})
    assert merge(once, NVIDIA, "nvidia", {"live-restore": True}) == once


def test_unknown_default_runtime():
    with pytest.raises(DaemonJsonError, match="'kata' is not configured"):
        merge({}, NVIDIA, "kata")


@pytest.mark.parametrize("text, says", [
    ("{", "not valid JSON"),
    ('{"a": 1,}', "line 1 column 9"),
    ('"just a string"', "top level"),
    ('{"a": {"b": 1, "b": 2}}', "'b' appears twice"),
    ('{"runtimes": "nvidia"}', "'runtimes' must be an object"),
])
def test_parse_refuses(text, says):
    with pytest.raises(DaemonJsonError, match=says.replace("(", r"\(")):
        parse(text, "/etc/docker/daemon.json")


@pytest.mark.parametrize("text, expected", [("", {}), ("  \n", {}), ('{"a": [1]}', {"a": [1]})])
def test_parse(text, expected):
    assert parse(text) == expected


def test_render_round_trips_and_keeps_key_order():
    data = {"z": 1, "a": {"ü": "ß"}, "runtimes": NVIDIA}
    text = render(data)
    assert text.endswith("}\n") and list(json.loads(text)) == ["z", "a", "runtimes"]
    assert "ü" in text and parse(text) == data


def test_deep_merge_copies():
    base = {"a": {"b": [1]}}
    out = deep_merge(base, {"a": {"c": 2}})
    out["a"]["b"].append(3)
    assert base == {"a": {"b": [1]}}
