# The airgrid worker (and, with `command: ["gateway"]`, the HJ 212 gateway). Used by
# `docker compose -f docker-compose.kafka.yml --profile worker up` (and `--profile gateway`).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# README.m[d]: copied when present (pyproject names it), no error when absent.
COPY pyproject.toml README.m[d] ./
COPY airgrid ./airgrid
# with the PostgreSQL driver: AIRGRID_DATABASE_URL=postgresql+psycopg://... works as the README says
RUN pip install ".[postgres]" \
    && useradd --create-home --uid 10001 airgrid \
    && mkdir -p /app/var/airgrid \
    && chown -R airgrid /app/var

USER airgrid

ENV AIRGRID_WEB_HOST=0.0.0.0 \
    AIRGRID_WEB_PORT=6066 \
    AIRGRID_DATA_DIR=/app/var/airgrid

EXPOSE 6066 9212 6067
VOLUME ["/app/var"]

# Liveness, not readiness: /health (= /health/ready) answers 503 during every rebalance or table
# recovery, and an orchestrator that read that as dead would restart healthy workers in a loop.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('AIRGRID_WEB_PORT', '6066'), timeout=4)"]

ENTRYPOINT ["airgrid"]
CMD ["worker", "--loglevel", "info"]
