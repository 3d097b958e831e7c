"""Images for tests: synthetic photos, encoders, a JPEG of a given size, and a PNG writer
(and the 400 MP bilevel bomb made with it)."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
from PIL import Image


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


def jpeg(width: int = 320, height: int = 240, seed: int = 1, quality: int = 90) -> bytes:
    """A synthetic photo as JPEG: the everyday upload of the API tests."""
    return encode(synthetic_photo(width, height, seed), "JPEG", quality=quality)
