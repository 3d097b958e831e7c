# Production image: CPU wheels of torch, the app, uvicorn workers behind nginx.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/ocupredict
RUN useradd --system --home /srv/ocupredict ocupredict
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY alembic ./alembic
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu . \
 && mkdir -p var && chown ocupredict var
USER ocupredict
EXPOSE 8000
CMD ["sh", "-c", "ocupredict migrate && ocupredict serve --host 0.0.0.0 --port 8000 --workers ${WEB_WORKERS:-2}"]
