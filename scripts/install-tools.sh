#!/usr/bin/env bash
# Installs what building the web app needs, skipping whatever is already there at the right version:
# the wasm32 target, trunk, wasm-bindgen-cli (equal to Cargo.lock's wasm-bindgen), wasm-opt
# (npm's binaryen, into ./tools; never Debian's, which corrupts rustc 1.95's output), and the
# terminal emulator the map bundles (xterm.js, app/package-lock.json, into app/node_modules).
set -euo pipefail

cd "$(dirname "$0")/.."
TRUNK_VERSION=0.21.14
BINARYEN_VERSION=132
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
[ -n "$WASM_BINDGEN_VERSION" ] || { echo "install-tools: cannot read wasm-bindgen's version from Cargo.lock" >&2; exit 1; }

say() { echo "install-tools: $*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(trunk --version 2>/dev/null)" != "trunk $TRUNK_VERSION" ]; then
  say "installing trunk $TRUNK_VERSION (about 20 minutes on 2 cores, once)"
  cargo install trunk --version "$TRUNK_VERSION" --locked
fi

if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  # Not --locked: the locked build of wasm-bindgen-cli fails to resolve.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

if [ "$(tools/node_modules/.bin/wasm-opt --version 2>/dev/null | awk '{print $3}')" != "$BINARYEN_VERSION" ]; then
  if command -v npm >/dev/null 2>&1; then
    say "installing wasm-opt from npm's binaryen@$BINARYEN_VERSION into tools/"
    mkdir -p tools
    npm install --prefix tools --no-save --no-audit --no-fund "binaryen@$BINARYEN_VERSION" >&2
  else
    say "npm not found: the app will be built without wasm-opt (larger download, same behaviour)"
  fi
fi

# The map's terminal emulator, exactly as app/package-lock.json pins it.
if ! cmp -s app/package-lock.json app/node_modules/.installed-from-lock 2>/dev/null; then
  if command -v npm >/dev/null 2>&1; then
    say "installing the app's npm packages (xterm.js) into app/node_modules"
    npm ci --prefix app --no-audit --no-fund >&2
    cp app/package-lock.json app/node_modules/.installed-from-lock
  else
    say "npm is needed for the map's terminal emulator (xterm.js): apt-get install npm"
    exit 1
  fi
fi
