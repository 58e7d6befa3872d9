# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``nvidia_smi_xml``: the output of ``nvidia-smi -q -x`` in gpu_facts' field names and units.

Test helper for tests/gpu (a playbook-adjacent filter plugin), not part of the collection's API.
Tags read (driver 470 to 580): ``driver_version``, ``cuda_version``, and per ``<gpu id=BUS>``:
``product_name``, ``uuid``, ``persistence_mode``, ``mig_mode/current_mig``, ``fb_memory_usage/total``,
``ecc_mode/current_ecc|pending_ecc``, ``pci/pci_gpu_link_info/pcie_gen/current_link_gen|max_link_gen``,
``pci/pci_gpu_link_info/link_widths/current_link_width|max_link_width`` and the power limit from
``gpu_power_readings/current_power_limit`` (drivers >= 530) or ``power_readings/enforced_power_limit``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

MODES = {"enabled": True, "disabled": False}


def _text(node, path):
    found = node.find(path)
    if found is None or found.text is None:
        return None
    value = found.text.strip()
    return None if value in ("", "N/A", "[N/A]", "Not Found", "[Not Supported]") else value


def _number(text, kind=int):
    """'81559 MiB' -> 81559, '16x' -> 16, '700.00 W' -> 700.0, None -> None."""
    if text is None:
        return None
    return kind(text.split()[0].rstrip("x"))


def _mode(text):
    return None if text is None else MODES.get(text.lower())


def _power_limit(gpu):
    text = _text(gpu, "gpu_power_readings/current_power_limit") or _text(gpu, "power_readings/enforced_power_limit")
    value = _number(text, float)
    return None if value is None else round(value, 2)


def parse_gpu(gpu):
    link = "pci/pci_gpu_link_info/"
    return {
        "pci_bus_id": (gpu.get("id") or _text(gpu, "pci/pci_bus_id") or "").upper() or None,
        "name": _text(gpu, "product_name"),
        "uuid": _text(gpu, "uuid"),
        "memory_total_mib": _number(_text(gpu, "fb_memory_usage/total")),
        "ecc_mode_current": _mode(_text(gpu, "ecc_mode/current_ecc")),
        "ecc_mode_pending": _mode(_text(gpu, "ecc_mode/pending_ecc")),
        "persistence_mode": _mode(_text(gpu, "persistence_mode")),
        "mig_mode_current": _mode(_text(gpu, "mig_mode/current_mig")),
        "power_limit_w": _power_limit(gpu),
        "pcie_gen_current": _number(_text(gpu, link + "pcie_gen/current_link_gen")),
        "pcie_gen_max": _number(_text(gpu, link + "pcie_gen/max_link_gen")),
        "pcie_width_current": _number(_text(gpu, link + "link_widths/current_link_width")),
        "pcie_width_max": _number(_text(gpu, link + "link_widths/max_link_width")),
    }


def nvidia_smi_xml(text):
    """Parse the XML document; GPUs are listed in order and keyed by upper-case PCI bus id."""
    root = ET.fromstring(text)
    gpus = [parse_gpu(gpu) for gpu in root.findall("gpu")]
    return {
        "driver_version": _text(root, "driver_version"),
        "cuda_version": _text(root, "cuda_version"),
        "attached_gpus": _number(_text(root, "attached_gpus")),
        "gpus": gpus,
        "by_bus_id": {gpu["pci_bus_id"]: gpu for gpu in gpus},
    }


class FilterModule:
    def filters(self):
        return {"nvidia_smi_xml": nvidia_smi_xml}
