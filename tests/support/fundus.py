"""Fundus-like photographs built in the test: a bright orange disc with an optic disc and
dark vessel-like lines, on a black border, plus the ways a real photograph goes wrong."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def fundus(side: int = 1024, *, seed: int = 3, disc: float = 0.46) -> Image.Image:
    """An RGB fundus-like photograph; `disc` is the disc's radius over the side."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    centre = (side - 1) / 2
    r = np.hypot(xx - centre, yy - centre) / (disc * side)
    inside = r <= 1
    shade = 0.75 + 0.25 * (1 - np.clip(r, 0, 1))
    ox, oy = centre + 0.45 * disc * side, centre - 0.1 * disc * side
    optic = np.exp(-((xx - ox) ** 2 + (yy - oy) ** 2) / (2 * (0.1 * disc * side) ** 2))
    rgb = np.stack(
        [190 * shade + 60 * optic, 90 * shade + 140 * optic, 35 * shade + 120 * optic], -1
    )
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(16):  # vessels leave the optic disc, wandering and thinning
        x, y = ox, oy
        angle = rng.uniform(0, 2 * math.pi)
        width = max(1, round(side * 0.008 * disc / 0.46))
        for _step in range(70):
            angle += rng.normal(0, 0.2)
            nx = x + math.cos(angle) * side * 0.012 * disc / 0.46
            ny = y + math.sin(angle) * side * 0.012 * disc / 0.46
            draw.line([(x, y), (nx, ny)], fill=(110, 25, 15), width=width)
            x, y = nx, ny
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(side / 1000)), np.float32)
    pixels = pixels + rng.normal(0, 2.0, pixels.shape)
    pixels[~inside] = 0
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def blurred(image: Image.Image, sigma_fraction: float = 0.012) -> Image.Image:
    """Out of focus: a Gaussian blur of sigma = `sigma_fraction` of the side."""
    return image.filter(ImageFilter.GaussianBlur(sigma_fraction * image.width))


def scaled(image: Image.Image, gain: float) -> Image.Image:
    """Exposure changed by `gain` (clipped at 255, as a sensor does)."""
    pixels = np.asarray(image, np.float32) * gain
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def grey(side: int = 1024, level: int = 128) -> Image.Image:
    return Image.new("RGB", (side, side), (level, level, level))


def text_page(side: int = 1024) -> Image.Image:
    """Black text on white: a scanned letter, not a photograph of an eye."""
    image = Image.new("RGB", (side, side), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    for row in range(0, side, side // 24):
        draw.text((side // 20, row), "Patient referral letter - fundus exam " * 3, fill=(0, 0, 0))
    return image


def encoded(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def retina_path() -> Path:
    """scikit-image's real fundus photograph (1411x1411), a test dependency."""
    import skimage

    return Path(skimage.__file__).parent / "data" / "retina.jpg"
