# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nvidia-smi XML filter of the GPU suite, on the two layouts drivers write (no GPU needed):
  PYTHONPATH=build/collections .venv/bin/pytest tests/gpu/test_nvidia_smi_filter.py"""

from __future__ import annotations

import pytest
from ansible_collections.onprem.deepseek.tests.gpu.filter_plugins.nvidia_smi import nvidia_smi_xml

# driver >= 530: gpu_power_readings/current_power_limit, with a module_power_readings block of N/A after it
NEW = """<?xml version="1.0" ?>
<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">
<nvidia_smi_log>
  <driver_version>580.159.04</driver_version><cuda_version>13.0</cuda_version><attached_gpus>1</attached_gpus>
  <gpu id="00000000:18:00.0">
    <product_name>NVIDIA H100 80GB HBM3</product_name><persistence_mode>Enabled</persistence_mode>
    <mig_mode><current_mig>Disabled</current_mig><pending_mig>Disabled</pending_mig></mig_mode>
    <uuid>GPU-6b1e4c2a-9f0d-4e57-8a31-0c5d7e2f0000</uuid>
    <pci><pci_bus_id>00000000:18:00.0</pci_bus_id><pci_gpu_link_info>
      <pcie_gen><max_link_gen>5</max_link_gen><current_link_gen>5</current_link_gen></pcie_gen>
      <link_widths><max_link_width>16x</max_link_width><current_link_width>16x</current_link_width></link_widths>
    </pci_gpu_link_info></pci>
    <fb_memory_usage><total>81559 MiB</total><reserved>551 MiB</reserved><used>0 MiB</used></fb_memory_usage>
    <ecc_mode><current_ecc>Enabled</current_ecc><pending_ecc>Enabled</pending_ecc></ecc_mode>
    <gpu_power_readings><current_power_limit>700.00 W</current_power_limit></gpu_power_readings>
    <module_power_readings><current_power_limit>N/A</current_power_limit></module_power_readings>
  </gpu>
</nvidia_smi_log>"""

# driver 470: power_readings/enforced_power_limit, a GPU without MIG or ECC
OLD = """<?xml version="1.0" ?>
<nvidia_smi_log>
  <driver_version>470.256.02</driver_version><cuda_version>11.4</cuda_version><attached_gpus>1</attached_gpus>
  <gpu id="00000000:0A:00.0">
    <product_name>NVIDIA GeForce RTX 3090</product_name><persistence_mode>Disabled</persistence_mode>
    <mig_mode><current_mig>N/A</current_mig><pending_mig>N/A</pending_mig></mig_mode>
    <uuid>GPU-0f28aa42-45b8-2019-1c8b-35a2ccd7ce89</uuid>
    <pci><pci_gpu_link_info>
      <pcie_gen><max_link_gen>4</max_link_gen><current_link_gen>1</current_link_gen></pcie_gen>
      <link_widths><max_link_width>16x</max_link_width><current_link_width>8x</current_link_width></link_widths>
    </pci_gpu_link_info></pci>
    <fb_memory_usage><total>24268 MiB</total></fb_memory_usage>
    <ecc_mode><current_ecc>N/A</current_ecc><pending_ecc>N/A</pending_ecc></ecc_mode>
    <power_readings><power_limit>350.00 W</power_limit><enforced_power_limit>350.00 W</enforced_power_limit>
    </power_readings>
  </gpu>
</nvidia_smi_log>"""


@pytest.mark.parametrize("xml, system, gpu", [
    (NEW, ("580.159.04", "13.0", 1), {
        "pci_bus_id": "00000000:18:00.0", "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-6b1e4c2a-9f0d-4e57-8a31-0c5d7e2f0000", "memory_total_mib": 81559,
        "ecc_mode_current": True, "ecc_mode_pending": True, "persistence_mode": True, "mig_mode_current": False,
        "power_limit_w": 700.0, "pcie_gen_current": 5, "pcie_gen_max": 5, "pcie_width_current": 16,
        "pcie_width_max": 16}),
    (OLD, ("470.256.02", "11.4", 1), {
        "pci_bus_id": "00000000:0A:00.0", "name": "NVIDIA GeForce RTX 3090",
        "uuid": "GPU-0f28aa42-45b8-2019-1c8b-35a2ccd7ce89", "memory_total_mib": 24268,
        "ecc_mode_current": None, "ecc_mode_pending": None, "persistence_mode": False, "mig_mode_current": None,
        "power_limit_w": 350.0, "pcie_gen_current": 1, "pcie_gen_max": 4, "pcie_width_current": 8,
        "pcie_width_max": 16}),
])
def test_layouts(xml, system, gpu):
    parsed = nvidia_smi_xml(xml)
    assert (parsed["driver_version"], parsed["cuda_version"], parsed["attached_gpus"]) == system
    assert parsed["gpus"] == [gpu]
    assert parsed["by_bus_id"] == {gpu["pci_bus_id"]: gpu}
