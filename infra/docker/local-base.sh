#!/usr/bin/env bash
# Builds a Python 3.11 base image from Debian's packages, for Docker engines that cannot pull from
# Docker Hub (an offline or mirrored network): the images' Dockerfiles then build FROM it instead of
# python:3.11-slim and the Beam SDK image (`make docker-images BASE_IMAGE=alignpipe-base:bookworm`).
#
#   infra/docker/local-base.sh [TAG] [MIRROR]
#
# TAG defaults to alignpipe-base:bookworm and MIRROR to the host's Debian mirror (or
# deb.debian.org). The image has `python` and `pip` on PATH, Debian's Python 3.11 open to pip
# (installs go to /usr/local, which `venv --system-site-packages` sees, as in the official
# images), and trusts the extra CAs this host trusts
# (/usr/local/share/ca-certificates, e.g. a proxy's), so pip works inside `docker build`. It has no
# Beam SDK harness (/opt/apache/beam/boot): a data image built on it runs kfp tasks, not Dataflow
# workers. Needs root, debootstrap and a running Docker engine.
set -euo pipefail

tag="${1:-alignpipe-base:bookworm}"
mirror="${2:-}"
if [[ -z "$mirror" ]]; then
  mirror="$(awk '/^URIs:/ && $2 ~ /\/debian$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
fi
for tool in debootstrap docker; do
  command -v "$tool" >/dev/null || { echo "local-base.sh: $tool is not installed" >&2; exit 1; }
done
[[ "$(id -u)" == 0 ]] || { echo "local-base.sh: debootstrap needs root" >&2; exit 1; }

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap bookworm from $mirror into $rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates bookworm "$rootfs" "$mirror" \
  >"$rootfs.log" 2>&1 || { tail -n 20 "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log"

# The host's extra CAs, trusted by the image's system store (which pip is pointed at below).
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin update-ca-certificates >/dev/null
fi
# pip may install into the system Python (PEP 668's marker off): the image is that one program's.
rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' \
  - "$tag" >/dev/null
echo "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | numfmt --to=iec))"
