# orthovec API / indexer image. CPU torch by default; the GPU indexer profile in docker-compose.yml
# builds with TORCH_INDEX=https://download.pytorch.org/whl/cu126 instead.
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /app
# torch first, from its own index: the CPU wheel is ~200 MB instead of ~2.5 GB with CUDA libraries.
RUN pip install --no-cache-dir torch==2.13.0 --index-url ${TORCH_INDEX}
COPY pyproject.toml README.md ./
COPY orthovec ./orthovec
COPY schemas ./schemas
COPY indexer ./indexer
COPY lookup ./lookup
COPY integrate ./integrate
RUN pip install --no-cache-dir .
# Not root: files written into the ./atlas bind mount belong to uid 1000 (usually the host user).
RUN useradd --create-home --uid 1000 orthovec && mkdir -p /data/atlas /data/torch \
    && chown -R orthovec /data
USER orthovec
ENV ORTHOVEC_ATLAS=/data/atlas TORCH_HOME=/data/torch
EXPOSE 8000
ENTRYPOINT ["orthovec"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
