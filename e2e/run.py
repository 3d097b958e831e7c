"""`make e2e`: the contract checked by real clients against a live server.

1. An aiosmtpd process on 127.0.0.1 captures the mail (e2e/mailsink.py writes one JSON
   file per message; the clients read the one-time codes from there).
2. `ocupredict migrate` + `ocupredict serve-nginx --processes 2` (nginx on a free loopback
   port in front of two single-process uvicorns, started by app/deploy/harness.py), with a
   temporary SQLite database, the local image store, SMTP to the sink and demo weights.
3. Against it (through nginx), each a separate client process:
   - flow:    the Node end-to-end flow with the generated TypeScript client
              (clients/typescript/dist/e2e/flow.js);
   - swagger: Swagger UI at /docs in headless Chromium (dist/e2e/swagger.js);
   - schemathesis: e2e/test_schemathesis_live.py under pytest (every operation);
   then, on a second stack with a per-IP limit of 5 failures:
   - xff:     wrong logins for new accounts, each naming another client in
              X-Forwarded-For: the per-IP limit still answers 429 (nginx overwrites it).
4. Everything is stopped; the run exits 1 if any step failed, after all steps ran
   (`--only flow,swagger` runs a subset).

The TypeScript sources must be generated and compiled first (`make e2e` does it). The
temporary directory is printed and kept (after a passing run only the database, logs,
captured mail, screenshots and case counts; everything after a failing one).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from app.deploy.harness import NginxStack, free_port  # noqa: E402

CLIENT_DIR = ROOT / "clients" / "typescript"
BIN = Path(sys.executable).parent
STEPS = ("flow", "swagger", "schemathesis", "xff")
PROCESSES = 2
XFF_IP_LIMIT = 5


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text[-lines:])


def stop(proc: subprocess.Popen[bytes], name: str) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop on SIGTERM; killing it", flush=True)
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def background(
    args: list[str], log: Path, env: dict[str, str], cwd: Path, name: str
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        try:
            yield proc
        finally:
            stop(proc, name)


def make_jpeg(path: Path) -> None:
    """A 320x240 fundus-like JPEG (a warm disc on black) made with Pillow."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 240), "black")
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 10, 280, 230), fill=(170, 70, 30))
    draw.ellipse((190, 90, 240, 140), fill=(250, 210, 150))
    for i in range(6):
        draw.line((215, 115, 60 + 40 * i, 20 + 35 * (i % 3)), fill=(120, 20, 20), width=3)
    image.save(path, "JPEG", quality=90)


def server_env(tmp: Path, smtp_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCUPREDICT_",))}
    env.update(
        {
            "ENVIRONMENT": "development",
            "API_PREFIX": "/api/v1",
            "LOG_LEVEL": "INFO",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'e2e.db'}",
            "JWT_SECRET_KEY": secrets.token_urlsafe(48),
            "STORAGE_BACKEND": "local",
            "LOCAL_STORAGE_DIR": str(tmp / "images"),
            "MAIL_BACKEND": "smtp",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(smtp_port),
            "MAIL_USERNAME": "",
            "MAIL_STARTTLS": "false",
            "MAIL_SSL_TLS": "false",
            "MAIL_FROM": "no-reply@ocupredict.local",
            "MODEL_CACHE_DIR": str(tmp / "model-cache"),
            "INFERENCE_BACKEND": os.environ.get("E2E_INFERENCE_BACKEND", "auto"),
            "CORS_ORIGINS": "",
            "TRUSTED_PROXIES": "",
            # Every client here shares 127.0.0.1: with the per-IP limits of a clinic's NAT,
            # schemathesis' wrong codes would lock the whole run out after 50 tries and
            # the fuzzing would stop at 429 instead of reaching the handlers. The
            # per-account limits stay at their defaults (their 429s are still exercised).
            "IP_MAX_FAILURES": "1000000",
            "MAIL_REQUESTS_PER_IP": "1000000",
        }
    )
    for name in ("MODEL_SOURCE", "MODEL_S3_KEY", "S3_ENDPOINT_URL", "TEST_DATABASE_URL"):
        env.pop(name, None)
    return env


