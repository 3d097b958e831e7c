"""The learning loop's speed: fine-tuning images/s at 224 px, the time of 10 epochs over
500 and 3,000 images, and POST /predict images/s at 8 clients while a job trains.

1. The trainer alone (app.training.trainer.train, in this process, no database): a
   ResNet18 at 224 px on synthetic fundus photographs, with each repository recipe
   (fine-tune-head: layer4 + head; fine-tune-all: every layer), at TRAINING_THREADS=1
   (the default) and on every core. Training images/s over the batches after two
   warm-up batches, and the evaluation pass's images/s (validation, calibration, test).
2. The time of 10 epochs over 500 and 3,000 labelled images: with --full, measured by
   running them (as many epochs as the recipe's early stopping allows, so 10 are forced
   here); else projected from step 1's rates: 10 epochs over the 80% train split at the
   training rate + 10 validation passes over 10% + the calibration and test passes.
3. End to end: the service (1 process, SQLite, local store, ONNX), 8 keep-alive clients
   posting a 2048 px fundus JPEG: R_idle; then a training job (fine-tune-all on 240
   images imported with `ocupredict import-labelled`) worked by `ocupredict
   train-worker` (its defaults: nice 10, 1 torch thread): R_train while it trains. The
   job's own images/s is read from its progress; it is cancelled afterwards.
   R_train / R_idle is compared with the target (>= 0.70). `--nice 0` adds a run with
   the worker at normal priority, to show what the nice level buys.

Nothing asserts on time. The machine is shared: each line says how many cores other
people's work kept busy meanwhile.

    flock /tmp/ocupredict-bench.lock .venv/bin/python bench/train.py [--seconds 10] [--full]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from _common import (  # puts ROOT on sys.path
    CpuMeter,
    background_load,
    closed_loop,
    cpu_count,
    fundus_jpeg,
    multipart,
)
from PIL import Image
from predict import API, running, service_env, start_ours

from app.config import REPOSITORY_RECIPES_DIR
from app.inference.backends import torch_device
from app.inference.manifest import DEFAULT_MANIFEST
from app.inference.network import load_network, seeded_state_dict
from app.training.examples import Examples, logits_of
from app.training.recipes import load_recipes
from app.training.trainer import Progress, Stopped, train

CLIENTS = 8
SIZE = 224
TARGET = 0.70
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "Bench-admin-password-0123"


# --------------------------------------------------------------------------- part 1


def examples(count: int, distinct: int = 48) -> Examples:
    """`count` 224 px training examples cycling through `distinct` synthetic photographs."""
    pictures = []
    for seed in range(min(count, distinct)):
        image = Image.open(io.BytesIO(fundus_jpeg(512, seed=seed))).convert("RGB")
        pictures.append(np.asarray(image.resize((SIZE, SIZE), Image.Resampling.BILINEAR)))
    images = np.stack([pictures[i % len(pictures)] for i in range(count)])
    return Examples(images=images, labels=np.arange(count, dtype=np.int64) % 4)


class Timed:
    """Trainer hooks that time each batch and stop after `batches` (0: never)."""

    def __init__(self, batches: int) -> None:
        self.batches = batches
        self.marks: list[tuple[float, int]] = []  # (time, batches done)
        self.last: Progress | None = None

    def should_stop(self) -> str | None:
        done = self.marks[-1][1] if self.marks else 0
        return "enough" if self.batches and done >= self.batches else None

    def progress(self, progress: Progress) -> None:
        self.marks.append((time.perf_counter(), progress.batches_done))
        self.last = progress

    def checkpoint(self, epoch: int, data: bytes) -> None:
        return None

    def rate(self, batch_size: int, skip: int = 2) -> float:
        marks = sorted(set(self.marks), key=lambda m: m[1])
        usable = [m for m in marks if m[1] > skip]
        if len(usable) < 2:
            return float("nan")
        (t0, b0), (t1, b1) = usable[0], usable[-1]
        return (b1 - b0) * batch_size / (t1 - t0)


def train_rate(recipe_name: str, threads: int, device: torch.device, batches: int) -> float:
    recipe = load_recipes(REPOSITORY_RECIPES_DIR)[recipe_name].recipe
    data = examples(recipe.batch_size * (batches + 1))
    network = load_network(seeded_state_dict(4, 1), 4)
    hooks = Timed(batches)
    torch.set_num_threads(threads)
    with contextlib.suppress(Stopped):  # stopped after `batches`, as planned
        train(
            network,
            recipe.model_copy(update={"epochs": 1}),
            data,
            Examples(data.images[:0], data.labels[:0]),
            mean=DEFAULT_MANIFEST.mean,
            std=DEFAULT_MANIFEST.std,
            seed=1,
            hooks=hooks,
            device=device,
        )
    return hooks.rate(recipe.batch_size)


def eval_rate(threads: int, device: torch.device) -> float:
    data = examples(128)
    network = load_network(seeded_state_dict(4, 1), 4).to(device)
    torch.set_num_threads(threads)
    logits_of(network, data.images[:64], DEFAULT_MANIFEST.mean, DEFAULT_MANIFEST.std, device)
    started = time.perf_counter()
    logits_of(network, data.images, DEFAULT_MANIFEST.mean, DEFAULT_MANIFEST.std, device)
    return len(data.images) / (time.perf_counter() - started)


def full_run(recipe_name: str, count: int, threads: int, device: torch.device) -> float:
    """Seconds of 10 real epochs over `count` images (80% train, 10% validation)."""
    recipe = load_recipes(REPOSITORY_RECIPES_DIR)[recipe_name].recipe
    recipe = recipe.model_copy(update={"epochs": 10, "early_stopping": None})
    data = examples(count)
    split = int(count * 0.8)
    validation = Examples(
        data.images[split : split + count // 10], data.labels[split:][: count // 10]
    )
    network = load_network(seeded_state_dict(4, 1), 4)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    train(
        network,
        recipe,
        Examples(data.images[:split], data.labels[:split]),
        validation,
        mean=DEFAULT_MANIFEST.mean,
        std=DEFAULT_MANIFEST.std,
        seed=1,
        hooks=Timed(0),
        device=device,
    )
    rest = data.images[: count // 10 + 100]  # calibration split + a 100-image test set
    logits_of(network, rest, DEFAULT_MANIFEST.mean, DEFAULT_MANIFEST.std, device)
    return time.perf_counter() - started


def projected(count: int, train_ips: float, eval_ips: float) -> float:
    trained = 10 * 0.8 * count / train_ips
    evaluated = (10 * 0.1 * count + 0.1 * count + 100 + 100) / eval_ips  # + parent on test
    return trained + evaluated


def part_one(full: bool, batches: int) -> None:
    device = torch_device("auto")
    cores = cpu_count()
    print(f"== 1. the trainer alone at {SIZE} px on {device} ({cores} cores)", flush=True)
    thread_counts = [1] if device.type == "cuda" else sorted({1, cores})
    rates: dict[tuple[str, int], float] = {}
    evals: dict[int, float] = {}
    for threads in thread_counts:
        meter = CpuMeter()
        evals[threads] = eval_rate(threads, device)
        for name in ("fine-tune-head", "fine-tune-all"):
            rates[name, threads] = train_rate(name, threads, device, batches)
        others = meter.read()[1]
        print(
            f"  {threads} thread(s): fine-tune-head {rates['fine-tune-head', threads]:6.2f}"
            f" images/s, fine-tune-all {rates['fine-tune-all', threads]:6.2f} images/s,"
            f" evaluation {evals[threads]:6.1f} images/s  (others {others:.1f} cores)",
            flush=True,
        )
    print("== 2. 10 epochs (80% train split, validation each epoch, calibration and test)")
    for name in ("fine-tune-head", "fine-tune-all"):
        for threads in thread_counts:
            for count in (500, 3000):
                if full:
                    seconds = full_run(name, count, threads, device)
                    how = "measured"
                else:
                    seconds = projected(count, rates[name, threads], evals[threads])
                    how = "projected"
                print(
                    f"  {name:<15} {threads} thread(s) {count:5d} images: {seconds / 60:7.1f}"
                    f" min ({how})",
                    flush=True,
                )


# --------------------------------------------------------------------------- part 3


def labelled_folder(root: Path, per_class: int, first_seed: int) -> Path:
    for index, code in enumerate(DEFAULT_MANIFEST.codes):
        folder = root / code
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            seed = first_seed + index * per_class + k
            (folder / f"{seed}.jpg").write_bytes(fundus_jpeg(512, seed=seed, quality=85))
    return root


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        input=stdin.encode() if stdin else None,
        env=env,
        capture_output=True,
        check=False,
    )
    if done.returncode not in (0, 3):
        raise RuntimeError(f"{args[0]}: {done.stderr.decode()[-2000:]}")
    return done.stdout.decode()


def part_three(seconds: float, nice_levels: list[int]) -> None:
    image = fundus_jpeg(2048)
    with tempfile.TemporaryDirectory(prefix="ocupredict-train-") as tmp:
        workdir, model_cache = Path(tmp) / "service", Path(tmp) / "model-cache"
        with running(start_ours(workdir, model_cache=model_cache)) as server:
            env = service_env(workdir, model_cache)
            cli(
                env,
                "create-admin",
                ADMIN_EMAIL,
                "--name",
                "Bench",
                "--password-stdin",
                stdin=f"{ADMIN_PASSWORD}\n",
            )
            folders = Path(tmp) / "labelled"
            train_dir = labelled_folder(folders / "train", 60, 1000)
            test_dir = labelled_folder(folders / "test", 10, 5000)
            print(
                cli(
                    env,
                    "import-labelled",
                    str(train_dir),
                    "--kind",
                    "train",
                    "--name",
                    "bench",
                    "--keep-ungradable",
                ).splitlines()[0]
            )
            print(
                cli(
                    env,
                    "import-labelled",
                    str(test_dir),
                    "--kind",
                    "test",
                    "--name",
                    "bench",
                    "--keep-ungradable",
                ).splitlines()[0]
            )
            with httpx.Client(base_url=server.base_url + API, timeout=120) as client:
                login = client.post(
                    "/auth/login", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
                )
                login.raise_for_status()
                headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
                datasets = {
                    d["kind"]: d["id"]
                    for d in client.get("/admin/datasets", headers=headers).json()
                }
                body, post_headers = multipart(image)
                post_headers.update(headers)

                def level(label: str) -> float:
                    meter = CpuMeter([server.process.pid])
                    result = asyncio.run(
                        closed_loop(
                            server.base_url,
                            f"{API}/predict",
                            body,
                            post_headers,
                            clients=CLIENTS,
                            expect=201,
                            warmup=2 * CLIENTS,
                            requests=10_000,
                            seconds=seconds,
                        )
                    )
                    others = meter.read()[1]
                    rate = result.ok / result.seconds
                    print(
                        f"  {label:<34} {rate:6.2f} images/s  p50 {result.p50_ms:6.0f} ms"
                        f"  p95 {result.p95_ms:6.0f} ms  ok={result.ok} failed={result.failed}"
                        f"  others {others:.1f} cores",
                        flush=True,
                    )
                    return rate

                print(f"== 3. POST /predict at {CLIENTS} clients, 2048 px JPEG", flush=True)
                idle = level("idle")
                results = []
                for nice in nice_levels:
                    job = client.post(
                        "/admin/training-jobs",
                        headers=headers,
                        json={
                            "train_dataset_id": datasets["train"],
                            "test_dataset_id": datasets["test"],
                            "recipe": "fine-tune-all",
                        },
                    )
                    if job.status_code != 202:
                        raise RuntimeError(f"training job: {job.status_code} {job.text}")
                    job_id = job.json()["id"]
                    worker_env = {
                        **env,
                        "TRAINING_NICE": str(nice),
                        "TRAINING_HEARTBEAT_SECONDS": "1",
                    }
                    worker = subprocess.Popen(
                        [sys.executable, "-m", "app.cli", "train-worker", "--once"],
                        env=worker_env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    try:

                        def training(job_id: int = job_id) -> dict[str, Any] | None:
                            row = client.get(
                                f"/admin/training-jobs/{job_id}", headers=headers
                            ).json()
                            if row["status"] not in ("queued", "running"):
                                raise RuntimeError(f"the job ended: {row['status']} {row['error']}")
                            progress = row["progress"]
                            return row if progress and progress["batches_done"] >= 2 else None

                        _wait(training, 600)
                        rate = level(f"while a job trains (nice {nice})")
                        row = client.get(f"/admin/training-jobs/{job_id}", headers=headers).json()
                        speed = row["progress"]["images_per_s"]
                        print(
                            f"    the job meanwhile: {speed} training images/s, epoch "
                            f"{row['progress']['epoch']}, batch {row['progress']['step']}"
                            f"/{row['progress']['steps']}",
                            flush=True,
                        )
                        results.append((nice, rate))
                    finally:
                        client.post(f"/admin/training-jobs/{job_id}/cancel", headers=headers)
                        try:
                            worker.wait(120)
                        except subprocess.TimeoutExpired:
                            worker.kill()
                for nice, rate in results:
                    ratio = rate / idle
                    verdict = "met" if ratio >= TARGET else "NOT met"
                    print(
                        f"== while training (nice {nice}): {rate:.2f} images/s = {ratio:.2f}"
                        f" x idle {idle:.2f}; target >= {TARGET:.2f}: {verdict}"
                    )
    print(f"== {background_load():.1f} cores busy with other work after the run")


def _wait(condition: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured part of each level")
    parser.add_argument("--batches", type=int, default=6, help="training batches timed in step 1")
    parser.add_argument("--full", action="store_true", help="run the 10-epoch passes for real")
    parser.add_argument(
        "--nice",
        type=int,
        action="append",
        default=None,
        help="worker nice levels for step 3 (default 10; repeat to compare)",
    )
    parser.add_argument("--skip-trainer", action="store_true", help="only step 3")
    parser.add_argument("--skip-service", action="store_true", help="only steps 1 and 2")
    args = parser.parse_args()
    if not args.skip_trainer:
        part_one(args.full, args.batches)
    if not args.skip_service:
        part_three(args.seconds, args.nice or [10])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
