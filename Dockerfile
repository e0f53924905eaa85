# Builds the guildhall binary; used by docker-compose.yml.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p guildhall

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
# Guildhall never runs as root: an unprivileged user (fixed numeric id, so an orchestrator can
# check runAsNonRoot) owns the data directory, where the default SQLite file is created.
RUN groupadd --system --gid 10001 guildhall \
 && useradd --system --uid 10001 --gid guildhall --home-dir /var/lib/guildhall \
      --shell /usr/sbin/nologin guildhall \
 && install -d -o guildhall -g guildhall -m 0700 /var/lib/guildhall
COPY --from=build /src/target/release/guildhall /usr/local/bin/guildhall
WORKDIR /var/lib/guildhall
VOLUME /var/lib/guildhall
USER 10001:10001
ENTRYPOINT ["guildhall"]
