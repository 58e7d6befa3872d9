# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""docker_daemon_json through its main(), on real files in a temporary directory.

The one outside program, dockerd, is replaced by FAKE_DOCKERD, a test double written as a shell script:
it answers ``--help`` (with or without the --validate flag, like Docker 23+ and Docker 20.10) and
``--validate --config-file F`` (rejecting a key dockerd does not know, ``not-a-docker-option``).
"""

from __future__ import annotations

import json
import os
import stat

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.onprem.deepseek.plugins.modules import docker_daemon_json

NVIDIA = {"nvidia": {"path": "nvidia-container-runtime", "args": []}}

USER_CONFIG = {
    "log-driver": "json-file",
    "log-opts": {"max-size": "100m", "max-file": "3"},
    "data-root": "/srv/docker-data",
    "registry-mirrors": ["https://mirror.example.internal"],
    "runtimes": {"crun": {"path": "/usr/bin/crun", "args": ["--debug"]}},
}

FAKE_DOCKERD = """#!/bin/sh
# TEST DOUBLE for dockerd: only --help and --validate --config-file
echo "$*" >> "{log}"
case "$1" in
  --help)
    echo "Usage: dockerd [OPTIONS]"
    {validate_help}
    exit 0 ;;
  --validate)
    [ "$2" = --config-file ] || exit 2
    if grep -q not-a-docker-option "$3"; then
      echo "unable to configure the Docker daemon with file $3:" \
        "the following directives don't match any configuration option: not-a-docker-option" >&2
      exit 1
    fi
    echo "configuration OK"
    exit 0 ;;
