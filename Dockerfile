# syntax=docker/dockerfile:1
#
# gatehouse container image.
#
#   docker build -t gatehouse .
#   docker run --rm -p 4180:4180 \
#     -e GATEHOUSE_UPSTREAM=http://app:8080 \
#     -e GATEHOUSE_ISSUER_URL=https://sso.example.com/realms/main \
#     -e GATEHOUSE_CLIENT_ID=gatehouse -e GATEHOUSE_CLIENT_SECRET=... \
#     -e GATEHOUSE_COOKIE_SECRET="$(docker run --rm gatehouse secret)" \
#     gatehouse
#
# The image listens on 0.0.0.0:4180 (GATEHOUSE_LISTEN below); a --listen flag
# or a config file mounted with `serve --config /etc/gatehouse/gatehouse.toml`
# works as well (flags > env > file > defaults).

############################ build ############################
FROM rust:1-bookworm AS builder
WORKDIR /src

# Only what the build needs; .dockerignore keeps target/, .git and
# node_modules out of the context.
COPY . .

# Cache mounts keep the crates.io registry and the target dir between builds;
# the binary is copied out of the cached target dir before the mount goes away.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && install -D -m 0755 target/release/gatehouse /out/gatehouse \
 && strip /out/gatehouse \
 && /out/gatehouse --help >/dev/null

############################ runtime ############################
# distroless "cc": glibc, libgcc, CA certificates, no shell, no package
# manager. The :nonroot tag's default user is uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="gatehouse" \
      org.opencontainers.image.description="Identity-aware reverse proxy: OpenID Connect login in front of Headlamp or any web app" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder --chown=0:0 /out/gatehouse /usr/local/bin/gatehouse

# Inside a container the loopback-only default (127.0.0.1:4180) would be
# unreachable from outside; listen on all interfaces instead.
ENV GATEHOUSE_LISTEN=0.0.0.0:4180

USER 65532:65532
EXPOSE 4180

ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["serve"]
