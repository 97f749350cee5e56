# syntax=docker/dockerfile:1
#
# The build stage runs the README's own commands (scripts/setup.sh, then
# cargo leptos build --release), so what CI tests is what the image builds.
# scripts/check-image-layout.sh replays the runtime stage without Docker.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The tools first: they change rarely and cargo-leptos takes ~13 minutes.
COPY scripts/setup.sh scripts/setup.sh
COPY end2end/package.json end2end/package-lock.json end2end/
RUN ./scripts/setup.sh
COPY . .
RUN ./scripts/setup.sh \
 && PATH="/src/end2end/node_modules/.bin:$PATH" cargo leptos build --release --precompress \
 && cargo build --release -p pubsub-cli

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --home-dir /app pubsub
WORKDIR /app
COPY --from=build /src/target/release/pubsub-server /src/target/release/pubsub /usr/local/bin/
COPY --from=build /src/target/site /app/site
ENV PUBSUB_ADDR=0.0.0.0:4000 \
    LEPTOS_SITE_ROOT=/app/site \
    RUST_LOG=info
USER pubsub
EXPOSE 4000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["pubsub", "--server", "http://127.0.0.1:4000", "health"]
# SIGTERM (docker stop) is a graceful shutdown: clients get shutting_down.
STOPSIGNAL SIGTERM
ENTRYPOINT ["pubsub-server"]
