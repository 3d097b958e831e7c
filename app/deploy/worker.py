"""One single-process uvicorn on a Unix socket, as serve-nginx runs it.

`python -m app.deploy.worker --uds PATH`; settings come from the environment (PROCESS_INDEX,
WEB_WORKERS, PROMETHEUS_MULTIPROC_DIR are set by the supervisor).

On SIGTERM (or SIGINT) the process drains: the readiness probe answers 503 SHUTTING_DOWN
and new uploads 503 SHUTTING_DOWN at once, while it keeps serving until the uploads in
flight have been answered; then uvicorn stops listening, waits for the remaining
connections, and the lifespan closes the classifier (its batcher runs every queued image
first), the mailer, the image store and the database engine. The whole drain is bounded
by SHUTDOWN_TIMEOUT_SECONDS; a second signal stops at once.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from types import FrameType

import uvicorn

from app.config import Settings
from app.main import create_app
from app.observability import uvicorn_log_config
from app.shutdown import DrainGate

log = logging.getLogger("ocupredict.worker")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, gate: DrainGate, timeout: float) -> None:
        super().__init__(config)
        self.gate = gate
        self.timeout = timeout
        self.drain_started: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_started is None and sig in (signal.SIGTERM, signal.SIGINT):
            self.drain_started = time.monotonic()
            self.gate.begin()
            log.info("draining: %d uploads in flight", self.gate.in_flight)
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.drain_started is not None and not self.should_exit:
            elapsed = time.monotonic() - self.drain_started
            if self.gate.in_flight == 0 or elapsed >= self.timeout:
                # What is left of the bound goes to uvicorn's own graceful shutdown.
                self.config.timeout_graceful_shutdown = max(1, int(self.timeout - elapsed))
                log.info("drained uploads in %.2f s; stopping", elapsed)
                self.should_exit = True
        return await super().on_tick(counter)


def uvicorn_config(app: object, settings: Settings, uds: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        uds=uds,
        lifespan="on",
        proxy_headers=False,  # client IPs: TRUSTED_PROXIES handling in the app
        access_log=False,  # the app logs one access line per request (route, status, ms)
        # uvicorn's loggers through the app's handler (JSON in production)
        log_config=uvicorn_log_config(settings.log_level, settings.json_logs),
        log_level=settings.log_level.lower(),
        timeout_keep_alive=settings.keep_alive_seconds,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one uvicorn process on a Unix socket")
    parser.add_argument("--uds", required=True)
    args = parser.parse_args(argv)
    settings = Settings()
    app = create_app(settings)
    server = DrainingServer(
        uvicorn_config(app, settings, args.uds), app.state.drain, settings.shutdown_timeout_seconds
    )
    server.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
