#!/usr/bin/env bash
# Start (up) or remove (down) the demo container that inventories/demo points at.
set -euo pipefail
IMAGE="${IMAGE:-localhost/onprem-debian12-systemd:latest}"
NAME="${DEMO_NAME:-onprem-demo}"
here="$(cd "$(dirname "$0")/.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/molecule/containers.conf}"

wait_running() {
  local state=""
  for _ in $(seq 1 60); do
    state="$(podman exec "$NAME" systemctl is-system-running 2>/dev/null || true)"
    case "$state" in
      running|degraded) echo "$NAME: systemd $state"; return 0 ;;
    esac
    sleep 1
  done
  echo "demo.sh: $NAME did not finish booting (systemd says '${state:-nothing}'); see: podman logs $NAME" >&2
  return 1
}

case "${1:-up}" in
  up)
    if [ "$(podman container inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null || true)" = "true" ]; then
      echo "$NAME already running"
    else
      podman rm -f "$NAME" >/dev/null 2>&1 || true
      podman run -d --name "$NAME" --hostname "$NAME" --systemd=always "$IMAGE" /sbin/init >/dev/null
    fi
    wait_running
    ;;
  down)
    podman rm -f "$NAME" >/dev/null 2>&1 || true
    echo "$NAME removed"
    ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
