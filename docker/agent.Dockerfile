# loopwatch-agent: drains the shared-memory rings of the instrumented workers and serves Prometheus
# /metrics (and /api/status) on port 9477. Build context: the repository root.
#
#   docker build -f docker/agent.Dockerfile -t loopwatch-agent .
#   docker run --rm -p 9477:9477 -v loopwatch-rings:/run/loopwatch loopwatch-agent
#
# The agent reads only ring files owned by its own uid (see --ring.allowed-uids): run the
# instrumented app as the same uid, 10001 (docker/demo.Dockerfile does).

# ---- builder: compiles the agent only (no tests, no benchmarks) ----------------------------------
FROM debian:12 AS builder

# LOOPWATCH_BUILD_SHIM=OFF: the CPython extension is not configured, so no Python headers are needed.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      g++ make cmake \
      prometheus-cpp-dev libcivetweb-dev libboost-dev nlohmann-json3-dev libcli11-dev libspdlog-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY CMakeLists.txt ./
COPY protocol/ protocol/
COPY agent/ agent/
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLOOPWATCH_BUILD_TESTS=OFF -DLOOPWATCH_BUILD_BENCH=OFF \
      -DLOOPWATCH_BUILD_SHIM=OFF \
 && cmake --build build --target loopwatch-agent -j"$(nproc)" \
 && strip build/agent/loopwatch-agent

# ---- runtime: the binary and the shared libraries it links ---------------------------------------
FROM debian:12-slim

# ldd of loopwatch-agent: libprometheus-cpp-{pull,core}, libcivetweb(-cpp), libspdlog, libfmt; libstdc++,
# libgcc_s, libc and zlib are already in debian:12-slim.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libprometheus-cpp-pull1.0 libprometheus-cpp-core1.0 libcivetweb1 libspdlog1.10 libfmt9 \
 && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid, shared with the app image: ring files are 0600 and owned by the writer's uid.
RUN groupadd --system --gid 10001 loopwatch \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin loopwatch \
 && mkdir -p /run/loopwatch \
 && chown 10001:10001 /run/loopwatch \
 && chmod 0700 /run/loopwatch

COPY --from=builder /src/build/agent/loopwatch-agent /usr/local/bin/loopwatch-agent

USER 10001:10001
EXPOSE 9477
# No curl in the image: bash's /dev/tcp sends one HTTP request to the default port (change the check
# if the listen port is overridden). It asks /api/status, not /metrics: every GET /metrics counts as a
# scrape, and the agent removes an exited worker's ring after the next scrape, so a probe on /metrics
# could take the last look at a dead worker's final samples away from Prometheus.
# No --start-period: dockerfilelint 1.8.0 rejects any option with a hyphen in its name, and the agent
# serves within milliseconds anyway.
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9477 && printf 'GET /api/status HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]

ENTRYPOINT ["loopwatch-agent"]
CMD ["--web.listen-address", "0.0.0.0:9477", "--ring.dir", "/run/loopwatch"]
