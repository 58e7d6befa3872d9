# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""nvidia_driver_facts as Ansible runs it: arguments in, JSON out. The seams replaced: NVML (the fake binding),
the host's commands (a table of answers) and /sys + /proc (trees written in a temporary directory)."""

from __future__ import annotations

import functools
import json

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.onprem.deepseek.plugins.module_utils import _nvml
from ansible_collections.onprem.deepseek.plugins.modules import nvidia_driver_facts
from ansible_collections.onprem.deepseek.tests.unit.plugins.module_utils import (
    fake_pynvml as fake,
)
from ansible_collections.onprem.deepseek.tests.unit.plugins.module_utils import (
    fake_sysfs,
)
from ansible_collections.onprem.deepseek.tests.unit.plugins.module_utils.fake_pynvml import (
    FakeNvml,
)


def run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        nvidia_driver_facts.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture
def host(monkeypatch, tmp_path):
    """Build a host: its PCI devices and /proc, the NVML binding it has, and the commands on its PATH."""
    def build(machine, gpus=None, nvml_options=None, commands=None, **tree):
        sysfs, proc = fake_sysfs.write_tree(str(tmp_path), machine, **tree)
        lib = FakeNvml(gpus or [], **(nvml_options or {}))
        monkeypatch.setattr(nvidia_driver_facts, "NvmlProbe", functools.partial(_nvml.NvmlProbe, lib=lib))
        answers = commands or {}
        calls = []

        def get_bin_path(self, name, required=False, opt_dirs=None):
            return f"/usr/bin/{name}" if name in answers else None

        def run_command(self, argv, **kwargs):
            calls.append(argv)
            return answers[argv[0].rsplit("/", 1)[-1]]

        monkeypatch.setattr(AnsibleModule, "get_bin_path", get_bin_path)
        monkeypatch.setattr(AnsibleModule, "run_command", run_command)
        return {"sysfs_root": sysfs, "proc_root": proc}, calls
    return build


@pytest.mark.parametrize("extra", [{}, {"_ansible_check_mode": True}])
def test_hgx_h100_with_the_pinned_branch(capsys, host, extra):
    roots, _calls = host(fake_sysfs.HGX_H100, fake.hgx_h100(), proc_version=fake_sysfs.PROC_OPEN_580,
                         modules=fake_sysfs.MODULES_NVIDIA, secure_boot="disabled",
                         commands={"modinfo": (0, "580.159.04\n", ""), "mokutil": (0, "SecureBoot disabled\n", "")})
    code, result = run(capsys, {"branch": "580", **roots, **extra})
    assert code == 0
    assert result["changed"] is False
    assert result["pin_satisfied"] is True
    assert result["installed_version"] == "580.159.04"
    assert result["version_source"] == "nvml"
    assert result["pin"] == "branch 580" and result["pin_branch"] == 580
    assert result["gpu_count"] == 8 and result["nvswitch_count"] == 4
    assert result["open_modules_supported"] is True
    assert result["kernel_module_flavor"] == "open"
    assert result["secure_boot"] == "disabled"
    assert result["reboot_pending"] is False


def test_unsatisfied_pin_says_why(capsys, host):
    roots, _calls = host(fake_sysfs.HGX_H100, fake.hgx_h100(), proc_version=fake_sysfs.PROC_OPEN_580,
                         commands={"modinfo": (0, "580.159.04\n", "")})
    code, result = run(capsys, {"branch": "590", **roots})
    assert code == 0
    assert result["pin_satisfied"] is False
    assert result["pin_reason"] == "driver 580.159.04 is installed (branch 580), the pin wants branch 590"
    assert result["pin_branch"] == 590


def test_nvml_off_uses_nvidia_smi(capsys, host):
    roots, calls = host(fake_sysfs.PCIE_L40S, commands={"nvidia-smi": (0, "580.95.05\n580.95.05\n", "")})
    code, result = run(capsys, {"min_version": "580.65", "use_nvml": False, **roots})
    assert code == 0
    assert result["version_source"] == "nvidia-smi"
    assert result["pin_satisfied"] is True
    assert calls == [["/usr/bin/nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]]


def test_pascal_without_driver(capsys, host):
    roots, _calls = host(fake_sysfs.PASCAL, nvml_options={"init_error": fake.NVMLError_LibraryNotFound()},
                         modules=fake_sysfs.MODULES_NOUVEAU, secure_boot="enabled")
    code, result = run(capsys, {"branch": "580", **roots})
    assert code == 0
    assert result["gpus"][0]["pci_id"] == "10de:15f8"
    assert result["open_modules_supported"] is False
    assert result["installed_version"] is None
    assert result["pin_satisfied"] is False
    assert result["nouveau_loaded"] is True
    assert result["secure_boot"] == "enabled" and result["secure_boot_source"] == "efivars"
    assert any("libnvidia-ml.so.1 was not found" in finding for finding in result["findings"])


def test_no_gpu(capsys, host):
    roots, calls = host(fake_sysfs.NO_GPU)
    code, result = run(capsys, {"branch": "580", **roots})
    assert code == 0
    assert result["gpu_count"] == 0 and result["nvswitch_count"] == 0
    assert result["pin_satisfied"] is False
    assert result["secure_boot"] == "unsupported"
    assert calls == []


@pytest.mark.parametrize("args, message", [
    ({"branch": "580", "version": "570.124.06"}, "version 570.124.06 is not on branch 580"),
    ({"branch": "580.95"}, "branch '580.95' is not a driver branch"),
    ({"min_version": "latest"}, "'latest' is not a driver version"),
])
def test_impossible_pin_fails(capsys, host, args, message):
    roots, _calls = host(fake_sysfs.NO_GPU)
    code, result = run(capsys, {**args, **roots})
    assert code == 1
    assert result["failed"] is True
    assert result["msg"].startswith("The driver pin cannot be met: ")
    assert message in result["msg"]
