"""The built web app served by the app itself (API.md, third wave): every GET outside
API_PREFIX, /docs, /redoc, /openapi.json and /metrics gets a file of web/dist or its
index.html; hashed assets are cached for a year; the API's own answers are unchanged; no
build: the API still starts and the log says how to get one."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pytest

from app.api.webapp import IMMUTABLE
from tests.support.harness import ClientFactory

INDEX = "<!doctype html><title>OcuPredict</title><div id=root></div>"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / "assets" / "index-3f2a9c01.js").write_text("console.log('app')")
    script = "console.log('app')"
    (root / "assets" / "index-3f2a9c01.js.gz").write_bytes(gzip.compress(script.encode()))
    (root / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside the build")
    return root


async def test_the_build_is_served_with_the_spa_fallback(
    make_client: ClientFactory, dist: Path
) -> None:
    async with make_client(web_dist_dir=dist) as client:
        for path in ("/", "/history", "/history/12", "/dashboard?range=week"):
            response = await client.get(path)
            assert response.status_code == 200, path
            assert response.text == INDEX
            assert response.headers["content-type"].startswith("text/html")
            assert response.headers["cache-control"] == "no-cache"
        asset = await client.get("/assets/index-3f2a9c01.js")
        assert asset.status_code == 200
        assert asset.headers["cache-control"] == IMMUTABLE
        assert "javascript" in asset.headers["content-type"]
        assert (await client.head("/favicon.svg")).status_code == 200
        # The build's precompressed file for a client that takes gzip; the plain one else.
        zipped = await client.get("/assets/index-3f2a9c01.js", headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.headers["vary"] == "Accept-Encoding"
        assert zipped.text == "console.log('app')"  # httpx decoded it
        assert "javascript" in zipped.headers["content-type"]
        plain = await client.get(
            "/assets/index-3f2a9c01.js", headers={"Accept-Encoding": "identity"}
        )
        assert "content-encoding" not in plain.headers
        assert plain.text == "console.log('app')"

        # A missing file is a 404 (not the page), and nothing outside the build leaks.
        for path in ("/assets/gone-0000.js", "/../secret.txt", "/%2e%2e/secret.txt"):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert "outside" not in response.text

        # The API, its docs and the schema are what they were.
        response = await client.get("/api/v1/nowhere")
        assert response.status_code == 404
        assert response.json()["code"] == "NOT_FOUND"
        assert (await client.get("/api/v1")).json()["code"] == "NOT_FOUND"
        response = await client.delete("/api/v1/history")
        assert response.status_code == 405
        assert (await client.get("/openapi.json")).json()["info"]["title"] == "OcuPredict API"
        assert "swagger" in (await client.get("/docs")).text.lower()
        assert (await client.get("/api/v1/health/live")).json() == {"status": "ok"}
        # Only GET and HEAD reach the app's page.
        response = await client.post("/history")
        assert response.status_code == 404
        assert response.json()["code"] == "NOT_FOUND"


async def test_no_build_the_api_starts_and_the_log_says_how(
    make_client: ClientFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.api.webapp")
    async with make_client(web_dist_dir=tmp_path / "nothing") as client:
        assert (await client.get("/api/v1/health/live")).status_code == 200
        response = await client.get("/")
        assert response.status_code == 404
        assert response.json()["code"] == "NOT_FOUND"
    assert any("make web" in record.getMessage() for record in caplog.records)


def test_nginx_serves_the_build_itself_and_proxies_only_the_apps_paths(tmp_path: Path) -> None:
    import re

    from app.deploy.nginx import NginxParams, app_paths, render

    params = dict(
        listen="127.0.0.1:8080",
        sockets=[tmp_path / "a.sock"],
        runtime_dir=tmp_path,
        max_upload_mb=15,
        keep_alive_seconds=10,
    )
    plain = render(NginxParams(**params))  # type: ignore[arg-type]
    assert "location / {\n            proxy_pass" in plain
    assert "try_files" not in plain

    conf = render(NginxParams(**params, web_root=tmp_path / "dist"))  # type: ignore[arg-type]
    assert f"root {tmp_path / 'dist'};" in conf
    assert "try_files $uri /index.html =404;" in conf
    assert 'add_header Cache-Control "public, max-age=31536000, immutable" always;' in conf
    assert "text/javascript js mjs;" in conf
    assert "gzip_static on;" in conf
    assert f"location {app_paths('/api/v1')} {{" in conf
    pattern = re.compile(app_paths("/api/v1").removeprefix("~ "))
    for path in (
        "/api/v1",
        "/api/v1/auth/login",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
        "/metrics",
        "/static-offline-docs/swagger-ui.css",
    ):
        assert pattern.match(path), path
    for path in (
        "/",
        "/history/12",
        "/api/v10",
        "/apix",
        "/metricsx",
        "/assets/index.js",
        "/openapi.jsonx",
        "/docsx",
    ):
        assert not pattern.match(path), path
