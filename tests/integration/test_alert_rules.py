"""The monitoring role's alert rules, rendered with the role's defaults by ansible-playbook, checked and unit
tested by Debian's promtool (tests/promtool/*.yml: for every alert a series that fires and one that stays
silent, the three tiers warning / critical / disaster included).

promtool compares annotations too; the unit tests run against a copy of the rendered file with the
annotations removed (expressions, `for` and labels untouched), while `promtool check rules` validates the
real file, annotation templates included."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from monitoring.harness import PROMTOOL, ROOT, render

PROMTOOL_TESTS = sorted((ROOT / "tests" / "promtool").glob("*.yml"))
RULES_TEMPLATE = ("rules/onprem-deepseek.yml.j2", "onprem-deepseek.yml")

pytestmark = pytest.mark.skipif(not os.path.exists(PROMTOOL), reason="promtool (Debian package prometheus) missing")


def promtool(*args, cwd=None):
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120,
                          check=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rules")
    render(workdir, [RULES_TEMPLATE])
    return workdir / "onprem-deepseek.yml"


@pytest.fixture(scope="module")
def rules(rendered):
    return yaml.safe_load(rendered.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def unit_dir(rendered, rules, tmp_path_factory):
    """The tests/promtool files next to a copy of the rules without annotations."""
    workdir = tmp_path_factory.mktemp("promtool")
    stripped = {"groups": []}
    for group in rules["groups"]:
        stripped["groups"].append({**group, "rules": [
            {key: value for key, value in rule.items() if key != "annotations"} for rule in group["rules"]]})
    (workdir / "onprem-deepseek.yml").write_text(yaml.safe_dump(stripped, sort_keys=False), encoding="utf-8")
    for test in PROMTOOL_TESTS:
        shutil.copy(test, workdir / test.name)
    return workdir


def alerts(rules):
    return {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule}


def test_promtool_check_rules(rendered):
    result = promtool("check", "rules", rendered)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(unit_dir, test_file):
    result = promtool("test", "rules", test_file.name, cwd=unit_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_unit_test_fails_on_a_wrong_expectation(unit_dir, tmp_path):
    """The harness can fail: a test that expects the good GPU to alert is reported as failed."""
    spec = yaml.safe_load((unit_dir / "gpu.yml").read_text(encoding="utf-8"))
    first = spec["tests"][0]["alert_rule_test"][1]["exp_alerts"][0]["exp_labels"]
    first["gpu"] = "1"
    shutil.copy(unit_dir / "onprem-deepseek.yml", tmp_path / "onprem-deepseek.yml")
    (tmp_path / "wrong.yml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = promtool("test", "rules", "wrong.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_and_one_that_is_silent(rules):
    tested = {}
    for path in PROMTOOL_TESTS:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case["alert_rule_test"]:
                entry = tested.setdefault(check["alertname"], {"fires": False})
                if check["exp_alerts"]:
                    entry["fires"] = True
    missing = sorted(set(alerts(rules)) - set(tested))
    assert not missing, f"alerts without a promtool unit test: {missing}"
    not_firing = sorted(name for name, entry in tested.items() if not entry["fires"])
    assert not not_firing, f"alerts never expected to fire: {not_firing}"
    unknown = sorted(set(tested) - set(alerts(rules)))
    assert not unknown, f"unit tests for alerts that do not exist: {unknown}"


def test_three_tiers(rules):
    by_severity = {}
    for name, rule in alerts(rules).items():
        by_severity.setdefault(rule["labels"]["severity"], []).append(name)
    assert set(by_severity) == {"warning", "critical", "disaster"}
    assert "GPUUtilisationHigh" in by_severity["warning"]
    assert "GPUMemoryNearlyFull" in by_severity["critical"]
    assert by_severity["disaster"] == ["InferenceFailureRateDisaster"]


def test_thresholds_are_variables(tmp_path):
    render(tmp_path, [RULES_TEMPLATE], {
        "monitoring_alert_gpu_util_warning": 0.6, "monitoring_alert_gpu_util_for": "7m",
        "monitoring_alert_gpu_memory_critical": 0.97, "monitoring_alert_failure_ratio_disaster": 0.02,
        "monitoring_alert_ttft_p95_seconds": 12, "monitoring_alert_disk_ratio": 0.7,
    })
    rendered = alerts(yaml.safe_load((tmp_path / "onprem-deepseek.yml").read_text(encoding="utf-8")))
    assert rendered["GPUUtilisationHigh"]["expr"] == "DCGM_FI_DEV_GPU_UTIL > 60.0"
    assert rendered["GPUUtilisationHigh"]["for"] == "7m"
    assert rendered["GPUMemoryNearlyFull"]["expr"].endswith("> 0.97")
    assert "> 0.02" in rendered["InferenceFailureRateDisaster"]["expr"]
    assert rendered["TimeToFirstTokenP95High"]["expr"].endswith("> 12")
    assert rendered["ModelStoreDiskFull"]["expr"].endswith("> 0.7")
    result = promtool("check", "rules", tmp_path / "onprem-deepseek.yml")
    assert result.returncode == 0, result.stdout + result.stderr
