# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TEST DOUBLE for nvidia-smi: answers `-q -x` (and the --query-gpu line run.sh prints) from the same
fake profile as rehearsal/pynvml.py, in the XML layout of driver 580. Never on a real GPU host."""

import importlib.util
import os
import sys
from xml.sax.saxutils import escape

_FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "unit", "plugins", "module_utils",
                     "fake_pynvml.py")
_spec = importlib.util.spec_from_file_location("fake_pynvml", _FAKE)
fake = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake)

MODE = {0: "Disabled", 1: "Enabled"}


def mode(value):
    return "N/A" if isinstance(value, fake.NVMLError) else MODE[value]


def gpu_xml(gpu):
    pcie = gpu["pcie"]
    return f"""  <gpu id="{gpu['bus_id']}">
    <product_name>{escape(gpu['name'])}</product_name>
    <persistence_mode>{mode(gpu['persistence'])}</persistence_mode>
    <mig_mode>
      <current_mig>{mode(gpu['mig'] if isinstance(gpu['mig'], fake.NVMLError) else gpu['mig'][0])}</current_mig>
      <pending_mig>{mode(gpu['mig'] if isinstance(gpu['mig'], fake.NVMLError) else gpu['mig'][1])}</pending_mig>
    </mig_mode>
    <uuid>{gpu['uuid']}</uuid>
    <pci>
      <pci_bus_id>{gpu['bus_id']}</pci_bus_id>
      <pci_gpu_link_info>
        <pcie_gen>
          <max_link_gen>{pcie['gen_max']}</max_link_gen>
          <current_link_gen>{pcie['gen']}</current_link_gen>
        </pcie_gen>
        <link_widths>
          <max_link_width>{pcie['width_max']}x</max_link_width>
          <current_link_width>{pcie['width']}x</current_link_width>
        </link_widths>
      </pci_gpu_link_info>
    </pci>
    <fb_memory_usage>
      <total>{gpu['memory']['total'] // fake.MIB} MiB</total>
      <used>{gpu['memory']['used'] // fake.MIB} MiB</used>
    </fb_memory_usage>
    <ecc_mode>
      <current_ecc>{mode(gpu['ecc_mode'][0])}</current_ecc>
      <pending_ecc>{mode(gpu['ecc_mode'][1])}</pending_ecc>
    </ecc_mode>
    <gpu_power_readings>
      <current_power_limit>{gpu['power_mw'] / 1000:.2f} W</current_power_limit>
    </gpu_power_readings>
    <module_power_readings>
      <current_power_limit>N/A</current_power_limit>
    </module_power_readings>
  </gpu>
"""


def main():
    gpus = getattr(fake, os.environ.get("REHEARSAL_PROFILE", "hgx_h100"))()
    gpus = gpus if isinstance(gpus, list) else [gpus]
    if "-q" in sys.argv and "-x" in sys.argv:
        print('<?xml version="1.0" ?>\n<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">\n<nvidia_smi_log>')
        print("\t<driver_version>580.159.04</driver_version>\n\t<cuda_version>13.0</cuda_version>")
        print(f"\t<attached_gpus>{len(gpus)}</attached_gpus>")
        print("".join(gpu_xml(gpu) for gpu in gpus) + "</nvidia_smi_log>")
    elif any(arg.startswith("--query-gpu=") for arg in sys.argv):
        fields = next(arg for arg in sys.argv if arg.startswith("--query-gpu=")).split("=", 1)[1].split(",")
        values = {"name": lambda gpu: gpu["name"], "driver_version": lambda gpu: "580.159.04"}
        if any(field not in values for field in fields):
            sys.exit(f"rehearsal nvidia-smi answers --query-gpu only for {', '.join(values)}")
        print("\n".join(", ".join(values[field](gpu) for field in fields) for gpu in gpus))
    else:
        sys.exit("rehearsal nvidia-smi answers only -q -x and --query-gpu")


if __name__ == "__main__":
    main()
