#!/usr/bin/env bash
# Builds the operator as a static (musl) binary for the container image and prints its path.
# The Dockerfile's builder stage and `make image` both call this, so the image's binary is built
# the same way inside a container build and on a developer's machine.
#
#   hack/build-static.sh [--arch amd64|arm64] [--profile release|dev]
#
# --arch defaults to this machine's; another arch is cross-compiled with the Debian cross gcc
# (gcc-aarch64-linux-gnu / gcc-x86-64-linux-gnu, with the C headers of libc6-dev-arm64-cross /
# libc6-dev-amd64-cross for ring's C code) as C compiler and linker: Rust's musl targets link
# their own self-contained C runtime, so a glibc cross toolchain is enough. --profile dev gives an
# unoptimised binary (what the image test uses, to share the debug build's cost).
set -euo pipefail
arch="" profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --profile) profile="$2"; shift 2 ;;
    *) echo "build-static: unknown argument $1" >&2; exit 2 ;;
  esac
done
norm() { case "$1" in amd64|x86_64) echo x86_64 ;; arm64|aarch64) echo aarch64 ;; *) echo "$1" ;; esac; }
host="$(norm "$(uname -m)")"
arch="$(norm "${arch:-$host}")"
case "$arch" in
  x86_64|aarch64) ;;
  *) echo "build-static: unsupported architecture $arch (amd64 or arm64)" >&2; exit 2 ;;
esac
triple="$arch-unknown-linux-musl"
var="$(echo "$triple" | tr 'a-z-' 'A-Z_')"
if [ "$arch" = "$host" ]; then
  # ring's C and assembly: musl-gcc when present (Debian musl-tools), else the system cc.
  if command -v musl-gcc >/dev/null 2>&1; then export "CC_${triple//-/_}=musl-gcc"; fi
else
  export "CC_${triple//-/_}=$arch-linux-gnu-gcc" "CARGO_TARGET_${var}_LINKER=$arch-linux-gnu-gcc"
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# Symbols are of no use in the image; the unoptimised test binary keeps its line tables.
[ "$profile" = release ] && export CARGO_PROFILE_RELEASE_STRIP=symbols
${CARGO:-cargo} build --locked --profile "$profile" --target "$triple" --bin gitlab-token-operator >&2
dir="$profile"; [ "$profile" = dev ] && dir=debug
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
echo "$target_dir/$triple/$dir/gitlab-token-operator"
