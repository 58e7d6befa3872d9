# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_driver_facts
short_description: Find the NVIDIA driver, GPUs, NVSwitches and boot state of a host and judge a driver pin
description:
  - Lists the NVIDIA GPUs (PCI vendor C(0x10de), display class C(0x03xx)) and NVSwitches (PCI class C(0x0680))
    from sysfs, with or without a driver.
  - Finds the installed driver version through NVML, then C(nvidia-smi), then C(/proc/driver/nvidia/version), and
    reads the version of the C(nvidia) kernel module on disk (C(modinfo)). When the module on disk differs from
    the running driver, the one on disk is judged (it is what the next boot runs) and a reboot is reported pending.
  - Judges the driver against a pin (a branch, an exact version and/or a minimum), comparing versions as numbers.
  - Decides whether every GPU supports the open kernel modules (Turing or newer), reads the Secure Boot state
    (C(mokutil --sb-state), else the EFI variable) and whether C(nouveau) is loaded.
  - Read-only; it changes nothing on the host.
author:
  - onprem.deepseek maintainers (@onprem)
requirements:
  - nvidia-ml-py on the managed host for the NVML reading (optional; without it C(nvidia-smi) and C(/proc) are read)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  branch:
    description:
      - Driver branch the host must run, the major version only (V(580)). Empty for any branch.
    type: str
  version:
    description:
      - Exact driver version the host must run (V(580.95.05)). Must lie on O(branch) when both are set.
    type: str
  min_version:
    description:
      - Oldest driver version accepted (V(580.95) or V(580.95.05)).
    type: str
  use_nvml:
    description:
      - Read the driver version through NVML when a GPU is on the bus. V(false) goes straight to C(nvidia-smi).
    type: bool
    default: true
  sysfs_root:
    description:
      - Where sysfs is mounted. Change it only to read a copied or rehearsal tree.
    type: path
    default: /sys
  proc_root:
    description:
      - Where procfs is mounted. Change it only to read a copied or rehearsal tree.
    type: path
    default: /proc
notes:
  - A pin that no driver can satisfy (bad syntax, an exact version off the branch) fails with the reason.
  - NVSwitch detection needs no driver, so the role can decide to install C(nvidia-fabricmanager) before the
    first driver install.
seealso:
  - module: onprem.deepseek.gpu_facts
"""

EXAMPLES = r"""
- name: Find the driver and judge it against branch 580
  onprem.deepseek.nvidia_driver_facts:
    branch: "580"
  register: driver

- name: Say whether the host needs a driver install
  ansible.builtin.debug:
    msg: "{{ driver.pin_reason }} (found through {{ driver.version_source }})"

- name: Require an exact version
  onprem.deepseek.nvidia_driver_facts:
    version: "580.95.05"

- name: Accept any driver from 580.65 on
  onprem.deepseek.nvidia_driver_facts:
    min_version: "580.65"
"""

RETURN = r"""
gpu_count:
  description: NVIDIA GPUs on the PCI bus.
  returned: always
  type: int
  sample: 8
gpus:
  description: One entry per GPU, in PCI address order.
  returned: always
  type: list
  elements: dict
  contains:
    address: {description: PCI address in sysfs form., type: str, sample: "0000:18:00.0"}
    pci_id: {description: Vendor and device id., type: str, sample: "10de:2330"}
    device_id: {description: PCI device id., type: str, sample: "0x2330"}
    class: {description: PCI class code., type: str, sample: "0x030200"}
    driver: {description: "Kernel driver bound to the device, or V(null).", type: str, sample: nvidia}
    compute_capability: {description: "From NVML when it could be read, else V(null).", type: str, sample: "9.0"}
    open_modules_supported:
      description: Whether this GPU can run the open kernel modules (Turing or newer).
      type: bool
      sample: true
  sample: [{"address": "0000:18:00.0", "pci_id": "10de:2330", "device_id": "0x2330", "class": "0x030200",
            "driver": "nvidia", "compute_capability": "9.0", "open_modules_supported": true}]
nvswitch_count:
  description: NVSwitch chips on the PCI bus (4 on an HGX H100 8-GPU board, 0 on PCIe servers).
  returned: always
  type: int
  sample: 4
