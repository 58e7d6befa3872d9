# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""NvmlProbe driven through the fake NVML binding (real GPU shapes, error paths)."""

from __future__ import annotations

import importlib
import sys

import pytest
from ansible_collections.onprem.deepseek.plugins.module_utils import _nvml
from ansible_collections.onprem.deepseek.plugins.module_utils._nvml import (
    NvmlProbe,
    cuda_version_text,
    sysfs_pci_address,
)
from ansible_collections.onprem.deepseek.tests.unit.plugins.module_utils import (
    fake_pynvml as fake,
)
from ansible_collections.onprem.deepseek.tests.unit.plugins.module_utils.fake_pynvml import (
    FakeNvml,
)


def write_sysfs(root, gpus):
    """numa_node files where the kernel keeps them, for each profile's bus id."""
    for gpu in gpus:
        address = gpu["bus_id"][4:].lower()  # 00000000:18:00.0 -> 0000:18:00.0
        node_dir = root / "bus" / "pci" / "devices" / address
        node_dir.mkdir(parents=True)
        (node_dir / "numa_node").write_text(f"{gpu['numa']}\n")
    return str(root)


def collect(tmp_path, gpus, **binding):
    lib = FakeNvml(gpus, **binding)
    return NvmlProbe(lib=lib, sysfs_root=write_sysfs(tmp_path, gpus)).collect(), lib


def test_single_h100_every_field(tmp_path):
    gpu, lib = collect(tmp_path, [fake.h100()])
    assert gpu["count"] == 1
    assert gpu["reason"] is None
    assert (gpu["driver_version"], gpu["cuda_driver_version"], gpu["nvml_version"]) == (
        "580.159.04", "13.0", "13.580.159.04")
    assert gpu["devices"] == [{
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-6b1e4c2a-9f0d-4e57-8a31-0c5d7e2f0000",
        "pci_bus_id": "00000000:18:00.0",
        "numa_node": 0,
        "memory_total_mib": 81559,
        "memory_used_mib": 558,
        "memory_free_mib": 81001,
        "compute_capability": "9.0",
        "ecc_mode_current": True,
        "ecc_mode_pending": True,
        "ecc_uncorrectable_volatile": 0,
        "ecc_uncorrectable_aggregate": 0,
        "remapped_rows_correctable": 0,
        "remapped_rows_uncorrectable": 0,
        "remapped_rows_pending": False,
        "remapped_rows_failure": False,
        "persistence_mode": True,
        "mig_mode_current": False,
        "mig_mode_pending": False,
        "power_limit_w": 700.0,
        "temperature_c": 33,
        "pcie_gen_current": 5,
        "pcie_gen_max": 5,
        "pcie_width_current": 16,
        "pcie_width_max": 16,
        "nvlink_links_up": 0,
        "nvlink_links_total": 0,
        "nvlink_to_nvswitch": None,
        "error": None,
    }]
    assert gpu["topology"] == []
    assert gpu["nvswitch"] is False
    assert gpu["fabric_manager_required"] is False
    assert lib.calls[0] == "nvmlInit" and lib.calls[-1] == "nvmlShutdown"


@pytest.mark.parametrize("profile, expected", [
    pytest.param(fake.a100_mig, {
        "name": "NVIDIA A100-SXM4-80GB", "memory_total_mib": 81920, "compute_capability": "8.0",
        "mig_mode_current": True, "mig_mode_pending": True, "power_limit_w": 400.0,
        "pcie_gen_current": 4, "nvlink_links_up": 12, "nvlink_links_total": 12, "nvlink_to_nvswitch": True,
    }, id="a100-mig-on"),
    pytest.param(fake.a100_faulty, {
        "name": "NVIDIA A100-SXM4-40GB", "memory_total_mib": 40960, "numa_node": 1,
        "ecc_uncorrectable_volatile": 2, "ecc_uncorrectable_aggregate": 7,
        "remapped_rows_correctable": 3, "remapped_rows_uncorrectable": 2,
        "remapped_rows_pending": True, "remapped_rows_failure": True,
        "pcie_gen_current": 3, "pcie_gen_max": 4, "pcie_width_current": 8, "pcie_width_max": 16,
        "nvlink_links_up": 10, "nvlink_links_total": 12,
    }, id="a100-ecc-errors-remap-failure-degraded-links"),
    pytest.param(fake.v100_old, {
        "name": "Tesla V100-SXM2-32GB", "memory_total_mib": 32768, "compute_capability": "7.0",
        "mig_mode_current": None, "mig_mode_pending": None,
        "remapped_rows_failure": None, "remapped_rows_pending": None,
        "nvlink_links_up": 6, "nvlink_links_total": 6, "nvlink_to_nvswitch": False,
    }, id="v100-no-mig-no-remap"),
])
def test_device_shapes(tmp_path, profile, expected):
    gpu = collect(tmp_path, profile())[0]
    device = gpu["devices"][0]
    assert {key: device[key] for key in expected} == expected
    assert device["error"] is None


