# The gateway's container image: `gateway serve` on 0.0.0.0:$PORT as a non-root user, call
# records and recordings on the /data volume. How to build, run and stop it: docs/container.md.
#
# BASE_IMAGE is an argument so CI, which cannot reach a container registry, can build on a
# Debian base of its own (.ci/install-container). Any base with python3 (3.11 to 3.13), its
# venv module and useradd works; the builder and the runtime stage must use the same one,
# because the venv refers to the base's python by path.
ARG BASE_IMAGE=python:3.13-slim-bookworm

# --- builder: the project and its dependencies, in a venv -------------------------------------
FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv
WORKDIR /src
# Only what the package is built from; .dockerignore keeps the rest of the context out as well.
COPY pyproject.toml README.md LICENSE ./
COPY gateway ./gateway
# A regular (not editable) install, compiled to bytecode: the runtime stage gets the venv only.
RUN /opt/venv/bin/pip install '.[postgres]'

# --- runtime ------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
# A fixed UID, so a volume's owner and a Kubernetes runAsUser can be set to match.
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /data \
        --shell /usr/sbin/nologin gateway \
 && mkdir /data /app \
 && chown gateway:gateway /data
# Root owns the venv: the gateway's user can run it, not change it.
COPY --from=builder /opt/venv /opt/venv
# Settings only, never a secret: those come from the environment at run time (docs/container.md).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_DATA_DIR=/data \
    PORT=8080
# An optional .env may be mounted at /app/.env (the process environment overrides it). Root owns
# /app: the gateway's user cannot write there.
WORKDIR /app
VOLUME ["/data"]
EXPOSE 8080
USER gateway:gateway
# SIGTERM drains: calls in progress go on for up to GATEWAY_DRAIN_TIMEOUT_S, then the process
# exits 0. Give the runtime a stop timeout longer than that.
STOPSIGNAL SIGTERM
# Liveness on /healthz, with python's urllib (a slim image has no curl): a non-2xx answer or
# no answer raises, and the check exits 1. It stays 200 through a drain.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=4)"]
# Exec form: gateway serve is PID 1 and gets SIGTERM itself. Arguments given to `run` are
# appended, e.g. --workers 2. Port: set PORT, not --port, so the health check follows it.
ENTRYPOINT ["gateway", "serve", "--host", "0.0.0.0"]
