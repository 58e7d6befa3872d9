# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_driver: pins and version comparison, PCI scanning (GPUs, NVSwitches), open-module support, host state."""

from __future__ import annotations

import pytest
from ansible_collections.onprem.deepseek.plugins.module_utils import _driver
from ansible_collections.onprem.deepseek.plugins.module_utils._driver import (
    DriverPin,
    PinError,
    inspect_host,
    parse_version,
)
from ansible_collections.onprem.deepseek.plugins.module_utils._nvml import NvmlProbe
from ansible_collections.onprem.deepseek.tests.unit.plugins.module_utils import (
    fake_pynvml as fake,
)
from ansible_collections.onprem.deepseek.tests.unit.plugins.module_utils import (
    fake_sysfs,
)
from ansible_collections.onprem.deepseek.tests.unit.plugins.module_utils.fake_pynvml import (
    FakeNvml,
)


@pytest.mark.parametrize("text, expected", [
    ("580", (580,)),
    ("580.95", (580, 95)),
    ("580.95.05", (580, 95, 5)),
    ("580.159.04", (580, 159, 4)),
    (" 535.104.05\n", (535, 104, 5)),
    ("", None),
    (None, None),
])
def test_parse_version(text, expected):
    assert parse_version(text) == expected


@pytest.mark.parametrize("text", ["580.x", "r580", "580.95.05.1", "580-open", "580.", ".95", "v580"])
def test_parse_version_refuses_junk(text):
    with pytest.raises(PinError, match="is not a driver version"):
        parse_version(text)


# (pin kwargs, installed version, satisfied, words the reason must hold)
PIN_CASES = [
    # a branch pin takes any version of that branch, and only that branch
    ({"branch": "580"}, "580.159.04", True, "satisfies the pin (branch 580)"),
    ({"branch": "580"}, "580.95.05", True, "satisfies"),
    ({"branch": "580"}, "580.65.06", True, "satisfies"),
    ({"branch": "580"}, "570.124.06", False, "driver 570.124.06 is installed (branch 570), the pin wants branch 580"),
    ({"branch": "580"}, "590.44.01", False, "(branch 590), the pin wants branch 580"),
    ({"branch": "580"}, "58.0.1", False, "branch 58)"),
    ({"branch": "570"}, "580.159.04", False, "the pin wants branch 570"),
    # exact pins compare numbers, so a dropped leading zero is still the same version
    ({"version": "580.95.05"}, "580.95.05", True, "exactly 580.95.05"),
    ({"version": "580.95.05"}, "580.95.5", True, "satisfies"),
    ({"version": "580.95.05"}, "580.159.04", False, "the pin wants exactly 580.95.05"),
    ({"version": "580.95.05"}, "580.95.06", False, "wants exactly"),
    ({"branch": "580", "version": "580.159.04"}, "580.159.04", True, "exactly 580.159.04"),
    # minimum versions: 159 > 95 although "159" < "95" as text
    ({"min_version": "580.95"}, "580.159.04", True, "at least 580.95"),
    ({"min_version": "580.95.05"}, "580.95.05", True, "satisfies"),
    ({"min_version": "580.95.05"}, "580.95.04", False, "the pin wants at least 580.95.05"),
    ({"min_version": "580.159"}, "580.95.05", False, "at least 580.159"),
    ({"min_version": "580"}, "580.0.1", True, "satisfies"),
    ({"min_version": "580"}, "575.64.05", False, "at least 580"),
    ({"min_version": "580"}, "590.44.01", True, "satisfies"),
    ({"min_version": "470.82"}, "470.82", True, "satisfies"),
    ({"branch": "580", "min_version": "580.95"}, "580.82.07", False, "at least 580.95"),
    ({"branch": "580", "min_version": "580.95"}, "590.44.01", False, "wants branch 580"),
    ({"branch": "580", "min_version": "580.95"}, "580.126.09", True, "branch 580 and at least 580.95"),
    # nothing installed, or a version that cannot be read
    ({"branch": "580"}, None, False, "no NVIDIA driver is installed; the pin wants branch 580"),
    ({"branch": "580"}, "", False, "no NVIDIA driver is installed"),
    ({"branch": "580"}, "N/A", False, "reports version 'N/A', which cannot be compared"),
    # an empty pin takes any driver, but not the absence of one
    ({}, "390.157", True, "any driver"),
    ({"branch": "", "version": "", "min_version": ""}, None, False, "no NVIDIA driver"),
]


