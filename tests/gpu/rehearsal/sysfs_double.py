# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TEST DOUBLE for the PCI bus in /sys, for rehearsing tests/gpu on a machine without a GPU.

Writes a sysfs tree (bus/pci/devices/<address>/{vendor,device,class}) holding the GPUs of the fake NVML
profile named by $REHEARSAL_PROFILE (default hgx_h100), at the same bus ids, plus the four NVSwitches of an HGX
H100 board when the profile's NVLinks end at switches. The nvidia_driver role reads it through
nvidia_driver_sysfs_root. Never on a real GPU host.
    python3 tests/gpu/rehearsal/sysfs_double.py <directory>
"""

from __future__ import annotations

import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_FAKES = os.path.join(_HERE, "..", "..", "unit", "plugins", "module_utils")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(_FAKES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# PCI device ids of the profiles' boards (lspci -nn)
DEVICE_IDS = {"H100 80GB HBM3": 0x2330, "A100-SXM4-80GB": 0x20B2, "A100-SXM4-40GB": 0x20B0, "V100-SXM2-32GB": 0x1DB1}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    fake_nvml, fake_sysfs = _load("fake_pynvml"), _load("fake_sysfs")
    gpus = getattr(fake_nvml, os.environ.get("REHEARSAL_PROFILE", "hgx_h100"))()
    gpus = gpus if isinstance(gpus, list) else [gpus]
    machine = []
    for gpu in gpus:
        device = next(value for key, value in DEVICE_IDS.items() if key in gpu["name"])
        machine.append((gpu["bus_id"][4:].lower(), 0x10DE, device, 0x030200, "nvidia"))
    if any(gpu["nvlink_remote"] == fake_nvml.NVML_NVLINK_DEVICE_TYPE_SWITCH for gpu in gpus):
        machine += [(f"0000:{n:02x}:00.0", 0x10DE, 0x22A3, 0x068000, None) for n in (5, 6, 7, 8)]
    fake_sysfs.write_tree(sys.argv[1], machine)
    print(os.path.join(sys.argv[1], "sys"))


if __name__ == "__main__":
    main()
