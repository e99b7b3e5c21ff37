FROM python:3.11-slim

LABEL io.airbyte.name=airbyte/destination-heap-analytics
LABEL io.airbyte.version=0.2.0

WORKDIR /airbyte/integration_code

COPY setup.py main.py ./
COPY destination_heap_analytics ./destination_heap_analytics

RUN pip install --no-cache-dir .

ENV AIRBYTE_ENTRYPOINT="destination-heap-analytics"
ENTRYPOINT ["destination-heap-analytics"]
