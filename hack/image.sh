#!/usr/bin/env bash
# `make image`: builds the operator's image from the Dockerfile without a container daemon and
# writes it as an OCI archive, named as a release names it (the chart's default image).
#
#   hack/image.sh [--profile release|dev] [--binary PATH] [--out ARCHIVE]
#
# 1. the static binary (hack/build-static.sh; or --binary, which must be static too);
# 2. the root filesystem (hack/image-rootfs.sh) in target/image/rootfs-<profile>/;
# 3. `buildah bud` of the Dockerfile with ROOTFS_FROM=prebuilt, so the Dockerfile's own final
#    stage (user, entrypoint, labels) makes the image; buildah keeps its storage in a temporary
#    directory, removed afterwards;
# 4. the OCI layout, named `<repository>:<appVersion>` in both annotations container runtimes read
#    (`io.containerd.image.name` for containerd/kind/docker load, `org.opencontainers.image.ref.name`
#    for skopeo/podman), packed with sorted names and fixed times.
#
# Reproducible: every time stamp (image config, history, file times in the layer and the archive)
# is SOURCE_DATE_EPOCH, by default the time of the last commit; the same binary and commit give the
# same image digest and the same archive bytes. Prints the reference, digest and archive path.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
profile=release binary="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "image: unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in buildah readelf; do
  command -v "$tool" >/dev/null 2>&1 \
    || { echo "image: $tool is missing: run \`bash hack/install-deps.sh image\`" >&2; exit 1; }
done

chart=charts/gitlab-token-operator
version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$chart/Chart.yaml")"
# image.repository: the first `repository:` under the top-level `image:` block of values.yaml.
repository="$(awk '/^image:/{in_image=1; next} /^[^ #]/{in_image=0} in_image && $1=="repository:"{print $2; exit}' "$chart/values.yaml")"
[ -n "$version" ] && [ -n "$repository" ] || { echo "image: cannot read appVersion/image.repository from $chart" >&2; exit 1; }
reference="$repository:$version"
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
out="${out:-target/image/gitlab-token-operator-$version.oci.tar}"

if [ -z "$binary" ]; then
  echo "image: building the static binary (profile $profile)" >&2
  binary="$(hack/build-static.sh --profile "$profile")"
fi
rootfs_dir="target/image/rootfs-$profile"
hack/image-rootfs.sh "$binary" "$rootfs_dir"

work="$(mktemp -d "${TMPDIR:-/tmp}/gto-image.XXXXXX")"
bah() { buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"; }
cleanup() { bah rmi --all >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch="$(uname -m)" ;; esac
bah bud --quiet --isolation chroot --timestamp "$epoch" \
  --build-arg "TARGETARCH=$arch" --build-arg "BUILDARCH=$arch" --build-arg ROOTFS_FROM=prebuilt --build-arg "ROOTFS_DIR=$rootfs_dir" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  -f Dockerfile -t "$reference" . >/dev/null
bah push --quiet "$reference" "oci:$work/layout:$reference"
index="$work/layout/index.json"
jq --arg ref "$reference" '.manifests[0].annotations["io.containerd.image.name"] = $ref
  | .manifests[0].annotations["org.opencontainers.image.ref.name"] = $ref' "$index" > "$index.new"
mv "$index.new" "$index"
mkdir -p "$(dirname "$out")"
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -C "$work/layout" -cf "$out.tmp" .
mv "$out.tmp" "$out"
digest="$(jq -r '.manifests[0].digest' "$index")"
echo "image: $reference"
echo "image: digest $digest"
echo "image: archive $out ($(du -h "$out" | cut -f1))"
