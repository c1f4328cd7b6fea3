# syntax=docker/dockerfile:1
# loadgate: the operator (`loadgate operator`), as the Helm chart runs it.
#
#   docker build -f docker/loadgate.Dockerfile -t ghcr.io/loadgate/loadgate:0.1.0 .
#
# The entrypoint is the binary; the default command is `operator`, which the chart also passes
# as args (env MODEL_SERVER_IMAGE, LOADRUNNER_IMAGE, HTTP_ADDR=0.0.0.0:8080, RUST_LOG,
# LOG_FORMAT). `docker run --rm IMAGE crds` prints the CRDs. `loadgate local` is not meant to
# run from this image: it starts model-server as a child process, and that binary is not here.
#
# Runtime: distroless cc-debian12 (glibc, libgcc, CA certificates; no shell, no package
# manager), uid/gid 65532; the operator writes no files and serves /health and /metrics on 8080.

# Keep RUST_VERSION equal to the channel in rust-toolchain.toml (the build checks it).
ARG RUST_VERSION=1.95.0
# Shared by the three Dockerfiles:
#   BINARIES=build (default)  compile the binary in a rust:*-slim-bookworm stage, as a user with
#                             only Docker does;
#   BINARIES=prebuilt         take it from target/images/context/out/bin/, where
#                             scripts/build-images.sh puts the host's release build (stripped);
#   BASE                      the runtime image: distroless cc-debian12 by default;
#                             scripts/build-images.sh builds an equivalent one from this
#                             machine's Debian packages (docker/runtime-base.Dockerfile) where no
#                             base image can be pulled.
# CI builds with BINARIES=prebuilt and its own BASE: every line after the binary stages is what
# a user's build runs too.
ARG BINARIES=build
ARG BASE=gcr.io/distroless/cc-debian12:nonroot

# --- the binary: compiled here (build) or taken from the host (prebuilt) ----------------------
# The slim Rust image carries gcc and libc6-dev, all that ring's C and assembly need (no OpenSSL).
FROM rust:${RUST_VERSION}-slim-bookworm AS binaries-build
ARG RUST_VERSION
WORKDIR /src
# rust-toolchain.toml is only compared, not used: it lists rustfmt and clippy, which rustup
# would download into this image, and a build needs neither.
COPY rust-toolchain.toml /tmp/rust-toolchain.toml
RUN grep -Fqx "channel = \"${RUST_VERSION}\"" /tmp/rust-toolchain.toml \
 || { echo "RUST_VERSION=${RUST_VERSION} differs from rust-toolchain.toml:" >&2; \
      cat /tmp/rust-toolchain.toml >&2; exit 1; }
# The whole workspace: cargo resolves every member even to build one package.
COPY Cargo.toml Cargo.lock ./
COPY operator operator
COPY loadrunner loadrunner
COPY loadgate-results loadgate-results
COPY model-server model-server
COPY test/kubelet test/kubelet
# Cache mounts keep downloaded crates and compiled dependencies between builds (all three
# Dockerfiles share them), so a source change recompiles only the workspace crates. The binary
# loses its line tables but keeps its symbols (backtraces name functions), as
# scripts/build-images.sh strips the prebuilt one.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,id=loadgate-target,sharing=locked \
    cargo build --release --locked -p loadgate --bin loadgate \
 && install -D -m 0755 target/release/loadgate /out/bin/loadgate \
 && strip --strip-debug /out/bin/loadgate

FROM scratch AS binaries-prebuilt
COPY target/images/context/out/bin/loadgate /out/bin/loadgate

# BINARIES picks one of the two stages above; the builder builds only the one picked.
# hadolint ignore=DL3006
FROM binaries-${BINARIES} AS binaries

# --- runtime --------------------------------------------------------------------------------
# hadolint ignore=DL3006
FROM ${BASE}
LABEL org.opencontainers.image.title="loadgate" \
      org.opencontainers.image.description="The loadgate operator: ModelEndpoint and LoadTest controllers" \
      org.opencontainers.image.source="https://github.com/loadgate/loadgate" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=binaries /out/bin/loadgate /usr/local/bin/loadgate
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/loadgate"]
CMD ["operator"]
