# Scopehub: `make run` starts Airplane Mode, `make test` runs the whole suite.
SHELL := /bin/bash
.DEFAULT_GOAL := run

# Tools the Makefile installs (trunk, wasm-bindgen) live in cargo's bin; wasm-opt in ./tools.
export PATH := $(CURDIR)/tools/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)
WASM_BINDGEN_VERSION = $(shell awk '/^name = "wasm-bindgen"$$/ { getline; gsub(/"/, "", $$3); print $$3; exit }' Cargo.lock)
export TRUNK_TOOLS_WASM_BINDGEN = $(WASM_BINDGEN_VERSION)

LISTEN ?= 127.0.0.1:4040
DATA_DIR ?= ./data

.PHONY: run split test tools app server musl image image-if-podman airplane airplane-down k8s-check prometheus-check fmt lint check-wasm test-rust clean-data help

help:
	@echo "make run   build everything and start Airplane Mode on http://$(LISTEN)"
	@echo "make split the split deployment: every role its own process behind the edge on http://$(LISTEN)"
	@echo "make test  the whole suite (fmt, clippy, wasm check, app build, unit/API/browser tests)"

tools:
	@scripts/install-tools.sh

# The web app, release build, into ./dist: the first-visit bundle (index.html) and the full app
# with the map (map.html); see scripts/build-app.sh.
app: tools
	scripts/build-app.sh

server:
	cargo build --release -p scopehub

run: app server
	@echo
	@echo "Starting Scopehub in Airplane Mode (SQLite at $(DATA_DIR)/scopehub.db). Ctrl-C stops it."
	@echo "First time? Sign up at http://$(LISTEN)/signup: the first account becomes the site admin."
	@echo "Mail is not sent in Airplane Mode: read it in Admin > Outbox; its links are also logged below."
	@echo "Once you are logged in, your org gets an instance \"This machine\" reported by a probe of this machine."
	./target/release/scopehub serve --listen $(LISTEN) --data-dir $(DATA_DIR) --dist-dir dist --local-probe

# The static binary the image holds (musl; C dependencies built with Debian's musl-gcc).
MUSL = x86_64-unknown-linux-musl
musl:
	@rustup target list --installed | grep -qx $(MUSL) || rustup target add $(MUSL)
	CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --target $(MUSL) -p scopehub

# The one FROM-scratch image of every environment (Containerfile), plus an OCI archive in
# target/image/. Needs buildah.
image: app musl
	scripts/image.sh

# Airplane Mode in containers: k8s/overlays/airplane played by podman from the image, the frontend
# on http://127.0.0.1:4040. `make airplane-down` stops it.
airplane: image
	scripts/airplane.sh up

airplane-down:
	scripts/airplane.sh down

# The image for the containers test, when podman can run it (REQUIRE_PODMAN=1 makes it required).
image-if-podman:
	@if [ "$${REQUIRE_PODMAN:-0}" = 1 ] || { command -v podman && command -v buildah && command -v musl-gcc; } >/dev/null 2>&1; then \
		$(MAKE) image; \
	else \
		echo "WARNING: podman, buildah or musl-gcc missing: the Airplane-in-containers test will be skipped"; \
	fi

# Every overlay rendered and validated against Kubernetes 1.32 (kubectl, kubernetes-validate).
k8s-check:
	scripts/k8s-check.sh

# k8s/monitoring: the Prometheus alert rules checked and unit-tested with promtool, the Grafana
# dashboard's queries checked (REQUIRE_PROMTOOL=1 makes promtool required).
prometheus-check:
	scripts/prometheus-check.sh

# Every role as its own process (the edge on $(LISTEN), two collector shards), one database:
# the SQLite file in $(DATA_DIR), or DATABASE_URL=postgres://… . Ctrl-C stops them all.
split: app server
	LISTEN=$(LISTEN) DATA_DIR=$(DATA_DIR) scripts/split.sh

fmt:
	cargo fmt --all -- --check

lint:
	cargo clippy --all-targets -- -D warnings
	cargo clippy -p scopehub-app --target wasm32-unknown-unknown -- -D warnings
	cargo clippy -p scopehub-app --target wasm32-unknown-unknown --no-default-features -- -D warnings

check-wasm:
	cargo check -p scopehub-shared --target wasm32-unknown-unknown

# Tests that need PostgreSQL or a browser skip with a warning when those are missing, and fail
# instead when REQUIRE_POSTGRES=1 / REQUIRE_BROWSER=1 (as .ci/run sets).
test-rust:
	SCOPEHUB_TEST_DIST=$(CURDIR)/dist cargo test

test: tools fmt check-wasm lint k8s-check prometheus-check app image-if-podman test-rust

clean-data:
	rm -rf $(DATA_DIR)
