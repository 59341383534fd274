# syntax=docker/dockerfile:1
# The colonies-operator image: `colonies-operator run` as user 10001 on python:3.11-slim.
# The builder stage builds the project's wheel and installs it with its dependencies into
# the virtualenv /opt/venv, from wheels only (coincurve, aiohttp, pyyaml ship binary wheels),
# so no compiler is needed; the final stage holds that virtualenv and nothing else of the build.
# Nothing at start needs a write: the bytecode is compiled at install, so a read-only root works.
# tests/integration/test_image.py builds it with buildah and runs it (see teststack/images_operator.py).

# Any Debian-like image with python3 (3.11+), its venv module, groupadd and useradd. The tests
# build on a local bookworm with Debian's python3, as no registry is reachable there.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# The venv's own pip builds the wheel: a distribution's python3 may come without pip.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --only-binary=:all: /wheels/*.whl

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
# Where this repository is published; pass --build-arg SOURCE_URL=... when it lives elsewhere.
ARG SOURCE_URL=https://github.com/colonyos/colonies-operator
LABEL org.opencontainers.image.title="colonies-operator" \
      org.opencontainers.image.description="A Kubernetes operator that makes a cluster a ColonyOS container executor" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 colonies \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin colonies
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
# 8080: kopf's liveness endpoint (/healthz); 9090: Prometheus metrics (/metrics).
EXPOSE 8080 9090
ENTRYPOINT ["colonies-operator"]
CMD ["run"]
