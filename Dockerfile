# pdm-edge appliance image: the service (`pdm-edge run`) and, from the same image, the
# dashboard (`pdm-edge dashboard`). See docs/deploy.md.
#
#   docker build -t pdm-edge:0.1.0 .
#   docker run -d --name pdm-edge --stop-timeout 30 --read-only --tmpfs /tmp \
#       --cap-drop ALL --security-opt no-new-privileges \
#       -v pdm-data:/var/lib/pdm-edge -p 127.0.0.1:8470:8470 \
#       -v "$PWD/deploy/secrets/api_token:/run/secrets/api_token:ro" \
#       -e PDM_API_TOKEN_FILE=/run/secrets/api_token \
#       pdm-edge:0.1.0
#
# or, with InfluxDB and the dashboard: docker compose -f deploy/compose.yaml up -d
#
# Stop grace: on SIGTERM the service stops its sources, lets each machine finish its queue,
# drops every relay (fail-safe), gives webhooks a few seconds and delivers or spools the
# history queue (pdm/service/app.py); with the store down that takes up to ~20 s. Docker's
# default grace before SIGKILL is 10 s: give it 30 s (`docker run --stop-timeout 30`, compose
# `stop_grace_period: 30s`). A Dockerfile cannot set this itself. SIGKILL loses at most the
# last second of features (docs/history.md) but leaves a Modbus relay as it was.
#
# Base image: a tag, so that rebuilds pick up Debian and CPython security fixes. In production,
# pin it by digest as well, so that a rebuild is reproducible and reviewed when it changes:
#   docker buildx imagetools inspect python:3.11-slim-bookworm   # shows the digest
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# Build stage: a venv in /opt/venv with the exact versions of constraints.txt, from wheels only
# (no compiler is installed in either stage; a dependency without a wheel for the target
# platform fails the build instead of compiling).
FROM ${PYTHON_IMAGE} AS build

# Optional extras from pyproject.toml, comma-separated, e.g. PDM_EXTRAS=gpio for a GPIO relay.
# An extra's packages that constraints.txt does not pin install at their newest version.
ARG PDM_EXTRAS=""

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# The venv gets no pip and no setuptools of its own: the base image's pip installs into it
# (`pip --python`), so the final image carries only what pdm-edge runs on.
RUN python -m venv --without-pip /opt/venv

WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml or
# constraints.txt change, not on every code change. The requirement list is read from
# pyproject.toml (dependencies + the requested extras) so that it cannot drift from it.
COPY pyproject.toml constraints.txt ./
RUN python -c 'import os, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; extras = [e.strip() for e in os.environ.get("PDM_EXTRAS", "").split(",") if e.strip()]; print("\n".join(p["dependencies"] + [r for e in extras for r in p["optional-dependencies"][e]]))' \
        > /tmp/requirements.txt \
    && python -m pip --python /opt/venv/bin/python install --no-cache-dir --only-binary=:all: \
        -c constraints.txt -r /tmp/requirements.txt

# Then the package itself (pure Python; setuptools builds it in pip's isolated build env,
# itself installed from wheels). --no-deps: everything it needs is already installed above,
# and `pip check` proves it.
COPY README.md ./
COPY pdm/ pdm/
RUN python -m pip --python /opt/venv/bin/python install --no-cache-dir --only-binary=:all: \
        --no-deps -c constraints.txt . \
    && python -m pip --python /opt/venv/bin/python check \
    && /opt/venv/bin/pdm-edge --version

# ---------------------------------------------------------------------------------------------
# Final stage: the same base, the venv, the read-only config. No build tools, no compilers,
# no curl; runs as an unprivileged user.
FROM ${PYTHON_IMAGE} AS runtime

ARG PDM_UID=10001
ARG PDM_GID=10001
# `--build-arg PDM_REVISION=$(git rev-parse HEAD)` records the commit in the image.
ARG PDM_REVISION=unknown

