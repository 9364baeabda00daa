# syntax=docker/dockerfile:1
# Lumbar Sentinel's image: the wheels are built in a first stage, the final image is
# python slim with those wheels installed and no compiler or build tools.
# Build:  docker build -t lumbar-sentinel:0.1.0 .
# Run:    docker run -p 11112:11112 lumbar-sentinel:0.1.0   (SQLite, storage in the container)
# docker-compose.yml runs it on PostgreSQL beside Orthanc; docs/operations.md covers it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# The networks run as ONNX graphs in ONNX Runtime (CPU): the image carries no PyTorch,
# which only the `train` extra (training and exporting the networks) needs.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY node ./node
COPY analysis ./analysis
COPY phantom ./phantom
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="Lumbar Sentinel" \
      org.opencontainers.image.description="DICOM node flagging MRI signs of spinal malignancy (triage aid)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/lumbar-sentinel lsent \
 && mkdir -p /data/storage/.incoming /data/results \
 && chown lsent:lsent /data/storage /data/storage/.incoming /data/results
# The wheels are mounted for the install only, so they add no layer to the image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels lumbar-sentinel
COPY config/node.toml /etc/lumbar-sentinel/node.toml
USER lsent
WORKDIR /var/lib/lumbar-sentinel
ENV PYTHONUNBUFFERED=1
# The receiver streams each incoming instance into storage.root/.incoming (made here, owned by
# lsent, on the storage volume); the process's other temporary files go there too.
ENV TMPDIR=/data/storage/.incoming
# DICOM, and the /metrics + /healthz endpoint when metrics.enabled
EXPOSE 11112 9112
ENTRYPOINT ["lumbar-sentinel", "--config", "/etc/lumbar-sentinel/node.toml"]
CMD ["serve"]