def test_hgx_board_with_nvswitch(tmp_path):
    gpu = collect(tmp_path, fake.hgx_h100())[0]
    assert gpu["count"] == 8
    assert [d["pci_bus_id"] for d in gpu["devices"]] == [
        f"00000000:{bus.upper()}:00.0" for bus in fake.HGX_BUSES]
    assert [d["numa_node"] for d in gpu["devices"]] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert {(d["nvlink_links_up"], d["nvlink_links_total"]) for d in gpu["devices"]} == {(18, 18)}
    assert gpu["nvswitch"] is True
    assert gpu["fabric_manager_required"] is True
    assert len(gpu["topology"]) == 28
    levels = {(p["gpu_a"], p["gpu_b"]): p["level"] for p in gpu["topology"]}
    assert levels[(0, 3)] == "node"
    assert levels[(0, 4)] == "system"
    assert levels[(5, 7)] == "node"


def test_old_bindings_return_bytes(tmp_path):
    old_binding = {"driver": "470.256.02", "cuda": 11040, "nvml": "11.470.256.02", "as_bytes": True, "max_links": 12}
    gpu = collect(tmp_path, fake.v100_old(), **old_binding)[0]
    device = gpu["devices"][0]
    assert (gpu["driver_version"], gpu["cuda_driver_version"], gpu["nvml_version"]) == (
        "470.256.02", "11.4", "11.470.256.02")
    assert (device["name"], device["uuid"], device["pci_bus_id"]) == (
        "Tesla V100-SXM2-32GB", "GPU-6b1e4c2a-9f0d-4e57-8a31-0c5d7e2f0000", "00000000:1A:00.0")
    assert all(not isinstance(value, bytes) for value in device.values())
    assert device["numa_node"] == 0  # found through the lower-cased sysfs address
    assert gpu["nvswitch"] is False


def test_binding_without_a_function(tmp_path):
    gpu = collect(tmp_path, [fake.h100()], missing=("nvmlDeviceGetRemappedRows", "nvmlSystemGetNVMLVersion"))[0]
    device = gpu["devices"][0]
    assert gpu["nvml_version"] is None
    assert device["remapped_rows_failure"] is None
    assert device["memory_total_mib"] == 81559


@pytest.mark.parametrize("function, error", [
    ("nvmlDeviceGetTotalEccErrors", fake.NVMLError_NoPermission()),
    ("nvmlDeviceGetTemperature", fake.NVMLError_Unknown()),
    ("nvmlDeviceGetEnforcedPowerLimit", fake.NVMLError_NotSupported()),
    ("nvmlDeviceGetNvLinkState", fake.NVMLError_NotSupported()),
])
def test_optional_field_errors_become_null(tmp_path, function, error):
    fields = {
        "nvmlDeviceGetTotalEccErrors": ("ecc_uncorrectable_volatile", "ecc_uncorrectable_aggregate"),
        "nvmlDeviceGetTemperature": ("temperature_c",),
        "nvmlDeviceGetEnforcedPowerLimit": ("power_limit_w",),
        "nvmlDeviceGetNvLinkState": (),
    }[function]
    gpu = collect(tmp_path, fake.hgx_h100()[:2], failing={function: error})[0]
    for device in gpu["devices"]:
        assert device["error"] is None
        assert device["name"] == "NVIDIA H100 80GB HBM3"
        assert [device[field] for field in fields] == [None] * len(fields)
    if function == "nvmlDeviceGetNvLinkState":
        assert [d["nvlink_links_total"] for d in gpu["devices"]] == [0, 0]


