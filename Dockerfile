# sdbot: `docker build -t sdbot .` then `docker run --env-file .env -v sdbot-data:/app/data sdbot`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY migrations ./migrations
RUN pip install . \
    && useradd --create-home --uid 10001 sdbot \
    && mkdir -p /app/data \
    && chown sdbot:sdbot /app/data

USER sdbot
# The database (DATABASE_URL default: sqlite:///data/sdbot.sqlite3) and kept results live here.
VOLUME ["/app/data"]

# Healthy while the process has a live gateway connection and a writable database.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["sdbot", "health"]

# Docker stops with SIGTERM; the bot drains running jobs within SDBOT_SHUTDOWN_GRACE seconds
# (default 8, under Docker's 10 s) and exits 0.
STOPSIGNAL SIGTERM
CMD ["sdbot", "run"]
