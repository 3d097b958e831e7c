"""The web app's size budget: the gzipped JavaScript the sign-in page loads, at most 200 kB.

    make web && .venv/bin/python bench/web_budget.py

Serves web/dist from a plain static server on loopback (the API is not needed to draw the
sign-in page: its one call, the session refresh, simply fails), opens /signin in Debian's
Chromium (web/bench/signin-js.mjs, Playwright), and gzips (level 9, as nginx's gzip_static
or a CDN would serve them) every JavaScript file the page loaded. Prints each file, the
total and the ratio to the budget; exits 1 over budget. Not part of CI.
"""

from __future__ import annotations

import gzip
import http.server
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "web" / "dist"
BUDGET_BYTES = 200 * 1000


class SpaHandler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, directory=str(DIST), **kwargs)  # type: ignore[arg-type]

    def send_head(self):  # type: ignore[no-untyped-def]
        path = urlsplit(self.path).path
        if not (DIST / path.lstrip("/")).is_file():
            self.path = "/index.html"  # the app's routes
        return super().send_head()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    if not (DIST / "index.html").is_file():
        print("web/dist is missing: run `make web` first", file=sys.stderr)
        return 2
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SpaHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/signin"
    try:
        loaded = subprocess.run(
            ["node", "bench/signin-js.mjs", url],
            cwd=ROOT / "web",
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.split()
    finally:
        server.shutdown()
    total = 0
    for script in sorted(loaded):
        path = DIST / urlsplit(script).path.lstrip("/")
        raw = path.read_bytes()
        size = len(gzip.compress(raw, 9))
        total += size
        print(f"{path.relative_to(DIST)}: {len(raw) / 1000:.1f} kB, gzipped {size / 1000:.1f} kB")
    print(f"sign-in page JavaScript: {len(loaded)} files, {total / 1000:.1f} kB gzipped")
    print(f"budget {BUDGET_BYTES / 1000:.0f} kB: {total / BUDGET_BYTES:.2f} of it")
    return 0 if total <= BUDGET_BYTES else 1


if __name__ == "__main__":
    raise SystemExit(main())