def ocupredict(args: list[str], env: dict[str, str], cwd: Path, stdin: str = "") -> None:
    """Run an `ocupredict` command to completion; its output is shown only if it fails."""
    result = subprocess.run(
        [str(BIN / "ocupredict"), *args],
        input=stdin.encode(),
        env=env,
        cwd=cwd,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        sys.stdout.write(result.stdout.decode() + result.stderr.decode())
        raise RuntimeError(f"ocupredict {args[0]} failed")


def run_step(name: str, args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> bool:
    print(f"\n== e2e: {name}", flush=True)
    started = time.monotonic()
    try:
        result = subprocess.run(args, env=env, cwd=cwd, timeout=timeout, check=False)
        ok = result.returncode == 0
        status = "passed" if ok else f"FAILED (exit {result.returncode})"
    except subprocess.TimeoutExpired:
        ok, status = False, f"FAILED (timed out after {timeout:.0f} s)"
    print(f"== e2e: {name} {status} in {time.monotonic() - started:.1f} s", flush=True)
    return ok


def check_spoofed_forwarded_for(base_url: str) -> bool:
    """XFF_IP_LIMIT wrong logins pass as 401, the next ones are 429, whatever they claim."""
    statuses = []
    for i in range(XFF_IP_LIMIT + 2):
        body = urllib.parse.urlencode(
            {"username": f"xff{i}@example.com", "password": "not-the-password"}
        ).encode()
        request = urllib.request.Request(
            f"{base_url}/api/v1/auth/login",
            data=body,
            headers={"X-Forwarded-For": f"203.0.113.{i + 1}, 10.0.0.{i + 1}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
    expected = [401] * XFF_IP_LIMIT + [429, 429]
    print(f"e2e: login statuses with spoofed X-Forwarded-For: {statuses}", flush=True)
    return statuses == expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}"
    )
    args = parser.parse_args(argv)
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(steps) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps: {', '.join(sorted(unknown))}")
    for name in ("flow", "swagger"):
        if name in steps and not (CLIENT_DIR / "dist" / "e2e" / f"{name}.js").exists():
            parser.error(f"clients/typescript/dist/e2e/{name}.js is missing: run `make e2e`")

    tmp = Path(tempfile.mkdtemp(prefix="ocupredict-e2e-"))
    mail_dir, shots = tmp / "mail", tmp / "screenshots"
    mail_dir.mkdir()
    shots.mkdir()
    print(f"e2e: working directory {tmp}", flush=True)
    jpeg = tmp / "fundus-e2e.jpg"
    make_jpeg(jpeg)

    smtp_port = free_port()
    env = server_env(tmp, smtp_port)
    results: dict[str, bool] = {}
    smtp_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    smtp_args = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{smtp_port}"]
    smtp_args += ["-c", "e2e.mailsink.FileSink", str(mail_dir)]
    server_log = tmp / "server.log"
    try:
        with background(smtp_args, tmp / "smtp.log", smtp_env, ROOT, "aiosmtpd") as smtp:
            wait_for_port(smtp_port, smtp, 30)
            print(f"e2e: aiosmtpd on 127.0.0.1:{smtp_port} writing to {mail_dir}", flush=True)
            ocupredict(["migrate"], env, tmp)
            # An administrator for the admin routes (schemathesis logs in with it).
            admin_email, admin_password = "e2e-admin@example.com", secrets.token_urlsafe(18)
            admin_args = ["create-admin", admin_email, "--name", "E2E Admin", "--password-stdin"]
            ocupredict(admin_args, env, tmp, stdin=admin_password + "\n")
            stack = NginxStack(
                env, processes=PROCESSES, socket_dir=tmp / "run", cwd=tmp, log_path=server_log
            )
            with stack:
                stack.wait_ready(300)
                base_url = stack.base_url
                print(f"e2e: nginx at {base_url} in front of {PROCESSES} processes", flush=True)
                client_env = {
                    **os.environ,
                    "OCUPREDICT_URL": base_url,
                    "OCUPREDICT_MAIL_DIR": str(mail_dir),
                    "OCUPREDICT_E2E_JPEG": str(jpeg),
                    "OCUPREDICT_SCREENSHOT_DIR": str(shots),
                    "OCUPREDICT_ADMIN_EMAIL": admin_email,
                    "OCUPREDICT_ADMIN_PASSWORD": admin_password,
                    # Hypothesis' caches go with the run, not into the work tree.
                    "HYPOTHESIS_STORAGE_DIRECTORY": str(tmp / "hypothesis"),
                }
                node = os.environ.get("NODE", "node")
                if "flow" in steps:
                    results["flow"] = run_step(
                        "Node flow (generated TypeScript client)",
                        [node, "dist/e2e/flow.js"],
                        client_env,
                        CLIENT_DIR,
                        120,
                    )
                if "swagger" in steps:
                    results["swagger"] = run_step(
                        "Swagger UI in headless Chromium",
                        [node, "dist/e2e/swagger.js"],
                        client_env,
                        CLIENT_DIR,
                        180,
                    )
                if "schemathesis" in steps:
                    results["schemathesis"] = run_step(
                        "schemathesis (every operation)",
                        [
                            sys.executable,
                            "-m",
                            "pytest",
                            str(ROOT / "e2e" / "test_schemathesis_live.py"),
                            "-p",
                            "no:cacheprovider",
                            "-q",
                            "-s",
                        ],
                        client_env,
                        ROOT,
                        420,
                    )
                if stack.proc is None or stack.proc.poll() is not None:
                    print("e2e: serve-nginx died", flush=True)
                    results["server"] = False
            if "xff" in steps:
                print("\n== e2e: per-IP limit with a spoofed X-Forwarded-For", flush=True)
                limited = {**env, "IP_MAX_FAILURES": str(XFF_IP_LIMIT)}
                limited["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp / 'e2e-xff.db'}"
                migrate_xff = subprocess.run(
                    [str(BIN / "ocupredict"), "migrate"],
                    env=limited,
                    cwd=tmp,
                    check=False,
                    capture_output=True,
                )
                with NginxStack(
                    limited,
                    processes=PROCESSES,
                    socket_dir=tmp / "run-xff",
                    cwd=tmp,
                    log_path=tmp / "server-xff.log",
                ) as second:
                    second.wait_ready(300)
                    results["xff"] = migrate_xff.returncode == 0 and check_spoofed_forwarded_for(
                        second.base_url
                    )
    except RuntimeError as exc:
        print(f"e2e: {exc}", flush=True)
        results["setup"] = False

    failed = [name for name, ok in results.items() if not ok]
    if failed:
        print(f"\n-- last lines of {server_log}\n{tail(server_log)}", flush=True)
    else:  # keep the logs, mail and screenshots; drop the bulky parts
        for bulky in ("model-cache", "images", "hypothesis"):
            shutil.rmtree(tmp / bulky, ignore_errors=True)
    print(f"\ne2e: working directory kept at {tmp}")
    for name, ok in results.items():
        print(f"e2e: {name:<13} {'passed' if ok else 'FAILED'}")
    if failed or not results:
        print(f"e2e: {len(results) - len(failed)} passed, {len(failed)} failed")
        return 1
    print(f"e2e: {len(results)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
