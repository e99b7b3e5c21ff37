FROM python:3.11-slim

LABEL io.airbyte.name=airbyte/destination-heap-analytics
LABEL io.airbyte.version=0.8.0

WORKDIR /airbyte/integration_code

COPY setup.py main.py ./
COPY destination_heap_analytics ./destination_heap_analytics

# Airbyte runs connectors as the non-root user `airbyte` (uid 1000), as its python-connector-base does,
# often on a read-only root filesystem: nothing below writes at run time.
RUN pip install --no-cache-dir . \
    && useradd --uid 1000 --no-create-home --shell /usr/sbin/nologin airbyte

ENV AIRBYTE_ENTRYPOINT="destination-heap-analytics" PYTHONDONTWRITEBYTECODE=1
USER 1000:1000
ENTRYPOINT ["destination-heap-analytics"]
