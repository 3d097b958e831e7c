"""`ocupredict train-worker [--once]`: the training worker's process (worker.py).

The process lowers its priority (TRAINING_NICE) and gives torch TRAINING_THREADS threads,
so the web processes on the same host keep serving; SIGTERM and SIGINT stop the worker
before its next batch, and the job in hand goes back to the queue with its checkpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal

import torch

from app.config import Settings
from app.db.session import make_engine, make_sessionmaker
from app.inference.backends import torch_device
from app.storage import build_image_store
from app.training.worker import TrainingWorker

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "train-worker",
        help="work the queued training jobs, one at a time, at low priority",
        description="Claims training jobs from the database and trains them (README, "
        "Learning loop). Run one or more per host; SIGTERM puts the job in hand back in "
        "the queue with its checkpoint.",
    )
    parser.add_argument("--once", action="store_true", help="work at most one job, then exit")
    parser.set_defaults(func=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    from app.observability import configure_logging

    configure_logging(settings.log_level, settings.json_logs)
    os.nice(settings.training_nice)
    torch.set_num_threads(settings.training_threads)
    with contextlib.suppress(RuntimeError):  # only before any parallel work
        torch.set_num_interop_threads(1)
    return asyncio.run(_serve(settings, once=args.once))


async def _serve(settings: Settings, *, once: bool) -> int:
    engine = make_engine(settings)
    storage = await build_image_store(settings)
    worker = TrainingWorker(settings, make_sessionmaker(engine), storage)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    log.info(
        "train-worker %s started (nice %d, %d threads, device %s)",
        worker.name,
        settings.training_nice,
        settings.training_threads,
        torch_device(settings.inference_device),
    )
    try:
        if once:
            await worker.run_once()
        else:
            await worker.run_forever()
    finally:
        await storage.aclose()
        await engine.dispose()
    return 0
