"""Waiting without timing: poll a condition until it holds, with a deadline that only bounds
a hang (reaching it fails the test; how soon the condition holds is never asserted)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def poll_until(
    condition: Callable[[], Awaitable[bool] | bool],
    timeout: float = 60.0,
    interval: float = 0.02,
    what: str = "condition",
) -> None:
    """Return once `condition()` (sync or async) is true; AssertionError after `timeout` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        outcome = condition()
        if isinstance(outcome, Awaitable):
            outcome = await outcome
        if outcome:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(interval)