esac
exit 3
"""


@pytest.fixture
def dockerd(tmp_path):
    """A dockerd double with --validate; returns (path, log file)."""
    return make_dockerd(tmp_path, with_validate=True)


def make_dockerd(tmp_path, with_validate):
    log = tmp_path / "dockerd.log"
    script = tmp_path / ("dockerd" if with_validate else "dockerd-20.10")
    help_line = 'echo "      --validate   Validate daemon configuration and exit"' if with_validate else ":"
    script.write_text(FAKE_DOCKERD.format(log=log, validate_help=help_line))
    script.chmod(0o755)
    return str(script), log


def run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        docker_daemon_json.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


def write_config(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4) + "\n")


def test_quartet_keeps_user_keys(capsys, tmp_path, dockerd):
    conf = tmp_path / "etc" / "docker" / "daemon.json"
    write_config(conf, USER_CONFIG)
    original = conf.read_text()
    args = {"path": str(conf), "runtimes": NVIDIA, "dockerd": dockerd[0]}

    code, check = run(capsys, dict(args, _ansible_check_mode=True, _ansible_diff=True))
    assert code == 0 and check["changed"] is True
    assert conf.read_text() == original, "check mode wrote the file"
    assert check["validated"] is True
    assert json.loads(check["diff"]["after"])["runtimes"]["nvidia"] == NVIDIA["nvidia"]
    assert check["diff"]["before"] == original
    assert "backup_file" not in check
    assert sorted(os.listdir(conf.parent)) == ["daemon.json"]

    code, apply = run(capsys, args)
    assert code == 0 and apply["changed"] is True and apply["validated"] is True
    written = json.loads(conf.read_text())
    for key in ("log-driver", "log-opts", "data-root", "registry-mirrors"):
        assert written[key] == USER_CONFIG[key]
    assert written["runtimes"] == {"crun": USER_CONFIG["runtimes"]["crun"], **NVIDIA}
    assert "default-runtime" not in written
    assert json.loads(open(apply["backup_file"]).read()) == USER_CONFIG
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644

    written_text = conf.read_text()
    code, again = run(capsys, args)
    assert code == 0 and again["changed"] is False and "backup_file" not in again
    assert conf.read_text() == written_text

    code, again_check = run(capsys, dict(args, _ansible_check_mode=True))
    assert code == 0 and again_check["changed"] is False


def test_candidate_validated_next_to_the_file_and_nothing_left_behind(capsys, tmp_path, dockerd):
    conf = tmp_path / "docker" / "daemon.json"
    write_config(conf, {"log-driver": "local"})
    code, result = run(capsys, {"path": str(conf), "runtimes": NVIDIA, "dockerd": dockerd[0], "backup": False})
    assert code == 0 and result["changed"] is True
    calls = dockerd[1].read_text().splitlines()
    assert calls[0] == "--help"
    validated = calls[1].split()
    assert validated[:2] == ["--validate", "--config-file"]
    assert os.path.dirname(validated[2]) == str(conf.parent)
    assert os.path.basename(validated[2]).startswith(".daemon.json.")
    assert sorted(os.listdir(conf.parent)) == ["daemon.json"]


def test_unchanged_file_keeps_its_formatting(capsys, tmp_path, dockerd):
    conf = tmp_path / "daemon.json"
    text = '{"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}, "debug": true}'
    conf.write_text(text)
    code, result = run(capsys, {"path": str(conf), "runtimes": NVIDIA, "dockerd": dockerd[0]})
    assert code == 0 and result["changed"] is False
    assert conf.read_text() == text
    assert not dockerd[1].exists(), "dockerd was run for an unchanged file"


def test_new_file_and_directory(capsys, tmp_path, dockerd):
    conf = tmp_path / "etc" / "docker" / "daemon.json"
    args = {"path": str(conf), "runtimes": NVIDIA, "dockerd": dockerd[0]}
    code, check = run(capsys, dict(args, _ansible_check_mode=True))
    assert code == 0 and check["changed"] is True and not conf.parent.exists()
    code, result = run(capsys, {"path": str(conf), "runtimes": NVIDIA, "dockerd": dockerd[0]})
    assert code == 0 and result["changed"] is True and "backup_file" not in result
    assert json.loads(conf.read_text()) == {"runtimes": NVIDIA}


@pytest.mark.parametrize("text, reason", [
    ('{"log-driver": "json-file",\n  "data-root": "/srv/docker",\n}\n', "line 3 column 1"),
    ('{"log-driver": "json-file"', "line 1 column"),
    ("[1, 2]", "JSON object at the top level"),
    ('{"debug": true, "debug": false}', "'debug' appears twice"),
    ('{"runtimes": ["nvidia"]}', "'runtimes' must be an object"),
    ("# comment\n{}", "not valid JSON"),
])
def test_unreadable_file_is_refused_and_left_alone(capsys, tmp_path, dockerd, text, reason):
    conf = tmp_path / "docker" / "daemon.json"
    conf.parent.mkdir()
    conf.write_text(text)
    for check_mode in (True, False):
        code, result = run(capsys, {"path": str(conf), "runtimes": NVIDIA, "dockerd": dockerd[0],
                                    "_ansible_check_mode": check_mode})
        assert code == 1
        assert reason in result["msg"] and str(conf) in result["msg"]
        assert "Nothing was written" in result["msg"]
        assert conf.read_text() == text
    assert sorted(os.listdir(conf.parent)) == ["daemon.json"]


def test_not_utf8_is_refused(capsys, tmp_path, dockerd):
    conf = tmp_path / "daemon.json"
    conf.write_bytes(b'{"data-root": "/srv/\xff"}')
    code, result = run(capsys, {"path": str(conf), "runtimes": NVIDIA, "dockerd": dockerd[0]})
    assert code == 1 and "not UTF-8" in result["msg"]
    assert conf.read_bytes() == b'{"data-root": "/srv/\xff"}'


def test_empty_file_is_an_empty_configuration(capsys, tmp_path, dockerd):
    conf = tmp_path / "daemon.json"
    conf.write_text("\n")
    code, result = run(capsys, {"path": str(conf), "runtimes": NVIDIA, "dockerd": dockerd[0]})
    assert code == 0 and result["changed"] is True
    assert json.loads(conf.read_text()) == {"runtimes": NVIDIA}


def test_rejected_by_dockerd_is_not_written(capsys, tmp_path, dockerd):
    conf = tmp_path / "daemon.json"
    write_config(conf, USER_CONFIG)
    original = conf.read_text()
    code, result = run(capsys, {"path": str(conf), "runtimes": NVIDIA, "dockerd": dockerd[0],
                                "settings": {"not-a-docker-option": 1}})
    assert code == 1
    assert "dockerd rejects" in result["msg"] and "not-a-docker-option" in result["msg"]
    assert conf.read_text() == original
    assert sorted(os.listdir(tmp_path)) == ["daemon.json", "dockerd", "dockerd.log"]


@pytest.mark.parametrize("validate, with_validate, found, code, validated, says", [
    ("auto", False, True, 0, False, "has no --validate flag"),
    ("auto", True, False, 0, False, "not found"),
    ("never", True, True, 0, False, "validate=never"),
    ("always", False, True, 1, None, "has no --validate flag"),
    ("always", True, False, 1, None, "not found"),
    ("always", True, True, 0, True, "dockerd --validate"),
])
def test_validate_modes(capsys, tmp_path, validate, with_validate, found, code, validated, says):
    conf = tmp_path / "daemon.json"
    binary = make_dockerd(tmp_path, with_validate)[0] if found else str(tmp_path / "no-such-dockerd")
    exit_code, result = run(capsys, {"path": str(conf), "runtimes": NVIDIA, "dockerd": binary, "validate": validate})
    assert exit_code == code
    if code == 0:
        assert result["validated"] is validated and says in result["validation"]
        assert conf.exists()
    else:
        assert says in result["msg"] and not conf.exists()


def test_default_runtime_set_then_unset(capsys, tmp_path, dockerd):
    conf = tmp_path / "daemon.json"
    write_config(conf, USER_CONFIG)
    base = {"path": str(conf), "runtimes": NVIDIA, "dockerd": dockerd[0]}

    code, result = run(capsys, dict(base, default_runtime="nvidia"))
    assert code == 0 and result["changed"] is True
    assert json.loads(conf.read_text())["default-runtime"] == "nvidia"
    code, result = run(capsys, dict(base, default_runtime="nvidia"))
    assert code == 0 and result["changed"] is False

    code, result = run(capsys, base)  # default_runtime not given: left alone
    assert code == 0 and result["changed"] is False

    code, result = run(capsys, dict(base, default_runtime=""))
    assert code == 0 and result["changed"] is True
    written = json.loads(conf.read_text())
    assert "default-runtime" not in written and written["runtimes"]["nvidia"] == NVIDIA["nvidia"]
    code, result = run(capsys, dict(base, default_runtime=""))
    assert code == 0 and result["changed"] is False


def test_unset_keeps_a_default_the_user_chose(capsys, tmp_path, dockerd):
    conf = tmp_path / "daemon.json"
    write_config(conf, dict(USER_CONFIG, **{"default-runtime": "crun"}))
    code, result = run(capsys, {"path": str(conf), "runtimes": NVIDIA, "dockerd": dockerd[0], "default_runtime": ""})
    assert code == 0 and result["changed"] is True
    assert json.loads(conf.read_text())["default-runtime"] == "crun"


def test_unknown_default_runtime_is_refused(capsys, tmp_path, dockerd):
    conf = tmp_path / "daemon.json"
    write_config(conf, USER_CONFIG)
    original = conf.read_text()
    code, result = run(capsys, {"path": str(conf), "runtimes": NVIDIA, "dockerd": dockerd[0],
                                "default_runtime": "kata"})
    assert code == 1 and "'kata' is not configured" in result["msg"]
    assert conf.read_text() == original


def test_runtime_entry_is_replaced_whole_and_settings_merge_deeply(capsys, tmp_path, dockerd):
    conf = tmp_path / "daemon.json"
    write_config(conf, {"runtimes": {"nvidia": {"path": "/opt/old/nvidia-container-runtime", "runtimeArgs": ["x"]}},
                        "log-opts": {"max-size": "10m", "max-file": "3"}})
    code, result = run(capsys, {"path": str(conf), "runtimes": NVIDIA, "dockerd": dockerd[0],
                                "settings": {"log-opts": {"max-size": "100m"}, "live-restore": True}})
    assert code == 0 and result["changed"] is True
    assert json.loads(conf.read_text()) == {
        "runtimes": NVIDIA,
        "log-opts": {"max-size": "100m", "max-file": "3"},
        "live-restore": True,
    }


@pytest.mark.parametrize("runtimes, says", [
    ({"nvidia": {"args": []}}, "runtimes.nvidia needs a non-empty path"),
    ({"nvidia": "nvidia-container-runtime"}, "runtimes.nvidia needs a non-empty path"),
    ({"nvidia": {"path": "nvidia-container-runtime", "args": "--debug"}}, "runtimes.nvidia.args must be a list"),
])
def test_bad_runtime_spec(capsys, tmp_path, dockerd, runtimes, says):
    conf = tmp_path / "daemon.json"
    code, result = run(capsys, {"path": str(conf), "runtimes": runtimes, "dockerd": dockerd[0]})
    assert code == 1 and says in result["msg"] and not conf.exists()


def test_path_that_is_a_directory(capsys, tmp_path, dockerd):
    (tmp_path / "daemon.json").mkdir()
    code, result = run(capsys, {"path": str(tmp_path / "daemon.json"), "runtimes": NVIDIA, "dockerd": dockerd[0]})
    assert code == 1 and "not a regular file" in result["msg"]


def test_replacement_is_an_atomic_rename(capsys, tmp_path, dockerd, monkeypatch):
    """The final name only ever changes by a rename of a complete, validated candidate."""
    conf = tmp_path / "daemon.json"
    write_config(conf, USER_CONFIG)
    moves = []
    real_move = docker_daemon_json.AnsibleModule.atomic_move

    def recording_move(self, src, dest, *args, **kwargs):
        moves.append((src, dest, json.loads(open(src).read())))
        return real_move(self, src, dest, *args, **kwargs)

    monkeypatch.setattr(docker_daemon_json.AnsibleModule, "atomic_move", recording_move)
    code, result = run(capsys, {"path": str(conf), "runtimes": NVIDIA, "dockerd": dockerd[0], "backup": False})
    assert code == 0 and result["changed"] is True
    assert len(moves) == 1
    src, dest, content = moves[0]
    assert dest == str(conf) and os.path.dirname(src) == str(tmp_path) and src != dest
    assert content == result["config"] and content["runtimes"]["nvidia"] == NVIDIA["nvidia"]
    assert not os.path.exists(src)
