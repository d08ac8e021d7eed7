# syntax=docker/dockerfile:1
# One image for every component: `stats-log-collector <memstat|logs-collector|virtlet-log|console-tail>`.
#
# Two stages: the first builds wheels for the package and its dependencies, the second installs them
# into a clean slim image with pip's cache off, so no compiler, build tool, wheel cache or source tree
# ends up in what runs on the cluster. The user is UID/GID 1001 (the default manifests say so too).
# OpenShift runs the image as an arbitrary UID with group 0 (restricted-v2 SCC): /data belongs to group 0
# and is group-writable, so any UID of group 0 can write it (OpenShift's "Creating images" guidelines:
# "Support arbitrary user ids").
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The wheels are mounted from the build stage, never copied: they leave no layer behind.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/stats_log_collector-*.whl \
    && groupadd --gid 1001 collector \
    && useradd --uid 1001 --gid 1001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin collector \
    && mkdir -p /data \
    && chown 1001:0 /data \
    && chmod 2775 /data
USER 1001:1001
WORKDIR /data
EXPOSE 8099
ENTRYPOINT ["stats-log-collector"]
CMD ["--help"]
