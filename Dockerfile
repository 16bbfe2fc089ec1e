# syntax=docker/dockerfile:1
# The emvnet image: gateway (`emvnet serve`), worker (`emvnet worker`) and the CLI in one image.
#   CPU (default, small):  docker build -t emvnet:cpu --build-arg PIP_EXTRA_INDEX_URL=... .
#   CUDA:                  docker build --target cuda -t emvnet:cuda .   (no CPU-only index arg)
# The CPU image wants a CPU-only torch build: pass the wheel index that serves it as the build
# argument PIP_EXTRA_INDEX_URL (or PIP_INDEX_URL for an on-prem mirror). No registry address is
# written here on purpose. Both targets share one build stage; without the CPU-only index it
# installs the default (CUDA) torch wheel, which is what the CUDA target wants.
# Weights: whatever sits in emvnet/weights/ at build time is packaged, i.e. baked into the image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Ubuntu 24.04's glibc is newer than bookworm's, so the slim image's Python runs on it unchanged.
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04

# ---- build stages: a virtual environment with emvnet[serve] -------------------------------------
FROM ${PYTHON_IMAGE} AS venv
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_INDEX_URL=${PIP_INDEX_URL} PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

FROM venv AS build
# torch first and alone: the largest layer, rebuilt only when TORCH_SPEC changes. It is pinned
# through the build argument, which hadolint cannot see.
ARG TORCH_SPEC="torch==2.13.0"
# hadolint ignore=DL3013
RUN pip install "${TORCH_SPEC}"
COPY pyproject.toml README.md ./
COPY emvnet ./emvnet
COPY service ./service
COPY worker ./worker
# The project itself, with the versions its pyproject bounds; installed from the local tree.
# hadolint ignore=DL3013
RUN pip install ".[serve]" && python -c "import emvnet, service, worker"

# ---- cuda runtime: docker build --target cuda ---------------------------------------------------
FROM ${PYTHON_IMAGE} AS python
FROM ${CUDA_IMAGE} AS cuda
# The shared libraries the slim image's Python links against (runtime libraries, no compilers);
# versions follow the CUDA base image's Ubuntu release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3t64 libffi8 libsqlite3-0 \
        libexpat1 zlib1g libbz2-1.0 liblzma5 libuuid1 libncursesw6 libreadline8t64 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=python /usr/local /usr/local
COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home --uid 10001 --user-group emvnet && ldconfig \
    && python3.11 -c "import ssl, sqlite3, ctypes, lzma, bz2, zlib"
ENV PATH=/opt/venv/bin:/usr/local/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    EMVNET_HOST=0.0.0.0 EMVNET_PORT=8000 EMVNET_GRPC_PORT=50051 EMVNET_LOG_JSON=true \
    EMVNET_DEVICE=cuda NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /data
EXPOSE 8000 50051 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('EMVNET_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["emvnet"]
CMD ["worker"]

# ---- cpu runtime: the default target (last stage) -----------------------------------------------
# No compilers, headers or package manager caches: the slim base plus the venv.
FROM ${PYTHON_IMAGE} AS cpu
RUN useradd --create-home --uid 10001 --user-group emvnet
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    EMVNET_HOST=0.0.0.0 EMVNET_PORT=8000 EMVNET_GRPC_PORT=50051 EMVNET_LOG_JSON=true
USER 10001:10001
WORKDIR /data
EXPOSE 8000 50051 9100
# The gateway's /readyz on EMVNET_PORT: urlopen raises (exit 1) on a 503 or no answer. Workers
# serve /metrics instead; compose and Kubernetes give them their own check.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('EMVNET_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["emvnet"]
CMD ["serve"]