@pytest.mark.parametrize("pin, installed, satisfied, words", PIN_CASES)
def test_pin_check(pin, installed, satisfied, words):
    ok, reason = DriverPin(**pin).check(installed)
    assert ok is satisfied
    assert words in reason


@pytest.mark.parametrize("pin, message", [
    ({"branch": "580.95"}, "is not a driver branch"),
    ({"branch": "r580"}, "is not a driver branch"),
    ({"version": "580"}, "is not an exact driver version"),
    ({"version": "580.95.x"}, "is not a driver version"),
    ({"branch": "580", "version": "570.124.06"}, "version 570.124.06 is not on branch 580"),
    ({"version": "580.65.06", "min_version": "580.95"}, "is older than min_version 580.95"),
    ({"branch": "570", "min_version": "580"}, "min_version 580 is above branch 570"),
])
def test_pin_refuses_impossible(pin, message):
    with pytest.raises(PinError, match=message):
        DriverPin(**pin)


@pytest.mark.parametrize("pin, branch, words", [
    ({"branch": "580"}, 580, "branch 580"),
    ({"version": "580.95.05"}, 580, "exactly 580.95.05"),
    ({"min_version": "575"}, None, "at least 575"),
    ({}, None, "any driver"),
])
def test_pin_wanted_branch_and_words(pin, branch, words):
    driver_pin = DriverPin(**pin)
    assert driver_pin.wanted_branch == branch
    assert driver_pin.describe() == words


@pytest.mark.parametrize("left, right, same", [
    ("580.95.05", "580.95.5", True),
    ("580.95", "580.95.0", True),
    ("580.159.04", "580.95.05", False),
    ("N/A", "N/A", True),
    ("N/A", "580.95.05", False),
])
def test_same_version(left, right, same):
    assert _driver.same_version(left, right) is same


# -- PCI: GPUs, NVSwitches, open-module support ------------------------------------------------------------------

@pytest.mark.parametrize("machine, gpus, switches, open_ok, pci_ids", [
    (fake_sysfs.HGX_H100, 8, 4, True, {"10de:2330"}),
    (fake_sysfs.HGX_A100, 8, 6, True, {"10de:20b2"}),
    (fake_sysfs.PCIE_L40S, 2, 0, True, {"10de:26b9"}),
    (fake_sysfs.PASCAL, 1, 0, False, {"10de:15f8"}),
    (fake_sysfs.MIXED, 2, 0, False, {"10de:1eb8", "10de:1db6"}),
    (fake_sysfs.NO_GPU, 0, 0, None, set()),
])
def test_pci_inventory(tmp_path, machine, gpus, switches, open_ok, pci_ids):
    sysfs, _proc = fake_sysfs.write_tree(str(tmp_path), machine)
    devices = _driver.scan_pci(sysfs)
    inventory = _driver.gpu_inventory(devices)
    assert len(devices) == len(machine)
    assert len(inventory) == gpus
    assert {gpu["pci_id"] for gpu in inventory} == pci_ids
    assert len(_driver.nvswitch_addresses(devices)) == switches
    assert _driver.open_modules_decision(inventory) is open_ok


