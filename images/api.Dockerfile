# trawl-api image. Build from the repository root:
#   docker build -f images/api.Dockerfile -t ghcr.io/trawl-dev/trawl-api:dev .
FROM docker.io/library/rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libpcap-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry --mount=type=cache,target=/src/target \
    cargo build --release --locked -p api --bin trawl-api && cp target/release/trawl-api /trawl-api

FROM docker.io/library/node:22-bookworm-slim AS ui
WORKDIR /ui
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /trawl-api /usr/local/bin/trawl-api
COPY --from=ui /ui/dist /usr/share/trawl/ui
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/trawl-api"]
