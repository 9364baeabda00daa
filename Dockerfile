FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends dcmtk && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY node ./node
COPY analysis ./analysis
COPY config ./config
# the networks run in ONNX Runtime: the image needs no PyTorch (the `train` extra)
RUN pip install --no-cache-dir .
EXPOSE 11112
ENTRYPOINT ["lumbar-sentinel"]
CMD ["serve"]
