FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends dcmtk && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY node ./node
COPY analysis ./analysis
COPY config ./config
# the CPU-only torch wheel (PyPI's default build carries CUDA, several GB)
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu .
EXPOSE 11112
ENTRYPOINT ["lumbar-sentinel"]
CMD ["serve"]
