#!/usr/bin/env bash
# Build the small Debian 12 VM that tests/integration/test_secure_storage_vm.py boots under qemu to run the
# secure_storage role against a real kernel with dm-crypt and SM4 (this build host's kernel has no device-mapper).
#
# Everything comes from Debian packages: debootstrap a minbase bookworm with Debian's own kernel
# (linux-image-amd64, which builds DM_CRYPT, CRYPTO_SM4 and CRYPTO_XTS as modules) and its initramfs, then
# write the tree into an ext4 image with `mkfs.ext4 -d` (no loop device, no mount). The result is cached:
#
#   $ONPREM_VM_CACHE (default /var/tmp/onprem-deepseek-vm)/
#     vmlinuz  initrd.img  root.qcow2  ssh_host_ed25519_key.pub  stamp
#
# and rebuilt only when missing or when this script changed (FORCE=1 rebuilds anyway). Tests never write to
# root.qcow2: each boot runs on a throwaway qcow2 overlay.
#
# The guest has no password for anyone. At boot a oneshot unit copies the public key given on the kernel
# command line (onprem.authorized_key=<base64>) to /root/.ssh/authorized_keys, so each test run brings its
# own throwaway key; the guest's SSH host key is exported next to the image for a test-local known_hosts.
#
# Needs root, debootstrap, e2fsprogs (mkfs.ext4 -d) and qemu-utils (qemu-img). Takes 3-6 minutes.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
CACHE="${ONPREM_VM_CACHE:-/var/tmp/onprem-deepseek-vm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="${DEBIAN_SUITE:-bookworm}"
ROOT_SIZE="${ONPREM_VM_ROOT_SIZE:-2G}"
PACKAGES="linux-image-amd64,initramfs-tools,systemd,systemd-sysv,udev,dbus,kmod,openssh-server,python3,\
python3-apt,cryptsetup,cryptsetup-bin,dmsetup,e2fsprogs,xfsprogs,util-linux,iproute2,procps"

stamp_want="$(sha256sum "$here/build.sh" | cut -d' ' -f1) $SUITE"
if [ "${FORCE:-0}" != "1" ] && [ -f "$CACHE/stamp" ] && [ "$(cat "$CACHE/stamp")" = "$stamp_want" ] \
  && [ -f "$CACHE/root.qcow2" ] && [ -f "$CACHE/vmlinuz" ] && [ -f "$CACHE/initrd.img" ]; then
  echo "vm image present in $CACHE (FORCE=1 rebuilds)"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "tests/vm/build.sh: debootstrap needs root; run it as root or with sudo" >&2
  exit 1
fi
for tool in debootstrap mkfs.ext4 qemu-img; do
  command -v "$tool" >/dev/null || {
    echo "tests/vm/build.sh: $tool is missing: apt-get install debootstrap e2fsprogs qemu-utils" >&2
    exit 1
  }
done

mkdir -p "$CACHE"
work="$(mktemp -d "$CACHE/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

echo "debootstrap $SUITE with linux-image-amd64 from $MIRROR (a few minutes)"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}

# --- SM4 for Debian's kernel ----------------------------------------------------------------------------
# Debian's kernels (bookworm 6.1, trixie and bookworm-backports 6.12) ship with CONFIG_CRYPTO_SM4_GENERIC
# unset, so sm4-xts-plain64 cannot be opened on them. To test SM4 LUKS on Debian's own kernel anyway, build
# the kernel's own SM4 code (crypto/sm4.c and crypto/sm4_generic.c from the matching linux-source
# package) as out-of-tree modules against the matching linux-headers package, in the guest's tree, and keep
# them in /opt/onprem-sm4/<release>/. They are NOT installed under /lib/modules: the guest boots the stock
# kernel (the role must refuse sm4 there, naming the kernel option), and the test installs them later.
kver="$(find "$rootfs/boot" -maxdepth 1 -name 'vmlinuz-*' | sort | tail -n 1 | sed 's|.*/vmlinuz-||')"
# shellcheck disable=SC2016 # dpkg-query's own ${Version} format
kpkg_version="$(chroot "$rootfs" dpkg-query -W -f '${Version}' "linux-image-$kver")"
kseries="$(echo "$kver" | cut -d. -f1,2)"
echo "building sm4 and sm4_generic modules for $kver (linux-source-$kseries $kpkg_version)"
chroot "$rootfs" apt-get update -qq >/dev/null
chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  gcc make libc6-dev "linux-headers-$kver=$kpkg_version" >"$work/headers.log" 2>&1 || {
  tail -n 30 "$work/headers.log" >&2
  exit 1
}
(cd "$work" && chroot "$rootfs" sh -c "cd /tmp && apt-get download -qq linux-source-$kseries=$kpkg_version" \
  && mv "$rootfs"/tmp/linux-source-"$kseries"_*.deb "$work/linux-source.deb")
