"""Prometheus metrics, one registry for all the processes behind one proxy.

With PROMETHEUS_MULTIPROC_DIR set (serve-nginx sets it and wipes it at start), every
process writes its samples to files there and GET /metrics, answered by any of them,
sums them (prometheus-client's multiprocess mode); without it, this process's own
registry. Names follow the serving anchors: Triton's cumulative microsecond counters
(`nv_inference_queue_duration_us`, `nv_inference_compute_infer_duration_us`,
`nv_inference_count`, `nv_inference_exec_count`, `nv_inference_pending_request_count`)
and BentoML's `bentoml_service_adaptive_batch_size` histogram, under `ocupredict_`.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from app.kit.client_ip import in_networks, parse_ip, trusted_networks

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

HTTP_REQUESTS = Counter(
    "ocupredict_http_requests",
    "HTTP requests answered, by route template, status and process index",
    ["method", "route", "status", "process"],
)
HTTP_LATENCY = Histogram(
    "ocupredict_http_request_duration_seconds",
    "HTTP request latency, by route template and status",
    ["method", "route", "status"],
    buckets=_LATENCY_BUCKETS,
)
INFERENCE_PENDING = Gauge(
    "ocupredict_inference_pending_request_count",
    "Images submitted to the micro-batcher and not yet answered (Triton's pending count)",
    multiprocess_mode="livesum",
)
INFERENCE_QUEUE_US = Counter(
    "ocupredict_inference_queue_duration_us",
    "Cumulative time images waited in the batcher queue, microseconds",
)
INFERENCE_COMPUTE_US = Counter(
    "ocupredict_inference_compute_infer_duration_us",
    "Cumulative model time of the batches that computed each image, microseconds",
)
INFERENCE_COUNT = Counter("ocupredict_inference_count", "Images classified")
INFERENCE_EXEC_COUNT = Counter("ocupredict_inference_exec_count", "Model calls (batches)")
BATCH_SIZE = Histogram(
    "ocupredict_adaptive_batch_size",
    "Images per model call (BentoML's adaptive batch size)",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256),
)
PREPROCESS_SECONDS = Histogram(
    "ocupredict_preprocess_duration_seconds",
    "Decode, validation and preprocessing of one upload",
    buckets=_LATENCY_BUCKETS,
)
PREDICTIONS = Counter(
    "ocupredict_predictions",
    "Predictions recorded, by predicted class and model version",
    ["class_code", "model_version"],
)
IMAGE_STORE_ERRORS = Counter(
    "ocupredict_image_store_errors", "Requests that failed because the image store failed"
)
DATABASE_ERRORS = Counter(
    "ocupredict_database_errors", "Requests that failed because the database failed"
)
DB_TRANSACTION_RETRIES = Counter(
    "ocupredict_db_transaction_retries",
    "Whole transactions run again after a transient abort (app.db.retry), by reason: "
    "deadlock (1213, also a Galera certification conflict), lock_wait_timeout (1205), "
    "wsrep_not_ready (1047), write_conflict (a write guard moved)",
    ["reason"],
)
DB_TRANSACTIONS_ABANDONED = Counter(
    "ocupredict_db_transactions_abandoned",
    "Transactions that still failed transiently after their last retry, by reason",
    ["reason"],
)
MODEL_INFO = Gauge(
    "ocupredict_model_info",
    "The model each live process serves (value 1)",
    ["version", "backend", "demo", "process"],
    multiprocess_mode="livemax",
)
BUILD_INFO = Gauge(
    "ocupredict_build_info",
    "Build of the service (value 1)",
    ["version", "python"],
    multiprocess_mode="max",
)


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def reset_multiprocess_dir(path: Path) -> None:
    """Empty the directory (stale files from a previous run would be summed in)."""
    path.mkdir(parents=True, exist_ok=True)
    for item in path.glob("*.db"):
        item.unlink()


def mark_process_dead(pid: int) -> None:
    """A dead process's live gauges stop counting (the supervisor calls it)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def publish_info(
    *, app_version: str, model_version: str, backend: str, demo: bool, process: int
) -> None:
    BUILD_INFO.labels(version=app_version, python=platform.python_version()).set(1)
    MODEL_INFO.labels(
        version=model_version, backend=backend, demo=str(demo).lower(), process=str(process)
    ).set(1)


def render() -> tuple[bytes, str]:
    if multiprocess_dir() is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


@contextmanager
def pending_inference() -> Iterator[None]:
    INFERENCE_PENDING.inc()
    try:
        yield
    finally:
        INFERENCE_PENDING.dec()


def observe_inference(queue_ms: float, run_ms: float) -> None:
    INFERENCE_COUNT.inc()
    INFERENCE_QUEUE_US.inc(queue_ms * 1000)
    INFERENCE_COMPUTE_US.inc(run_ms * 1000)


def observe_batch(size: int) -> None:
    INFERENCE_EXEC_COUNT.inc()
    BATCH_SIZE.observe(size)


def metrics_allowed(client_ip: str, allowed: list[str]) -> bool:
    """Whether this client (the peer, or the client a trusted proxy names) may read them."""
    address = parse_ip(client_ip)
    return address is not None and in_networks(address, trusted_networks(tuple(allowed)))


def observe_http(method: str, route: str, status: int, process: str, seconds: float) -> None:
    code = str(status)
    HTTP_REQUESTS.labels(method, route, code, process).inc()
    HTTP_LATENCY.labels(method, route, code).observe(seconds)
