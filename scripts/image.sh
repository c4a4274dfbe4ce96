#!/usr/bin/env bash
# `make image`: the FROM-scratch image (Containerfile) from the static binary and the built web
# app, tagged scopehub:$VERSION, also written as an OCI archive. Needs buildah (as root here:
# `--isolation chroot`).
set -euo pipefail
cd "$(dirname "$0")/.."

MUSL=x86_64-unknown-linux-musl
BIN=target/$MUSL/release/scopehub
IMAGE=${IMAGE:-scopehub}
VERSION=${VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
OUT=${OUT:-target/image}
CA=${CA_CERTIFICATES:-/etc/ssl/certs/ca-certificates.crt}

[ -x "$BIN" ] || { echo "image: $BIN is missing (make musl)" >&2; exit 1; }
[ -f dist/index.html ] || { echo "image: dist/ is not built (make app)" >&2; exit 1; }
[ -f "$CA" ] || { echo "image: no CA certificates at $CA (apt-get install ca-certificates)" >&2; exit 1; }
# A dynamically linked program names its loader (an INTERP header); FROM scratch has none.
if readelf -l "$BIN" | grep -q INTERP; then
    echo "image: $BIN is not static" >&2
    exit 1
fi

# The build context is exactly what the image holds.
context=$OUT/context
rm -rf "$context"
mkdir -p "$context"
cp "$BIN" "$context/scopehub"
cp -r dist "$context/dist"
cp "$CA" "$context/ca-certificates.crt"
cp Containerfile "$context/Containerfile"

buildah bud --isolation chroot --quiet --layers=false \
    --label "org.opencontainers.image.revision=$VERSION" \
    --label "org.opencontainers.image.source=scopehub" \
    -f "$context/Containerfile" -t "$IMAGE:$VERSION" "$context" >/dev/null
archive=$OUT/scopehub-$VERSION.oci.tar
rm -f "$archive"
buildah push --quiet "$IMAGE:$VERSION" "oci-archive:$archive:$IMAGE:$VERSION"
echo "$IMAGE:$VERSION" >"$OUT/tag"
echo "image: $IMAGE:$VERSION, OCI archive $archive ($(du -h "$archive" | cut -f1), layers gzip-compressed)"
