"""The nginx configuration: one template (nginx.conf.template), rendered for serve-nginx
at start and for the compose stack into deploy/nginx.conf (`python -m app.deploy.nginx`).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from app.api.upload_limit import MULTIPART_OVERHEAD

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")

# The compose stack (docker-compose.yml): serve-nginx inside the app container, with its
# sockets and nginx's runtime files under this directory, nginx on 0.0.0.0:8080.
COMPOSE_SOCKET_DIR = Path("/srv/ocupredict/run")
COMPOSE_LISTEN = "0.0.0.0:8080"
COMPOSE_PROCESSES = 2
# The web app built by the Dockerfile's Node stage (WEB_DIST_DIR in the image).
COMPOSE_WEB_ROOT = Path("/srv/ocupredict/web/dist")

# With the web app: nginx serves its files itself (hashed assets cached for a year, the
# app's routes falling back to index.html) and proxies only the app's own paths.
WEB_LOCATIONS = """\
        # The web app (WEB_DIST_DIR): hashed assets for a year, everything else revalidated,
        # and the app's own routes (/history/12, ...) answered by its index.html.
        root {web_root};
        types {{
            text/html html;
            text/javascript js mjs;
            text/css css;
            application/json json map;
            application/manifest+json webmanifest;
            image/svg+xml svg;
            image/png png;
            image/jpeg jpg jpeg;
            image/x-icon ico;
            font/woff2 woff2;
            text/plain txt;
        }}
        # The build's file.gz beside each text file, sent as is to a client taking gzip.
        gzip_static on;
        location /assets/ {{
            add_header Cache-Control "public, max-age=31536000, immutable" always;
            try_files $uri =404;
        }}
        location / {{
            add_header Cache-Control "no-cache" always;
            try_files $uri /index.html =404;
        }}
"""


@dataclass(frozen=True)
class NginxParams:
    listen: str  # host:port
    sockets: list[Path]  # one Unix socket per uvicorn process
    runtime_dir: Path  # pid file and temp paths (writable by the user running nginx)
    max_upload_mb: int
    keep_alive_seconds: int  # uvicorn's; nginx's upstream keep-alive stays below it
    read_timeout_seconds: int = 60
    # Started as root, nginx would run its worker as `nobody`, which cannot reach sockets in
    # a private directory: keep it the current user (no effect when not root).
    user: str | None = None
    error_log: str | None = None  # default: runtime_dir/nginx-error.log
    access_log: str | None = None  # default: runtime_dir/nginx-access.log
    model_max_upload_mb: int = 500  # POST {api_prefix}/admin/models (MODEL_MAX_UPLOAD_MB)
    api_prefix: str = "/api/v1"
    web_root: Path | None = None  # the built web app (web/dist); None: the app serves /


def socket_path(socket_dir: Path, index: int) -> Path:
    return socket_dir / f"ocupredict-{index}.sock"


def app_paths(api_prefix: str) -> str:
    """The regex location of what the app answers beside the web app: the API, its docs,
    the schema and /metrics (Swagger UI's own files under /static-offline-docs too)."""
    prefix = re.escape(api_prefix.rstrip("/"))
    return (
        f"~ ^(?:{prefix}(?:/|$)|/docs(?:/|$)|/redoc$|/openapi\\.json$|/metrics$"
        "|/static-offline-docs/)"
    )


def render(params: NginxParams) -> str:
    template = files("app.deploy").joinpath("nginx.conf.template").read_text("utf-8")
    upstream_keepalive = max(1, min(60, params.keep_alive_seconds - 5))
    values = {
        "process_count": str(len(params.sockets)),
        "user_line": f"user {params.user};\n" if params.user else "",
        "runtime_dir": str(params.runtime_dir),
        "error_log": params.error_log or str(params.runtime_dir / "nginx-error.log"),
        "access_log": params.access_log or str(params.runtime_dir / "nginx-access.log"),
        "upstream_servers": "\n".join(
            f"        server unix:{path} max_fails=1 fail_timeout=2s;" for path in params.sockets
        ),
        "upstream_keepalive": str(upstream_keepalive),
        "listen": params.listen,
        "max_body_bytes": str(params.max_upload_mb * 1024 * 1024 + MULTIPART_OVERHEAD),
        "max_upload_mb": str(params.max_upload_mb),
        "model_max_body_bytes": str(params.model_max_upload_mb * 1024 * 1024 + MULTIPART_OVERHEAD),
        "api_prefix": params.api_prefix,
        "read_timeout": str(params.read_timeout_seconds),
        "web_locations": ""
        if params.web_root is None
        else WEB_LOCATIONS.format(web_root=params.web_root),
        "app_location": "/" if params.web_root is None else app_paths(params.api_prefix),
    }

    def substitute(match: re.Match[str]) -> str:
        return values[match.group(1)]  # KeyError: a placeholder this code does not know

    return _PLACEHOLDER.sub(substitute, template)


def compose_rendering() -> str:
    """What serve-nginx renders inside the compose stack's app container (the defaults)."""
    from app.config import Settings

    settings = Settings(_env_file=None)
    return render(
        NginxParams(
            listen=COMPOSE_LISTEN,
            sockets=[socket_path(COMPOSE_SOCKET_DIR, i) for i in range(COMPOSE_PROCESSES)],
            runtime_dir=COMPOSE_SOCKET_DIR,
            max_upload_mb=settings.max_upload_mb,
            keep_alive_seconds=settings.keep_alive_seconds,
            model_max_upload_mb=settings.model_max_upload_mb,
            api_prefix=settings.api_prefix,
            web_root=COMPOSE_WEB_ROOT,
            error_log="stderr",
            access_log="/dev/stdout",
        )
    )


if __name__ == "__main__":
    sys.stdout.write(compose_rendering())
