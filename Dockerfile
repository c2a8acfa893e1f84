# Energy Utility Platform: the server and its site on `scratch` (no shell, no package manager):
# the release binary, the few shared libraries it links (glibc, libgcc_s, libm), CA certificates
# and a non-root user, laid out by scripts/rootfs.
#
#   docker build -t energy .         builds everything (needs docker.io/library/rust)
#   scripts/image                    builds the same runtime stage from a local release build
#                                    (ARTEFACTS names an image holding /rootfs) and runs it
#
# Settings are environment variables (README, "Configuration"); no secret is baked in.

ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG ARTEFACTS=build

FROM ${RUST_IMAGE} AS build
# scripts/env.sh is bash (it finds the pinned wasm-opt through BASH_SOURCE).
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY . .
# The pinned tools (cargo-leptos, wasm-bindgen, wasm-opt), without browser or dev tools.
RUN scripts/install-tools --no-browser \
 && . scripts/env.sh \
 && cargo leptos build --release --split \
 && scripts/rootfs /rootfs

FROM ${ARTEFACTS} AS artefacts

FROM scratch AS runtime
COPY --from=artefacts /rootfs/system/ /
COPY --from=artefacts --chown=10001:10001 /rootfs/data/ /data/
USER 10001:10001
WORKDIR /data
ENV LEPTOS_SITE_ADDR=0.0.0.0:3000 \
    RUST_LOG=info
EXPOSE 3000
VOLUME ["/data"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=12s --start-period=30s --retries=3 \
  CMD ["/app/server", "healthcheck"]
ENTRYPOINT ["/app/server"]
