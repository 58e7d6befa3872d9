#!/usr/bin/env bash
# Install the Debian/Ubuntu packages that `make demo`, `make test` and `make bench` need on this machine.
# Installs only what is missing; run as root or with sudo available.
set -euo pipefail

packages=(
  python3 python3-venv python3-pip make git rsync ca-certificates openssl
  podman runc debootstrap slirp4netns uidmap fuse-overlayfs iptables
  shellcheck nginx-light curl wrk dpkg-dev apt-utils
  prometheus prometheus-node-exporter prometheus-alertmanager
)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "host packages present"
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "setup-host.sh: this is not a Debian/Ubuntu machine; install by hand: ${missing[*]}" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup-host.sh: run as root (needs apt-get): ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing: ${missing[*]}"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
