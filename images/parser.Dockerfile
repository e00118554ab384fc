# trawl-parser image. Build from the repository root:
#   docker build -f images/parser.Dockerfile -t ghcr.io/trawl-dev/trawl-parser:dev .
FROM docker.io/library/rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libpcap-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry --mount=type=cache,target=/src/target \
    cargo build --release --locked -p parser --bin trawl-parser && cp target/release/trawl-parser /trawl-parser

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /trawl-parser /usr/local/bin/trawl-parser
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/trawl-parser"]
