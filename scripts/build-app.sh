#!/usr/bin/env bash
# Builds the web app into ./dist: two bundles of one crate (docs/map.md).
#   dist/index.html  the first-visit bundle (no `map` feature): every page but the map;
#   dist/map.html    the full app, which the UI role serves on the map's routes.
# Trunk empties its dist folder on each build, so the full app is built into a staging folder first
# and its files copied beside the first-visit bundle's (shared assets have the same hashed names).
# Without a wasm-opt (no npm), copies of the pages with wasm-opt off are built instead, rather than
# let trunk fail or use a broken one.
set -euo pipefail
cd "$(dirname "$0")/../app"

page() { # the page trunk should build from: itself, or its copy without wasm-opt
    if command -v wasm-opt >/dev/null 2>&1; then
        echo "$1"
    else
        local copy="${1%.html}.noopt.html"
        sed 's/data-wasm-opt="z"/data-wasm-opt="0"/' "$1" > "$copy"
        echo "$copy"
    fi
}

stage=../target/app-full
rm -rf "$stage"
trunk build --release=true --dist "$stage" --html-output map.html "$(page map.html)"
trunk build --release=true "$(page index.html)"
cp -r "$stage"/. ../dist/
rm -rf "$stage"
