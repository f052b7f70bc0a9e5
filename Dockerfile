# linserve image. The build stage uses the same scripts as CI
# (scripts/install-deps.sh, scripts/build.sh); the runtime stage holds only
# runtime libraries and the binaries, and runs as a non-root user.
#
# Until the server exists (issue 4) the image's command is the kernel
# benchmark; the gRPC and metrics ports, the default model and the health
# check arrive with the server (issues 4 and 5).

FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh
COPY . .
RUN bash scripts/build.sh -DLINSERVE_BUILD_TESTS=OFF

FROM debian:bookworm AS runtime
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN LINSERVE_DEPS=runtime bash /tmp/install-deps.sh \
    && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh \
    && useradd --system --uid 10001 --no-create-home linserve
COPY --from=build /src/build/bench/kernels_bench /usr/local/bin/kernels_bench
USER linserve
CMD ["/usr/local/bin/kernels_bench"]
