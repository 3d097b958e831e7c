"""The nginx configuration: one template (nginx.conf.template), rendered for serve-nginx
at start and for the compose stack into deploy/nginx.conf (`python -m app.deploy.nginx`).
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import IO

from app.api.body_limit import MULTIPART_OVERHEAD

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
    trusted_proxies: tuple[str, ...] = ()  # TRUSTED_PROXIES: whose X-Forwarded-* count
    tls_cert: Path | None = None  # with tls_key: HTTPS (and HTTP/2) on `listen`
    tls_key: Path | None = None
    json_logs: bool = True  # the access log's format: JSON lines, else readable text
    web_root: Path | None = None  # the built web app (web/dist); None: the app serves /
    max_body_kb: int = 1024  # every other request body (MAX_BODY_KB)


# Mozilla's "intermediate" profile (TLS 1.2 and 1.3; the 1.2 suites with forward secrecy
# and AEAD), without the DHE suites that would need a dhparam file.
TLS_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)


def tls_block(cert: Path, key: Path) -> str:
    return (
        "\n".join(
            f"        {line}"
            for line in (
                f"ssl_certificate {cert};",
                f"ssl_certificate_key {key};",
                "ssl_protocols TLSv1.2 TLSv1.3;",
                f"ssl_ciphers {TLS_CIPHERS};",
                "ssl_prefer_server_ciphers off;",
                "ssl_session_timeout 1d;",
                "ssl_session_cache shared:ocupredict_tls:10m;",
                "ssl_session_tickets off;",
                "# Plain HTTP sent to the TLS port: redirected to https, same host and port.",
                "error_page 497 =301 https://$host:$server_port$request_uri;",
            )
        )
        + "\n"
    )


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


def proxy_block(send_timeout: int, read_timeout: int) -> str:
    """The proxying of a location to the processes (proxy_* directives are not inherited
    by a location that sets any of its own, so each location says them all)."""
    return "\n".join(
        f"            {line}"
        for line in (
            "proxy_pass http://ocupredict;",
            "proxy_http_version 1.1;",
            'proxy_set_header Connection "";',
            "proxy_set_header Host $http_host;",
            "# Overwrite, never append, what a client sent (appended only to a trusted",
            "# proxy's chain): the app believes these from nginx, its local proxy.",
            "proxy_set_header X-Forwarded-For $ocupredict_forwarded_for;",
            "proxy_set_header X-Forwarded-Proto $ocupredict_proto;",
            "proxy_set_header X-Forwarded-Host $ocupredict_host;",
            "proxy_set_header X-Request-ID $ocupredict_request_id;",
            "proxy_connect_timeout 5s;",
            f"proxy_send_timeout {send_timeout}s;",
            f"proxy_read_timeout {read_timeout}s;",
            "proxy_request_buffering on;",
            "# A process that is down (refused connection) is skipped for the next one;",
            "# an upload already sent is never sent twice (non-idempotent).",
            "proxy_next_upstream error timeout;",
            "proxy_next_upstream_tries 2;",
        )
    )


def render(params: NginxParams) -> str:
    template = files("app.deploy").joinpath("nginx.conf.template").read_text("utf-8")
    upstream_keepalive = max(1, min(60, params.keep_alive_seconds - 5))
    if (params.tls_cert is None) != (params.tls_key is None):
        raise ValueError("TLS needs both a certificate and its key")
    tls = params.tls_cert is not None
    values = {
        "process_count": str(len(params.sockets)),
        "user_line": f"user {params.user};\n" if params.user else "",
        "runtime_dir": str(params.runtime_dir),
        "error_log": params.error_log or str(params.runtime_dir / "nginx-error.log"),
        "access_log": params.access_log or str(params.runtime_dir / "nginx-access.log"),
        "access_log_format": "ocupredict" if params.json_logs else "ocupredict_text",
        "upstream_servers": "\n".join(
            f"        server unix:{path} max_fails=1 fail_timeout=2s;" for path in params.sockets
        ),
        "upstream_keepalive": str(upstream_keepalive),
        "listen": params.listen,
        "listen_tls": " ssl http2" if tls else "",
        "tls": tls_block(params.tls_cert, params.tls_key)
        if params.tls_cert and params.tls_key
        else "",
        "trusted_proxies": "\n".join(f"        {net} 1;" for net in params.trusted_proxies),
        "max_body_bytes": str(params.max_upload_mb * 1024 * 1024 + MULTIPART_OVERHEAD),
        "max_upload_mb": str(params.max_upload_mb),
        "model_max_body_bytes": str(params.model_max_upload_mb * 1024 * 1024 + MULTIPART_OVERHEAD),
        "api_prefix": params.api_prefix,
        "proxy": proxy_block(60, params.read_timeout_seconds),
        "proxy_slow": proxy_block(300, 300),
        "max_json_body": f"{params.max_body_kb}k",
        "max_body_kb": str(params.max_body_kb),
        "model_max_upload_mb": str(params.model_max_upload_mb),
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
            max_body_kb=settings.max_body_kb,
            api_prefix=settings.api_prefix,
            web_root=COMPOSE_WEB_ROOT,
            error_log="stderr",
            access_log="/dev/stdout",
            json_logs=True,  # the stack runs with ENVIRONMENT=production
        )
    )


_NGINX_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "crit": logging.CRITICAL,
    "alert": logging.CRITICAL,
    "emerg": logging.CRITICAL,
}
# "2024/05/01 12:00:00 [error] 12#0: *3 message" or, at start, "nginx: [warn] message"
_ERROR_LINE = re.compile(r"^(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )?(?:nginx: )?\[(\w+)\] (.*)$")
_QUERY = re.compile(r"\?[^\s\"]*")
# nginx's [warn] for every upload larger than its memory buffer: how proxy_request_buffering
# works, not a problem (the access log has the request); kept at DEBUG.
_ROUTINE = ("a client request body is buffered to a temporary file",)


def relay_error_log(stream: IO[bytes], logger: logging.Logger) -> None:
    """nginx's error log, read from its stderr until it closes, line by line through
    `logger` (so through the process's one handler: JSON in production), at nginx's level,
    with every query string cut: nginx names the request and upstream URL of an error."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip()
        if not line:
            continue
        level, message = logging.WARNING, line
        match = _ERROR_LINE.match(line)
        if match:
            level, message = _NGINX_LEVELS.get(match[1], logging.WARNING), match[2]
            if any(routine in message for routine in _ROUTINE):
                level = logging.DEBUG
        logger.log(level, "nginx: %s", _QUERY.sub("", message))


if __name__ == "__main__":
    sys.stdout.write(compose_rendering())
