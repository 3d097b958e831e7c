"""Lighthouse 12.2.3 (npm, run by npx) with Debian's Chromium on the web app's sign-in,
evaluation and history screens: the performance and accessibility scores (target: >= 90).

    make web && .venv/bin/python bench/web_lighthouse.py [--mobile]

Desktop preset by default; --mobile: Lighthouse's default throttled phone (slow 4G, 4x CPU).

Starts `ocupredict serve` (make run's shape: the app serves web/dist) on a temporary SQLite
database, makes a doctor (`create-admin`: an account that can use every doctor screen),
and for each signed-in screen logs in again in the cookie mode and hands Lighthouse that
one fresh refresh cookie (a refresh token works once, so each page load gets its own).
Prints one line per screen and exits 1 when a score is under 90. Not part of CI: it
fetches lighthouse from the npm registry on first use.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from e2e.run import background, free_port, ocupredict, wait_for_port  # noqa: E402

LIGHTHOUSE = "lighthouse@12.2.3"
SCREENS = {"sign-in": "/signin", "evaluation": "/evaluate", "history": "/history"}
CHROME_FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
    "--disable-background-networking --disable-component-update --disable-sync"
)
TARGET = 90


def fresh_cookie(base_url: str, email: str, password: str) -> str:
    response = httpx.post(
        f"{base_url}/api/v1/auth/login?session=cookie",
        data={"username": email, "password": password},
        timeout=30,
    )
    response.raise_for_status()
    return response.cookies["ocupredict_refresh"]


def lighthouse(url: str, out: Path, cookie: str | None, mobile: bool) -> dict[str, float]:
    args = ["npx", "--yes", LIGHTHOUSE, url, "--quiet", "--output=json", f"--output-path={out}"]
    args += ["--only-categories=performance,accessibility", f"--chrome-flags={CHROME_FLAGS}"]
    if not mobile:  # Lighthouse's default is a throttled (simulated slow 4G) phone
        args += ["--preset=desktop"]
    if cookie:
        args.append("--extra-headers=" + json.dumps({"Cookie": f"ocupredict_refresh={cookie}"}))
    env = {**os.environ, "CHROME_PATH": "/usr/bin/chromium"}
    subprocess.run(args, cwd=ROOT / "web", env=env, check=True, timeout=300)
    report = json.loads(out.read_text())
    return {name: report["categories"][name]["score"] * 100 for name in report["categories"]}


def main() -> int:
    mobile = "--mobile" in sys.argv[1:]
    if not (ROOT / "web" / "dist" / "index.html").is_file():
        print("web/dist is missing: run `make web` first", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="ocupredict-lighthouse-"))
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "development",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'lh.db'}",
        "LOCAL_STORAGE_DIR": str(tmp / "images"),
        "MODEL_CACHE_DIR": str(tmp / "model-cache"),
        "MAIL_BACKEND": "console",
        "WEB_DIST_DIR": str(ROOT / "web" / "dist"),
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "PYTHONPATH": str(ROOT),  # this checkout's app, whatever the venv points at
    }
    email, password = "lighthouse@example.com", secrets.token_urlsafe(16)
    ocupredict(["migrate"], env, tmp)
    ocupredict(
        ["create-admin", email, "--name", "Dra. Faro", "--password-stdin"],
        env,
        tmp,
        stdin=password + "\n",
    )
    base_url = f"http://127.0.0.1:{port}"
    args = [str(Path(sys.executable).parent / "ocupredict"), "serve", "--port", str(port)]
    failed = False
    with background(args, tmp / "server.log", env, tmp, "ocupredict serve") as proc:
        wait_for_port(port, proc, 300)
        time.sleep(1)
        for name, path in SCREENS.items():
            cookie = None if path == "/signin" else fresh_cookie(base_url, email, password)
            scores = lighthouse(base_url + path, tmp / f"{name}.json", cookie, mobile)
            line = ", ".join(f"{k} {v:.0f}" for k, v in scores.items())
            low = [k for k, v in scores.items() if v < TARGET]
            failed = failed or bool(low)
            print(
                f"{name} ({path}): {line}" + (f"  UNDER {TARGET}: {', '.join(low)}" if low else "")
            )
    print(f"reports in {tmp}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
