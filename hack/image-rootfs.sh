#!/usr/bin/env bash
# Lays out the image's root filesystem: the static operator binary, the CA bundle and passwd/group
# entries for the non-root user the chart runs as. Nothing else: no shell, no package manager.
# The Dockerfile's builder stage and `make image` (hack/image.sh) both call this, so both images
# hold exactly these files.
#
#   hack/image-rootfs.sh BINARY DEST
#
# DEST is emptied first. The CA bundle is Debian's (package ca-certificates), from $CA_BUNDLE or
# /etc/ssl/certs/ca-certificates.crt, the path rustls-platform-verifier (openssl-probe) looks at.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BINARY DEST" >&2; exit 2; }
bin="$1" dest="$2"
ca="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
# The user of the chart's podSecurityContext (runAsUser/runAsGroup) and the Dockerfile's USER.
uid=65532
[ -s "$ca" ] || { echo "image-rootfs: no CA bundle at $ca (install ca-certificates)" >&2; exit 1; }
# A dynamically linked binary would not start on an image without a C library.
if LC_ALL=C readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
  echo "image-rootfs: $bin is dynamically linked; build it with hack/build-static.sh" >&2
  exit 1
fi
rm -rf "$dest"
mkdir -p "$dest/usr/local/bin" "$dest/etc/ssl/certs"
install -m 0755 "$bin" "$dest/usr/local/bin/gitlab-token-operator"
install -m 0644 "$ca" "$dest/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/nonexistent:/sbin/nologin\n' \
  "$uid" "$uid" > "$dest/etc/passwd"
printf 'root:x:0:\nnonroot:x:%d:\n' "$uid" > "$dest/etc/group"
chmod 0644 "$dest/etc/passwd" "$dest/etc/group"
