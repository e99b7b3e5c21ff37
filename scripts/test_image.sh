#!/usr/bin/env bash
# Builds the connector's Docker image with podman (no Docker engine here) and runs spec, check and write
# in it against the local Heap sandbox, as the Airbyte platform would: see integration_tests/image_check.py.
#
# No container registry is reachable, so the Dockerfile's base image is stood in for by a Debian bookworm
# root built with debootstrap (Python 3.11, pip, CA certificates), imported under a local name of its
# own; `podman build --from` puts it in place of the FROM line's image, so nothing is ever stored
# under the official image's name, and the Dockerfile itself is built unchanged. The host's CA
# directory is mounted into the build read-only, since pip's traffic here goes through a TLS proxy whose CA a fresh root lacks.
# crun refuses this host's hybrid cgroups, hence runc; podman's default ulimits cannot be raised here.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
IMAGE="${IMAGE:-localhost/destination-heap-analytics:dev}"
BASE="localhost/heap-test-base:bookworm"   # a local stand-in, never under the official image's name
WORK="$(mktemp -d)"
PODMAN=(podman --storage-driver overlay)

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
fi

if ! "${PODMAN[@]}" image exists "$BASE"; then
  debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
    bookworm "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 20 "$WORK/debootstrap.log"; exit 1; }
  rm -f "$WORK"/rootfs/usr/lib/python3.*/EXTERNALLY-MANAGED
  tar -C "$WORK/rootfs" -c . | "${PODMAN[@]}" import - "$BASE" >/dev/null
  rm -rf "$WORK"
fi

"${PODMAN[@]}" build --quiet --isolation chroot --network host --pull=never --from "$BASE" \
  -v /etc/ssl/certs:/etc/ssl/certs:ro -t "$IMAGE" . >/dev/null
echo "built $IMAGE on $BASE"
python -m integration_tests.image_check "$IMAGE" --storage-driver overlay
