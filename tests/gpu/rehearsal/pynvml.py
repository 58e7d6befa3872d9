# Copyright (c) onprem.deepseek contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TEST DOUBLE for the pynvml module, for rehearsing tests/gpu on a machine without a GPU.

Put this directory first on PYTHONPATH (tests/gpu/rehearse.sh does) and `import pynvml` gets the unit
tests' fake binding serving the profile named by $REHEARSAL_PROFILE (default hgx_h100: 8 x H100 80GB
HBM3 on NVSwitch). Never on a real GPU host.
"""

from __future__ import annotations

import importlib.util
import os

# Loaded by path: inside an AnsiballZ payload the ansible_collections package is the zip's, without tests/.
_FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "unit", "plugins", "module_utils",
                     "fake_pynvml.py")
_spec = importlib.util.spec_from_file_location("fake_pynvml", _FAKE)
_fake = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fake)

_PROFILE = os.environ.get("REHEARSAL_PROFILE", "hgx_h100")
_gpus = getattr(_fake, _PROFILE)()
_lib = _fake.FakeNvml(_gpus if isinstance(_gpus, list) else [_gpus])


def __getattr__(name):
    return getattr(_lib, name)
