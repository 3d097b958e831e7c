# Production image: CPU wheels of torch, the app, and Debian's nginx for `serve-nginx`
# (nginx in front of single-process uvicorns; see app/deploy/).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/ocupredict
RUN useradd --system --home /srv/ocupredict ocupredict
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY alembic ./alembic
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu . \
 && mkdir -p var run && chown ocupredict var run
USER ocupredict
EXPOSE 8080
CMD ["sh", "-c", "ocupredict migrate && exec ocupredict serve-nginx --processes ${WEB_WORKERS:-2} --host 0.0.0.0 --port 8080 --socket-dir /srv/ocupredict/run"]
