FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY workers ./workers
# the flower extra: the `flower` service runs `celery -A workers.celery_app flower`
RUN pip install --no-cache-dir ".[flower]"
ENV SLUICE_CONFIG=/app/config/sluice.yaml
ENTRYPOINT ["sluice"]
