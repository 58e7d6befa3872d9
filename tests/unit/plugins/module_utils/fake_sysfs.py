# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test double for the host's /sys and /proc: trees written into a temporary directory, in the kernel's shapes.

Each PCI device is a directory ``bus/pci/devices/<address>`` with ``vendor``, ``device`` and ``class`` files as
the kernel writes them (``0x10de\\n``, ``0x2330\\n``, ``0x030200\\n``) and, when a driver is bound, a ``driver``
symlink into ``bus/pci/drivers/<name>``. The machine profiles follow real ``lspci -nn`` listings:

* ``HGX_H100``  8 x H100 SXM5 (10de:2330, 3D controller) at the DGX H100 bus ids, 4 x third-generation NVSwitch
                (10de:22a3, class 0x068000, "Bridge: NVIDIA Corporation Device 22a3"), ConnectX-7 NICs, Broadcom
                PCIe switches, the ASPEED BMC VGA (1a03:2000) that must not count as a GPU.
* ``HGX_A100``  8 x A100 SXM4 (10de:20b2) and 6 x second-generation NVSwitch (10de:1af1).
* ``PCIE_L40S`` 2 x L40S (10de:26b9) in PCIe slots, no NVSwitch.
* ``PASCAL``    1 x Tesla P100 PCIe 16GB (10de:15f8): too old for the open kernel modules.
* ``MIXED``     a Tesla T4 (10de:1eb8, Turing, the oldest open-module GPU) beside a V100 PCIe 32GB (10de:1db6).
* ``NO_GPU``    a server with only the BMC's VGA and a NIC.
"""

from __future__ import annotations

import os

H100_BUSES = ("18", "2a", "3a", "5d", "9a", "ab", "ba", "db")

# (address, vendor, device, class, bound driver)
_BASE = [
    ("0000:00:00.0", 0x8086, 0x09A2, 0x060000, None),           # Intel host bridge
    ("0000:03:00.0", 0x1A03, 0x2000, 0x030000, "ast"),          # ASPEED BMC VGA: display class, not NVIDIA
]

HGX_H100 = _BASE + [
    (f"0000:{bus}:00.0", 0x10DE, 0x2330, 0x030200, "nvidia") for bus in H100_BUSES
] + [
    (f"0000:{n:02x}:00.0", 0x10DE, 0x22A3, 0x068000, None) for n in (5, 6, 7, 8)   # NVSwitch, no PCI driver
] + [
    ("0000:15:00.0", 0x1000, 0xC030, 0x060400, "pcieport"),     # Broadcom PEX PCIe switch
    ("0000:29:00.0", 0x15B3, 0x1021, 0x020700, "mlx5_core"),    # ConnectX-7 (InfiniBand)
]

HGX_A100 = _BASE + [
    (f"0000:{bus}:00.0", 0x10DE, 0x20B2, 0x030200, "nvidia") for bus in ("07", "0f", "47", "4e", "87", "90", "b7", "bd")
] + [
    (f"0000:{n:02x}:00.0", 0x10DE, 0x1AF1, 0x068000, None) for n in (0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9)
]

PCIE_L40S = [
    *_BASE,
    ("0000:41:00.0", 0x10DE, 0x26B9, 0x030200, None),
    ("0000:c1:00.0", 0x10DE, 0x26B9, 0x030200, None),
]

PASCAL = [
    *_BASE,
    ("0000:3b:00.0", 0x10DE, 0x15F8, 0x030200, "nouveau"),
]

MIXED = [
    *_BASE,
    ("0000:3b:00.0", 0x10DE, 0x1EB8, 0x030200, None),
    ("0000:5e:00.0", 0x10DE, 0x1DB6, 0x030200, None),
]

NO_GPU = [
    *_BASE,
    ("0000:29:00.0", 0x8086, 0x1593, 0x020000, "ice"),          # Intel E810 Ethernet
]

# EFI attributes (NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS) then the one data byte.
EFI_ATTRIBUTES = b"\x06\x00\x00\x00"
SECURE_BOOT_VAR = "SecureBoot-8be4df61-93ca-11d2-aa0d-e39a5a3d9e4e"

PROC_OPEN_580 = ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  "
                 "(dvs-builder@U16-I3-B03-4-3)  Thu Apr 23 22:11:03 UTC 2026\n"
                 "GCC version:  gcc version 13.3.0 (Ubuntu 13.3.0-6ubuntu2~24.04)\n")
PROC_PROPRIETARY_570 = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.124.06  Wed Feb 26 01:48:33 UTC 2025\n"
                        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
PROC_OPEN_AARCH64 = ("NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  580.95.05  Release Build  "
                     "(dvs-builder@U22-I3-AE18-23-3)  Tue Sep 23 09:55:41 UTC 2025\n")

MODULES_NVIDIA = ("nvidia_uvm 2076672 0 - Live 0x0000000000000000 (POE)\n"
                  "nvidia_drm 135168 0 - Live 0x0000000000000000 (POE)\n"
                  "nvidia 11640832 18 nvidia_uvm,nvidia_drm, Live 0x0000000000000000 (POE)\n"
                  "ast 110592 0 - Live 0x0000000000000000\n")
MODULES_NOUVEAU = ("nouveau 3096576 0 - Live 0x0000000000000000\n"
                   "drm_ttm_helper 16384 1 nouveau, Live 0x0000000000000000\n")


def write_tree(root, machine, secure_boot=None, proc_version=None, modules=""):
    """Write /sys and /proc of ``machine`` under root/sys and root/proc; return (sysfs_root, proc_root).

    ``secure_boot``: None (BIOS boot, no /sys/firmware/efi), 'enabled' or 'disabled' (the EFI variable), or
    'efi-without-variable' (EFI firmware that does not publish SecureBoot).
    """
    sysfs = os.path.join(root, "sys")
    proc = os.path.join(root, "proc")
    devices = os.path.join(sysfs, "bus", "pci", "devices")
    drivers = os.path.join(sysfs, "bus", "pci", "drivers")
    os.makedirs(devices, exist_ok=True)
    for address, vendor, device, klass, driver in machine:
        path = os.path.join(devices, address)
        os.makedirs(path)
        for name, value in (("vendor", f"0x{vendor:04x}"), ("device", f"0x{device:04x}"),
                            ("class", f"0x{klass:06x}"), ("numa_node", "-1")):
            with open(os.path.join(path, name), "w", encoding="ascii") as handle:
                handle.write(value + "\n")
        if driver:
            os.makedirs(os.path.join(drivers, driver), exist_ok=True)
            os.symlink(os.path.join("..", "..", "drivers", driver), os.path.join(path, "driver"))
    if secure_boot is not None:
        efivars = os.path.join(sysfs, "firmware", "efi", "efivars")
        os.makedirs(efivars)
        if secure_boot in ("enabled", "disabled"):
            with open(os.path.join(efivars, SECURE_BOOT_VAR), "wb") as handle:
                handle.write(EFI_ATTRIBUTES + (b"\x01" if secure_boot == "enabled" else b"\x00"))
    os.makedirs(proc, exist_ok=True)
    with open(os.path.join(proc, "modules"), "w", encoding="ascii") as handle:
        handle.write(modules)
    if proc_version is not None:
        os.makedirs(os.path.join(proc, "driver", "nvidia"))
        with open(os.path.join(proc, "driver", "nvidia", "version"), "w", encoding="ascii") as handle:
            handle.write(proc_version)
    return sysfs, proc
