# syntax=docker/dockerfile:1
# The tinymod image: one static binary on distroless, run as a non-root user.
#   docker build -t tinymod:dev --build-arg VERSION=$(git describe --always) .
# A module of your own builds the same way with its own main package:
#   docker build --build-arg MAIN=./cmd/mymodule -t mymodule:dev .

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG MAIN=./cmd/tinymod
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tinymod ${MAIN}

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tinymod /tinymod
# 65532 is distroless's "nonroot"; numeric, so that runAsNonRoot can verify it.
USER 65532:65532
# gRPC, metrics, health probes.
EXPOSE 8483 8080 8081
ENTRYPOINT ["/tinymod", "run"]
