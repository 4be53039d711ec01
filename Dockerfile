# syntax=docker/dockerfile:1
# The API image: `docker compose build api`, or `docker build -t hashtag-analytics .`
# Configuration comes only from the environment at run time; nothing secret is baked in.

# Python 3.11 is in security support until 2027-10; 3.11.15 (2026-03) is its latest release.
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

# --- builder: resolve and install the dependencies into a virtualenv ---------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The venv's seeded setuptools on Python 3.11 (65.5) has published advisories; pinned newer
# releases of it and of pip, like every other package the image installs.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install pip==26.3 setuptools==84.2.1
WORKDIR /src
COPY pyproject.toml constraints.lock ./
# The runtime dependencies from pyproject.toml first, at the exact versions of constraints.lock,
# in a layer of their own that a code change does not rebuild.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && /opt/venv/bin/pip install --requirement requirements.txt --constraint constraints.lock
# Then the service itself, as a wheel: the package carries its migrations, view SQL, sample and
# static files, so the image needs no source tree and no PYTHONPATH.
COPY README.md ./
COPY service ./service
RUN /opt/venv/bin/pip install --no-deps --constraint constraints.lock .

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/app/.data

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv
# /app holds only the embedded PostgreSQL's data (DATA_DIR) when no DATABASE_URL is given.
# /var/log/api: LOG_FILE's directory in docker-compose.yml. A new named volume mounted there
# starts as a copy of this directory, owner and mode included: writable by the app user,
# readable by its group (Filebeat joins it with group_add), closed to everyone else.
WORKDIR /app
RUN mkdir -p /app/.data && chown app:app /app/.data \
    && mkdir -p /var/log/api && chown app:app /var/log/api && chmod 0750 /var/log/api

# Numeric, so Kubernetes-style runAsNonRoot checks can verify it without /etc/passwd.
USER 10001:10001
EXPOSE 8080

# Liveness only (the process answers); readiness (/ready: database reachable) is HAProxy's check.
# The slim image has no curl, so the probe is Python's urllib.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/live' % os.environ.get('PORT', '8080'), timeout=4)"]

CMD ["python", "-m", "service", "serve"]
