# syntax=docker/dockerfile:1

# Dockerfile builds the broker image: a static binary on a distroless, non-root
# base. Build it with the version stamped, e.g.
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t broker .
#
# The go build command below must stay identical to the Makefile's `build`
# recipe (apart from the output path); deploy/dockerfile_test.go checks it.

FROM golang:1.26 AS build
WORKDIR /src

# Dependencies first, so source edits do not invalidate the module download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/entrabroker/broker/internal/version.Version=${VERSION}" -o /out/broker ./cmd/broker

# static-debian12:nonroot has CA certificates and tzdata, no shell, and runs as
# uid/gid 65532 ("nonroot").
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="broker" \
      org.opencontainers.image.description="Local token broker for Microsoft Entra ID" \
      org.opencontainers.image.source="https://github.com/entrabroker/broker" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/broker /broker
USER 65532:65532
# 8400: API listener (token endpoints, proxy); 9400: ops listener (/metrics,
# /healthz, /readyz). Both bind to 127.0.0.1 unless BROKER_LISTEN and
# BROKER_OPS_LISTEN say otherwise; keep the API on loopback outside a pod.
EXPOSE 8400 9400
ENTRYPOINT ["/broker"]
CMD ["serve"]