nvswitches:
  description: PCI addresses of the NVSwitches.
  returned: always
  type: list
  elements: str
  sample: ["0000:05:00.0", "0000:06:00.0", "0000:07:00.0", "0000:08:00.0"]
open_modules_supported:
  description:
    - V(true) when every GPU supports the open kernel modules, V(false) when one does not, V(null) without GPUs.
  returned: always
  type: bool
  sample: true
installed_version:
  description: The driver version judged against the pin; V(null) when no driver was found.
  returned: always
  type: str
  sample: "580.159.04"
version_source:
  description: Where RV(installed_version) came from; V(nvml), V(nvidia-smi), V(proc) or V(modinfo).
  returned: always
  type: str
  sample: nvml
loaded_version:
  description: The driver running now (NVML, C(nvidia-smi) or C(/proc)); V(null) when none is loaded.
  returned: always
  type: str
  sample: "580.159.04"
module_version:
  description: Version of the C(nvidia) kernel module on disk for the running kernel (C(modinfo)).
  returned: always
  type: str
  sample: "580.159.04"
kernel_module_flavor:
  description: V(open) or V(proprietary) for the loaded kernel module, V(null) when none is loaded.
  returned: always
  type: str
  sample: open
pin:
  description: The pin in words.
  returned: always
  type: str
  sample: branch 580
pin_branch:
  description: The branch a package install targets (from O(branch) or O(version)); V(null) for no pin.
  returned: always
  type: int
  sample: 580
pin_satisfied:
  description: Whether the installed driver satisfies every part of the pin.
  returned: always
  type: bool
  sample: true
pin_reason:
  description: Why the pin is or is not satisfied.
  returned: always
  type: str
  sample: "driver 580.159.04 satisfies the pin (branch 580)"
secure_boot:
  description: V(enabled), V(disabled), V(unsupported) (no EFI firmware) or V(unknown).
  returned: always
  type: str
  sample: disabled
secure_boot_source:
  description: V(mokutil), V(efivars) or V(sysfs); V(null) when the state is unknown.
  returned: always
  type: str
  sample: mokutil
nouveau_loaded:
  description: Whether the nouveau kernel module is loaded.
  returned: always
  type: bool
  sample: false
reboot_pending:
  description: Whether a reboot is needed for the installed driver to run.
  returned: always
  type: bool
  sample: false
reboot_reasons:
  description: Why a reboot is needed.
  returned: always
  type: list
  elements: str
  sample: []
findings:
  description: What each source said, in the order they were read.
  returned: always
  type: list
  elements: str
  sample: ["NVML reports driver 580.159.04", "the loaded kernel module is 580.159.04 (open)"]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.onprem.deepseek.plugins.module_utils._driver import (
    DriverPin,
    PinError,
    inspect_host,
)
from ansible_collections.onprem.deepseek.plugins.module_utils._nvml import NvmlProbe

SBIN = ["/sbin", "/usr/sbin", "/usr/bin", "/bin"]


def run_module(module, probe_factory=None):
    params = module.params
    try:
        pin = DriverPin(branch=params["branch"], version=params["version"], min_version=params["min_version"])
    except PinError as err:
        module.fail_json(msg=f"The driver pin cannot be met: {err}.")

    module.run_command_environ_update = {"LANG": "C", "LC_ALL": "C"}

    def run(argv):
        return module.run_command(argv)

    def read_nvml():
        return (probe_factory or NvmlProbe)(sysfs_root=params["sysfs_root"]).collect()

    result = inspect_host(
        pin,
        sysfs_root=params["sysfs_root"],
        proc_root=params["proc_root"],
        nvml=read_nvml if params["use_nvml"] else None,
        run=run,
        nvidia_smi=module.get_bin_path("nvidia-smi"),
        modinfo=module.get_bin_path("modinfo", opt_dirs=SBIN),
        mokutil=module.get_bin_path("mokutil", opt_dirs=SBIN),
    )
    module.exit_json(changed=False, **result)


def main():
    module = AnsibleModule(
        argument_spec={
            "branch": {"type": "str"},
            "version": {"type": "str"},
            "min_version": {"type": "str"},
            "use_nvml": {"type": "bool", "default": True},
            "sysfs_root": {"type": "path", "default": "/sys"},
            "proc_root": {"type": "path", "default": "/proc"},
        },
        supports_check_mode=True,
    )
    run_module(module)


if __name__ == "__main__":
    main()
