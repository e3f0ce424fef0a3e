# A small static image: a musl build on Alpine's Rust, copied onto distroless/static.
# (It cannot be built on the development machines, which have no Docker engine.)
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
RUN cargo build --release --locked --bin switchboard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/release/switchboard /switchboard
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/switchboard"]
CMD ["run", "--listen", "0.0.0.0:8080"]