def test_hgx_h100_shapes(tmp_path):
    sysfs, _proc = fake_sysfs.write_tree(str(tmp_path), fake_sysfs.HGX_H100)
    devices = _driver.scan_pci(sysfs)
    gpus = _driver.gpu_inventory(devices)
    assert [gpu["address"] for gpu in gpus] == [f"0000:{bus}:00.0" for bus in fake_sysfs.H100_BUSES]
    assert gpus[0] == {"address": "0000:18:00.0", "pci_id": "10de:2330", "device_id": "0x2330",
                       "class": "0x030200", "driver": "nvidia", "compute_capability": None,
                       "open_modules_supported": True}
    assert _driver.nvswitch_addresses(devices) == ["0000:05:00.0", "0000:06:00.0", "0000:07:00.0", "0000:08:00.0"]
    # the BMC's VGA is a display controller but not NVIDIA's; the ConnectX and PCIe switch are neither
    assert "0000:03:00.0" not in [gpu["address"] for gpu in gpus]


@pytest.mark.parametrize("device", [
    {"vendor": 0x10DE, "class": 0x068000, "device": 0x22A3},   # NVSwitch gen 3 (HGX H100)
    {"vendor": 0x10DE, "class": 0x068000, "device": 0x1AF1},   # NVSwitch gen 2 (HGX A100)
])
def test_nvswitch_class(device):
    assert _driver.is_nvswitch(device)
    assert not _driver.is_nvidia_gpu(device)


@pytest.mark.parametrize("device", [
    {"vendor": 0x1014, "class": 0x068001, "device": 0x04EA},   # IBM POWER9 NVLink bridge
    {"vendor": 0x10DE, "class": 0x068001, "device": 0x04EA},   # right vendor, prog-if of the IBM bridge
    {"vendor": 0x1000, "class": 0x068000, "device": 0xC010},   # other vendors' "other bridge"
    {"vendor": 0x10DE, "class": 0x060400, "device": 0x1AD0},   # a PCI-to-PCI bridge
    {"vendor": 0x10DE, "class": 0x040300, "device": 0x22BA},   # the HDMI audio function of a GeForce
])
def test_not_nvswitch(device):
    assert not _driver.is_nvswitch(device)


@pytest.mark.parametrize("device_id, capability, supported", [
    (0x2330, None, True),     # H100 SXM5
    (0x26B9, None, True),     # L40S
    (0x2901, None, True),     # B200
    (0x1EB8, None, True),     # T4, Turing: the first open-module generation
    (0x1E02, None, True),     # TITAN RTX (TU102)
    (0x1DB6, None, False),    # V100 PCIe 32GB, Volta
    (0x1DF6, None, False),    # V100S
    (0x15F8, None, False),    # P100, Pascal
    (0x1B38, None, False),    # P40
    (0x102D, None, False),    # K80, Kepler
    (None, None, None),
    # NVML's compute capability wins over the device id
    (0x1DB6, "7.0", False),
    (0x1EB8, "7.5", True),
    (0x2330, "9.0", True),
    (0x15F8, "6.0", False),
    (0x2330, "junk", True),
])
def test_supports_open_modules(device_id, capability, supported):
    assert _driver.supports_open_modules(device_id, capability) is supported


def test_open_modules_undecided_without_device_id():
    gpus = [{"open_modules_supported": True}, {"open_modules_supported": None}]
    assert _driver.open_modules_decision(gpus) is None


def test_scan_pci_without_sysfs(tmp_path):
    assert _driver.scan_pci(str(tmp_path / "absent")) == []


# -- parsers ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, version, flavour", [
    (fake_sysfs.PROC_OPEN_580, "580.159.04", "open"),
    (fake_sysfs.PROC_PROPRIETARY_570, "570.124.06", "proprietary"),
    (fake_sysfs.PROC_OPEN_AARCH64, "580.95.05", "open"),
    ("", None, None),
    (None, None, None),
    ("GCC version: gcc 12\n", None, None),
])
def test_parse_proc_version(text, version, flavour):
    assert _driver.parse_proc_version(text) == (version, flavour)


@pytest.mark.parametrize("text, version", [
    ("580.159.04\n" * 8, "580.159.04"),
    ("580.159.04\n", "580.159.04"),
    ("", None),
    ("580.159.04\n570.124.06\n", None),     # two drivers at once cannot be told apart
    ("No devices were found\n", None),
])
def test_parse_nvidia_smi_versions(text, version):
    assert _driver.parse_nvidia_smi_versions(text) == version


