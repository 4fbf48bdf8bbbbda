# syntax=docker/dockerfile:1
# The one project image: the operator (python -m adf_operator), the heartbeat and its pinger
# (adf heartbeat serve|ping) and the run pods (adf run) all start from it.
#
#   docker build -t active-data-flow:0.1.0 .
#
# Stage 1 builds the project wheel and the wheels of all its dependencies; stage 2 installs them
# from there without network access, so the final image has no compiler, no source tree and no
# build cache.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY adf_core ./adf_core
COPY adf_operator ./adf_operator
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[operator]"

FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="active-data-flow" \
      org.opencontainers.image.description="ActiveDataFlow for Kubernetes: engine, operator and heartbeat" \
      org.opencontainers.image.licenses="MIT"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp
# The wheels are bind-mounted from the build stage, so they never become a layer of this image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "active-data-flow[operator]" \
    && groupadd --system --gid 10001 adf \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin adf
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
CMD ["adf", "--help"]
