# trawl-sniffer image. Build from the repository root:
#   docker build -f images/sniffer.Dockerfile -t ghcr.io/trawl-dev/trawl-sniffer:dev .
FROM docker.io/library/rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libpcap-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sniffer --bin trawl-sniffer && cp target/release/trawl-sniffer /trawl-sniffer

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libpcap0.8 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /trawl-sniffer /usr/local/bin/trawl-sniffer
# Runs as root: capture needs NET_RAW/NET_ADMIN on the host network; the pod spec drops every other capability.
ENTRYPOINT ["/usr/local/bin/trawl-sniffer"]
