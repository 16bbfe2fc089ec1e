# syntax=docker/dockerfile:1
# CPU image of the emvnet CLI. Build: docker build -t emvnet .
# The serving image (gateway + workers, CUDA variant) replaces this with the service issue.

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Pass a CPU-only wheel index through PIP_INDEX_URL / PIP_EXTRA_INDEX_URL to keep the image small.
ARG TORCH_SPEC="torch==2.13.0"
RUN pip install "${TORCH_SPEC}"
COPY pyproject.toml README.md ./
COPY emvnet ./emvnet
COPY service ./service
COPY worker ./worker
RUN pip install .

FROM python:3.11-slim AS runtime
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 10001 emvnet
USER emvnet
WORKDIR /data
ENTRYPOINT ["emvnet"]
CMD ["--help"]