@pytest.mark.parametrize("mode", ["handle", "query"])
def test_one_gpu_lost_others_reported(tmp_path, mode):
    gpus = fake.hgx_h100()
    gpus[3]["lost"] = mode
    gpu, lib = collect(tmp_path, gpus)
    lost = gpu["devices"][3]
    assert gpu["count"] == 8
    assert "GPU 3 is lost (GPU is lost)" in lost["error"]
    assert lost["memory_total_mib"] is None
    others = [d for d in gpu["devices"] if d["index"] != 3]
    assert [d["error"] for d in others] == [None] * 7
    assert [d["memory_total_mib"] for d in others] == [81559] * 7
    assert len(gpu["topology"]) == 21  # C(7, 2): pairs with the lost GPU left out
    assert all(3 not in (p["gpu_a"], p["gpu_b"]) for p in gpu["topology"])
    assert gpu["nvswitch"] is True
    assert lib.calls[-1] == "nvmlShutdown"


@pytest.mark.parametrize("error, words", [
    (fake.NVMLError_LibraryNotFound(), ["NVML Shared Library Not Found", "libnvidia-ml.so.1"]),
    (fake.NVMLError_DriverNotLoaded(), ["Driver Not Loaded", "kernel module is not loaded"]),
    (fake.NVMLError_NoPermission(), ["Insufficient Permissions", "/dev/nvidia"]),
    (fake.NVMLError_LibRmVersionMismatch(), ["version mismatch", "reboot"]),
    (fake.NVMLError_Unknown(), ["NVML could not start (Unknown Error)"]),
])
def test_nvml_init_failure(tmp_path, error, words):
    gpu, lib = collect(tmp_path, [fake.h100()], init_error=error)
    assert gpu["count"] == 0
    assert gpu["devices"] == []
    for word in words:
        assert word in gpu["reason"]
    assert "nvmlShutdown" not in lib.calls


def test_no_gpu(tmp_path):
    gpu, lib = collect(tmp_path, [])
    assert (gpu["count"], gpu["reason"]) == (0, "NVML found no NVIDIA GPU on this host")
    assert gpu["driver_version"] == "580.159.04"
    assert gpu["nvswitch"] is None
    assert lib.calls == ["nvmlInit", "nvmlShutdown"]


def test_binding_not_installed(monkeypatch):
    """The import guard: no pynvml module -> HAS_PYNVML False, traceback kept, count 0 with a reason."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    reloaded = importlib.reload(_nvml)
    try:
        assert reloaded.HAS_PYNVML is False
        assert "ImportError" in reloaded.PYNVML_IMPORT_ERROR or "ModuleNotFoundError" in reloaded.PYNVML_IMPORT_ERROR
        gpu = reloaded.NvmlProbe().collect()
        assert gpu["count"] == 0
        assert "nvidia-ml-py" in gpu["reason"]
    finally:
        monkeypatch.undo()
        importlib.reload(_nvml)


@pytest.mark.parametrize("numa_text, expected", [("1\n", 1), ("-1\n", None), ("garbage", None), (None, None)])
def test_numa_node_from_sysfs(tmp_path, numa_text, expected):
    device_dir = tmp_path / "bus" / "pci" / "devices" / "0000:ab:00.0"
    device_dir.mkdir(parents=True)
    if numa_text is not None:
        (device_dir / "numa_node").write_text(numa_text)
    gpus = [fake.h100(0, "ab")]
    probe = NvmlProbe(lib=FakeNvml(gpus), sysfs_root=str(tmp_path))
    assert probe.collect()["devices"][0]["numa_node"] == expected


@pytest.mark.parametrize("value, text", [(13000, "13.0"), (12040, "12.4"), (11080, "11.8"), (None, None)])
def test_cuda_version_text(value, text):
    assert cuda_version_text(value) == text


@pytest.mark.parametrize("bus_id, address", [
    ("00000000:18:00.0", "0000:18:00.0"),
    ("00000000:AB:00.0", "0000:ab:00.0"),
    ("00000001:3B:00.0", "0001:3b:00.0"),
])
def test_sysfs_pci_address(bus_id, address):
    assert sysfs_pci_address(bus_id) == address


def test_fake_matches_the_real_binding():
    """Every function, constant and error class the fake offers exists, with the same value, in pynvml."""
    real = pytest.importorskip("pynvml")
    assert [name for name in fake.FUNCTIONS if not callable(getattr(real, name, None))] == []
    assert {name: getattr(real, name, None) for name in fake.CONSTANTS} == {
        name: getattr(fake, name) for name in fake.CONSTANTS}
    for name in fake.ERROR_CLASSES:
        cls = getattr(real, name)
        assert issubclass(cls, real.NVMLError)
        assert str(cls()) == str(getattr(fake, name)())
