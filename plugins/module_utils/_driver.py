# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""NVIDIA driver logic for the nvidia_driver role: version pins, PCI scanning, module flavour, boot state.

Everything here is pure logic over text and directory trees, so unit tests feed it real shapes (a sysfs
tree built in a temporary directory, real ``/proc/driver/nvidia/version`` lines, real ``mokutil`` output).
The outside world reaches this file through two seams only: a directory root (``sysfs_root``/``proc_root``)
and a ``run(argv) -> (rc, stdout, stderr)`` callable for commands.
"""

from __future__ import annotations

import os
import re

NVIDIA_VENDOR = 0x10DE

# PCI base class 0x03 is "display controller": 0x0300 VGA (GeForce, workstation boards) and 0x0302 3D controller
# (data-centre boards without display outputs, H100/L40S/A100).
PCI_CLASS_DISPLAY = 0x03

# An NVIDIA device of PCI class 0x0680 ("Bridge: other bridge device", prog-if 00) is an NVSwitch. NCCL classifies
# NVLink peers the same way: ncclDeviceType() in NVIDIA/nccl src/graph/topo.cc reads
# /sys/bus/pci/devices/<bus id>/class and treats "0x068000" as "Bridge / Other Bridge Device (NVswitch)", and
# later NCCL versions keep the mapping {"0x068000", NVS} in src/graph/xml.cc. 0x068001 is IBM's NVLink bridge on
# POWER9, which is why the vendor id is checked too.
PCI_CLASS_NVSWITCH = 0x0680

# Open GPU kernel modules need the GSP, which NVIDIA GPUs have from Turing on ("Open GPU kernel modules are
# supported only on Turing and newer generations", NVIDIA Driver Installation Guide, Kernel Modules). Turing is
# compute capability 7.5; Volta (V100) is 7.0, Pascal 6.x.
OPEN_MODULES_MIN_CC = (7, 5)
# Without NVML (no driver yet) the PCI device id decides: every Turing and later chip has an id from 0x1e00 up
# (TU102 0x1e02, T4 0x1eb8, A100 0x20b0, H100 SXM 0x2330, L40S 0x26b9, B200 0x2901), every Volta or older chip
# one below it (V100 0x1db1..0x1df6, P100 0x15f8, P40 0x1b38, P4 0x1bb3, K80 0x102d).
OPEN_MODULES_MIN_DEVICE_ID = 0x1E00

_VERSION_RE = re.compile(r"^\d+(\.\d+){0,2}$")
_BRANCH_RE = re.compile(r"^\d+$")
# "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (dvs-builder@...)"
# "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023"
_PROC_VERSION_RE = re.compile(r"^NVRM version:.*?Kernel Module(?:\s+for\s+\S+)?\s+(\d+\.\d+(?:\.\d+)?)\s", re.M)

# EFI global variable GUID under which the firmware publishes SecureBoot (UEFI spec, EFI_GLOBAL_VARIABLE).
EFI_GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-e39a5a3d9e4e"


class PinError(ValueError):
    """A pin that cannot be met by any driver (bad syntax or contradicting parts)."""


# -- versions ---------------------------------------------------------------------------------------------------

def parse_version(text):
    """'580.159.04' -> (580, 159, 4); None or '' -> None; anything else that is not N[.N[.N]] -> PinError."""
    if text is None:
        return None
    text = str(text).strip()
    if not text:
        return None
    if not _VERSION_RE.match(text):
        raise PinError(f"'{text}' is not a driver version: expected digits separated by dots, like 580 or 580.95.05")
    return tuple(int(part) for part in text.split("."))


def _pad(version, length=3):
    return tuple(version) + (0,) * (length - len(version))


def same_version(left, right):
    """Whether two version texts name the same driver (580.95.05 == 580.95.5); unparseable texts compare as text."""
    try:
        return _pad(parse_version(left)) == _pad(parse_version(right))
    except PinError:
        return str(left).strip() == str(right).strip()


class DriverPin:
    """What driver a host must have: a branch (580), an exact version (580.95.05), a minimum (580.95), or several.

    Every part that is given must hold. Parts are compared as numbers, component by component:
    580.159.04 is newer than 580.95.05 although '159' < '95' as text.
    """

    def __init__(self, branch=None, version=None, min_version=None):
        branch = None if branch is None or str(branch).strip() == "" else str(branch).strip()
        if branch is not None and not _BRANCH_RE.match(branch):
            raise PinError(f"branch '{branch}' is not a driver branch: give the major version only, like 580")
        self.exact = parse_version(version)
        if self.exact is not None and len(self.exact) < 2:
            raise PinError(f"version '{version}' is not an exact driver version: give it whole, like 580.95.05 "
                           "(for a whole branch set the branch instead)")
        self.minimum = parse_version(min_version)
        # Versions are compared as numbers but shown as given (580.95.05, not 580.95.5).
        self.exact_text = str(version).strip() if self.exact is not None else None
        self.minimum_text = str(min_version).strip() if self.minimum is not None else None
        self.branch = int(branch) if branch is not None else None
        if self.branch is not None and self.exact is not None and self.exact[0] != self.branch:
            raise PinError(f"version {self.exact_text} is not on branch {self.branch}: "
                           "change one of them or leave the branch empty")
        if self.exact is not None and self.minimum is not None and _pad(self.exact) < _pad(self.minimum):
            raise PinError(f"version {self.exact_text} is older than min_version "
                           f"{self.minimum_text}: no driver can satisfy both")
        if self.branch is not None and self.minimum is not None and self.minimum[0] > self.branch:
            raise PinError(f"min_version {self.minimum_text} is above branch {self.branch}: "
                           "no driver of that branch can satisfy it")

    @property
    def empty(self):
        return self.branch is None and self.exact is None and self.minimum is None

    @property
    def wanted_branch(self):
        """The branch a package install has to target (from the exact version when no branch is set)."""
        if self.branch is not None:
            return self.branch
        if self.exact is not None:
            return self.exact[0]
        return None

    def describe(self):
        parts = []
        if self.exact is not None:
            parts.append(f"exactly {self.exact_text}")
        elif self.branch is not None:
            parts.append(f"branch {self.branch}")
        if self.minimum is not None:
            parts.append(f"at least {self.minimum_text}")
        return " and ".join(parts) if parts else "any driver"

    def check(self, installed):
        """(satisfied, reason) for an installed version text (or None when no driver was found)."""
        if installed is None or str(installed).strip() == "":
            return False, f"no NVIDIA driver is installed; the pin wants {self.describe()}"
        try:
            have = parse_version(installed)
        except PinError:
            return False, f"the installed driver reports version '{installed}', which cannot be compared"
        text = str(installed).strip()
        if self.exact is not None and _pad(have) != _pad(self.exact):
            return False, f"driver {text} is installed, the pin wants exactly {self.exact_text}"
        if self.branch is not None and have[0] != self.branch:
            return False, f"driver {text} is installed (branch {have[0]}), the pin wants branch {self.branch}"
        if self.minimum is not None and _pad(have) < _pad(self.minimum):
            return False, f"driver {text} is installed, the pin wants at least {self.minimum_text}"
        return True, f"driver {text} satisfies the pin ({self.describe()})"


# -- PCI --------------------------------------------------------------------------------------------------------

def _read(path):
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _hex(text):
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


def scan_pci(sysfs_root="/sys"):
    """Every PCI device under <sysfs_root>/bus/pci/devices as dicts (address, vendor, device, class, driver)."""
    base = os.path.join(sysfs_root, "bus", "pci", "devices")
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    devices = []
    for name in names:
        path = os.path.join(base, name)
        vendor = _hex(_read(os.path.join(path, "vendor")))
        if vendor is None:
            continue
        driver_link = os.path.join(path, "driver")
        driver = os.path.basename(os.path.realpath(driver_link)) if os.path.islink(driver_link) else None
        devices.append({
            "address": name,
            "vendor": vendor,
            "device": _hex(_read(os.path.join(path, "device"))),
            "class": _hex(_read(os.path.join(path, "class"))) or 0,
            "driver": driver,
        })
    return devices


def is_nvidia_gpu(device):
    return device["vendor"] == NVIDIA_VENDOR and device["class"] >> 16 == PCI_CLASS_DISPLAY


def is_nvswitch(device):
    return device["vendor"] == NVIDIA_VENDOR and device["class"] >> 8 == PCI_CLASS_NVSWITCH and \
        device["class"] & 0xFF == 0


def parse_compute_capability(text):
    """'9.0' -> (9, 0); None or junk -> None."""
    if not text:
        return None
    match = re.match(r"^(\d+)\.(\d+)$", str(text).strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def supports_open_modules(device_id, compute_capability=None):
    """Whether a GPU can run the open kernel modules: compute capability when NVML gave one, else the device id."""
    capability = parse_compute_capability(compute_capability)
    if capability is not None:
        return capability >= OPEN_MODULES_MIN_CC
    if device_id is None:
        return None
    return device_id >= OPEN_MODULES_MIN_DEVICE_ID


def normalise_bus_id(bus_id):
    """NVML '00000000:18:00.0' or sysfs '0000:18:00.0' -> '0000:18:00.0'."""
    domain, rest = str(bus_id).split(":", 1)
    return f"{domain[-4:]}:{rest}".lower()


def gpu_inventory(devices, capabilities=None):
    """The NVIDIA GPUs among PCI devices, each with its open-module support.

    ``capabilities`` maps a bus id (any of NVML's or sysfs' spellings) to a compute capability text from NVML.
    """
    capabilities = {normalise_bus_id(k): v for k, v in (capabilities or {}).items()}
    gpus = []
    for device in devices:
        if not is_nvidia_gpu(device):
            continue
        capability = capabilities.get(device["address"].lower())
        gpus.append({
            "address": device["address"],
            "pci_id": f"{device['vendor']:04x}:{device['device']:04x}" if device["device"] is not None else None,
            "device_id": f"0x{device['device']:04x}" if device["device"] is not None else None,
            "class": f"0x{device['class']:06x}",
            "driver": device["driver"],
            "compute_capability": capability,
            "open_modules_supported": supports_open_modules(device["device"], capability),
        })
    return gpus


def nvswitch_addresses(devices):
    return [device["address"] for device in devices if is_nvswitch(device)]


def open_modules_decision(gpus):
    """True when every GPU supports the open modules, False when one does not, None without GPUs."""
    if not gpus:
        return None
    answers = [gpu["open_modules_supported"] for gpu in gpus]
    if any(answer is False for answer in answers):
        return False
    if any(answer is None for answer in answers):
        return None
    return True


# -- the driver on the host -------------------------------------------------------------------------------------

def parse_proc_version(text):
    """(version, flavour) from /proc/driver/nvidia/version; flavour is 'open' or 'proprietary'."""
    if not text:
        return None, None
    match = _PROC_VERSION_RE.search(text)
    if not match:
        return None, None
    first_line = text.splitlines()[0] if text.splitlines() else ""
    flavour = "open" if "Open Kernel Module" in first_line else "proprietary"
    return match.group(1), flavour


def parse_nvidia_smi_versions(text):
    """Driver version from `nvidia-smi --query-gpu=driver_version --format=csv,noheader` (one line per GPU)."""
    versions = {line.strip() for line in (text or "").splitlines() if line.strip()}
    valid = sorted(v for v in versions if _VERSION_RE.match(v))
    return valid[0] if len(valid) == 1 else None


def parse_modinfo_version(text):
    line = (text or "").strip().splitlines()
    value = line[0].strip() if line else ""
    return value if _VERSION_RE.match(value) else None


def parse_mokutil_sb_state(rc, stdout, stderr):
    """'enabled' / 'disabled' / 'unsupported' (no EFI) from `mokutil --sb-state`; None when it says nothing useful."""
    text = f"{stdout}\n{stderr}".lower()
    if "secureboot enabled" in text:
        return "enabled"
    if "secureboot disabled" in text:
        return "disabled"
    if "efi variables are not supported" in text:
        return "unsupported"
    return None


def secure_boot_from_efivars(sysfs_root="/sys"):
    """Secure Boot state from the EFI variable (4 attribute bytes, then 1 data byte)."""
    efi = os.path.join(sysfs_root, "firmware", "efi")
    if not os.path.isdir(efi):
        return "unsupported"
    path = os.path.join(efi, "efivars", f"SecureBoot-{EFI_GLOBAL_GUID}")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    if len(data) < 5:
        return None
    return "enabled" if data[4] == 1 else "disabled"


def loaded_modules(proc_root="/proc"):
    text = _read(os.path.join(proc_root, "modules")) or ""
    return {line.split()[0] for line in text.splitlines() if line.split()}


def _nvml_versions(nvml):
    """(driver version, {bus id: compute capability}, reason) from an NvmlProbe-style collect() result."""
    if not nvml:
        return None, {}, None
    capabilities = {d["pci_bus_id"]: d.get("compute_capability") for d in nvml.get("devices") or []
                    if d.get("pci_bus_id")}
    return nvml.get("driver_version"), capabilities, nvml.get("reason")


def _secure_boot_state(sysfs_root, run, mokutil):
    """(state, source): mokutil first, then the EFI variable."""
    if mokutil and run is not None:
        state = parse_mokutil_sb_state(*run([mokutil, "--sb-state"]))
        if state:
            return state, "mokutil"
    state = secure_boot_from_efivars(sysfs_root)
    if state in ("enabled", "disabled"):
        return state, "efivars"
    if state == "unsupported":
        return state, "sysfs"
    return "unknown", None


def _driver_versions(has_gpu, proc_root, nvml, run, nvidia_smi, modinfo, findings):
    """Each source's driver version, in the order of trust, plus the loaded module's flavour and NVML's capabilities."""
    versions = {"nvml": None, "nvidia-smi": None, "proc": None, "modinfo": None}
    capabilities = {}
    if has_gpu and nvml is not None:
        versions["nvml"], capabilities, reason = _nvml_versions(nvml())
        findings.append(f"NVML reports driver {versions['nvml']}" if versions["nvml"]
                        else f"NVML gave no driver version: {reason}")
    if has_gpu and not versions["nvml"] and nvidia_smi and run is not None:
        rc, out, err = run([nvidia_smi, "--query-gpu=driver_version", "--format=csv,noheader"])
        versions["nvidia-smi"] = parse_nvidia_smi_versions(out) if rc == 0 else None
        findings.append(f"nvidia-smi reports driver {versions['nvidia-smi']}" if versions["nvidia-smi"]
                        else f"nvidia-smi gave no driver version (rc {rc}): {(err or out).strip()[:200]}")
    versions["proc"], flavour = parse_proc_version(_read(os.path.join(proc_root, "driver", "nvidia", "version")))
    if versions["proc"]:
        findings.append(f"the loaded kernel module is {versions['proc']} ({flavour})")
    if modinfo and run is not None:
        rc, out, _err = run([modinfo, "-F", "version", "nvidia"])
        versions["modinfo"] = parse_modinfo_version(out) if rc == 0 else None
        if versions["modinfo"]:
            findings.append(f"the nvidia kernel module on disk for the running kernel is {versions['modinfo']}")
    return versions, flavour, capabilities


