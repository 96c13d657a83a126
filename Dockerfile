# respseal: a small, non-root runtime image. Build: docker build -t respseal .
# The key is never part of the image: mount it as a secret (see
# docker-compose.yml) and point RESPSEAL_KEY_FILE at it.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY vendor ./vendor
COPY src ./src
RUN cargo build --release --locked --bin respseal \
    && strip target/release/respseal

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin respseal \
    && mkdir -p /etc/respseal
COPY --from=build /src/target/release/respseal /usr/local/bin/respseal
COPY scripts/entrypoint.sh /usr/local/bin/respseal-entrypoint
COPY deploy/config.toml /etc/respseal/config.toml
USER 10001:10001
# Inside a container, 0.0.0.0 is the container's own interface: what is
# reachable is what `docker run -p` publishes. The admin endpoints (metrics
# and health, nothing else) are opted in here on purpose, for orchestrators'
# probes. Serving clients without [[users]] is not: protected mode refuses
# it until the deployment says so (the compose file does, for its private
# network), or [[users]] are configured.
ENV RESPSEAL_LISTEN=0.0.0.0:6380 \
    RESPSEAL_ADMIN_LISTEN=0.0.0.0:9180 \
    RESPSEAL_ADMIN_ALLOW_REMOTE=true
EXPOSE 6380 9180
HEALTHCHECK --interval=10s --timeout=3s CMD ["respseal", "check", "--sample", "0"]
ENTRYPOINT ["/usr/local/bin/respseal-entrypoint"]
