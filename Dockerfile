# The tani binary in a distroless image, for deploy/kubernetes:
#   docker build -t ghcr.io/tani-platform/tani:0.1.0 .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/tani ./cmd/tani

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tani /usr/local/bin/tani
# uid 65532, as the manifests' securityContext expects.
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/tani"]