def inspect_host(pin, sysfs_root="/sys", proc_root="/proc", nvml=None, run=None, nvidia_smi=None, modinfo=None,
                 mokutil=None):
    """Everything nvidia_driver_facts returns, from the host's trees, an NVML result and commands.

    ``nvml`` is a callable returning NvmlProbe.collect()'s dict (only called when a GPU is on the bus);
    ``run(argv)`` returns (rc, stdout, stderr); ``nvidia_smi``/``modinfo``/``mokutil`` are paths or None.
    """
    devices = scan_pci(sysfs_root)
    findings = []
    has_gpu = any(is_nvidia_gpu(d) for d in devices)
    versions, flavour, capabilities = _driver_versions(has_gpu, proc_root, nvml, run, nvidia_smi, modinfo, findings)
    gpus = gpu_inventory(devices, capabilities)
    switches = nvswitch_addresses(devices)
    nouveau = "nouveau" in loaded_modules(proc_root)

    loaded = versions["nvml"] or versions["nvidia-smi"] or versions["proc"]
    installed, source = None, None
    for name in ("nvml", "nvidia-smi", "proc", "modinfo"):
        if versions[name]:
            installed, source = versions[name], name
            break
    reasons = []
    # A module on disk that differs from the running one is what the next boot runs: judge the pin on it.
    if versions["modinfo"] and loaded and not same_version(versions["modinfo"], loaded):
        installed, source = versions["modinfo"], "modinfo"
        reasons.append(f"driver {loaded} is running but the kernel module on disk is {versions['modinfo']}: "
                       "reboot to load it")
    if nouveau and gpus:
        reasons.append("the nouveau module is loaded: blacklist it and reboot before the NVIDIA module can bind "
                       "the GPUs")
    satisfied, why = pin.check(installed)
    secure_boot, secure_boot_source = _secure_boot_state(sysfs_root, run, mokutil)
    return {
        "gpu_count": len(gpus), "gpus": gpus, "nvswitch_count": len(switches), "nvswitches": switches,
        "open_modules_supported": open_modules_decision(gpus),
        "installed_version": installed, "version_source": source,
        "loaded_version": loaded, "module_version": versions["modinfo"], "kernel_module_flavor": flavour,
        "pin": pin.describe(), "pin_branch": pin.wanted_branch, "pin_satisfied": satisfied, "pin_reason": why,
        "secure_boot": secure_boot, "secure_boot_source": secure_boot_source,
        "nouveau_loaded": nouveau,
        "reboot_pending": bool(reasons), "reboot_reasons": reasons,
        "findings": findings,
    }
