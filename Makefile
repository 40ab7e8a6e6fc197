# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
CARGO ?= cargo
FIXTURES ?= $(abspath ../shared/fixtures)
export GTO_FIXTURES_DIR ?= $(FIXTURES)
# Tools installed by `make deps` into .tools/ (helm) come first.
export PATH := $(CURDIR)/.tools/node_modules/.bin:$(PATH)

.PHONY: all deps build test lint fmt crds demo up clean

all: build

## deps: install the Debian tools the test world drives (git, docker-registry, skopeo, kubectl) and helm.
deps:
	@bash hack/install-deps.sh

build:
	$(CARGO) build --workspace --all-targets

## test: every test in the workspace, against the built-in test world.
## The crash tests need the crash points compiled in (`failpoints` feature of the operator).
test: deps
	$(CARGO) build --workspace --bins --features failpoints
	$(CARGO) test --workspace --no-fail-fast --features failpoints

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
demo: deps
	$(CARGO) build --workspace --bins
	$(CARGO) run --quiet -p testbed -- sandbox

## up: start the test world in the foreground (state in .state/).
up: deps
	$(CARGO) run --quiet -p testbed -- up --state-dir .state

clean:
	$(CARGO) clean
