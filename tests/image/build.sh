#!/usr/bin/env bash
# Build the Debian 12 systemd image that molecule and `make demo` use, without any container registry:
# debootstrap a minbase bookworm and `podman import` it. Idempotent: does nothing when the image exists
# (unless FORCE=1). Needs root, debootstrap and podman.
set -euo pipefail

IMAGE="${IMAGE:-localhost/onprem-debian12-systemd:latest}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="${DEBIAN_SUITE:-bookworm}"
here="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/../../molecule/containers.conf}"

if [ "${FORCE:-0}" != "1" ] && podman image exists "$IMAGE"; then
  echo "image $IMAGE already present (FORCE=1 rebuilds)"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "build.sh: debootstrap needs root; run it as root or with sudo" >&2
  exit 1
fi
for tool in debootstrap podman; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing: apt-get install $tool" >&2; exit 1; }
done

rootfs="$(mktemp -d /var/tmp/onprem-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

echo "debootstrap $SUITE from $MIRROR into $rootfs"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,procps,iproute2,ca-certificates,kmod \
  "$SUITE" "$rootfs" "$MIRROR" >/dev/null

# Boot quietly as a container: no getty, no udev triggers, a machine-id made at first boot.
: >"$rootfs/etc/machine-id"
for unit in getty.target systemd-udevd.service systemd-udev-trigger.service systemd-modules-load.service \
  systemd-remount-fs.service sys-kernel-config.mount sys-kernel-debug.mount; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
echo "onprem-demo" >"$rootfs/etc/hostname"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
# An empty package index must look stale, or apt cache_valid_time would trust it.
touch -d "2000-01-01" "$rootfs/var/lib/apt/lists"

tar -C "$rootfs" -c . | podman import \
  --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' \
  --change 'ENV container=podman' - "$IMAGE" >/dev/null
echo "built $IMAGE"
