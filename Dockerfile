# puffgres as a container: the single-file binary (bun build --compile) on a distroless base, as a non-root user.
#   docker build -t puffgres .
#   docker run --rm -v "$PWD:/work" -e DATABASE_URL -e TURBOPUFFER_API_KEY puffgres            # puffgres run
#   docker run --rm -v "$PWD:/work" puffgres migrate --dry-run
#   docker run --rm -v "$PWD:/work" -p 9187:9187 puffgres run --metrics-port 9187 --metrics-host 0.0.0.0
# The metrics server (status page, /metrics, /healthz) listens on 127.0.0.1 unless --metrics-host says otherwise,
# which inside a container no one outside can reach: the default command listens on every interface of the
# container (reached only through a published port); a command of your own needs --metrics-host 0.0.0.0.
# The project folder (puffgres.toml, puffgres/migrations, puffgres/transforms) is mounted at /work.

# Build on the builder's own platform and cross-compile for the target's (Bun fetches the other runtime from npm).
FROM --platform=$BUILDPLATFORM node:20-bookworm-slim AS build
ARG TARGETARCH
WORKDIR /src
COPY package.json package-lock.json ./
# runtime packages plus the optional `bun` package, which does the compiling; no dev tools
RUN npm ci --omit=dev --no-audit --no-fund
COPY src/ src/
COPY scripts/build.ts scripts/
RUN set -e; \
    case "$TARGETARCH" in \
      amd64) t=linux-x64 ;; \
      arm64) t=linux-arm64 ;; \
      *) echo "unsupported architecture: $TARGETARCH" >&2; exit 1 ;; \
    esac; \
    ./node_modules/.bin/bun scripts/build.ts --target "$t" --outdir /out; \
    mv "/out/puffgres-$t" /out/puffgres; \
    if [ "$TARGETARCH" = "$(dpkg --print-architecture)" ]; then /out/puffgres --version; fi

# glibc and libstdc++, no shell; the image's nonroot user is uid 65532
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/puffgres /usr/local/bin/puffgres
USER nonroot
WORKDIR /work
# read by Bun when the binary starts: its fetch may send 1,024 requests at once, not 256 (a namespace per tenant
# writes one request per namespace; src/turbopuffer/write-request.ts)
ENV BUN_CONFIG_MAX_HTTP_REQUESTS=1024
ENTRYPOINT ["/usr/local/bin/puffgres"]
CMD ["run", "--metrics-host", "0.0.0.0"]
