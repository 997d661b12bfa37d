#!/usr/bin/env bash
# Builds the `servelab` image without any image registry: static binaries from the host's
# toolchain, copied into a `FROM scratch` image (docker/Dockerfile.prebuilt).
#
# Usage: scripts/build-images.sh [TAG]     (default tag: servelab)
#
# glibc is linked statically (crt-static), so the binaries run on an empty filesystem. The
# explicit --target keeps build scripts and proc-macros dynamically linked, as they must
# be; the binaries land in target/x86_64-unknown-linux-gnu/release.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-servelab}
TARGET=x86_64-unknown-linux-gnu
echo "== building static binaries for $TARGET" >&2
# Stripped and without debug info (the host's release profile keeps line tables for perf):
# the image is five binaries, and their size is the image's size.
RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_DEBUG=0 \
  CARGO_PROFILE_RELEASE_STRIP=symbols \
  cargo build --release --locked --target "$TARGET" --workspace --exclude benches --bins
# Every architecture in the registry, and the simulator.
BINS="$(target/$TARGET/release/simulator architectures --names | tr '\n' ' ')simulator"

STAGE=target/image
rm -rf "$STAGE"
mkdir -p "$STAGE/bin" "$STAGE/results"
# An empty file keeps the directory in the build context's COPY (Docker copies a
# directory's contents); it is the only thing in /results until a volume covers it.
touch "$STAGE/results/.keep"
for bin in $BINS; do
  cp "target/$TARGET/release/$bin" "$STAGE/bin/"
done
# Fails here, not inside a container, if a binary still needs a dynamic loader.
for bin in "$STAGE"/bin/*; do
  if readelf -l "$bin" | grep -q "program interpreter"; then
    echo "build-images: $bin is dynamically linked; it would not run on scratch" >&2
    exit 1
  fi
done

echo "== docker build -f docker/Dockerfile.prebuilt -t $TAG $STAGE" >&2
docker build -q -f docker/Dockerfile.prebuilt -t "$TAG" "$STAGE" >/dev/null
docker image ls "$TAG" --format '{{.Repository}}:{{.Tag}} {{.Size}}' >&2
