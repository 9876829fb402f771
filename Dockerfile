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
#
# Where the binaries come from is the BINARIES argument: `build` (default, the release build
# below) or `host-binaries`, binaries compiled outside on Debian 12 and passed as the build
# context (tests/cluster/images.sh does that with buildah for the local cluster's node).

# The base images, each a full reference so that a release pipeline pins it by digest without
# editing this file (docs/images.md, "Pinning the base images by digest"):
#   --build-arg RUST_IMAGE=docker.io/library/rust:1.95-bookworm@sha256:<digest>
#   --build-arg DISTROLESS=gcr.io/distroless/cc-debian12:nonroot@sha256:<digest>
# With both a tag and a digest the digest is what is pulled; the tag stays for people to read.
# The build image and the runtime image must share a glibc: both are Debian 12 (bookworm).
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG DISTROLESS=gcr.io/distroless/cc-debian12:nonroot
ARG BINARIES=build

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Only the workspace (every member must be present for cargo to load it), never a local target/.
COPY Cargo.toml Cargo.lock ./
COPY contract ./contract
COPY model ./model
COPY pgtls ./pgtls
COPY store ./store
COPY rollout ./rollout
COPY trainer ./trainer
COPY predictor ./predictor
COPY operator ./operator
COPY tests ./tests
# A member too (the kubectl plugin, which runs on users' machines, not in an image).
COPY kubectl-plugin ./kubectl-plugin
# A member too (the trainer benchmark's LIBMF side), though the image does not build it.
COPY benches/trainer/libmf ./benches/trainer/libmf
# Cache mounts keep the registry and incremental artifacts between builds; the binaries are
# copied out in the same step because the target/ mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p recommender-operator -p recommender-trainer -p recommender-predictor \
 && mkdir -p /out \
 && cp target/release/recommender-operator target/release/recommender-trainer \
       target/release/recommender-predictor /out/

# The same three files, compiled on the host: the build context holds only them (stripped).
FROM scratch AS host-binaries
COPY recommender-operator recommender-trainer recommender-predictor /out/

# The stage the final images copy from: `build` or `host-binaries`.
FROM ${BINARIES} AS binaries

FROM ${DISTROLESS} AS recommender-operator
COPY --from=binaries /out/recommender-operator /usr/local/bin/recommender-operator
USER 65532:65532
# /metrics, /livez, /readyz
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/recommender-operator"]

FROM ${DISTROLESS} AS recommender-trainer
COPY --from=binaries /out/recommender-trainer /usr/local/bin/recommender-trainer
USER 65532:65532
# The operator's Jobs pass `train ...` as args; the report goes to /dev/termination-log.
ENTRYPOINT ["/usr/local/bin/recommender-trainer"]

FROM ${DISTROLESS} AS recommender-predictor
COPY --from=binaries /out/recommender-predictor /usr/local/bin/recommender-predictor
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/recommender-predictor"]
