"""Shared pieces of the bench scripts: synthetic fundus JPEGs, loopback servers, load, stats.

Importing this module puts the project root on sys.path, so a script run as
`.venv/bin/python bench/<script>.py` can import `app` after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LOOPBACK = "127.0.0.1"


def cpu_count() -> int:
    """The cores this process may run on (what the service sizes its threads to)."""
    return max(1, len(os.sched_getaffinity(0)))


# --------------------------------------------------------------------------- images


def fundus_jpeg(side: int, *, seed: int = 7, quality: int = 90) -> bytes:
    """A fundus-like photograph as a JPEG: a bright orange disc with an optic disc, branching
    vessels and sensor noise on a dark background. Noise matters: it sets the entropy-coded
    size, and that (not the pixel count alone) is what a JPEG decoder spends its time on."""
    rng = np.random.default_rng(seed)
    work = min(side, 1024)  # draw at most 1024 px, then upscale (fast, and smooth like optics)
    yy, xx = np.mgrid[0:work, 0:work].astype(np.float32)
    centre = (work - 1) / 2
    radius = np.hypot(xx - centre, yy - centre) / (0.46 * work)
    disc = np.clip(1.0 - radius**8, 0.0, 1.0)
    optic_x, optic_y = centre + 0.22 * work, centre - 0.05 * work
    optic = np.exp(-((xx - optic_x) ** 2 + (yy - optic_y) ** 2) / (2 * (0.05 * work) ** 2))
    shade = 0.7 + 0.3 * (1 - np.clip(radius, 0, 1))
    blotches = (
        np.asarray(
            Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).resize(
                (work, work), Image.Resampling.BICUBIC
            ),
            np.float32,
        )
        / 255
    )  # low-frequency choroidal texture
    shade = shade * (0.9 + 0.2 * blotches)
    rgb = np.stack(
        [200 * shade + 55 * optic, 85 * shade + 150 * optic, 30 * shade + 130 * optic], axis=-1
    )
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))

    draw = ImageDraw.Draw(image)
    for _ in range(14):  # vessels leave the optic disc and thin out as they branch away
        x, y = optic_x, optic_y
        angle = rng.uniform(0, 2 * math.pi)
        width = max(1, round(work * rng.uniform(0.004, 0.009)))
        for step in range(60):
            angle += rng.normal(0, 0.18)
            nx = x + math.cos(angle) * work * 0.012
            ny = y + math.sin(angle) * work * 0.012
            draw.line([(x, y), (nx, ny)], fill=(125, 28, 18), width=width)
            x, y = nx, ny
            if step % 15 == 14 and width > 1:
                width -= 1
    image = image.filter(ImageFilter.GaussianBlur(work / 700))
    if work != side:
        image = image.resize((side, side), Image.Resampling.BICUBIC)

    mask = (
        np.asarray(Image.fromarray((disc * 255).astype(np.uint8)).resize((side, side)), np.float32)[
            ..., None
        ]
        / 255
    )
    pixels = np.asarray(image, np.float32) * mask  # nothing outside the disc
    noise = rng.normal(0, 3.0, (side, side, 1)) + rng.normal(0, 1.5, (side, side, 3))
    pixels = np.clip(pixels + noise * mask + rng.normal(0, 0.8, (side, side, 1)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def multipart(data: bytes, filename: str = "fundus.jpg") -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body with one `file` part, encoded once by httpx itself."""
    request = httpx.Request(
        "POST", "http://127.0.0.1/", files={"file": (filename, data, "image/jpeg")}
    )
    body = request.read()
    return body, {"Content-Type": request.headers["Content-Type"]}


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def throughput(work: Callable[[], int], *, threads: int, seconds: float, max_calls: int) -> float:
    """Items per second of `work` (returns the items it did) called from `threads` threads
    until `seconds` have passed or `max_calls` calls were started, whichever comes first."""
    lock = threading.Lock()
    calls = 0
    items = 0
    deadline = time.perf_counter() + seconds

    def loop() -> None:
        nonlocal calls, items
        while True:
            with lock:
                if calls >= max_calls or time.perf_counter() >= deadline:
                    return
                calls += 1
            done = work()
            with lock:
                items += done

    started = time.perf_counter()
    if threads == 1:  # in the calling thread: torch runs ~20% slower from a fresh thread
        loop()
    else:
        workers = [threading.Thread(target=loop, name=f"bench-{i}") for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return items / (time.perf_counter() - started)


class CpuMeter:
    """Machine-wide CPU use over an interval, split into ours (this process and the given
    server processes with their children) and everybody else's: the machine is shared."""

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self.pids = list(pids)
        self._start = self._sample()

    @staticmethod
    def _machine() -> tuple[float, float]:
        with open("/proc/stat") as stat:
            fields = [float(v) for v in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]), idle

    def _ours(self) -> float:
        ticks = 0.0
        seen: set[int] = set()
        pending = [os.getpid(), *self.pids]
        while pending:  # bounded by the process tree
            pid = pending.pop()
            if pid in seen:
                continue
            seen.add(pid)
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                ticks += float(fields[11]) + float(fields[12])  # utime + stime
                with open(f"/proc/{pid}/task/{pid}/children") as children:
                    pending.extend(int(c) for c in children.read().split())
            except (OSError, ValueError, IndexError):
                continue
        return ticks

    def _sample(self) -> tuple[float, float, float, float]:
        total, idle = self._machine()
        return total, idle, self._ours(), time.perf_counter()

    def read(self) -> tuple[float, float]:
        """(cores busy in total, cores busy with other people's work) since construction."""
        total, idle, ours, now = self._sample()
        total0, idle0, ours0, then = self._start
        hz = os.sysconf("SC_CLK_TCK")
        wall = max(now - then, 1e-9)
        busy = ((total - total0) - (idle - idle0)) / hz / wall
        return busy, max(0.0, busy - (ours - ours0) / hz / wall)