@pytest.mark.parametrize("args, state", [
    ((0, "SecureBoot enabled\n", ""), "enabled"),
    ((0, "SecureBoot disabled\nPlatform is in Setup Mode\n", ""), "disabled"),
    ((255, "", "EFI variables are not supported on this system\n"), "unsupported"),
    ((1, "", "Failed to read SecureBoot\n"), None),
])
def test_parse_mokutil(args, state):
    assert _driver.parse_mokutil_sb_state(*args) == state


@pytest.mark.parametrize("secure_boot, state", [
    ("enabled", "enabled"),
    ("disabled", "disabled"),
    (None, "unsupported"),
    ("efi-without-variable", None),
])
def test_secure_boot_from_efivars(tmp_path, secure_boot, state):
    sysfs, _proc = fake_sysfs.write_tree(str(tmp_path), fake_sysfs.NO_GPU, secure_boot=secure_boot)
    assert _driver.secure_boot_from_efivars(sysfs) == state


# -- the whole host ---------------------------------------------------------------------------------------------

class CommandDouble:
    """Stands in for the host's commands: argv[0]'s base name -> (rc, stdout, stderr); records each call."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        return self.answers.get(argv[0].rsplit("/", 1)[-1], (127, "", f"{argv[0]}: not found"))


def probe(gpus, **options):
    lib = FakeNvml(gpus, **options)
    return lambda: NvmlProbe(lib=lib, sysfs_root="/nonexistent").collect()


def test_host_hgx_with_580_installed(tmp_path):
    sysfs, proc = fake_sysfs.write_tree(str(tmp_path), fake_sysfs.HGX_H100, secure_boot="disabled",
                                        proc_version=fake_sysfs.PROC_OPEN_580, modules=fake_sysfs.MODULES_NVIDIA)
    run = CommandDouble({"modinfo": (0, "580.159.04\n", ""), "mokutil": (0, "SecureBoot disabled\n", "")})
    result = inspect_host(DriverPin(branch="580"), sysfs, proc, nvml=probe(fake.hgx_h100()), run=run,
                          nvidia_smi="/usr/bin/nvidia-smi", modinfo="/usr/sbin/modinfo", mokutil="/usr/bin/mokutil")
    assert result["pin_satisfied"] is True
    assert result["installed_version"] == "580.159.04"
    assert result["version_source"] == "nvml"
    assert result["kernel_module_flavor"] == "open"
    assert result["gpu_count"] == 8 and result["nvswitch_count"] == 4
    assert [gpu["compute_capability"] for gpu in result["gpus"]] == ["9.0"] * 8
    assert result["open_modules_supported"] is True
    assert result["secure_boot"] == "disabled" and result["secure_boot_source"] == "mokutil"
    assert result["reboot_pending"] is False and result["reboot_reasons"] == []
    # NVML answered: nvidia-smi is not run
    assert [argv[0] for argv in run.calls] == ["/usr/sbin/modinfo", "/usr/bin/mokutil"]


def test_host_installed_but_not_rebooted(tmp_path):
    """570 still loaded (NVML refuses: library/module mismatch), 580 on disk: judge 580 and ask for a reboot."""
    sysfs, proc = fake_sysfs.write_tree(str(tmp_path), fake_sysfs.PCIE_L40S, secure_boot="enabled",
                                        proc_version=fake_sysfs.PROC_PROPRIETARY_570, modules=fake_sysfs.MODULES_NVIDIA)
    run = CommandDouble({
        "nvidia-smi": (18, "Failed to initialize NVML: Driver/library version mismatch\n", ""),
        "modinfo": (0, "580.95.05\n", ""),
    })
    nvml = probe([], init_error=fake.NVMLError_LibRmVersionMismatch())
    result = inspect_host(DriverPin(branch="580"), sysfs, proc, nvml=nvml, run=run,
                          nvidia_smi="/usr/bin/nvidia-smi", modinfo="/usr/sbin/modinfo", mokutil=None)
    assert result["loaded_version"] == "570.124.06"
    assert result["module_version"] == "580.95.05"
    assert result["installed_version"] == "580.95.05" and result["version_source"] == "modinfo"
    assert result["pin_satisfied"] is True
    assert result["reboot_pending"] is True
    assert "driver 570.124.06 is running but the kernel module on disk is 580.95.05" in result["reboot_reasons"][0]
    assert result["kernel_module_flavor"] == "proprietary"
    assert result["secure_boot"] == "enabled" and result["secure_boot_source"] == "efivars"
    assert any("Driver/library version mismatch" in finding for finding in result["findings"])


def test_host_pascal_with_nouveau_and_no_driver(tmp_path):
    sysfs, proc = fake_sysfs.write_tree(str(tmp_path), fake_sysfs.PASCAL, modules=fake_sysfs.MODULES_NOUVEAU)
    run = CommandDouble({"modinfo": (1, "", "modinfo: ERROR: Module nvidia not found.\n")})
    nvml = probe([], init_error=fake.NVMLError_LibraryNotFound())
    result = inspect_host(DriverPin(branch="580"), sysfs, proc, nvml=nvml, run=run,
                          nvidia_smi=None, modinfo="/sbin/modinfo", mokutil=None)
    assert result["gpu_count"] == 1
    assert result["open_modules_supported"] is False
    assert result["installed_version"] is None and result["version_source"] is None
    assert result["pin_satisfied"] is False
    assert result["pin_reason"] == "no NVIDIA driver is installed; the pin wants branch 580"
    assert result["nouveau_loaded"] is True and result["reboot_pending"] is True
    assert "nouveau" in result["reboot_reasons"][0]
    assert result["secure_boot"] == "unsupported"


def test_host_nvidia_smi_fallback(tmp_path):
    """NVML cannot start (library not found), nvidia-smi gives the version."""
    sysfs, proc = fake_sysfs.write_tree(str(tmp_path), fake_sysfs.PCIE_L40S, proc_version=fake_sysfs.PROC_OPEN_580)
    run = CommandDouble({"nvidia-smi": (0, "580.159.04\n580.159.04\n", "")})
    result = inspect_host(DriverPin(version="580.159.04"), sysfs, proc,
                          nvml=probe([], init_error=fake.NVMLError_LibraryNotFound()), run=run,
                          nvidia_smi="/usr/bin/nvidia-smi", modinfo=None, mokutil=None)
    assert result["version_source"] == "nvidia-smi"
    assert result["pin_satisfied"] is True
    assert run.calls == [["/usr/bin/nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]]


def test_host_proc_fallback(tmp_path):
    sysfs, proc = fake_sysfs.write_tree(str(tmp_path), fake_sysfs.PCIE_L40S, proc_version=fake_sysfs.PROC_OPEN_580)
    result = inspect_host(DriverPin(branch="590"), sysfs, proc, nvml=None, run=CommandDouble({}),
                          nvidia_smi=None, modinfo=None, mokutil=None)
    assert result["version_source"] == "proc" and result["installed_version"] == "580.159.04"
    assert result["pin_satisfied"] is False
    assert result["pin_reason"] == "driver 580.159.04 is installed (branch 580), the pin wants branch 590"


def test_host_without_gpu_does_not_call_nvml(tmp_path):
    sysfs, proc = fake_sysfs.write_tree(str(tmp_path), fake_sysfs.NO_GPU)

    def nvml():
        raise AssertionError("NVML must not be read on a host without an NVIDIA GPU")

    result = inspect_host(DriverPin(branch="580"), sysfs, proc, nvml=nvml, run=CommandDouble({}),
                          nvidia_smi="/usr/bin/nvidia-smi", modinfo=None, mokutil=None)
    assert result["gpu_count"] == 0 and result["gpus"] == []
    assert result["open_modules_supported"] is None
    assert result["pin_satisfied"] is False
    assert result["reboot_pending"] is False
