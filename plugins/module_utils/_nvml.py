# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""NVML probe: the one seam between the collection and the NVIDIA driver.

Everything gpu_facts knows about a GPU comes through ``NvmlProbe``. The probe
takes the NVML binding (``pynvml`` from the ``nvidia-ml-py`` distribution) as a
constructor argument, so unit tests hand it a fake binding and exercise the
same collection logic that runs on a real host.

Rules the probe keeps:

* A host without the binding, without the driver, or without a GPU gets a
  result with ``count: 0`` and a ``reason``; never a traceback.
* A field an older GPU, driver or binding does not support comes back ``None``.
* A GPU that fell off the bus (``NVMLError_GpuIsLost``) is reported with an
  ``error``; the other GPUs are still reported.
* Strings from old bindings (bytes) are decoded.
"""

from __future__ import annotations

import os
import traceback

try:
    import pynvml
except ImportError:
    pynvml = None
    HAS_PYNVML = False
    PYNVML_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_PYNVML = True
    PYNVML_IMPORT_ERROR = None

MIB = 1024 * 1024

# nvmlGpuTopologyLevel_t values and the names nvidia-smi's documentation uses.
TOPOLOGY_LEVELS = {
    0: "internal",
    10: "single",
    20: "multiple",
    30: "hostbridge",
    40: "node",
    50: "system",
}

# Older bindings (11.x) define 18 links; 13.x defines 36. Links past the ones a
# GPU has answer NotSupported or InvalidArgument.
DEFAULT_MAX_NVLINKS = 18
NVLINK_DEVICE_TYPE_SWITCH = 2

DEVICE_FIELDS = (
    "index", "name", "uuid", "pci_bus_id", "numa_node",
    "memory_total_mib", "memory_used_mib", "memory_free_mib",
    "compute_capability",
    "ecc_mode_current", "ecc_mode_pending",
    "ecc_uncorrectable_volatile", "ecc_uncorrectable_aggregate",
    "remapped_rows_correctable", "remapped_rows_uncorrectable",
    "remapped_rows_pending", "remapped_rows_failure",
    "persistence_mode", "mig_mode_current", "mig_mode_pending",
    "power_limit_w", "temperature_c",
    "pcie_gen_current", "pcie_gen_max", "pcie_width_current", "pcie_width_max",
    "nvlink_links_up", "nvlink_links_total", "nvlink_to_nvswitch",
    "error",
)

INIT_HINTS = {
    "NVMLError_LibraryNotFound": "libnvidia-ml.so.1 was not found: install the NVIDIA driver (nvidia_driver role)",
    "NVMLError_DriverNotLoaded": (
        "the NVIDIA kernel module is not loaded: check 'lsmod | grep nvidia' and dmesg, reboot after a driver install"),
    "NVMLError_NoPermission": "no permission to open /dev/nvidia*: run as root or add the user to the video group",
    "NVMLError_LibRmVersionMismatch": (
        "the NVIDIA library and kernel module versions differ: reboot to load the new kernel module"),
}


def to_text(value):
    """Decode bytes from old bindings; leave everything else alone."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def enabled(value):
    """NVML enable state (0/1) to a bool; None stays None."""
    if value is None:
        return None
    return bool(value)


def cuda_version_text(value):
    """13000 -> '13.0', 12040 -> '12.4'."""
    if value is None:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def sysfs_pci_address(bus_id):
    """NVML's '00000000:18:00.0' -> sysfs '0000:18:00.0' (4-digit domain, lower case)."""
    domain, rest = bus_id.split(":", 1)
    return (f"{domain[-4:]}:{rest}").lower()


class GpuLost(Exception):
    """Raised inside the probe when NVML says a GPU fell off the bus."""