def background_load(seconds: float = 1.0) -> float:
    """Cores kept busy by other processes over `seconds` (we sleep meanwhile)."""
    meter = CpuMeter()
    time.sleep(seconds)
    return meter.read()[1]


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A service under test, run as its own process group on 127.0.0.1."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGINT (uvicorn's graceful stop) to the whole group, SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)  # our own group: start_new_session=True
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def run_checked(argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
    with log_path.open("ab") as log:
        result = subprocess.run(
            list(argv),
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=300,
            check=False,
        )
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{tail}")


def start_server(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    port: int,
    log_path: Path,
    ready_path: str,
    timeout: float = 180.0,
    ready_hits: int = 1,
) -> Server:
    """Start `argv` and wait until GET ready_path answers 200 `ready_hits` times in a row."""
    log = log_path.open("ab")
    try:
        process = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()
    server = Server(name, process, port, log_path)
    deadline = time.monotonic() + timeout
    hits = 0
    try:
        while hits < ready_hits:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}):\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {timeout:.0f} s:\n{server.log_tail()}")
            try:
                response = httpx.get(server.base_url + ready_path, timeout=5)
                hits = hits + 1 if response.status_code == 200 else 0
            except httpx.HTTPError:
                hits = 0
            if hits < ready_hits:
                time.sleep(0.2)
    except BaseException:
        server.stop()
        raise
    return server


# --------------------------------------------------------------------------- load


@dataclass
class LoadResult:
    clients: int
    ok: int
    failed: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    failures: dict[str, int] = field(default_factory=dict)
    sample: dict[str, object] | None = field(default=None, repr=False)
    inference_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def mean_batch(self) -> float | None:
        """Answers per model call, when answers report `inference_ms`: the items of one
        micro-batch share the wall time of their model call, to the microsecond."""
        if not self.inference_ms:
            return None
        return len(self.inference_ms) / len(set(self.inference_ms))

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p95_ms(self) -> float:
        return percentile(self.latencies_ms, 95)


class _Connection:
    """One keep-alive HTTP/1.1 connection that posts the same pre-encoded request.

    The load generator shares the cores with the server it measures, so it does as little
    as it can: the request bytes are built once, and an answer is read by its status line
    and Content-Length (what uvicorn sends for every JSON answer) without further parsing.
    """

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self._address = (host, port)
        self._request = request
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(*self._address)
        reader, writer = self._streams
        try:
            writer.write(self._request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = None
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            if length is None:
                raise ConnectionError("an answer without Content-Length")
            answer = await reader.readexactly(length)
        except BaseException:
            await self.close()
            raise
        if close:
            await self.close()
        return status, answer

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def encode_request(base_url: str, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    host_port = base_url.split("://", 1)[1].rstrip("/")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host_port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def closed_loop(
    base_url: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    clients: int,
    expect: int,
    warmup: int,
    requests: int,
    seconds: float,
    timeout: float = 120.0,
) -> LoadResult:
    """`clients` connections, each posting `body` again as soon as its answer arrives.

    First `warmup` requests (not measured), then until `requests` have been started or
    `seconds` have passed; requests in flight at the deadline are awaited and counted.
    """
    host, port = base_url.split("://", 1)[1].rstrip("/").rsplit(":", 1)
    request = encode_request(base_url, path, body, headers)
    connections = [_Connection(host, int(port), request) for _ in range(clients)]
    latencies: list[float] = []
    failures: dict[str, int] = {}
    sample: dict[str, object] | None = None
    inference_ms: list[float] = []

    async def one(connection: _Connection, record: bool) -> None:
        nonlocal sample
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                status, answer = await connection.post()
            outcome = str(status)
        except (OSError, EOFError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
            status, answer, outcome = 0, b"", type(exc).__name__
        elapsed_ms = (time.perf_counter() - started) * 1000
        if not record:
            return
        if status == expect:
            latencies.append(elapsed_ms)
            decoded = json.loads(answer)
            sample = sample or decoded
            if isinstance(decoded.get("inference_ms"), float):
                inference_ms.append(decoded["inference_ms"])
        else:
            failures[outcome] = failures.get(outcome, 0) + 1

    def runner(
        limit: int, deadline: float, record: bool
    ) -> Callable[[_Connection], Awaitable[None]]:
        started = 0

        async def loop(connection: _Connection) -> None:
            nonlocal started
            while started < limit and time.perf_counter() < deadline:
                started += 1
                await one(connection, record)

        return loop

    try:
        warm = runner(warmup, time.perf_counter() + max(seconds, 10.0), record=False)
        await asyncio.gather(*(warm(c) for c in connections))
        begin = time.perf_counter()
        measure = runner(requests, begin + seconds, record=True)
        await asyncio.gather(*(measure(c) for c in connections))
        took = time.perf_counter() - begin
    finally:
        for connection in connections:
            await connection.close()
    return LoadResult(
        clients,
        len(latencies),
        sum(failures.values()),
        took,
        latencies,
        failures,
        sample,
        inference_ms,
    )
