# syntax=docker/dockerfile:1
# The operator's image: one static (musl) binary, Debian's CA bundle and a passwd entry for the
# non-root user 65532 (the chart's runAsUser), on scratch. No shell, no package manager, no
# writable path needed (the chart mounts the root filesystem read-only).
#
# Release (.github/workflows/release.yml), multi-arch without emulation: the builder runs on the
# build platform and cross-compiles for each target platform.
#   docker buildx build --platform linux/amd64,linux/arm64 -t IMAGE .
#
# `make image` (hack/image.sh) builds this same file with buildah and no daemon: it lays out the
# root filesystem on the host with the same two scripts the builder stage runs
# (hack/build-static.sh, hack/image-rootfs.sh) and passes ROOTFS_FROM=prebuilt, so the builder
# stage is skipped and everything from the `rootfs` stage on is shared.

ARG RUST_VERSION=1.95
# Where the root filesystem comes from: `builder` (compiled here) or `prebuilt` (ROOTFS_DIR).
ARG ROOTFS_FROM=builder

FROM --platform=$BUILDPLATFORM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
ARG TARGETARCH
ARG BUILDARCH
RUN set -eux; \
    case "$TARGETARCH" in amd64) arch=x86_64 ;; arm64) arch=aarch64 ;; *) echo "unsupported $TARGETARCH"; exit 1 ;; esac; \
    pkgs="musl-tools binutils"; \
    if [ "$TARGETARCH" != "$BUILDARCH" ]; then \
      pkgs="$pkgs gcc-$(echo $arch | tr _ -)-linux-gnu libc6-dev-$TARGETARCH-cross"; \
    fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends $pkgs; \
    rm -rf /var/lib/apt/lists/*; \
    rustup target add "$arch-unknown-linux-musl"
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,id=target-$TARGETARCH,sharing=locked \
    bin="$(hack/build-static.sh --arch "$TARGETARCH" --profile release)" \
    && hack/image-rootfs.sh "$bin" /rootfs

FROM scratch AS prebuilt
ARG ROOTFS_DIR=target/image/rootfs-release
COPY ${ROOTFS_DIR}/ /rootfs/

FROM ${ROOTFS_FROM} AS rootfs

FROM scratch
# The release's version (Chart.yaml appVersion), commit and repository URL.
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://github.com/gitlab-token-operator/gitlab-token-operator
COPY --from=rootfs /rootfs/ /
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/gitlab-token-operator"]
LABEL org.opencontainers.image.title="gitlab-token-operator" \
      org.opencontainers.image.description="Mints and rotates GitLab project access tokens for Flux sources, under admin policy." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
