# trawl-operator image. Build from the repository root:
#   docker build -f images/operator.Dockerfile -t ghcr.io/trawl-dev/trawl-operator:dev .
FROM docker.io/library/rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libpcap-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry --mount=type=cache,target=/src/target \
    cargo build --release --locked -p operator --bin trawl-operator && cp target/release/trawl-operator /trawl-operator

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libpcap0.8 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /trawl-operator /usr/local/bin/trawl-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/trawl-operator"]
