# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test double for the ``pynvml`` module of nvidia-ml-py.

``FakeNvml`` carries the same function names, constants and error classes as
pynvml 13.x (test_nvml.py checks that against the real binding when it is
installed) and answers from GPU profiles built from real hardware:

* ``h100()``        NVIDIA H100 80GB HBM3: 81559 MiB, compute 9.0, PCIe gen 5 x16, 700 W,
                    driver 580.159.04 / CUDA 13000 (seen on a real host, DEEPSEEK.md).
* ``hgx_h100()``    8 of them on an HGX board: 18 NVLinks each to NVSwitch, GPUs 0-3 on NUMA 0, 4-7 on NUMA 1
                    (DGX H100 bus ids 18, 2a, 3a, 5d, 9a, ab, ba, db).
* ``a100_mig()``    NVIDIA A100-SXM4-80GB (81920 MiB, compute 8.0, PCIe gen 4, 400 W, 12 NVLinks) with MIG on.
* ``a100_faulty()`` NVIDIA A100-SXM4-40GB with uncorrectable ECC errors, a failed row remap,
                    a link trained down to gen 3 x8 and 2 of 12 NVLinks down.
* ``v100_old()``    Tesla V100-SXM2-32GB on driver 470 behind an 11.x binding that returns bytes,
                    has no MIG and no row remapping (NotSupported), 6 NVLinks to other GPUs.

