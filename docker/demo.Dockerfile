# The FastAPI demo app (examples/demo_app.py) under uvicorn, 4 uvloop workers, every one instrumented
# by the loopwatch shim (LOOPWATCH=1). Build context: the repository root.
#
#   docker build -f docker/demo.Dockerfile -t loopwatch-demo .
#
# The web stack is Debian 12's (python3-uvicorn, -uvloop, -fastapi, -httptools); the shim is built
# into a venv with --system-site-packages, so the venv sees those packages.

# ---- builder: compiles the shim's C++ extension into /opt/loopwatch/venv ---------------------------
FROM debian:12 AS builder

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      g++ python3-dev python3-venv python3-setuptools python3-wheel \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# shim/setup.py includes ../protocol: keep the repository's layout.
COPY protocol/ protocol/
COPY shim/ shim/
# Debian's /usr/bin/python3, as in the runtime stage: the venv's interpreter is a symlink to it, so
# the venv keeps working when copied to the same path there. --no-build-isolation --no-index: build
# with Debian's setuptools, offline.
RUN /usr/bin/python3 -m venv --system-site-packages /opt/loopwatch/venv \
 && /opt/loopwatch/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check \
      --no-build-isolation --no-index ./shim

# ---- runtime: Debian's Python web stack, the venv, the app -----------------------------------------
FROM debian:12-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-uvicorn python3-uvloop python3-fastapi python3-httptools \
 && rm -rf /var/lib/apt/lists/*

# The same fixed uid/gid as the agent image (docker/agent.Dockerfile): the shim writes its ring files
# with mode 0600, and the agent by default reads only ring files owned by its own uid.
RUN groupadd --system --gid 10001 loopwatch \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin loopwatch \
 && mkdir -p /run/loopwatch \
 && chown 10001:10001 /run/loopwatch \
 && chmod 0700 /run/loopwatch

COPY --from=builder /opt/loopwatch/venv /opt/loopwatch/venv
WORKDIR /app
COPY examples/ examples/

ENV PATH=/opt/loopwatch/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOOPWATCH=1 \
    LOOPWATCH_DIR=/run/loopwatch \
    LOOPWATCH_SERVICE=demo

USER 10001:10001
EXPOSE 8000
# LOOPWATCH=0: the probe itself is a Python process and need not be instrumented. No --start-period
# (dockerfilelint 1.8.0 rejects it): the first probe runs after one interval, when the workers are up.
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
  CMD ["env", "LOOPWATCH=0", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/', timeout=2)"]

CMD ["python", "-m", "uvicorn", "examples.demo_app:app", "--host", "0.0.0.0", "--port", "8000", "--workers", "4", "--loop", "uvloop"]
