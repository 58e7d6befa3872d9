# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""gpu_facts as Ansible runs it: arguments in, JSON out, with the NVML seam replaced by the fake."""

from __future__ import annotations

import functools
import json

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.onprem.deepseek.plugins.module_utils import _nvml
from ansible_collections.onprem.deepseek.plugins.modules import gpu_facts
from ansible_collections.onprem.deepseek.tests.unit.plugins.module_utils import (
    fake_pynvml as fake,
)
from ansible_collections.onprem.deepseek.tests.unit.plugins.module_utils.fake_pynvml import (
    FakeNvml,
)


def run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        gpu_facts.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture
def binding(monkeypatch, tmp_path):
    """Point the module's probe at a fake binding built from the given GPUs (it stands in for nvidia-ml-py,
    so the module must see the library as present even where pynvml is not installed)."""
    def use(gpus, **options):
        lib = FakeNvml(gpus, **options)
        monkeypatch.setattr(gpu_facts, "HAS_PYNVML", True)
        monkeypatch.setattr(gpu_facts, "NvmlProbe", functools.partial(_nvml.NvmlProbe, lib=lib,
                                                                      sysfs_root=str(tmp_path)))
        return lib
    return use


@pytest.fixture
def no_binding(monkeypatch):
    """What a host without nvidia-ml-py looks like to the module."""
    monkeypatch.setattr(_nvml, "pynvml", None)
    monkeypatch.setattr(gpu_facts, "HAS_PYNVML", False)
    monkeypatch.setattr(gpu_facts, "PYNVML_IMPORT_ERROR", "Traceback: ModuleNotFoundError: No module named 'pynvml'")


@pytest.mark.parametrize("args", [{}, {"required": True}, {"_ansible_check_mode": True}])
def test_hgx_facts(capsys, binding, args):
    binding(fake.hgx_h100())
    code, result = run(capsys, args)
    gpu = result["ansible_facts"]["gpu"]
    assert code == 0
    assert result["changed"] is False
    assert gpu["count"] == 8
    assert gpu["driver_version"] == "580.159.04"
    assert gpu["cuda_driver_version"] == "13.0"
    assert [d["memory_total_mib"] for d in gpu["devices"]] == [81559] * 8
    assert gpu["fabric_manager_required"] is True


@pytest.mark.parametrize("gpus, options, required, failed, reason", [
    ([], {}, False, False, "NVML found no NVIDIA GPU on this host"),
    ([], {}, True, True, "NVML found no NVIDIA GPU on this host"),
    ([fake.h100()], {"init_error": fake.NVMLError_DriverNotLoaded()}, False, False, "Driver Not Loaded"),
    ([fake.h100()], {"init_error": fake.NVMLError_DriverNotLoaded()}, True, True, "Driver Not Loaded"),
])
def test_no_gpu(capsys, binding, gpus, options, required, failed, reason):
    binding(gpus, **options)
    code, result = run(capsys, {"required": required})
    gpu = result["ansible_facts"]["gpu"]
    assert gpu["count"] == 0
    assert reason in gpu["reason"]
    assert bool(result.get("failed")) is failed
    assert code == (1 if failed else 0)
    if failed:
        assert result["msg"].startswith("No NVIDIA GPU could be read: ")
        assert reason in result["msg"]


def test_binding_missing_not_required(capsys, no_binding):
    code, result = run(capsys, {})
    assert code == 0
    assert result["ansible_facts"]["gpu"]["count"] == 0
    assert "nvidia-ml-py" in result["ansible_facts"]["gpu"]["reason"]


def test_binding_missing_required(capsys, no_binding):
    code, result = run(capsys, {"required": True})
    assert code == 1
    assert result["failed"] is True
    assert "Failed to import the required Python library (nvidia-ml-py)" in result["msg"]
    assert "ansible_python_interpreter" in result["msg"]
    assert "ansible_facts" not in result


def test_one_gpu_lost_is_not_a_failure(capsys, binding):
    gpus = fake.hgx_h100()
    gpus[6]["lost"] = "handle"
    binding(gpus)
    code, result = run(capsys, {"required": True})
    devices = result["ansible_facts"]["gpu"]["devices"]
    assert code == 0
    assert [d["index"] for d in devices if d["error"]] == [6]


def test_rejects_unknown_option(capsys, binding):
    binding([fake.h100()])
    code, result = run(capsys, {"gpus": 8})
    assert code == 1
    assert "Unsupported parameters" in result["msg"]
