"""Prediction speed, measured in one run on this machine, and compared with the earlier back-end.

1. Raw model images/s: torch and onnx backends, batch 1 and 8, demo weights, all cores.
2. Preprocessing images/s (decode_upload): a 2048x2048 fundus-like JPEG with fast (DCT
   scaled) and full decode, and a 224x224 JPEG; one thread and a pool of cpu_count threads.
3. End-to-end POST /api/v1/predict: images/s and p50/p95 latency at 1, 8 and 32 concurrent
   clients (closed loop, a lean asyncio HTTP/1.1 client in this process) against our service run as
   `ocupredict migrate` + `ocupredict serve` (SQLite, local store and model cache in a
   temporary directory, demo weights, console mail, INFERENCE_BACKEND=auto, 1 worker; the
   full run also tries 2 workers with INFERENCE_THREADS=1).
4. The same load against bench/legacy_baseline.py, the earlier back-end's way of working.
6. Clinical decision support: the quality gate's cost per image (on the decoded 224 and
   2048 px JPEGs, beside their decode), the Grad-CAM heatmap's p50/p95 (decode + render of
   a 2048 px JPEG), and images/s at 8 clients for 2048 px JPEGs with the gate on and off
   (QUALITY_GATE), two servers measured in alternating rounds in this one invocation.
   `--clinical` runs this part alone.
5. Ratios ours / baseline and end-to-end / bound, where bound = 1 / (1/model + 1/prep):
   the best raw model images/s (batch 8) and the preprocessing images/s for that size
   (fast decode), each using all cores, since both share the same cores.

Every loop is bounded by a request count and a time limit; servers listen on 127.0.0.1
only and are stopped on exit, Ctrl-C included. Nothing here asserts on time.

    .venv/bin/python bench/predict.py           # the full run, a few minutes
    .venv/bin/python bench/predict.py --quick   # a smoke run, under a minute
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import secrets
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import torch
from _common import (
    LOOPBACK,
    ROOT,
    CpuMeter,
    LoadResult,
    Server,
    background_load,
    closed_loop,
    cpu_count,
    free_port,
    fundus_jpeg,
    multipart,
    percentile,
    run_checked,
    start_server,
    throughput,
)
from legacy_baseline import preprocess as legacy_preprocess

from app.clinical import assess
from app.config import Settings
from app.inference.backends import Backend, OnnxBackend, TorchBackend
from app.inference.explain import MAX_SIDE, Explainer
from app.inference.manifest import DEFAULT_MANIFEST
from app.inference.network import EyeDiseaseClassifier, load_network, seeded_state_dict
from app.inference.preprocess import decode_rgb, decode_upload
from app.inference.weights import DEMO_SEED, state_dict_sha256

API = "/api/v1"
SIZES = (224, 2048)
CLIENTS = (1, 8, 32)
TARGET_OF_BOUND = 0.80
TARGET_OF_BASELINE = 2.0
MAX_PIXELS = 50_000_000
NOISY_CORES = 0.25  # other processes' load above which a figure is flagged as noisy
_CODE = re.compile(r"\b(\d{6})\b")


@dataclass(frozen=True)
class Plan:
    """How long each measurement may run (every loop also has a count limit)."""

    model_seconds: float
    prep_seconds: float
    level_seconds: float  # measured part of one end-to-end level
    level_requests: int
    warmup_rounds: int  # warm-up requests per client before each level
    workers2: bool

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(0.5, 0.4, 0.8, 200, 1, workers2=False)
        return cls(3.0, 2.0, 5.0, 2000, 2, workers2=True)


# --------------------------------------------------------------------------- in process


def demo_network() -> tuple[EyeDiseaseClassifier, str]:
    state = seeded_state_dict(DEFAULT_MANIFEST.num_classes, DEMO_SEED)
    return load_network(state, DEFAULT_MANIFEST.num_classes), state_dict_sha256(state)


def bench_model(plan: Plan, model_cache: Path) -> dict[tuple[str, int], float]:
    """images/s per (configuration, batch), each configuration using every core.

    "onnx" and "torch": one call at a time, intra-op threads = cores (what the service
    runs today). "onnx 1t xN": N = cores concurrent calls on one session with one intra-op
    thread each (ONNX Runtime sessions take concurrent calls), the other way to fill the
    cores; the bound takes the best of all.
    """
    cores = cpu_count()
    network, sha256 = demo_network()

    def onnx(threads: int) -> OnnxBackend:
        return OnnxBackend.for_network(
            network,
            weights_sha256=sha256,
            input_size=DEFAULT_MANIFEST.input_size,
            cache_dir=model_cache,
            threads=threads,
        )

    configurations: list[tuple[str, Backend, int]] = [
        ("onnx", onnx(cores), 1),
        ("torch", TorchBackend(network, threads=cores), 1),
    ]
    if cores > 1:
        configurations.append((f"onnx 1t x{cores}", onnx(1), cores))
    rng = np.random.default_rng(0)
    results: dict[tuple[str, int], float] = {}
    for name, backend, callers in configurations:
        for batch_size in (1, 8):
            batch = rng.standard_normal((batch_size, 3, 224, 224)).astype(np.float32)
            for _ in range(3):  # warm-up: allocator, kernels, thread pools
                backend.run(batch)

            def run(backend: Backend = backend, batch: np.ndarray = batch) -> int:
                backend.run(batch)
                return len(batch)

            results[name, batch_size] = throughput(
                run, threads=callers, seconds=plan.model_seconds, max_calls=2000
            )
            print(
                f"  model {name:11} batch {batch_size}: {results[name, batch_size]:7.1f} images/s",
                flush=True,
            )
    return results


def bench_preprocess(plan: Plan, images: dict[int, bytes]) -> dict[tuple[str, int], float]:
    """images/s per (case, threads) for decode_upload and, for reference, the legacy path."""
    cases: dict[str, Callable[[], object]] = {
        "2048 fast": lambda: decode_upload(images[2048], max_pixels=MAX_PIXELS, fast_jpeg=True),
        "2048 full": lambda: decode_upload(images[2048], max_pixels=MAX_PIXELS, fast_jpeg=False),
        "224": lambda: decode_upload(images[224], max_pixels=MAX_PIXELS, fast_jpeg=True),
        "2048 legacy": lambda: legacy_preprocess(images[2048]),
        "224 legacy": lambda: legacy_preprocess(images[224]),
    }
    results: dict[tuple[str, int], float] = {}
    cores = cpu_count()
    for name, case in cases.items():
        case()  # warm-up

        def work(case: Callable[[], object] = case) -> int:
            case()
            return 1

        for threads in sorted({1, cores}):
            results[name, threads] = throughput(
                work, threads=threads, seconds=plan.prep_seconds, max_calls=20_000
            )
        print(
            f"  preprocess {name:11}: 1 thread {results[name, 1]:7.1f} images/s, "
            f"{cores} threads {results[name, cores]:7.1f} images/s",
            flush=True,
        )
    return results


# --------------------------------------------------------------------------- servers


def service_env(workdir: Path, model_cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SERVICE_VARS}
    env.update(
        PYTHONPATH=str(ROOT),
        ENVIRONMENT="development",
        DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'ocupredict.db'}",
        STORAGE_BACKEND="local",
        LOCAL_STORAGE_DIR=str(workdir / "images"),
        MODEL_CACHE_DIR=str(model_cache),
        INFERENCE_BACKEND="auto",
        MAIL_BACKEND="console",
        JWT_SECRET_KEY=secrets.token_urlsafe(32),
        ACCESS_TOKEN_MINUTES="120",
    )
    env.update(extra)
    return env


# Settings the bench decides (or leaves at their defaults), never inherited from the shell.
_SERVICE_VARS = {
    "ENVIRONMENT",
    "DATABASE_URL",
    "STORAGE_BACKEND",
    "LOCAL_STORAGE_DIR",
    "MODEL_SOURCE",
    "MODEL_S3_KEY",
    "MODEL_CACHE_DIR",
    "INFERENCE_BACKEND",
    "INFERENCE_THREADS",
    "MAX_BATCH",
    "BATCH_WAIT_MS",
    "FAST_JPEG_DECODE",
    "MAIL_BACKEND",
    "JWT_SECRET_KEY",
    "MAX_UPLOAD_MB",
    "MAX_IMAGE_PIXELS",
    "API_PREFIX",
    "LOG_LEVEL",
    "ACCESS_TOKEN_MINUTES",
    "QUALITY_GATE",
}


def start_ours(
    workdir: Path, *, model_cache: Path, workers: int, extra_env: dict[str, str] | None = None
) -> Server:
    """migrate + serve; `model_cache` already holds step 1's ONNX export, so no re-export."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = service_env(workdir, model_cache, **(extra_env or {}))
    cli = [sys.executable, "-m", "app.cli"]
    log_path = workdir / "server.log"
    run_checked([*cli, "migrate"], env, log_path)
    port = free_port()
    server = start_server(
        f"ocupredict ({workers} worker{'s' if workers > 1 else ''})",
        [*cli, "serve", "--host", LOOPBACK, "--port", str(port), "--workers", str(workers)],
        env=env,
        port=port,
        log_path=log_path,
        ready_path=f"{API}/health/ready",
    )
    # /health/ready answers once one worker is up; each worker builds its own classifier
    # before it accepts connections, and uvicorn logs (at LOG_LEVEL=INFO) when it has.
    deadline = time.monotonic() + 180
    while workers > 1 and server.log_text().count("Application startup complete") < workers:
        if time.monotonic() > deadline or server.process.poll() is not None:
            server.stop()
            raise RuntimeError(f"{server.name}: workers not ready:\n{server.log_tail()}")
        time.sleep(0.2)
    return server


