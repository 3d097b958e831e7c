# Production image: CPU wheels of torch, the app, and Debian's nginx for `serve-nginx`
# (nginx in front of single-process uvicorns; see app/deploy/), which also serves the
# doctors' web app built in the Node stage below (web/dist, WEB_DIST_DIR). It does not
# migrate the database: docker-compose.yml's one-shot `migrate` service and the Kubernetes
# Job (deploy/k8s) run `ocupredict migrate` once, before the app starts.

# The web app: the generated client (clients/typescript, from docs/openapi.json), then web/.
FROM node:20-bookworm-slim AS web
WORKDIR /build
ENV PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
COPY docs/openapi.json docs/openapi.json
COPY clients/typescript clients/typescript
RUN cd clients/typescript && npm ci --no-audit --no-fund && npm run generate && npm run build
COPY web web
RUN cd web && npm ci --no-audit --no-fund && npm run build

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/ocupredict
# A fixed numeric user: Kubernetes' runAsNonRoot can check it (deploy/k8s runs as 10001).
RUN groupadd --system --gid 10001 ocupredict \
 && useradd --system --uid 10001 --gid 10001 --home /srv/ocupredict ocupredict
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY alembic ./alembic
COPY --from=web /build/web/dist ./web/dist
ENV WEB_DIST_DIR=/srv/ocupredict/web/dist
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu . \
 && mkdir -p var run && chown ocupredict var run
USER 10001:10001
# `ocupredict migrate` finds alembic.ini and alembic/ beside the `app` package it imports:
# import the copy in /srv/ocupredict, not the one pip put in site-packages (which has
# neither, so the migration failed there).
ENV PYTHONPATH=/srv/ocupredict
EXPOSE 8080
CMD ["sh", "-c", "exec ocupredict serve-nginx --processes ${WEB_WORKERS:-2} --host 0.0.0.0 --port 8080 --socket-dir /srv/ocupredict/run"]
