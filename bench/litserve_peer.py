"""The same ONNX model under a bare LitServe server, the peer bench/predict.py compares with.

POST /predict takes the same multipart upload as ours (field `file`), decodes it with our
decode_upload (the same fast JPEG decode, so both pay the same preprocessing), runs the
model with ONNX Runtime on every core of this process, and answers the probabilities as
JSON (200). What a bare model server does not do, and ours does: authentication and the
session-revocation lookup, validation limits, storing the image, a database row, and the
full Prediction answer with a signed image URL.

Batching is LitServe's own: its defaults (max_batch_size=1, batch_timeout=0: no batching)
unless --max-batch/--batch-timeout say otherwise (bench/predict.py also runs 8 / 5 ms).

    .venv/bin/python bench/litserve_peer.py --port 8002 --model var/model-cache/onnx/X.onnx
"""

import argparse
from typing import Any

import litserve as ls
import numpy as np
import onnxruntime as ort
from _common import LOOPBACK, cpu_count  # puts ROOT on sys.path
from starlette.requests import Request

from app.inference.backends import softmax
from app.inference.preprocess import decode_upload

MAX_PIXELS = 50_000_000


class OnnxPeer(ls.LitAPI):
    def __init__(self, model: str, threads: int, **batching: Any) -> None:
        super().__init__(**batching)
        self.model = model
        self.threads = threads

    def setup(self, device: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.model, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    # A real annotation, not a string (no `from __future__ import annotations` here):
    # LitServe reads it to hand over the parsed form.
    def decode_request(self, request: Request) -> np.ndarray:
        upload: Any = request["file"]  # type: ignore[index]
        data = upload.file.read() if hasattr(upload, "file") else bytes(upload)
        return decode_upload(data, max_pixels=MAX_PIXELS, fast_jpeg=True).array

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        batch = x if x.ndim == 4 else x[None]
        (logits,) = self.session.run(None, {self.input: batch})
        probabilities = softmax(np.asarray(logits))
        return probabilities if x.ndim == 4 else probabilities[0]

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        return {"probabilities": [float(p) for p in output], "top": int(np.argmax(output))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True, help="the .onnx file")
    parser.add_argument("--max-batch", type=int, default=None, help="LitServe's default: 1")
    parser.add_argument("--batch-timeout", type=float, default=None, help="seconds; default 0")
    parser.add_argument("--threads", type=int, default=cpu_count(), help="intra-op threads")
    args = parser.parse_args()
    batching: dict[str, Any] = {}
    if args.max_batch is not None:
        batching["max_batch_size"] = args.max_batch
    if args.batch_timeout is not None:
        batching["batch_timeout"] = args.batch_timeout
    api = OnnxPeer(args.model, args.threads, **batching)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host=LOOPBACK, port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
