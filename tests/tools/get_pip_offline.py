"""Offline stand-in for ansible-test's get-pip bootstrap script.

ansible-test --venv downloads get-pip.py from ci-files.testing.ansible.com, which sites without general internet
access (and this project's CI) cannot reach; its error message says to save a bootstrap script at
~/.ansible/test/cache/get_pip_<version>.py instead. tests/run.sh copies this file there. It bootstraps pip with the
interpreter's own ensurepip, then installs what ansible-test asked for from the configured package index.
"""

import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
