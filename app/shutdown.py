"""The drain state of this process: set on SIGTERM (app/deploy/worker.py), read by the
readiness probe and by POST /predict, which then answer 503 SHUTTING_DOWN while the
requests already in flight finish."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.errors import ShuttingDown


class DrainGate:
    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0  # uploads admitted and not yet answered

    def begin(self) -> None:
        self.draining = True

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Around one upload: refused once draining, counted while it runs."""
        if self.draining:
            raise ShuttingDown()
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
