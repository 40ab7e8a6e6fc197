# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
CARGO ?= cargo
FIXTURES ?= $(abspath ../shared/fixtures)
export GTO_FIXTURES_DIR ?= $(FIXTURES)
# Tools installed by `make deps` into .tools/ (helm) come first.
export PATH := $(CURDIR)/.tools/node_modules/.bin:$(PATH)

.PHONY: all deps build test lint fmt crds demo up image bench clean

all: build

## deps: install what `make test` uses: the test world's Debian tools (git, docker-registry, skopeo,
## kubectl), helm, the image tools (buildah, umoci, Rust's musl target) and actionlint.
deps:
	@bash hack/install-deps.sh

build:
	$(CARGO) build --workspace --all-targets

## test: every test in the workspace, against the built-in test world.
## The crash tests need the crash points compiled in (`failpoints` feature of the operator).
test: deps
	$(CARGO) build --workspace --bins --features gitlab-token-operator/failpoints
	$(CARGO) test --workspace --no-fail-fast --features gitlab-token-operator/failpoints

## lint: formatting and clippy, warnings are errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## crds: regenerate crds/*.yaml from the Rust types and copy them into the chart.
crds:
	$(CARGO) run --quiet --bin gitlab-token-operator -- crds --split crds
	cp crds/*.yaml charts/gitlab-token-operator/crds/

## demo: the guided sandbox: test world + the real operator, live view, summary.
## Installs only the test world's tools (no helm, no image tools).
demo:
	@bash hack/install-deps.sh world
	$(CARGO) build --workspace --bins
	$(CARGO) run --quiet -p testbed -- sandbox

## bench: the scale benchmark (issue 10) with release builds; sizes by BENCH_ARGS, e.g.
## `make bench BENCH_ARGS="--sources 10000 --projects 1000"`. Raises the open-files limit first.
BENCH_ARGS ?= --sources 1000 --projects 100 --throttle
BENCH_TARGET = $(or $(CARGO_TARGET_DIR),target)/release
bench:
	$(CARGO) build --release --bin gitlab-token-operator -p gitlab-token-operator
	$(CARGO) build --release --bin testbed -p testbed
	ulimit -n $$(ulimit -Hn) 2>/dev/null; \
	  $(BENCH_TARGET)/testbed scale --operator-bin $(BENCH_TARGET)/gitlab-token-operator $(BENCH_ARGS)

## up: start the test world in the foreground (state in .state/).
up:
	@bash hack/install-deps.sh world
	$(CARGO) run --quiet -p testbed -- up --state-dir .state

## image: the container image from the Dockerfile, without a daemon (buildah), as an OCI archive
## target/image/gitlab-token-operator-<appVersion>.oci.tar named like the release image.
image:
	@bash hack/install-deps.sh image
	CARGO="$(CARGO)" bash hack/image.sh

clean:
	$(CARGO) clean