A profile value ``NOT_SUPPORTED`` makes the call raise ``NVMLError_NotSupported``;
an ``NVMLError`` instance as a value is raised as it is.
"""

from __future__ import annotations

from types import SimpleNamespace

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_UNKNOWN = 999

# Same texts as pynvml's NVMLError._errcode_to_string.
ERROR_STRINGS = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}

NVML_FEATURE_DISABLED = 0
NVML_FEATURE_ENABLED = 1
NVML_TEMPERATURE_GPU = 0
NVML_VOLATILE_ECC = 0
NVML_AGGREGATE_ECC = 1
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_NVLINK_MAX_LINKS = 36
NVML_NVLINK_DEVICE_TYPE_GPU = 0x00
NVML_NVLINK_DEVICE_TYPE_SWITCH = 0x02
NVML_TOPOLOGY_INTERNAL = 0
NVML_TOPOLOGY_SINGLE = 10
NVML_TOPOLOGY_MULTIPLE = 20
NVML_TOPOLOGY_HOSTBRIDGE = 30
NVML_TOPOLOGY_NODE = 40
NVML_TOPOLOGY_SYSTEM = 50

MIB = 1024 * 1024


_VALUE_CLASS = {}  # error code -> NVMLError subclass, filled by _error_class()


class NVMLError(Exception):
    """Like pynvml: NVMLError(code) builds the subclass for that code."""

    code = None

    def __new__(cls, value=None):
        target = _VALUE_CLASS.get(value, NVMLError) if cls is NVMLError else cls
        obj = Exception.__new__(target)
        obj.value = value if value is not None else target.code
        return obj

    def __init__(self, value=None):
        super().__init__()

    def __str__(self):
        return ERROR_STRINGS.get(self.value, f"NVML Error with code {self.value}")


def _error_class(name, code):
    cls = type(name, (NVMLError,), {"code": code})
    _VALUE_CLASS[code] = cls
    return cls


NVMLError_Uninitialized = _error_class("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_InvalidArgument = _error_class("NVMLError_InvalidArgument", NVML_ERROR_INVALID_ARGUMENT)
NVMLError_NotSupported = _error_class("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NoPermission = _error_class("NVMLError_NoPermission", NVML_ERROR_NO_PERMISSION)
NVMLError_DriverNotLoaded = _error_class("NVMLError_DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED)
NVMLError_LibraryNotFound = _error_class("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_FunctionNotFound = _error_class("NVMLError_FunctionNotFound", NVML_ERROR_FUNCTION_NOT_FOUND)
NVMLError_GpuIsLost = _error_class("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_LibRmVersionMismatch = _error_class("NVMLError_LibRmVersionMismatch", NVML_ERROR_LIB_RM_VERSION_MISMATCH)
NVMLError_Unknown = _error_class("NVMLError_Unknown", NVML_ERROR_UNKNOWN)

NOT_SUPPORTED = NVMLError_NotSupported()


# -- GPU profiles -------------------------------------------------------------------

def memory(total_mib, used_mib):
    return {"total": total_mib * MIB, "used": used_mib * MIB, "free": (total_mib - used_mib) * MIB}


def h100(index=0, bus="18", numa=0, **overrides):
    gpu = {
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": f"GPU-6b1e4c2a-9f0d-4e57-8a31-0c5d7e2f{index:04d}",
        "bus_id": f"00000000:{bus.upper()}:00.0",
        "numa": numa,
        "memory": memory(81559, 558),
        "compute_capability": (9, 0),
        "ecc_mode": [1, 1],
        "ecc_errors": {(NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC): 0,
                       (NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_AGGREGATE_ECC): 0},
        "remapped_rows": (0, 0, 0, 0),
        "persistence": 1,
        "mig": [0, 0],
        "power_mw": 700000,
        "temperature": 33,
        "pcie": {"gen": 5, "gen_max": 5, "width": 16, "width_max": 16},
        "nvlinks": NOT_SUPPORTED,
        "nvlink_remote": NOT_SUPPORTED,
        "lost": None,
    }
    gpu.update(overrides)
    return gpu


HGX_BUSES = ("18", "2a", "3a", "5d", "9a", "ab", "ba", "db")


def hgx_h100():
    return [h100(i, bus, numa=0 if i < 4 else 1, nvlinks=[1] * 18, nvlink_remote=NVML_NVLINK_DEVICE_TYPE_SWITCH)
            for i, bus in enumerate(HGX_BUSES)]


def a100_mig():
    return [h100(0, "07", numa=0, name="NVIDIA A100-SXM4-80GB", memory=memory(81920, 0),
                 compute_capability=(8, 0), mig=[1, 1], power_mw=400000,
                 pcie={"gen": 4, "gen_max": 4, "width": 16, "width_max": 16},
                 nvlinks=[1] * 12, nvlink_remote=NVML_NVLINK_DEVICE_TYPE_SWITCH)]


def a100_faulty():
    errors = {(NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC): 2,
              (NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_AGGREGATE_ECC): 7}
    return [h100(0, "4e", numa=1, name="NVIDIA A100-SXM4-40GB", memory=memory(40960, 3),
                 compute_capability=(8, 0), ecc_errors=errors, remapped_rows=(3, 2, 1, 1), power_mw=400000,
                 pcie={"gen": 3, "gen_max": 4, "width": 8, "width_max": 16},
                 nvlinks=[1] * 10 + [0] * 2, nvlink_remote=NVML_NVLINK_DEVICE_TYPE_SWITCH)]


def v100_old():
    return [h100(0, "1a", numa=0, name="Tesla V100-SXM2-32GB", memory=memory(32768, 0),
                 compute_capability=(7, 0), mig=NOT_SUPPORTED, remapped_rows=NOT_SUPPORTED, power_mw=300000,
                 pcie={"gen": 3, "gen_max": 3, "width": 16, "width_max": 16},
                 nvlinks=[1] * 6, nvlink_remote=NVML_NVLINK_DEVICE_TYPE_GPU)]


# -- the binding ----------------------------------------------------------------------

class FakeHandle:
    def __init__(self, index):
        self.index = index


class FakeNvml:
    """Stands in for the pynvml module. ``missing`` names functions this binding lacks."""

    NVMLError = NVMLError

    def __init__(self, gpus, driver="580.159.04", cuda=13000, nvml="13.580.159.04", init_error=None,
                 as_bytes=False, max_links=NVML_NVLINK_MAX_LINKS, missing=(), failing=None):
        self.gpus = gpus
        self.driver = driver
        self.cuda = cuda
        self.nvml = nvml
        self.init_error = init_error
        self.as_bytes = as_bytes
        self.NVML_NVLINK_MAX_LINKS = max_links
        self.missing = set(missing)
        self.failing = failing or {}  # function name -> NVMLError raised for every GPU
        self.calls = []

    def __getattribute__(self, name):
        if name.startswith("nvml") and name in object.__getattribute__(self, "missing"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    def __getattr__(self, name):
        # constants and error classes of this module (NVML_*, NVMLError_*)
        if name.startswith(("NVML_", "NVMLError_")) and name in globals():
            return globals()[name]
        raise AttributeError(name)

    # -- helpers --
    def _text(self, value):
        return value.encode() if self.as_bytes else value

    def _gpu(self, handle, call):
        self.calls.append(call)
        if call in self.failing:
            raise self.failing[call]
        gpu = self.gpus[handle.index]
        if gpu["lost"] == "query":
            raise NVMLError_GpuIsLost()
        return gpu

    @staticmethod
    def _answer(value):
        if isinstance(value, NVMLError):
            raise value
        return value

    # -- library and system --
    def nvmlInit(self):
        self.calls.append("nvmlInit")
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self):
        self.calls.append("nvmlShutdown")

    def nvmlSystemGetDriverVersion(self):
        return self._text(self.driver)

    def nvmlSystemGetCudaDriverVersion(self):
        return self.cuda

    def nvmlSystemGetNVMLVersion(self):
        return self._text(self.nvml)

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        if self.gpus[index]["lost"] == "handle":
            raise NVMLError_GpuIsLost()
        return FakeHandle(index)

    # -- one device --
    def nvmlDeviceGetName(self, handle):
        return self._text(self._gpu(handle, "nvmlDeviceGetName")["name"])

    def nvmlDeviceGetUUID(self, handle):
        return self._text(self._gpu(handle, "nvmlDeviceGetUUID")["uuid"])

    def nvmlDeviceGetPciInfo(self, handle):
        bus_id = self._gpu(handle, "nvmlDeviceGetPciInfo")["bus_id"]
        return SimpleNamespace(busId=self._text(bus_id), busIdLegacy=self._text(bus_id[4:]),
                               domain=0, bus=int(bus_id.split(":")[1], 16), device=0)

    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        return SimpleNamespace(**self._gpu(handle, "nvmlDeviceGetMemoryInfo")["memory"])

    def nvmlDeviceGetCudaComputeCapability(self, handle):
        return self._answer(self._gpu(handle, "nvmlDeviceGetCudaComputeCapability")["compute_capability"])

    def nvmlDeviceGetEccMode(self, handle):
        return self._answer(self._gpu(handle, "nvmlDeviceGetEccMode")["ecc_mode"])

    def nvmlDeviceGetTotalEccErrors(self, handle, error_type, counter_type):
        return self._gpu(handle, "nvmlDeviceGetTotalEccErrors")["ecc_errors"][(error_type, counter_type)]

    def nvmlDeviceGetRemappedRows(self, handle):
        return self._answer(self._gpu(handle, "nvmlDeviceGetRemappedRows")["remapped_rows"])

    def nvmlDeviceGetPersistenceMode(self, handle):
        return self._answer(self._gpu(handle, "nvmlDeviceGetPersistenceMode")["persistence"])

    def nvmlDeviceGetMigMode(self, handle):
        return self._answer(self._gpu(handle, "nvmlDeviceGetMigMode")["mig"])

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return self._answer(self._gpu(handle, "nvmlDeviceGetEnforcedPowerLimit")["power_mw"])

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return self._answer(self._gpu(handle, "nvmlDeviceGetTemperature")["temperature"])

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle):
        return self._gpu(handle, "nvmlDeviceGetCurrPcieLinkGeneration")["pcie"]["gen"]

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle):
        return self._gpu(handle, "nvmlDeviceGetMaxPcieLinkGeneration")["pcie"]["gen_max"]

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle):
        return self._gpu(handle, "nvmlDeviceGetCurrPcieLinkWidth")["pcie"]["width"]

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle):
        return self._gpu(handle, "nvmlDeviceGetMaxPcieLinkWidth")["pcie"]["width_max"]

    def nvmlDeviceGetNvLinkState(self, handle, link):
        links = self._answer(self._gpu(handle, "nvmlDeviceGetNvLinkState")["nvlinks"])
        if link >= len(links):
            raise NVMLError_InvalidArgument()
        return links[link]

    def nvmlDeviceGetNvLinkRemoteDeviceType(self, handle, link):
        return self._answer(self._gpu(handle, "nvmlDeviceGetNvLinkRemoteDeviceType")["nvlink_remote"])

    def nvmlDeviceGetTopologyCommonAncestor(self, first, second):
        numa_a = self._gpu(first, "nvmlDeviceGetTopologyCommonAncestor")["numa"]
        numa_b = self._gpu(second, "nvmlDeviceGetTopologyCommonAncestor")["numa"]
        return NVML_TOPOLOGY_NODE if numa_a == numa_b else NVML_TOPOLOGY_SYSTEM


FUNCTIONS = sorted(name for name in vars(FakeNvml) if name.startswith("nvml"))
CONSTANTS = sorted(name for name in globals() if name.startswith("NVML_"))
ERROR_CLASSES = sorted(name for name in globals() if name.startswith("NVMLError_"))
