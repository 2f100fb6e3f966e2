# frugate gateway image: slim Python, non-root, no build tools in the final stage.
#   docker build -t frugate .
#   docker run -p 8080:8080 -v $PWD/configs/production.example.yaml:/etc/frugate/frugate.yaml frugate

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/frugate
ENV PATH=/opt/frugate/bin:$PATH
# CPU-only torch (the embedder runs on the gateway's CPUs; GPUs belong to vLLM).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install torch==2.13.0 --index-url ${TORCH_INDEX}
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY router ./router
COPY cache ./cache
COPY rag ./rag
COPY embedder ./embedder
COPY workers ./workers
RUN pip install . && python -m compileall -q /opt/frugate

FROM python:3.11-slim
ENV PATH=/opt/frugate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    FRUGATE_CONFIG=/etc/frugate/frugate.yaml
RUN useradd --system --uid 10001 --home /var/lib/frugate --create-home frugate
COPY --from=build /opt/frugate /opt/frugate
COPY configs /etc/frugate/examples
USER frugate
WORKDIR /var/lib/frugate
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
CMD ["frugate", "serve", "--host", "0.0.0.0", "--port", "8080"]
