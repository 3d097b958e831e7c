"""Model-side speed, measured in one run and printed as ratios (never asserted in tests).

    .venv/bin/python -m bench.predict_model [--repeats 20]

- decode: decode_upload on 2048x2048 JPEGs, reduced-scale (fast_jpeg) vs full decode;
- backends: per-image time of torch vs ONNX Runtime at batch 1 and at MAX_BATCH.
The helpers (`sample_jpeg`, `timed`, `build_backends`) are meant for the HTTP bench too.
"""

from __future__ import annotations

import argparse
import functools
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from app.config import Settings
from app.inference.backends import OnnxBackend, TorchBackend
from app.inference.classifier import inference_threads
from app.inference.network import load_network, seeded_state_dict
from app.inference.preprocess import decode_upload
from app.inference.weights import state_dict_sha256


def sample_jpeg(size: int = 2048, *, noise: float = 6.0, quality: int = 90, seed: int = 0) -> bytes:
    """A photo-like JPEG: smooth gradients, a bright disc, some sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    disc = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.16).astype(np.float32)
    pixels = np.stack([200 * xx + 40 * disc, 120 * yy + 80 * disc, 60 + 30 * disc], axis=-1)
    pixels += rng.normal(0, noise, pixels.shape).astype(np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of `repeats` calls after one warm-up call."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def build_backends(cache_dir: Path, threads: int) -> tuple[TorchBackend, OnnxBackend]:
    network = load_network(seeded_state_dict(4, seed=0), 4)
    onnx = OnnxBackend.for_network(
        network,
        weights_sha256=state_dict_sha256(network.state_dict()),
        input_size=224,
        cache_dir=cache_dir,
        threads=threads,
    )
    return TorchBackend(network, threads=threads), onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    settings = Settings(_env_file=None)

    print("decode_upload, 2048x2048 JPEG (median ms: full / fast = ratio)")
    for noise, quality in ((2.0, 85), (6.0, 90), (15.0, 95)):
        data = sample_jpeg(noise=noise, quality=quality)
        decode = functools.partial(decode_upload, data, max_pixels=10**8)
        full = timed(functools.partial(decode, fast_jpeg=False), args.repeats)
        fast = timed(functools.partial(decode, fast_jpeg=True), args.repeats)
        print(f"  {len(data) / 1e6:4.2f} MB: {full:6.1f} / {fast:5.1f} = {full / fast:4.1f}x")

    threads = inference_threads(settings)
    with tempfile.TemporaryDirectory() as cache:
        torch_backend, onnx_backend = build_backends(Path(cache), threads)
        print(f"backends, per image (median ms; {threads} intra-op threads)")
        rng = np.random.default_rng(0)
        for batch in (1, settings.max_batch):
            inputs = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
            by_torch = timed(functools.partial(torch_backend.run, inputs), args.repeats) / batch
            by_onnx = timed(functools.partial(onnx_backend.run, inputs), args.repeats) / batch
            print(
                f"  batch {batch}: torch {by_torch:6.1f}, onnx {by_onnx:6.1f}, "
                f"torch/onnx = {by_torch / by_onnx:4.2f}x"
            )


if __name__ == "__main__":
    main()
