"""A real Prometheus (Debian package binary) with the configuration and rules rendered from the monitoring
role's templates, scraping a real node_exporter (Debian package), Alertmanager (Debian package, its config
rendered from the role too), itself and the collection's mock engine, all as child processes on 127.0.0.1.

Checks: every target up == 1; our rule groups are loaded; the retention flags are the role's; every PromQL
expression of the shipped Grafana dashboards evaluates through /api/v1/query without error; the gateway
textfile metrics reach Prometheus and feed the failure-ratio recording rule."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from monitoring.harness import (
    MOCK_ENGINE,
    NODE_EXPORTER,
    PROMETHEUS,
    ROLE,
    Process,
    free_ports,
    http_get,
    query,
    render,
    wait_http,
)

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
TEXTFILE = ROLE / "files" / "onprem_textfile.py"
DASHBOARDS = sorted((ROLE / "files" / "dashboards").glob("*.json"))

pytestmark = pytest.mark.skipif(
    not all(os.path.exists(p) for p in (PROMETHEUS, NODE_EXPORTER, ALERTMANAGER)),
    reason="Debian packages prometheus, prometheus-node-exporter, prometheus-alertmanager are needed")


def dashboard_expressions():
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.stem}: {panel['title']} [{target['refId']}]", target["expr"]))
    return found


def substitute(expr):
    """Grafana's variables as a user with "All" selected would send them."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?[A-Za-z_]\w*\}?", ".*", expr)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("prometheus-live")
    prom_port, node_port, engine_port, am_port = free_ports(4)
    textfile_dir = work / "textfile"
    textfile_dir.mkdir()
    rules_dir = work / "rules"
    rules_dir.mkdir()
    variables = {
        "monitoring_prometheus_port": prom_port, "monitoring_node_exporter_port": node_port,
        "monitoring_alertmanager_port": am_port, "monitoring_prometheus_listen_address": "127.0.0.1",
        "monitoring_alertmanager_listen_address": "127.0.0.1",
        "monitoring_dcgm_enabled": False, "monitoring_scrape_interval": "1s", "monitoring_evaluation_interval": "1s",
        "_monitoring_rules_dir": str(rules_dir), "_monitoring_prometheus_config": str(work / "prometheus.yml"),
        "_monitoring_prometheus_storage": str(work / "tsdb"), "_monitoring_alertmanager_config": str(work / "am.yml"),
        "_monitoring_alertmanager_storage": str(work / "am-data"),
        "monitoring_textfile_dir": str(textfile_dir),
    }
    inventory = {"all": {"children": {
        "gpu_nodes": {"hosts": {"localhost": {"inference_port": engine_port}}},
        "monitoring": {"hosts": {"localhost": {}}},
    }}}
    render(work, [
        ("prometheus.yml.j2", "prometheus.yml"), ("rules/onprem-deepseek.yml.j2", "rules/onprem-deepseek.yml"),
        ("prometheus.default.j2", "prometheus.default"), ("alertmanager.yml.j2", "am.yml"),
        ("alertmanager.default.j2", "alertmanager.default"), ("node-exporter.default.j2", "node-exporter.default"),
    ], variables, inventory)

    # A gateway access log turned into textfile metrics by the role's script: 19 answers, 1 of them 502.
    log = work / "access.log"
    lines = [{"uri": "/v1/chat/completions", "status": 200}] * 18 + [
        {"uri": "/v1/completions", "status": 502}, {"uri": "/healthz", "status": 200}]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    Process([sys.executable, TEXTFILE, "gateway-log", "--out", textfile_dir / "onprem_gateway.prom",
             "--state", work / "gateway-log.json", log], work / "textfile.log").start().wait(timeout=30)

    def args_of(name):
        text = (work / name).read_text(encoding="utf-8")
        return shlex.split(re.search(r'^ARGS="(.*)"$', text, re.M).group(1))

    procs = [
        Process([sys.executable, MOCK_ENGINE, "--host", "127.0.0.1", "--port", engine_port,
                 "--served-model-name", "deepseek-r1-mock", "--token-delay", "0.001", "--tokens", "4"],
                work / "engine.log"),
        Process([NODE_EXPORTER, *[a.replace("--web.listen-address=:", "--web.listen-address=127.0.0.1:")
                                  for a in args_of("node-exporter.default")]], work / "node_exporter.log"),
        Process([ALERTMANAGER, *args_of("alertmanager.default")], work / "alertmanager.log"),
        Process([PROMETHEUS, *args_of("prometheus.default")], work / "prometheus.log"),
    ]
    try:
        for proc in procs:
            proc.start()
        wait_http(f"http://127.0.0.1:{engine_port}/health", proc=procs[0].proc)
        wait_http(f"http://127.0.0.1:{node_port}/metrics", proc=procs[1].proc)
        wait_http(f"http://127.0.0.1:{am_port}/-/ready", proc=procs[2].proc)
        wait_http(f"http://127.0.0.1:{prom_port}/-/ready", timeout=60, proc=procs[3].proc)
        # A few answers so that the engine's histograms and counters have samples
        for _attempt in range(3):
            body = json.dumps({"model": "deepseek-r1-mock", "messages": [{"role": "user", "content": "hi"}]})
            request = urllib.request.Request(f"http://127.0.0.1:{engine_port}/v1/chat/completions",
                                             data=body.encode(), headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
        yield {"base": f"http://127.0.0.1:{prom_port}", "ports": (prom_port, node_port, engine_port, am_port),
               "procs": procs, "work": work}
    finally:
        for proc in reversed(procs):
            proc.stop()


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = predicate()
        if ok:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout} s; last: {last}")


