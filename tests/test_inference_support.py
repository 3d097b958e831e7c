"""Helpers shared by the inference tests (no tests here): the torchvision reference
pipeline, synthetic photos, a PNG writer (and the 400 MP bilevel bomb made with it), and
a state dict whose outputs are clearly non-uniform and sensitive to the input."""

from __future__ import annotations

import functools
import io
import struct
import zlib
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision import transforms

from app.inference.network import load_network, seeded_state_dict
from app.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD, to_model_input

# The reference pipeline the service must match: torchvision's resize (bilinear, no
# crop), ToTensor and ImageNet normalisation.
REFERENCE = transforms.Compose(
    [
        transforms.Resize((224, 224)),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]
)


def synthetic_photo(width: int, height: int, seed: int) -> Image.Image:
    """Gradients, a sinusoidal pattern, a bright disc (a crude fundus) and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    cx, cy = width * rng.uniform(0.3, 0.7), height * rng.uniform(0.3, 0.7)
    radius = min(width, height) * rng.uniform(0.25, 0.45)
    fx, fy = rng.uniform(2, 12, 2)
    pixels = np.stack(
        [
            xx / width * 255 * rng.uniform(0.3, 1),
            yy / height * 255 * rng.uniform(0.3, 1),
            128 + 80 * np.sin(xx / width * fx * np.pi) * np.cos(yy / height * fy * np.pi),
        ],
        axis=-1,
    )
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 < radius**2
    pixels[disc] = pixels[disc] * 0.4 + rng.uniform(0, 255, 3) * 0.6
    pixels += rng.normal(0, 12, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, raw: bytes) -> bytes:
    """A PNG from filtered scanlines (each row: filter byte 0 + samples), written by hand
    for what Pillow cannot save (16-bit RGB) or should not allocate (a 400 MP bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def bilevel_png(width: int, height: int) -> bytes:
    """An all-black 1-bit PNG: tiny on disk, `width*height` pixels once decoded."""
    row = b"\x00" * (1 + (width + 7) // 8)
    return png_bytes(width, height, 1, 0, row * height)


@functools.cache
def _calibrated(seed: int, num_classes: int) -> dict[str, Tensor]:
    # A random ResNet's logits are dominated by an input-independent offset (near-constant
    # probabilities). Centre the last layer on synthetic photos and scale it so the logits
    # spread by ~2: probabilities then move a lot with the input, making parity meaningful.
    state = seeded_state_dict(num_classes, seed)
    network = load_network(state, num_classes)
    calibration = torch.from_numpy(
        np.stack(
            [
                to_model_input(synthetic_photo(256, 256, 100 + i), 224, IMAGENET_MEAN, IMAGENET_STD)
                for i in range(8)
            ]
        )
    )
    hidden: list[Tensor] = []
    hook = network.base.fc[3].register_forward_hook(lambda _m, inputs, _o: hidden.append(inputs[0]))
    with torch.inference_mode():
        network(calibration)
    hook.remove()
    h = hidden[0].double()
    weight = state["base.fc.3.weight"].double()
    gain = 2.0 / ((h - h.mean(0)) @ weight.T).std().item()
    state["base.fc.3.weight"] = (gain * weight).float()
    state["base.fc.3.bias"] = (-gain * weight @ h.mean(0)).float()
    return state


def sensitive_state_dict(seed: int = 2, num_classes: int = 4) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in _calibrated(seed, num_classes).items()}


def state_dict_file_bytes(state: dict[str, Tensor]) -> bytes:
    out = io.BytesIO()
    torch.save(state, out)
    return out.getvalue()