LABEL org.opencontainers.image.title="pdm-edge" \
      org.opencontainers.image.description="Predictive-maintenance edge appliance for rotating machinery: streaming vibration DSP, anomaly scoring, alarms, relay and webhook actions, history." \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.revision="${PDM_REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in deployment (pip compiled the
# .pyc files at install time). OMP/OPENBLAS threads = 1: the math libraries would otherwise
# size their thread pools from the host's cores, not the container's CPU limit, and the
# design scales by processes and batching, not threads (ARCHITECTURE.md); onnxruntime's
# threads come from the pipeline's model.intra_op_threads.
# ORT_DISABLE_TELEMETRY=1: onnxruntime 1.32's Linux wheel otherwise writes a device id and an
# event cache under ~/.cache/Microsoft and uploads usage telemetry to Microsoft. An appliance
# on a plant network must not; with it set, nothing is created or sent (checked: no files).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PDM_EDGE_DATA=/var/lib/pdm-edge \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    ORT_DISABLE_TELEMETRY=1

# Fixed uid/gid so that volumes, bind mounts and secret files can be owned by it on the host.
# The data directory exists (owned by pdm) before VOLUME is declared, so that a new named
# volume starts with that ownership. A bind-mounted host directory keeps its own: chown it to
# 10001:10001 first.
RUN groupadd --system --gid "${PDM_GID}" pdm \
    && useradd --system --uid "${PDM_UID}" --gid pdm --home-dir /var/lib/pdm-edge \
        --no-create-home --shell /usr/sbin/nologin pdm \
    && install -d -o pdm -g pdm -m 0750 /var/lib/pdm-edge

COPY --from=build /opt/venv /opt/venv

# Configuration, owned by root and read-only for the service: pipelines/NAME.toml and
# models/NAME/ keep their relative layout, so a pipeline's `[model] path = "../models/NAME"`
# resolves here as in the repository. Mount your own over /etc/pdm-edge/pipelines and
# /etc/pdm-edge/models (read-only) for real machines.
COPY pipelines/ /etc/pdm-edge/pipelines/
COPY models/ /etc/pdm-edge/models/
RUN chmod -R u=rwX,go=rX /etc/pdm-edge \
    && pdm-edge check /etc/pdm-edge/pipelines/*.toml > /dev/null

VOLUME ["/var/lib/pdm-edge"]
WORKDIR /var/lib/pdm-edge

# Numeric, so that a runtime can verify "not root" (e.g. Kubernetes runAsNonRoot).
USER ${PDM_UID}:${PDM_GID}

# 8470: control API (status, acknowledge, health). 8501: dashboard (Streamlit).
EXPOSE 8470 8501

STOPSIGNAL SIGTERM

# GET /health on the control API: 200 while healthy, 503 with reasons when a machine's
# processing thread stopped or stalled, falls behind real time, or history rows were dropped
# (pdm/service/api.py). /health never needs a token. slim has no curl: Python's urllib, with
# proxies switched off (an HTTP_PROXY in the environment must not capture 127.0.0.1). Any
# error (refused, timeout, 503) exits non-zero. The dashboard service overrides this check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8470/health', timeout=4)"]

ENTRYPOINT ["pdm-edge"]
# The demo: the demo pump fed by the built-in seeded simulator (`--simulate`; `run` needs a
# source). A real machine replaces it with the TCP stream input, e.g.
# `--listen 0.0.0.0:PORT` (publish that port to the DAQ's network only: the stream has no
# authentication), and its own pipeline and model mounted over /etc/pdm-edge.
# Inside a container the control API must listen on all interfaces to be reachable through a
# published port or the compose network. On any address but loopback the service refuses to
# start without a token: give it as a secret file, PDM_API_TOKEN_FILE=/run/secrets/api_token.
CMD ["run", "/etc/pdm-edge/pipelines/demo.toml", "--simulate", "--api", "0.0.0.0:8470"]