def test_every_target_is_up(stack):
    def all_up():
        _status, body = http_get(stack["base"] + "/api/v1/targets")
        active = json.loads(body)["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in active}
        return len(active) == 4 and all(h == "up" for h in health.values()), health

    health = wait_for(all_up, 60, "every target up")
    assert set(health) == {"prometheus", "alertmanager", "node", "engine"}

    def up_query():
        answer = query(stack["base"], "up")
        values = {r["metric"]["job"]: r["value"][1] for r in answer["data"]["result"]}
        return len(values) == 4 and set(values.values()) == {"1"}, values

    wait_for(up_query, 30, "up == 1 for every job")


def test_rule_groups_loaded(stack):
    _status, body = http_get(stack["base"] + "/api/v1/rules")
    groups = {g["name"]: g for g in json.loads(body)["data"]["groups"]}
    assert set(groups) == {"onprem-deepseek-gpu", "onprem-deepseek-engine", "onprem-deepseek-gateway",
                           "onprem-deepseek-node"}
    for group in groups.values():
        for rule in group["rules"]:
            assert rule["health"] in ("ok", "unknown"), rule


def test_retention_flags(stack):
    _status, body = http_get(stack["base"] + "/api/v1/status/flags")
    flags = json.loads(body)["data"]
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    assert flags["storage.tsdb.retention.time"] == defaults["monitoring_retention_time"] == "30d"
    assert flags["storage.tsdb.retention.size"] == defaults["monitoring_retention_size"] == "50GiB"


@pytest.mark.parametrize("name,expr", dashboard_expressions(), ids=[n for n, _expr in dashboard_expressions()])
def test_dashboard_expression_evaluates(stack, name, expr):
    answer = query(stack["base"], substitute(expr))
    assert answer.get("status") == "success", f"{name}: {substitute(expr)} -> {answer}"


def test_dashboards_cover_every_area():
    titles = {json.loads(p.read_text(encoding="utf-8"))["uid"] for p in DASHBOARDS}
    assert titles == {"onprem-gpu-fleet", "onprem-gpu-node", "onprem-engine", "onprem-gateway"}
    assert len(dashboard_expressions()) >= 30


def test_engine_and_gateway_metrics_arrive(stack):
    def engine_metrics():
        answer = query(stack["base"], 'sum(vllm:request_success_total{job="engine"})')
        result = answer["data"]["result"]
        return bool(result) and float(result[0]["value"][1]) >= 3, result

    wait_for(engine_metrics, 30, "vllm:request_success_total from the mock engine")

    def failure_ratio():
        answer = query(stack["base"], 'sum by (code) (onprem_gateway_responses_total{job="node"})')
        counts = {r["metric"]["code"]: r["value"][1] for r in answer["data"]["result"]}
        return counts == {"200": "18", "502": "1"}, counts

    wait_for(failure_ratio, 30, "gateway answers counted from the access log")


def test_a_broken_expression_is_reported(stack):
    """The dashboard check can fail: an expression Prometheus cannot parse comes back as an error."""
    broken = 'sum(rate(vllm:prompt_tokens_total{instance=~"$instance"}[$__rate_interval])'
    answer = query(stack["base"], substitute(broken))
    assert answer["status"] == "error"
    assert answer["errorType"] == "bad_data"