def start_baseline(workdir: Path) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    return start_server(
        "legacy baseline",
        [
            sys.executable,
            str(ROOT / "bench" / "legacy_baseline.py"),
            "--port",
            str(port),
            "--data-dir",
            str(workdir),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        port=port,
        log_path=workdir / "server.log",
        ready_path="/health",
    )


def sign_in(server: Server) -> str:
    """Register through the API, read the code the console mailer logged, verify: a token."""
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    password = "Bench-" + secrets.token_urlsafe(12)
    with httpx.Client(base_url=server.base_url + API, timeout=60) as client:
        response = client.post(
            "/auth/register", json={"email": email, "password": password, "name": "Bench"}
        )
        if response.status_code not in (200, 201, 202):
            raise RuntimeError(f"register: {response.status_code} {response.text[:300]}")
        code = None
        deadline = time.monotonic() + 30
        while code is None and time.monotonic() < deadline:
            log = server.log_text()
            mail = re.search(f"console mail[^\n]* to {re.escape(email)}", log)
            found = _CODE.search(log, mail.end()) if mail else None  # the body follows
            code = found.group(1) if found else None
            if code is None:
                time.sleep(0.1)
        if code is None:
            raise RuntimeError(f"no verification code in the server log:\n{server.log_tail()}")
        response = client.post("/auth/verify", json={"email": email, "code": code})
        if response.status_code != 200 or "access_token" not in response.json():
            raise RuntimeError(f"verify: {response.status_code} {response.text[:300]}")
        return str(response.json()["access_token"])


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- end to end


@dataclass
class Level:
    size: int
    result: LoadResult
    busy_cores: float  # machine-wide during the level
    other_cores: float  # of which: not us (not this process, not the server)
    client_cores: float  # of which: this process (the load generator)

    @property
    def server_ms_per_image(self) -> float:
        """Server CPU time per answered request, in core-milliseconds."""
        server_cores = self.busy_cores - self.other_cores - self.client_cores
        return server_cores * self.result.seconds / max(self.result.ok, 1) * 1000


def load_levels(
    server: Server,
    plan: Plan,
    images: dict[int, bytes],
    *,
    path: str,
    expect: int,
    token: str | None,
    clients_levels: tuple[int, ...] = CLIENTS,
) -> list[Level]:
    levels: list[Level] = []
    for size in SIZES:
        body, headers = multipart(images[size])
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for clients in clients_levels:
            meter = CpuMeter([server.process.pid])
            own = time.process_time()
            started = time.perf_counter()
            result = asyncio.run(
                closed_loop(
                    server.base_url,
                    path,
                    body,
                    headers,
                    clients=clients,
                    expect=expect,
                    warmup=clients * plan.warmup_rounds,
                    requests=plan.level_requests,
                    seconds=plan.level_seconds,
                )
            )
            client_cores = (time.process_time() - own) / (time.perf_counter() - started)
            busy, others = meter.read()
            levels.append(Level(size, result, busy, others, client_cores))
            print(f"  {server.name}: {describe(levels[-1])}", flush=True)
    return levels


def describe(level: Level) -> str:
    result = level.result
    text = (
        f"{level.size:4}px x {result.clients:2} clients: {result.per_second:6.1f} images/s, "
        f"p50 {result.p50_ms:6.0f} ms, p95 {result.p95_ms:6.0f} ms, {result.ok} ok"
    )
    if result.failed:
        text += f", {result.failed} FAILED {result.failures}"
    if result.mean_batch is not None:
        text += f", mean batch {result.mean_batch:.1f}"
    text += (
        f" | server {level.server_ms_per_image:.0f} core-ms/image | cores busy "
        f"{level.busy_cores:.2f}: load generator {level.client_cores:.2f}, "
        f"others {level.other_cores:.2f}"
    )
    model = (result.sample or {}).get("model")
    if isinstance(model, dict):
        text += f" | {model.get('backend')}{' demo' if model.get('demo') else ''}"
    return text


# --------------------------------------------------------------------------- report


def is_noisy(level: Level) -> bool:
    return level.other_cores > NOISY_CORES


def noisy(level: Level) -> str:
    """A mark after a figure measured while other processes were busy."""
    return "*" if is_noisy(level) else " "


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(
    model: dict[tuple[str, int], float],
    prep: dict[tuple[str, int], float],
    ours: list[Level],
    baseline: list[Level],
    workers2: list[Level],
) -> None:
    cores = cpu_count()
    best_backend = max((name for name, batch in model if batch == 8), key=lambda n: model[n, 8])
    best = model[best_backend, 8]
    prep_for = {224: prep["224", cores], 2048: prep["2048 fast", cores]}
    bounds = {size: 1 / (1 / best + 1 / prep_for[size]) for size in SIZES}
    base = {(lv.size, lv.result.clients): lv for lv in baseline}

    print("\n== Summary ==")
    print("Raw model (images/s, all cores):")
    for batch in (1, 8):
        rates = [f"{name} {rate:.1f}" for (name, size), rate in model.items() if size == batch]
        row = ", ".join(rates)
        print(f"  batch {batch}: {row}")
    print(
        f"  onnx/torch: batch 1 {model['onnx', 1] / model['torch', 1]:.2f}x, "
        f"batch 8 {model['onnx', 8] / model['torch', 8]:.2f}x; "
        f"onnx batch 8 / batch 1 {model['onnx', 8] / model['onnx', 1]:.2f}x"
    )
    print("Preprocessing (images/s; 1 thread / all cores):")
    for name in ("2048 fast", "2048 full", "2048 legacy", "224", "224 legacy"):
        print(f"  {name:11}: {prep[name, 1]:7.1f} / {prep[name, cores]:7.1f}")
    print(
        f"  fast / full decode at 2048: {prep['2048 fast', 1] / prep['2048 full', 1]:.2f}x "
        f"(1 thread); all cores / 1 thread (2048 fast): "
        f"{prep['2048 fast', cores] / prep['2048 fast', 1]:.2f}x"
    )
    print(f"Bound = 1 / (1/model + 1/prep), model = {best_backend} batch 8 = {best:.1f} images/s:")
    for size in SIZES:
        print(f"  {size:4}px: prep {prep_for[size]:.1f} -> bound {bounds[size]:.1f} images/s")

    print("\nEnd-to-end POST /predict (images/s, p50/p95 ms); baseline = legacy emulation:")
    print(
        f"  {'size':>5} {'clients':>7} | {'ours':>7} {'p50':>7} {'p95':>7} | "
        f"{'baseline':>8} {'p50':>7} {'p95':>7} | {'ours/base':>9} {'ours/bound':>10}"
    )
    for level in ours:
        r = level.result
        b = base.get((level.size, r.clients))
        ratio = "      n/a"
        b_text = " " * 25
        if b is not None:
            br = b.result
            b_text = f"{br.per_second:7.1f}{noisy(b)} {br.p50_ms:7.0f} {br.p95_ms:7.0f}"
            if br.per_second:
                ratio = f"{r.per_second / br.per_second:8.2f}x"
        print(
            f"  {level.size:5} {r.clients:7} | {r.per_second:6.1f}{noisy(level)} "
            f"{r.p50_ms:7.0f} {r.p95_ms:7.0f} | {b_text} | {ratio} "
            f"{r.per_second / bounds[level.size]:9.0%}"
        )
    if workers2:
        print("  2 workers (INFERENCE_THREADS=1 each), for comparison:")
        for level in workers2:
            r = level.result
            print(
                f"  {level.size:5} {r.clients:7} | {r.per_second:6.1f}{noisy(level)} "
                f"{r.p50_ms:7.0f} {r.p95_ms:7.0f} | {'':25} | {'':9} "
                f"{r.per_second / bounds[level.size]:9.0%}"
            )
    if any(is_noisy(level) for level in [*ours, *baseline, *workers2]):
        print(f"  * other processes kept more than {NOISY_CORES} cores busy during that level")

    print(
        f"\nTargets at 8+ clients: >= {TARGET_OF_BOUND:.0%} of bound and "
        f">= {TARGET_OF_BASELINE:.0f}x baseline:"
    )
    for level in ours:
        r = level.result
        if r.clients < 8:
            continue
        of_bound = r.per_second / bounds[level.size]
        b = base.get((level.size, r.clients))
        b_rate = b.result.per_second if b else 0.0
        vs_base = r.per_second / b_rate if b_rate else float("nan")
        notes = f"  ({r.failed} failed requests)" if r.failed else ""
        if b_rate:  # how much of the bound the baseline target asks for: > 100% is unreachable
            notes += f"  [{TARGET_OF_BASELINE:.0f}x baseline = "
            notes += f"{TARGET_OF_BASELINE * b_rate / bounds[level.size]:.0%} of bound]"
        if is_noisy(level) or (b and is_noisy(b)):
            notes += "  (noisy: the machine was shared)"
        print(
            f"  {level.size:4}px x {r.clients:2} clients: of bound {of_bound:4.0%} "
            f"{verdict(of_bound >= TARGET_OF_BOUND and not r.failed)}, vs baseline "
            f"{vs_base:5.2f}x {verdict(vs_base >= TARGET_OF_BASELINE and not r.failed)}{notes}"
        )
        print(f"      {work_budget(level, bounds[level.size], best, prep_for[level.size], b_rate)}")
    print(
        "\nNotes: the baseline has no authentication and writes to a local directory "
        "instead of S3 (both make it faster than the original); the load generator runs "
        "on the same cores as the servers (its share is printed per level)."
    )


def work_budget(level: Level, bound: float, model: float, prep: float, baseline: float) -> str:
    """The server's CPU per image beside the model and the decode, against what each target
    leaves for it: everything else a request costs (HTTP, authentication, multipart,
    storage, database) plus the load generator and idle cores must fit in that budget."""
    cores = cpu_count()
    model_ms, prep_ms = cores * 1000 / model, cores * 1000 / prep  # core-ms per image
    other = level.server_ms_per_image - model_ms - prep_ms
    for_bound = cores * 1000 / (TARGET_OF_BOUND * bound) - model_ms - prep_ms
    text = (
        f"core-ms/image: model {model_ms:.1f} + decode {prep_ms:.1f} + the rest {other:.1f}; "
        f"the rest may be {for_bound:.1f} at {TARGET_OF_BOUND:.0%} of bound"
    )
    if baseline:
        for_base = cores * 1000 / (TARGET_OF_BASELINE * baseline) - model_ms - prep_ms
        text += f", {for_base:.1f} at {TARGET_OF_BASELINE:.0f}x baseline"
    return text


# --------------------------------------------------------------------------- main


# --------------------------------------------------------------------------- clinical


def timed_ms(work: Callable[[], object], *, count: int, seconds: float) -> list[float]:
    """Wall milliseconds of up to `count` calls of `work`, within about `seconds`."""
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < count and (not times or time.perf_counter() < deadline):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return times


def bench_clinical(plan: Plan, images: dict[int, bytes], workdir: Path, cache: Path) -> None:
    thresholds = Settings(_env_file=None).quality_thresholds
    print("  quality gate, one thread (median of repeated calls):")
    for size in SIZES:
        decoded = decode_upload(images[size], max_pixels=MAX_PIXELS)
        size_px = (decoded.width, decoded.height)
        gate = timed_ms(
            lambda d=decoded, s=size_px: assess(d.picture, s, thresholds),
            count=2000,
            seconds=plan.prep_seconds,
        )
        decode = timed_ms(
            lambda data=images[size]: decode_upload(data, max_pixels=MAX_PIXELS),
            count=500,
            seconds=plan.prep_seconds,
        )
        g, d = float(np.median(gate)), float(np.median(decode))
        print(
            f"    {size:>4} px: gate {g:.3f} ms/image beside decode {d:.2f} ms "
            f"({100 * g / d:.1f}% of it), {len(gate)} calls"
        )

    network, _ = demo_network()
    explainer = Explainer.for_classifier(network, DEFAULT_MANIFEST)
    data = images[2048]

    def heatmap() -> bytes:
        return explainer.render(decode_rgb(data, max_pixels=MAX_PIXELS, min_side=MAX_SIDE), 0)

    heatmap()  # warm-up
    times = timed_ms(heatmap, count=40 if not plan.workers2 else 60, seconds=4 * plan.level_seconds)
    print(
        f"  heatmap (2048 px JPEG: decode + Grad-CAM + PNG), {len(times)} renders: "
        f"p50 {percentile(times, 50):.0f} ms, p95 {percentile(times, 95):.0f} ms"
    )

    print("  end to end, 2048 px JPEG, 8 clients, gate on / off in alternating rounds:")
    rounds = 2 if plan.workers2 else 1
    with contextlib.ExitStack() as stack:
        servers = {}
        for gate_on in (True, False):
            server = start_ours(
                workdir / f"gate-{gate_on}",
                model_cache=cache,
                workers=1,
                extra_env={"QUALITY_GATE": str(gate_on).lower()},
            )
            stack.callback(server.stop)
            servers[gate_on] = (server, sign_in(server))
        rates: dict[bool, list[float]] = {True: [], False: []}
        body, base_headers = multipart(images[2048])
        order = [True, False, False, True][: 2 * rounds]  # ABBA: drift in load cancels out
        for gate_on in order:
            server, token = servers[gate_on]
            headers = {**base_headers, "Authorization": f"Bearer {token}"}
            result = asyncio.run(
                closed_loop(
                    server.base_url,
                    f"{API}/predict",
                    body,
                    headers,
                    clients=8,
                    expect=201,
                    warmup=8 * plan.warmup_rounds,
                    requests=plan.level_requests,
                    seconds=plan.level_seconds,
                )
            )
            rates[gate_on].append(result.per_second)
            print(
                f"    gate {'on ' if gate_on else 'off'}: {result.per_second:.1f} images/s "
                f"({result.ok} requests, p50 {result.p50_ms:.0f} ms)",
                flush=True,
            )
    on, off = float(np.mean(rates[True])), float(np.mean(rates[False]))
    cost = 100 * (1 - on / off)
    print(
        f"  gate on {on:.1f} vs off {off:.1f} images/s: the gate costs {cost:+.1f}% "
        f"(target at most 3%) [{'ok' if cost <= 3 else 'MISSED'}]"
    )


def _stop(signum: int, frame: object) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    sys.exit(128 + signum)


def wait_until_idle(limit: float) -> float:
    """Wait up to `limit` seconds for other processes to leave the cores; their load."""
    deadline = time.monotonic() + limit
    others = background_load()
    while others > NOISY_CORES and time.monotonic() < deadline:
        time.sleep(2)
        others = background_load()
    return others


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, under a minute")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to SECONDS for other processes to leave the cores",
    )
    parser.add_argument(
        "--clinical", action="store_true", help="only part 6 (quality gate and heatmap)"
    )
    args = parser.parse_args()
    plan = Plan.make(args.quick)
    # Both signals raise at once, so the finally blocks stop the servers. (asyncio.run's
    # own SIGINT handling only cancels the load task, and httpx may absorb that.)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    cores = cpu_count()
    print(
        f"OcuPredict prediction bench{' (quick)' if args.quick else ''}: {platform.node()}, "
        f"{cores} cores, Python {platform.python_version()}, torch {torch.__version__}"
    )
    others = wait_until_idle(args.wait_idle)
    print(f"Other processes keep {others:.2f} cores busy right now", flush=True)
    if others > NOISY_CORES:
        print("  WARNING: the machine is not idle; figures will be low and noisy")
    images = {size: fundus_jpeg(size) for size in SIZES}
    print(
        "Synthetic fundus JPEGs (q90): "
        + ", ".join(f"{s}x{s} {len(images[s]) / 1024:.0f} KiB" for s in SIZES)
    )

    with tempfile.TemporaryDirectory(prefix="ocupredict-bench-") as tmp:
        workdir = Path(tmp)
        cache = workdir / "model-cache"
        if args.clinical:
            print("\n6. Clinical decision support", flush=True)
            meter = CpuMeter()
            bench_clinical(plan, images, workdir, cache)
            print(f"  (others kept {meter.read()[1]:.2f} cores busy meanwhile)")
            return 0
        print("\n1. Raw model", flush=True)
        meter = CpuMeter()
        model = bench_model(plan, cache)
        print(f"  (others kept {meter.read()[1]:.2f} cores busy meanwhile)")
        print("\n2. Preprocessing", flush=True)
        meter = CpuMeter()
        prep = bench_preprocess(plan, images)
        print(f"  (others kept {meter.read()[1]:.2f} cores busy meanwhile)")

        print("\n3. End-to-end, our service (1 worker)", flush=True)
        with running(start_ours(workdir / "ours", model_cache=cache, workers=1)) as server:
            token = sign_in(server)
            ours = load_levels(server, plan, images, path=f"{API}/predict", expect=201, token=token)

        print("\n4. End-to-end, legacy baseline (no auth, one request at a time)", flush=True)
        with running(start_baseline(workdir / "legacy")) as server:
            baseline = load_levels(server, plan, images, path="/predict/", expect=200, token=None)

        workers2: list[Level] = []
        if plan.workers2:
            print("\n3b. End-to-end, our service (2 workers, INFERENCE_THREADS=1)", flush=True)
            with running(
                start_ours(
                    workdir / "ours2",
                    model_cache=cache,
                    workers=2,
                    extra_env={"INFERENCE_THREADS": "1"},
                )
            ) as server:
                token = sign_in(server)
                workers2 = load_levels(
                    server,
                    plan,
                    images,
                    path=f"{API}/predict",
                    expect=201,
                    token=token,
                    clients_levels=(8, 32),
                )

        print("\n6. Clinical decision support", flush=True)
        meter = CpuMeter()
        bench_clinical(plan, images, workdir, cache)
        print(f"  (others kept {meter.read()[1]:.2f} cores busy meanwhile)")

    report(model, prep, ours, baseline, workers2)
    print(f"Other processes keep {background_load():.2f} cores busy at the end")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; the servers have been stopped", file=sys.stderr)
        sys.exit(130)