class NvmlProbe:
    """Collects ``ansible_facts.gpu`` through an NVML binding.

    ``lib`` is the binding module (``pynvml`` by default); ``sysfs_root`` is
    where ``bus/pci/devices/<address>/numa_node`` lives.
    """

    def __init__(self, lib=None, sysfs_root="/sys"):
        self.lib = lib if lib is not None else pynvml
        self.sysfs_root = sysfs_root

    # -- the public entry point -------------------------------------------

    def collect(self):
        if self.lib is None:
            return empty_result("the Python package nvidia-ml-py (module pynvml) is not installed on this host")
        try:
            self.lib.nvmlInit()
        except self.lib.NVMLError as err:
            return empty_result(self._init_reason(err))
        try:
            return self._collect_initialised()
        finally:
            self._shutdown()

    # -- helpers around the binding --------------------------------------

    def _is_gpu_lost(self, err):
        return getattr(err, "value", None) == getattr(self.lib, "NVML_ERROR_GPU_IS_LOST", 15)

    def _query(self, name, *args):
        """Call an optional NVML function: unsupported or failing -> None.

        A lost GPU is not a missing field; it raises ``GpuLost`` so the whole
        device is reported with an error instead.
        """
        func = getattr(self.lib, name, None)
        if func is None:
            return None
        try:
            return func(*args)
        except self.lib.NVMLError as err:
            if self._is_gpu_lost(err):
                raise GpuLost(str(err)) from err
            return None

    def _init_reason(self, err):
        hint = INIT_HINTS.get(type(err).__name__)
        text = f"NVML could not start ({err})"
        return f"{text}: {hint}" if hint else text

    def _shutdown(self):
        try:
            self.lib.nvmlShutdown()
        except self.lib.NVMLError:
            pass

    # -- system ------------------------------------------------------------

    def _collect_initialised(self):
        try:
            count = self.lib.nvmlDeviceGetCount()
        except self.lib.NVMLError as err:
            return empty_result(f"NVML could not count the GPUs ({err})")
        result = empty_result("NVML found no NVIDIA GPU on this host" if count == 0 else None)
        result.update(self._system())
        handles = {}
        for index in range(count):
            device, handle = self._device(index)
            result["devices"].append(device)
            if handle is not None:
                handles[index] = handle
        result["count"] = count
        result["topology"] = self._topology(handles)
        result["nvswitch"] = nvswitch_present(result["devices"])
        result["fabric_manager_required"] = result["nvswitch"]
        return result

    def _system(self):
        return {
            "driver_version": to_text(self._query("nvmlSystemGetDriverVersion")),
            "cuda_driver_version": cuda_version_text(self._query("nvmlSystemGetCudaDriverVersion")),
            "nvml_version": to_text(self._query("nvmlSystemGetNVMLVersion")),
        }

    # -- one device --------------------------------------------------------

    def _device(self, index):
        """Return (facts, handle); handle is None when the GPU cannot be used."""
        device = dict.fromkeys(DEVICE_FIELDS)
        device["index"] = index
        try:
            handle = self.lib.nvmlDeviceGetHandleByIndex(index)
        except self.lib.NVMLError as err:
            device["error"] = self._device_error(index, err, self._is_gpu_lost(err))
            return device, None
        try:
            for part in (self._identity, self._memory, self._health, self._modes, self._links):
                device.update(part(handle))
        except GpuLost as err:
            device["error"] = self._device_error(index, err, True)
            return device, None
        return device, handle

    @staticmethod
    def _device_error(index, err, lost):
        if lost:
            return f"GPU {index} is lost ({err}): look for Xid 79 in dmesg, then reset, reseat or replace the GPU"
        return f"GPU {index} could not be opened ({err})"

    def _identity(self, handle):
        pci = self._query("nvmlDeviceGetPciInfo", handle)
        bus_id = to_text(getattr(pci, "busId", None)) if pci is not None else None
        capability = self._query("nvmlDeviceGetCudaComputeCapability", handle)
        return {
            "name": to_text(self._query("nvmlDeviceGetName", handle)),
            "uuid": to_text(self._query("nvmlDeviceGetUUID", handle)),
            "pci_bus_id": bus_id,
            "numa_node": self._numa_node(bus_id),
            "compute_capability": f"{capability[0]}.{capability[1]}" if capability else None,
        }

    def _memory(self, handle):
        info = self._query("nvmlDeviceGetMemoryInfo", handle)
        if info is None:
            return {}
        return {
            "memory_total_mib": info.total // MIB,
            "memory_used_mib": info.used // MIB,
            "memory_free_mib": info.free // MIB,
        }

    def _health(self, handle):
        lib = self.lib
        uncorrected = getattr(lib, "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", 1)
        facts = {
            "ecc_uncorrectable_volatile": self._query(
                "nvmlDeviceGetTotalEccErrors", handle, uncorrected, getattr(lib, "NVML_VOLATILE_ECC", 0)),
            "ecc_uncorrectable_aggregate": self._query(
                "nvmlDeviceGetTotalEccErrors", handle, uncorrected, getattr(lib, "NVML_AGGREGATE_ECC", 1)),
            "temperature_c": self._query("nvmlDeviceGetTemperature", handle, getattr(lib, "NVML_TEMPERATURE_GPU", 0)),
        }
        rows = self._query("nvmlDeviceGetRemappedRows", handle)
        if rows is not None:
            correctable, uncorrectable, pending, failure = rows
            facts.update({
                "remapped_rows_correctable": correctable,
                "remapped_rows_uncorrectable": uncorrectable,
                "remapped_rows_pending": bool(pending),
                "remapped_rows_failure": bool(failure),
            })
        return facts

    def _modes(self, handle):
        ecc = self._query("nvmlDeviceGetEccMode", handle) or (None, None)
        mig = self._query("nvmlDeviceGetMigMode", handle) or (None, None)
        power_mw = self._query("nvmlDeviceGetEnforcedPowerLimit", handle)
        return {
            "ecc_mode_current": enabled(ecc[0]),
            "ecc_mode_pending": enabled(ecc[1]),
            "mig_mode_current": enabled(mig[0]),
            "mig_mode_pending": enabled(mig[1]),
            "persistence_mode": enabled(self._query("nvmlDeviceGetPersistenceMode", handle)),
            "power_limit_w": round(power_mw / 1000.0, 2) if power_mw is not None else None,
        }

    def _links(self, handle):
        facts = {
            "pcie_gen_current": self._query("nvmlDeviceGetCurrPcieLinkGeneration", handle),
            "pcie_gen_max": self._query("nvmlDeviceGetMaxPcieLinkGeneration", handle),
            "pcie_width_current": self._query("nvmlDeviceGetCurrPcieLinkWidth", handle),
            "pcie_width_max": self._query("nvmlDeviceGetMaxPcieLinkWidth", handle),
        }
        facts.update(self._nvlinks(handle))
        return facts

    def _nvlinks(self, handle):
        """Count the links the GPU has (those that answer) and those that are up."""
        max_links = getattr(self.lib, "NVML_NVLINK_MAX_LINKS", DEFAULT_MAX_NVLINKS)
        total = up = 0
        to_switch = None
        for link in range(max_links):
            state = self._query("nvmlDeviceGetNvLinkState", handle, link)
            if state is None:
                continue
            total += 1
            if state:
                up += 1
                if to_switch is None:
                    remote = self._query("nvmlDeviceGetNvLinkRemoteDeviceType", handle, link)
                    to_switch = None if remote is None else remote == NVLINK_DEVICE_TYPE_SWITCH
        return {"nvlink_links_total": total, "nvlink_links_up": up, "nvlink_to_nvswitch": to_switch}

    def _numa_node(self, bus_id):
        if not bus_id:
            return None
        path = os.path.join(self.sysfs_root, "bus", "pci", "devices", sysfs_pci_address(bus_id), "numa_node")
        try:
            with open(path) as handle:
                node = int(handle.read().strip())
        except (OSError, ValueError):
            return None
        return node if node >= 0 else None

    # -- pairs -------------------------------------------------------------

    def _topology(self, handles):
        pairs = []
        indices = sorted(handles)
        for pos, first in enumerate(indices):
            for second in indices[pos + 1:]:
                try:
                    level = self._query("nvmlDeviceGetTopologyCommonAncestor", handles[first], handles[second])
                except GpuLost:
                    level = None
                pairs.append({"gpu_a": first, "gpu_b": second, "level": TOPOLOGY_LEVELS.get(level)})
        return pairs


def nvswitch_present(devices):
    """Whether the GPUs talk through NVSwitch (and so need nvidia-fabricmanager).

    True when an active NVLink ends at a switch, False when no GPU has any
    NVLink at all, None when it cannot be told (links present but none up, as
    on an NVSwitch board before fabric manager has trained them).
    """
    usable = [device for device in devices if not device["error"]]
    if any(device["nvlink_to_nvswitch"] for device in usable):
        return True
    if usable and all(device["nvlink_links_total"] == 0 for device in usable):
        return False
    if usable and all(device["nvlink_to_nvswitch"] is False for device in usable):
        return False
    return None


def empty_result(reason):
    return {
        "count": 0,
        "reason": reason,
        "driver_version": None,
        "cuda_driver_version": None,
        "nvml_version": None,
        "devices": [],
        "topology": [],
        "nvswitch": None,
        "fabric_manager_required": None,
    }
