"""TLS and proxies (issue 23): `serve-nginx --tls-cert --tls-key` with a certificate made
here, and the scheme and host behind a trusted TLS-terminating proxy (a second nginx).

One stack for the module: serve-nginx on HTTPS, trusting 127.0.0.2 (the outer proxy binds
that address). Clients on 127.0.0.1 are not trusted: their X-Forwarded-* change nothing.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.deploy.harness import NginxStack, free_port
from app.deploy.supervisor import find_nginx
from tests.support.auth import bearer, verified_account
from tests.support.harness import stack_env
from tests.support.images import jpeg
from tests.support.mail import Mailbox

pytestmark = [
    pytest.mark.skipif(
        shutil.which("openssl") is None or shutil.which("nginx", path="/usr/sbin:/usr/bin") is None,
        reason="needs openssl (a test certificate) and nginx",
    ),
    pytest.mark.usefixtures("stack_limits_cleared"),
]
API = "/api/v1"
PUBLIC_HOST = "clinic.example"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    names = f"subjectAltName=DNS:localhost,DNS:{PUBLIC_HOST},IP:127.0.0.1"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", names),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_stack(
    stack_database_url: str,
    smtp_server: Mailbox,
    model_cache_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    certificate: tuple[Path, Path],
) -> Iterator[NginxStack]:
    images = tmp_path_factory.mktemp("tls-images")
    env = stack_env(stack_database_url, smtp_server, model_cache_dir, images)
    env["TRUSTED_PROXIES"] = "127.0.0.2/32"
    directory = tmp_path_factory.mktemp("tls-stack")
    with NginxStack(
        env, processes=1, socket_dir=directory / "run", cwd=directory, tls=certificate
    ) as stack:
        stack.wait_ready()
        yield stack


@pytest.fixture(scope="module")
def outer_proxy(
    tls_stack: NginxStack, certificate: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """A TLS-terminating proxy in front of the stack, as a load balancer would be: it
    connects from 127.0.0.2 and says the client used https://clinic.example:<port>."""
    directory = tmp_path_factory.mktemp("outer")
    port = free_port()
    cert, key = certificate
    (directory / "nginx.conf").write_text(
        f"""
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass https://127.0.0.1:{tls_stack.port};
            proxy_bind 127.0.0.2;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host {PUBLIC_HOST}:{port};
        }}
    }}
}}
""",
        encoding="utf-8",
    )
    user = ["-g", "user root;"] if _is_root() else []
    proc = subprocess.Popen(
        [find_nginx(), "-p", str(directory), "-c", str(directory / "nginx.conf"), *user],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


def _is_root() -> bool:
    import os

    return os.geteuid() == 0


def _wait_for_port(port: int, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def tls_client(
    certificate: tuple[Path, Path], base_url: str, **kwargs: object
) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    return httpx.AsyncClient(base_url=base_url, verify=context, timeout=60, **kwargs)  # type: ignore[arg-type]


async def predict(client: httpx.AsyncClient, token: str, **headers: str) -> dict[str, object]:
    response = await client.post(
        f"{API}/predict",
        files={"file": ("eye.jpg", jpeg(seed=31), "image/jpeg")},
        headers={**bearer(token), **headers},
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_https_speaks_http2_and_only_tls_1_2_and_1_3(
    tls_stack: NginxStack, certificate: tuple[Path, Path]
) -> None:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", tls_stack.port), 5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        legacy.check_hostname, legacy.verify_mode = False, ssl.CERT_NONE
        legacy.set_ciphers("ALL:@SECLEVEL=0")
        legacy.minimum_version = legacy.maximum_version = old
        with (
            socket.create_connection(("127.0.0.1", tls_stack.port), 5) as raw,
            pytest.raises(ssl.SSLError),
        ):
            legacy.wrap_socket(raw, server_hostname="localhost")


async def test_plain_http_is_redirected_and_https_carries_hsts(
    tls_stack: NginxStack, certificate: tuple[Path, Path]
) -> None:
    async with httpx.AsyncClient(timeout=30) as plain:
        response = await plain.get(f"http://127.0.0.1:{tls_stack.port}{API}/health/live")
    assert response.status_code == 301
    assert response.headers["location"] == f"https://127.0.0.1:{tls_stack.port}{API}/health/live"
    async with tls_client(certificate, tls_stack.base_url) as client:
        live = await client.get(f"{API}/health/live")
    assert live.status_code == 200
    assert live.headers["strict-transport-security"].startswith("max-age=")


async def test_image_url_is_https_and_loads(
    tls_stack: NginxStack, certificate: tuple[Path, Path], smtp_server: Mailbox
) -> None:
    async with tls_client(certificate, tls_stack.base_url) as client:
        account = await verified_account(client, smtp_server, "tls@example.com")
        body = await predict(client, account.access)
        url = str(body["image_url"])
        assert url.startswith(f"https://127.0.0.1:{tls_stack.port}{API}/history/")
        image = await client.get(url)
    assert image.status_code == 200 and image.content == jpeg(seed=31)


async def test_behind_a_trusted_proxy_urls_carry_the_public_scheme_and_host(
    tls_stack: NginxStack,
    outer_proxy: int,
    certificate: tuple[Path, Path],
    smtp_server: Mailbox,
) -> None:
    async with tls_client(certificate, f"https://127.0.0.1:{outer_proxy}") as client:
        account = await verified_account(client, smtp_server, "proxied@example.com")
        body = await predict(client, account.access)
    assert str(body["image_url"]).startswith(f"https://{PUBLIC_HOST}:{outer_proxy}{API}/history/")


async def test_forged_forwarding_headers_from_an_untrusted_client_change_nothing(
    tls_stack: NginxStack, certificate: tuple[Path, Path], smtp_server: Mailbox
) -> None:
    forged = {
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Host": "evil.example",
        "Forwarded": "for=203.0.113.9;proto=http;host=evil.example",
    }
    async with tls_client(certificate, tls_stack.base_url) as client:
        account = await verified_account(client, smtp_server, "forger@example.com")
        body = await predict(client, account.access, **forged)
    assert str(body["image_url"]).startswith(f"https://127.0.0.1:{tls_stack.port}{API}/")
