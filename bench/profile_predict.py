"""Where a lone POST /predict spends its time, beside the model and the decode.

Starts the service as bench/predict.py does (1 process, SQLite, local store), keeps one
client posting the same JPEG, and samples the server with py-spy (`pip install py-spy`;
it reads the process from outside, so the server runs unmodified). Prints the share of
the samples per cost centre (frames matched by file and function; the first match from
the innermost frame wins), and the p50 of the client's requests meanwhile.

    .venv/bin/python bench/profile_predict.py [--size 224] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from _common import ROOT, closed_loop, fundus_jpeg, multipart  # puts ROOT on sys.path
from predict import API, running, sign_in, start_ours

RATE = 250  # py-spy samples per second

# (name, substring of a "function (file:line)" frame); checked innermost frame first.
COST_CENTRES = [
    ("model (onnxruntime run)", "run (onnxruntime"),
    ("model (torch)", "torch/nn/"),
    ("decode + resize (Pillow)", "PIL/"),
    ("quality gate", "app/clinical/"),
    ("preprocess (numpy)", "app/inference/preprocess.py"),
    ("sha256", "hexdigest"),
    ("image store write (fsync)", "app/storage/local.py"),
    ("multipart parsing", "multipart"),
    ("JWT", "jwt/"),
    ("password/argon2", "argon2"),
    ("SQLAlchemy ORM", "sqlalchemy/orm/"),
    ("SQLAlchemy core/engine", "sqlalchemy/"),
    ("sqlite driver", "aiosqlite"),
    ("pydantic", "pydantic"),
    ("metrics (prometheus)", "prometheus_client"),
    ("logging", "logging/"),
    ("uvicorn/h11 HTTP", "h11"),
    ("uvicorn", "uvicorn/"),
    ("starlette/fastapi routing", "starlette/"),
    ("fastapi", "fastapi/"),
    ("batcher (stack, softmax)", "app/inference/b"),
    ("asyncio event loop", "asyncio/"),
    ("threading (pool hand-off)", "threading.py"),
]


# Innermost frames where a thread only waits, though py-spy counts it as running: blocking
# calls in C (a SimpleQueue.get, uvloop's epoll wait under Runner.run, aiosqlite's queue).
IDLE_FRAMES = [
    "Runner.run (asyncio/runners.py",
    "_connection_worker_thread (aiosqlite/core.py:59)",
    "Condition.wait (threading.py",
    "MicroBatcher._work (app/inference/batcher.py",  # innermost only inside queue.get
]


def classify(stack: str) -> str:
    frames = stack.split(";")
    if any(frames[-1].startswith(idle) for idle in IDLE_FRAMES):
        return "waiting (misread as busy)"
    for frame in reversed(frames):
        for name, needle in COST_CENTRES:
            if needle in frame:
                return name
    return "other"


def read_profile(raw: str, detail: set[str]) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """py-spy's raw output ("frame;frame;... count" per line): samples per cost centre, and
    per (centre, innermost four frames) for the centres in `detail`."""
    samples: Counter[str] = Counter()
    details: Counter[tuple[str, str]] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            centre = classify(stack)
            samples[centre] += int(count)
            if centre in detail:
                details[centre, " <- ".join(stack.split(";")[:-5:-1])] += int(count)
    return samples, details


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument(
        "--detail", action="append", default=[], metavar="CENTRE",
        help="also print the commonest innermost frames of this cost centre",
    )  # fmt: skip
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy not found: pip install py-spy")
    body, headers = multipart(fundus_jpeg(args.size))
    with tempfile.TemporaryDirectory(prefix="ocupredict-profile-") as tmp:
        workdir = Path(tmp)
        cache = workdir / "model-cache"
        with running(start_ours(workdir / "ours", model_cache=cache)) as server:
            token = sign_in(server.base_url, server.log_text)
            auth = {**headers, "Authorization": f"Bearer {token}"}
            out = workdir / "profile.txt"
            record = subprocess.Popen(
                [spy, "record", "--pid", str(server.process.pid), "--duration",
                 str(int(args.seconds)), "--rate", str(RATE), "--format", "raw",
                 "--subprocesses", "--nonblocking", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            load = asyncio.run(
                closed_loop(
                    server.base_url, f"{API}/predict", body, auth, clients=args.clients,
                    expect=201, warmup=20, requests=100_000, seconds=args.seconds,
                )
            )  # fmt: skip
            record.wait()
            samples, details = read_profile(out.read_text(), set(args.detail))
    total = sum(samples.values()) or 1

    def thread_ms(count: int) -> float:
        # Each sample is 1/RATE s of one thread running, spread over the requests answered
        # while py-spy sampled (the same window as the load, give or take its start-up).
        return count / RATE / max(load.ok, 1) * 1000

    print(
        f"{args.size} px x {args.clients} client(s): {load.per_second:.1f} images/s, "
        f"p50 {load.p50_ms:.1f} ms over {load.ok} requests; {total} samples of busy "
        f"server threads at {RATE} Hz = {thread_ms(total):.1f} thread-ms/request"
    )
    if load.inference_ms:
        model_ms = sum(load.inference_ms) / len(load.inference_ms)
        print(f"  model call (inference_ms in the answers): mean {model_ms:.1f} ms")
    for name, count in samples.most_common():
        print(f"  {name:<28} {count / total:6.1%}  {thread_ms(count):6.2f} thread-ms/request")
    for (centre, frames), count in details.most_common(12):
        print(f"  [{centre}] {count / total:6.1%}  {frames}")
    print(f"(py-spy on the server under {ROOT})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
