# syntax=docker/dockerfile:1
#
# One Dockerfile, three images: pick one with --target.
#
#   docker build --target recommender-operator  -t <registry>/recommender-operator:<tag> .
#   docker build --target recommender-trainer   -t <registry>/recommender-trainer:<tag> .
#   docker build --target recommender-predictor -t <registry>/recommender-predictor:<tag> .
#
# The three binaries are built together in one release build (they share most dependencies),
# then each final image holds one binary on distroless/cc: glibc and libgcc, no shell, no package
# manager, running as the distroless "nonroot" user (65532), the UID the chart's and the
# operator's pod security contexts expect. See docs/images.md.

# The build image and the runtime image must share a glibc: both are Debian 12 (bookworm).
ARG RUST_VERSION=1.95
ARG DISTROLESS=gcr.io/distroless/cc-debian12:nonroot

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Only the workspace (every member must be present for cargo to load it), never a local target/.
COPY Cargo.toml Cargo.lock ./
COPY model ./model
COPY trainer ./trainer
COPY predictor ./predictor
COPY operator ./operator
COPY tests ./tests
# Cache mounts keep the registry and incremental artifacts between builds; the binaries are
# copied out in the same step because the target/ mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p recommender-operator -p recommender-trainer -p recommender-predictor \
 && mkdir -p /out \
 && cp target/release/recommender-operator target/release/recommender-trainer \
       target/release/recommender-predictor /out/

FROM ${DISTROLESS} AS recommender-operator
COPY --from=build /out/recommender-operator /usr/local/bin/recommender-operator
USER 65532:65532
# /metrics, /livez, /readyz
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/recommender-operator"]

FROM ${DISTROLESS} AS recommender-trainer
COPY --from=build /out/recommender-trainer /usr/local/bin/recommender-trainer
USER 65532:65532
# The operator's Jobs pass `train ...` as args; the report goes to /dev/termination-log.
ENTRYPOINT ["/usr/local/bin/recommender-trainer"]

FROM ${DISTROLESS} AS recommender-predictor
COPY --from=build /out/recommender-predictor /usr/local/bin/recommender-predictor
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/recommender-predictor"]
