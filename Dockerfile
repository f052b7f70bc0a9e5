# linserve image: the gRPC server, its CLI and the bundled default model.
#   docker build -t linserve .
#   docker run --rm -p 50051:50051 -p 9464:9464 linserve
#   linserve-cli health --address 127.0.0.1:50051
#
# The build stage runs the scripts CI runs (scripts/install-deps.sh, then
# scripts/build.sh, which scripts/test.sh calls); the runtime stage installs
# only the runtime libraries (LINSERVE_DEPS=runtime) and runs as a non-root
# user. tests/deploy/check_dockerfile.py checks both, and that the runtime
# packages provide every shared library `ldd` lists for the two binaries.
# docs/operations.md ("Deploying") has the details.

FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh
COPY . .
RUN TARGETS="linserve linserve-cli" bash scripts/build.sh \
    -DLINSERVE_BUILD_TESTS=OFF -DLINSERVE_BUILD_BENCH=OFF

FROM debian:bookworm AS runtime
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN LINSERVE_DEPS=runtime bash /tmp/install-deps.sh \
    && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh \
    && groupadd --system --gid 10001 linserve \
    && useradd --system --uid 10001 --gid linserve --no-create-home linserve \
    && mkdir -p /var/lib/linserve/spill \
    && chown linserve:linserve /var/lib/linserve/spill
COPY --from=build /src/build/server/linserve /usr/local/bin/linserve
COPY --from=build /src/build/client/linserve-cli /usr/local/bin/linserve-cli
COPY models/default /opt/linserve/models/default
ENV LINSERVE_MODEL=/opt/linserve/models/default
USER 10001:10001
# gRPC (with grpc.health.v1) and Prometheus /metrics.
EXPOSE 50051 9464
VOLUME ["/var/lib/linserve/spill"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["linserve-cli", "health", "--quiet", "--address", "127.0.0.1:50051"]
ENTRYPOINT ["linserve"]
# Kubernetes replaces these with --flagfile (deploy/k8s/base/configmap.yaml).
CMD ["--listen=0.0.0.0:50051", "--metrics_port=9464", \
     "--spill_dir=/var/lib/linserve/spill"]
