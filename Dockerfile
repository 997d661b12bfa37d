# servelab's image: every server architecture and the simulator as static binaries on `scratch`.
#
#   docker build -t servelab .
#   docker run --rm -p 7777:7777 servelab thread-per-conn --addr 0.0.0.0:7777
#   docker run --rm servelab simulator --help
#
# This is the path for machines that can pull from an image registry. Without registry
# access, build the binaries on the host and use docker/Dockerfile.prebuilt, whose final
# stage is the same (see scripts/build-images.sh and the README).

# --- build: static release binaries ----------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# crt-static links glibc statically, so the binaries need nothing from the image; the
# explicit --target keeps the build scripts and proc-macros dynamic, as they must be.
# Stripped and without debug info: the binaries' size is the image's size.
ENV RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
# Every binary of the workspace but the benchmarks': each server architecture and the
# simulator (the registry in architectures/ lists them; nothing here needs to).
RUN cargo build --release --locked --target x86_64-unknown-linux-gnu \
        --workspace --exclude benches --bins \
    && mkdir -p /out/bin /out/results \
    && touch /out/results/.keep \
    && find target/x86_64-unknown-linux-gnu/release -maxdepth 1 -type f -perm -u+x \
        -exec cp {} /out/bin/ \;

# --- the image: nothing but the binaries -------------------------------------------------
FROM scratch
COPY --from=build /out/bin/ /bin/
# An empty directory the unprivileged user owns: a volume mounted here (the simulator's
# --save /results in deploy/stack.yaml) starts with this owner, so the simulator may write.
COPY --from=build --chown=65532:65532 /out/results/ /results/
ENV PATH=/bin
# No /etc/passwd in scratch: run as a numeric unprivileged user.
USER 65532:65532
EXPOSE 7777
# Healthy when the server answers /stats; the simulator's own container turns this off.
HEALTHCHECK --interval=2s --timeout=5s --start-period=2s --retries=15 \
    CMD ["simulator", "probe", "127.0.0.1:7777"]
CMD ["thread-per-conn", "--addr", "0.0.0.0:7777"]
