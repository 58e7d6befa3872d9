# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Gather NVIDIA GPU facts through NVML
description:
  - Reads every NVIDIA GPU on the host through NVML (the C(nvidia-ml-py) binding) and returns them as
    C(ansible_facts.gpu) - identity, memory, compute capability, ECC and remapped-row health, persistence
    and MIG modes, power limit, temperature, PCIe and NVLink state, and the pairwise topology.
  - A host without the binding, without a loaded driver or without a GPU gets C(gpu.count=0) and a
    C(gpu.reason) instead of an error, unless O(required=true).
  - Fields that a GPU, driver or binding does not support are returned as V(null).
  - Read-only; it changes nothing on the host.
author:
  - onprem.deepseek maintainers (@onprem)
requirements:
  - nvidia-ml-py (the C(pynvml) module) on the managed host
  - an NVIDIA driver that provides C(libnvidia-ml.so.1)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    platforms: posix
options:
  required:
    description:
      - Fail when no GPU can be read (binding missing, NVML failed to start, or no GPU found),
        with the reason as the message.
      - When V(false), such a host returns C(gpu.count=0) and the reason.
    type: bool
    default: false
notes:
  - NUMA nodes come from C(/sys/bus/pci/devices/<address>/numa_node); V(-1) there is returned as V(null).
  - A GPU that fell off the bus is listed with its C(error) set; the other GPUs are still reported.
seealso:
  - module: onprem.deepseek.model_plan
"""

EXAMPLES = r"""
- name: Read the GPUs of the inference nodes
  onprem.deepseek.gpu_facts:

- name: Fail early on a node that should have GPUs
  onprem.deepseek.gpu_facts:
    required: true

- name: Show the model and memory of each GPU
  ansible.builtin.debug:
    msg: "GPU {{ item.index }}: {{ item.name }}, {{ item.memory_total_mib }} MiB"
  loop: "{{ ansible_facts.gpu.devices }}"

