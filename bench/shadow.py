"""Shadow evaluation's price: POST /predict images/s at 8 clients without and with a
version in shadow at 100%, against the shadow model's own cost.

1. Starts the service (one process, SQLite, local store, ONNX), signs in a doctor, makes
   an administrator (`ocupredict create-admin`) and registers a second set of weights
   through POST /admin/models (validated: strict load, ONNX export, parity, smoke).
2. Measures the shadow model alone in this process (the ONNX backend on all cores,
   batch 1 and 8): its images/s M, so its cost per image is 1/M.
3. End to end, 8 keep-alive clients posting a 2048x2048 fundus JPEG: R0 with no shadow;
   then PUT /admin/models/{v}/shadow {"rate": 1} and R1 with every upload also classified
   by the shadow after its response. Checks that every upload of the shadow run got its
   shadow row, and that the answers still name the served version.
4. Prints R0, R1, the drop per image (1/R1 - 1/R0) against the shadow model's cost per
   image (1/M at batch 1 and batch 8), and the bound 1/(1/R0 + 1/M_batch1): "drops by no
   more than the shadow model's own cost" means R1 >= that bound. Nothing asserts on time.

    flock /tmp/ocupredict-bench.lock .venv/bin/python bench/shadow.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    throughput,
)
from predict import API, running, service_env, sign_in, start_ours

from app.inference.backends import OnnxBackend
from app.inference.manifest import DEFAULT_MANIFEST
from app.inference.network import load_network, seeded_state_dict

CLIENTS = 8
SHADOW_SEED = 77
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "Bench-admin-password-0123"


def shadow_weights() -> bytes:
    buffer = io.BytesIO()
    torch.save(seeded_state_dict(DEFAULT_MANIFEST.num_classes, SHADOW_SEED), buffer)
    return buffer.getvalue()


def shadow_model_speed(model_cache: Path, seconds: float) -> dict[int, float]:
    """images/s of the shadow network alone (ONNX, all cores), at batch 1 and 8."""
    network = load_network(
        seeded_state_dict(DEFAULT_MANIFEST.num_classes, SHADOW_SEED), DEFAULT_MANIFEST.num_classes
    )
    backend = OnnxBackend.for_network(
        network,
        weights_sha256=f"shadow-bench-{SHADOW_SEED}",
        input_size=DEFAULT_MANIFEST.input_size,
        cache_dir=model_cache,
        threads=cpu_count(),
    )
    rng = np.random.default_rng(0)
    speeds = {}
    for size in (1, 8):
        batch = rng.standard_normal((size, 3, 224, 224)).astype(np.float32)
        for _ in range(3):
            backend.run(batch)

        def run(batch: np.ndarray = batch) -> int:
            backend.run(batch)
            return len(batch)

        speeds[size] = throughput(run, threads=1, seconds=seconds, max_calls=2000)
    return speeds


def shadow_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM shadow_predictions").fetchone()[0])


def predictions(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])


def wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured part of each run")
    args = parser.parse_args()
    image = fundus_jpeg(2048)
    with tempfile.TemporaryDirectory(prefix="ocupredict-shadow-") as tmp:
        workdir, model_cache = Path(tmp) / "service", Path(tmp) / "model-cache"
        speeds = shadow_model_speed(model_cache, 3.0)
        print(
            f"shadow model alone (ONNX, {cpu_count()} threads): batch 1 {speeds[1]:.1f} images/s,"
            f" batch 8 {speeds[8]:.1f} images/s",
            flush=True,
        )
        with running(start_ours(workdir, model_cache=model_cache, workers=1)) as server:
            db = workdir / "ocupredict.db"
            env = service_env(workdir, model_cache)
            admin_args = ["create-admin", ADMIN_EMAIL, "--name", "Bench Admin", "--password-stdin"]
            subprocess.run(
                [sys.executable, "-m", "app.cli", *admin_args],
                input=f"{ADMIN_PASSWORD}\n".encode(),
                env=env,
                check=True,
                capture_output=True,
            )
            token = sign_in(server)
            with httpx.Client(base_url=server.base_url + API, timeout=120) as client:
                login = client.post(
                    "/auth/login", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
                )
                admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
                served = client.get("/health/ready").json()["model"]["version"]
                files = {"weights": ("shadow.pth", shadow_weights(), "application/octet-stream")}
                registered = client.post("/admin/models", headers=admin, files=files)
                if registered.status_code != 201:
                    raise RuntimeError(f"register: {registered.status_code} {registered.text}")
                version = registered.json()["version"]
            print(f"served version {served}, shadow candidate {version}", flush=True)

            body, headers = multipart(image)
            headers["Authorization"] = f"Bearer {token}"

            def level(label: str) -> tuple[float, int]:
                before = predictions(db)
                meter = CpuMeter()
                result = asyncio.run(
                    closed_loop(
                        server.base_url,
                        f"{API}/predict",
                        body,
                        headers,
                        clients=CLIENTS,
                        expect=201,
                        warmup=2 * CLIENTS,
                        requests=5000,
                        seconds=args.seconds,
                    )
                )
                others = meter.read()[1]
                rate = result.ok / result.seconds
                print(
                    f"  {label:<28} {rate:6.2f} images/s  p50 {result.p50_ms:6.0f} ms"
                    f"  p95 {result.p95_ms:6.0f} ms  ok={result.ok} failed={result.failed}"
                    f"  others {others:.1f} cores",
                    flush=True,
                )
                if result.sample and result.sample["model"]["version"] != served:  # type: ignore[index]
                    raise RuntimeError("an answer did not come from the served version")
                return rate, predictions(db) - before

            r0, _ = level("no shadow")
            with httpx.Client(base_url=server.base_url + API, timeout=120) as client:
                put = client.put(f"/admin/models/{version}/shadow", headers=admin, json={"rate": 1})
                if put.status_code != 200:
                    raise RuntimeError(f"shadow: {put.status_code} {put.text}")
                # The shadow classifier is built in the background: wait for its first row.
                probe = client.post(
                    "/predict",
                    headers={"Authorization": f"Bearer {token}"},
                    files={"file": ("probe.jpg", image, "image/jpeg")},
                )
                probe.raise_for_status()
                start_rows = shadow_rows(db)

                def loaded() -> bool:
                    again = client.post(
                        "/predict",
                        headers={"Authorization": f"Bearer {token}"},
                        files={"file": ("probe.jpg", image, "image/jpeg")},
                    )
                    again.raise_for_status()
                    time.sleep(0.5)
                    return shadow_rows(db) > start_rows

                wait_until(loaded, 120, "the shadow classifier")
            rows_before = shadow_rows(db)
            r1, uploads = level("shadow at 100%")
            wait_until(lambda: shadow_rows(db) - rows_before >= uploads, 120, "the shadow rows")
            rows = shadow_rows(db) - rows_before
            print(f"  shadow rows for the {uploads} uploads of that run: {rows}")

    drop_ms = (1 / r1 - 1 / r0) * 1000
    cost1, cost8 = 1000 / speeds[1], 1000 / speeds[8]
    bound = 1 / (1 / r0 + 1 / speeds[1])
    print(
        f"== without shadow {r0:.2f} images/s, with 100% shadow {r1:.2f} images/s"
        f" ({r1 / r0:.2f}x)\n"
        f"== drop per image {drop_ms:.1f} ms of machine time; the shadow model's own cost"
        f" {cost1:.1f} ms (batch 1) / {cost8:.1f} ms (batch 8) per image\n"
        f"== bound if the shadow cost exactly its batch-1 model time: {bound:.2f} images/s:"
        f" {'within it' if r1 >= bound else 'BELOW it'}; every upload got its shadow row:"
        f" {'yes' if rows == uploads else 'NO'}\n"
        f"== {background_load():.1f} cores busy with other work after the run"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
