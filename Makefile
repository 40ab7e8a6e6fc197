# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
CARGO ?= cargo
FIXTURES ?= $(abspath ../shared/fixtures)
export GTO_FIXTURES_DIR ?= $(FIXTURES)
# Tools installed by `make deps` into .tools/ (helm) come first.
export PATH := $(CURDIR)/.tools/node_modules/.bin:$(PATH)

.PHONY: all deps build test lint fmt crds demo up bench clean

all: build

## deps: install the Debian tools the test world drives (git, docker-registry, skopeo, kubectl) and helm.
deps:
	@bash hack/install-deps.sh

build:
	$(CARGO) build --workspace --all-targets

## test: every test in the workspace, against the built-in test world.
test: deps
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

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
up: deps
	$(CARGO) run --quiet -p testbed -- up --state-dir .state

clean:
	$(CARGO) clean