mkdir -p "$rootfs/usr/src/onprem-sm4"
dpkg-deb --fsys-tarfile "$work/linux-source.deb" \
  | tar -xO "./usr/src/linux-source-$kseries.tar.xz" \
  | tar -xJ -C "$work" "linux-source-$kseries/crypto/sm4_generic.c" "linux-source-$kseries/crypto/sm4.c"
cp "$work/linux-source-$kseries/crypto/sm4.c" "$work/linux-source-$kseries/crypto/sm4_generic.c" \
  "$rootfs/usr/src/onprem-sm4/"
echo 'obj-m := sm4.o sm4_generic.o' >"$rootfs/usr/src/onprem-sm4/Kbuild"
chroot "$rootfs" make -s -C "/lib/modules/$kver/build" M=/usr/src/onprem-sm4 modules >"$work/sm4-build.log" 2>&1 || {
  tail -n 30 "$work/sm4-build.log" >&2
  exit 1
}
install -d "$rootfs/opt/onprem-sm4/$kver"
install -m 0644 "$rootfs/usr/src/onprem-sm4/sm4.ko" "$rootfs/usr/src/onprem-sm4/sm4_generic.ko" "$rootfs/opt/onprem-sm4/$kver/"
rm -rf "$rootfs/usr/src/onprem-sm4"
chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq --autoremove \
  gcc make libc6-dev "linux-headers-$kver" >/dev/null 2>&1

# --- guest configuration -------------------------------------------------------------------------------
echo "onprem-vm" >"$rootfs/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 onprem-vm\n' >"$rootfs/etc/hosts"
echo "LABEL=onprem-root / ext4 defaults,errors=remount-ro 0 1" >"$rootfs/etc/fstab"
: >"$rootfs/etc/machine-id"

# qemu user-mode networking: the guest is always 10.0.2.15; no DHCP wait.
mkdir -p "$rootfs/etc/systemd/network"
cat >"$rootfs/etc/systemd/network/10-qemu.network" <<'NET'
[Match]
Name=en* eth*

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
LinkLocalAddressing=no
IPv6AcceptRA=no
NET
ln -sf /lib/systemd/system/systemd-networkd.service \
  "$rootfs/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"

# The test's throwaway public key arrives on the kernel command line.
cat >"$rootfs/usr/local/sbin/onprem-authorized-key" <<'KEY'
#!/bin/sh
set -eu
for word in $(cat /proc/cmdline); do
  case "$word" in
    onprem.authorized_key=*)
      install -d -m 0700 /root/.ssh
      echo "${word#onprem.authorized_key=}" | base64 -d >/root/.ssh/authorized_keys
      chmod 0600 /root/.ssh/authorized_keys
      ;;
  esac
done
KEY
chmod 0755 "$rootfs/usr/local/sbin/onprem-authorized-key"
cat >"$rootfs/etc/systemd/system/onprem-authorized-key.service" <<'UNIT'
[Unit]
Description=Install the test's SSH public key from the kernel command line
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/onprem-authorized-key

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/onprem-authorized-key.service \
  "$rootfs/etc/systemd/system/multi-user.target.wants/onprem-authorized-key.service"

# Key-only root login, no DNS lookups (there is no resolver), quick.
cat >"$rootfs/etc/ssh/sshd_config.d/onprem-vm.conf" <<'SSHD'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
SSHD

# Fewer things to do under software emulation: no nested KVM in the guest.
printf 'blacklist kvm\nblacklist kvm_amd\nblacklist kvm_intel\n' >"$rootfs/etc/modprobe.d/onprem-vm.conf"
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
  systemd-networkd-wait-online.service getty@tty1.service; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

# --- export kernel, initramfs, host key, image ---------------------------------------------------------
kernel="$(find "$rootfs/boot" -maxdepth 1 -name 'vmlinuz-*' | sort | tail -n 1)"
initrd="$(find "$rootfs/boot" -maxdepth 1 -name 'initrd.img-*' | sort | tail -n 1)"
if [ -z "$kernel" ] || [ -z "$initrd" ]; then
  echo "tests/vm/build.sh: no kernel or initrd in $rootfs/boot" >&2
  exit 1
fi
cp "$kernel" "$work/vmlinuz"
cp "$initrd" "$work/initrd.img"
cp "$rootfs/etc/ssh/ssh_host_ed25519_key.pub" "$work/ssh_host_ed25519_key.pub"
basename "$kernel" | sed 's/^vmlinuz-//' >"$work/kernel-release"

mkfs.ext4 -q -L onprem-root -d "$rootfs" "$work/root.raw" "$ROOT_SIZE"
qemu-img convert -O qcow2 "$work/root.raw" "$work/root.qcow2"

for f in vmlinuz initrd.img root.qcow2 ssh_host_ed25519_key.pub kernel-release; do
  mv -f "$work/$f" "$CACHE/$f"
done
echo "$stamp_want" >"$CACHE/stamp"
echo "built VM image in $CACHE (kernel $(cat "$CACHE/kernel-release"))"