- name: Stop when an NVLink is down
  ansible.builtin.assert:
    that: item.nvlink_links_up == item.nvlink_links_total
    fail_msg: "GPU {{ item.index }} has {{ item.nvlink_links_up }}/{{ item.nvlink_links_total }} NVLinks up"
  loop: "{{ ansible_facts.gpu.devices }}"
  loop_control:
    label: "{{ item.index }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to C(ansible_facts).
  returned: always
  type: dict
  contains:
    gpu:
      description: The NVIDIA GPUs of the host.
      returned: always
      type: dict
      contains:
        count:
          description: Number of GPUs NVML reports (lost GPUs included); V(0) when none can be read.
          type: int
          sample: 8
        reason:
          description: Why no GPU could be read; V(null) when GPUs were read.
          type: str
          sample: "NVML could not start (Driver Not Loaded): the NVIDIA kernel module is not loaded"
        driver_version:
          description: NVIDIA driver version.
          type: str
          sample: "580.159.04"
        cuda_driver_version:
          description: Highest CUDA version the driver supports, as C(major.minor).
          type: str
          sample: "13.0"
        nvml_version:
          description: NVML library version.
          type: str
          sample: "13.580.159.04"
        nvswitch:
          description:
            - V(true) when the NVLinks end at NVSwitch chips (HGX boards), V(false) when the GPUs have no
              NVLink to a switch, V(null) when it cannot be told (for example links present but none up).
          type: bool
          sample: true
        fabric_manager_required:
          description: Whether C(nvidia-fabricmanager) must run for CUDA to use these GPUs (NVSwitch systems).
          type: bool
          sample: true
        topology:
          description: Closest common ancestor of each pair of GPUs, as NVML reports it.
          type: list
          elements: dict
          contains:
            gpu_a:
              description: Index of the first GPU.
              type: int
            gpu_b:
              description: Index of the second GPU.
              type: int
            level:
              description:
                - One of V(internal), V(single) (one PCIe switch), V(multiple) (several PCIe switches),
                  V(hostbridge), V(node) (same NUMA node), V(system) (across CPU sockets); V(null) if unknown.
              type: str
          sample: [{"gpu_a": 0, "gpu_b": 1, "level": "node"}]
        devices:
          description: One entry per GPU, in NVML index order.
          type: list
          elements: dict
          contains:
            index: {description: NVML index., type: int, sample: 0}
            name: {description: Product name., type: str, sample: "NVIDIA H100 80GB HBM3"}
            uuid: {description: GPU UUID., type: str, sample: "GPU-5f1c5a2e-8c1d-4d0e-9a3b-2b7d1e6f0a11"}
            pci_bus_id: {description: PCI bus id as NVML reports it., type: str, sample: "00000000:18:00.0"}
            numa_node:
              description: NUMA node of the PCI device; V(null) when the platform has none.
              type: int
              sample: 0
            memory_total_mib: {description: Framebuffer memory in MiB., type: int, sample: 81559}
            memory_used_mib: {description: Used framebuffer memory in MiB., type: int, sample: 1}
            memory_free_mib: {description: Free framebuffer memory in MiB., type: int, sample: 81005}
            compute_capability: {description: CUDA compute capability., type: str, sample: "9.0"}
            ecc_mode_current: {description: ECC enabled now., type: bool, sample: true}
            ecc_mode_pending: {description: ECC enabled after the next reset., type: bool, sample: true}
            ecc_uncorrectable_volatile:
              description: Uncorrectable ECC errors since the last driver load.
              type: int
              sample: 0
            ecc_uncorrectable_aggregate:
              description: Uncorrectable ECC errors over the GPU's life.
              type: int
              sample: 0
            remapped_rows_correctable: {description: Rows remapped for correctable errors., type: int, sample: 0}
            remapped_rows_uncorrectable: {description: Rows remapped for uncorrectable errors., type: int, sample: 0}
            remapped_rows_pending: {description: A row remap waits for a GPU reset., type: bool, sample: false}
            remapped_rows_failure:
              description: A row remap failed; the GPU needs service.
              type: bool
              sample: false
            persistence_mode: {description: Persistence mode enabled., type: bool, sample: true}
            mig_mode_current: {description: MIG enabled now; V(null) on GPUs without MIG., type: bool, sample: false}
            mig_mode_pending: {description: MIG enabled after the next reset., type: bool, sample: false}
            power_limit_w: {description: Enforced power limit in watts., type: float, sample: 700.0}
            temperature_c: {description: GPU core temperature in degrees Celsius., type: int, sample: 33}
            pcie_gen_current: {description: Current PCIe link generation., type: int, sample: 5}
            pcie_gen_max:
              description: Highest PCIe generation of the GPU and the slot together.
              type: int
              sample: 5
            pcie_width_current: {description: Current PCIe link width (lanes)., type: int, sample: 16}
            pcie_width_max: {description: Highest PCIe link width., type: int, sample: 16}
            nvlink_links_up: {description: NVLinks that are active., type: int, sample: 18}
            nvlink_links_total:
              description: NVLinks the GPU has; V(0) for a GPU without NVLink.
              type: int
              sample: 18
            nvlink_to_nvswitch: {description: The first active NVLink ends at an NVSwitch., type: bool, sample: true}
            error:
              description: Why this GPU could not be read (for example it is lost); V(null) when it was read.
              type: str
              sample: null
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.onprem.deepseek.plugins.module_utils._nvml import (
    HAS_PYNVML,
    PYNVML_IMPORT_ERROR,
    NvmlProbe,
)


def run_module(module, probe):
    if not HAS_PYNVML and module.params["required"]:
        module.fail_json(msg=missing_required_lib("nvidia-ml-py"), exception=PYNVML_IMPORT_ERROR)
    gpu = probe.collect()
    if module.params["required"] and gpu["count"] == 0:
        module.fail_json(msg=f"No NVIDIA GPU could be read: {gpu['reason']}", ansible_facts={"gpu": gpu})
    module.exit_json(changed=False, ansible_facts={"gpu": gpu})


def main():
    module = AnsibleModule(
        argument_spec={"required": {"type": "bool", "default": False}},
        supports_check_mode=True,
    )
    run_module(module, NvmlProbe())


if __name__ == "__main__":
    main()
