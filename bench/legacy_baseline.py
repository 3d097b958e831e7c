"""The earlier back-end's POST /predict/, emulated for bench/predict.py (see LEGACY.md).

What it keeps from the Flask service: one request at a time (a global lock around the
whole request, body included, like a single sync worker), the upload written to storage
before it is decoded, a full PIL decode, torchvision Resize((224, 224)) + ToTensor +
Normalize, the torch eager model on a batch of one (same architecture, the same demo
weights as our service), a row in SQLite, and its JSON answer (200).

What it leaves out, which makes it a little faster than the original: authentication
(no JWT check, no user lookup), S3 (a local directory instead) and Flask's own overhead.

    .venv/bin/python bench/legacy_baseline.py --port 8001 --data-dir /tmp/legacy
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import torch
import uvicorn
from _common import LOOPBACK, cpu_count
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from torchvision import transforms

from app.inference.manifest import DEFAULT_MANIFEST
from app.inference.network import load_network, seeded_state_dict
from app.inference.weights import DEMO_SEED

ID2LABEL = {0: "Glaucoma", 1: "Retinopatia diabetica", 2: "Normal", 3: "Catarata"}

TRANSFORM = transforms.Compose(
    [
        transforms.Resize((224, 224)),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ]
)


def preprocess(data: bytes) -> torch.Tensor:
    """What the earlier back-end did before the model: a full decode, then TRANSFORM."""
    tensor: torch.Tensor = TRANSFORM(Image.open(io.BytesIO(data)).convert("RGB"))
    return tensor


class Legacy:
    def __init__(self, data_dir: Path) -> None:
        torch.set_num_threads(cpu_count())  # torch's default on this machine too
        self.model = load_network(
            seeded_state_dict(DEFAULT_MANIFEST.num_classes, DEMO_SEED),
            DEFAULT_MANIFEST.num_classes,
        )
        self.images = data_dir / "imagenes"
        self.images.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(data_dir / "legacy.db", check_same_thread=False)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS prediction_history (id INTEGER PRIMARY KEY, "
            "user_id INTEGER, image_filename TEXT, image_s3_key TEXT, "
            "predicted_class_name TEXT, probabilities TEXT, doctor_feedback TEXT, "
            "created_at TEXT DEFAULT CURRENT_TIMESTAMP)"
        )
        self.db.commit()

    def predict(self, data: bytes, filename: str) -> dict[str, object]:
        key = f"imagenes/{uuid.uuid4()}-{filename}"  # uploaded BEFORE decoding, as before
        (self.images.parent / key).write_bytes(data)
        batch = preprocess(data).unsqueeze(0)
        with torch.no_grad():
            probabilities = torch.softmax(self.model(batch), dim=1)[0].tolist()
        index = max(range(len(probabilities)), key=probabilities.__getitem__)
        cursor = self.db.execute(
            "INSERT INTO prediction_history (user_id, image_filename, image_s3_key, "
            "predicted_class_name, probabilities) VALUES (?, ?, ?, ?, ?)",
            (1, filename, key, ID2LABEL[index], str(probabilities)),
        )
        self.db.commit()
        return {
            "predicted_class_index": index,
            "predicted_class_name": ID2LABEL[index],
            "probabilities": probabilities,
            "s3_key": key,
            "history_id": cursor.lastrowid,
        }


def create_app(data_dir: Path) -> Starlette:
    state: dict[str, Legacy] = {}
    one_at_a_time = asyncio.Lock()

    async def predict(request: Request) -> JSONResponse:
        legacy = state["legacy"]
        async with one_at_a_time:  # the whole request, body included: one at a time
            form = await request.form()
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                return JSONResponse({"error": "No file part"}, status_code=400)
            data = await upload.read()
            result = await run_in_threadpool(legacy.predict, data, upload.filename or "x.jpg")
        return JSONResponse(result)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["legacy"] = await run_in_threadpool(Legacy, data_dir)
        yield
        state["legacy"].db.close()

    return Starlette(
        routes=[Route("/predict/", predict, methods=["POST"]), Route("/health", health)],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(args.data_dir), host=LOOPBACK, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
