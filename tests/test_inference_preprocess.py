"""Upload decoding: what is refused (and with which code), what decodes, reference parity."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from app.errors import ImageRejected
from app.inference import DecodedImage, decode_upload, sniff
from tests.support.images import bilevel_png, encode, png_bytes, synthetic_photo
from tests.support.inference import REFERENCE

MAX_PIXELS = 50_000_000  # the service default


def reference_array(data: bytes) -> np.ndarray:
    """The earlier back-end's pipeline (plus EXIF orientation) on a full decode."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    tensor: torch.Tensor = REFERENCE(image.convert("RGB"))
    return tensor.numpy()


def decode(data: bytes, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    return decode_upload(data, max_pixels=max_pixels)


def rejection(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[int, str]:
    with pytest.raises(ImageRejected) as info:
        decode(data, max_pixels)
    return info.value.status_code, info.value.code


def test_sniff_uses_magic_bytes_only() -> None:
    photo = synthetic_photo(80, 80, 0)
    assert sniff(encode(photo, "JPEG")) == "image/jpeg"
    assert sniff(encode(photo, "PNG")) == "image/png"
    assert sniff(encode(photo, "GIF")) is None
    assert sniff(encode(photo, "WEBP")) is None
    assert sniff(b"") is None
    assert sniff(b"\xff\xd8") is None


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("empty file", b"", (422, "INVALID_IMAGE")),
        ("text named photo.jpg", b"just some text, not a photo\n", (415, "UNSUPPORTED_MEDIA_TYPE")),
        ("GIF", encode(synthetic_photo(100, 100, 1), "GIF"), (415, "UNSUPPORTED_MEDIA_TYPE")),
        ("BMP", encode(synthetic_photo(100, 100, 1), "BMP"), (415, "UNSUPPORTED_MEDIA_TYPE")),
        (
            "truncated JPEG",
            encode(synthetic_photo(300, 300, 1), "JPEG")[:3000],
            (422, "INVALID_IMAGE"),
        ),
        (
            "truncated PNG",
            encode(synthetic_photo(300, 300, 1), "PNG")[:5000],
            (422, "INVALID_IMAGE"),
        ),
        ("JPEG magic then junk", b"\xff\xd8\xff" + b"\x00" * 500, (422, "INVALID_IMAGE")),
        ("PNG magic then junk", b"\x89PNG\r\n\x1a\n" + b"\x07" * 500, (422, "INVALID_IMAGE")),
        ("10x10 PNG", encode(synthetic_photo(10, 10, 1), "PNG"), (422, "INVALID_IMAGE")),
        ("63x300 JPEG", encode(synthetic_photo(63, 300, 1), "JPEG"), (422, "INVALID_IMAGE")),
    ],
)
def test_bad_uploads_get_their_documented_code(
    name: str, data: bytes, expected: tuple[int, str]
) -> None:
    assert rejection(data) == expected, name


def test_png_bomb_is_refused_from_its_header() -> None:
    bomb = bilevel_png(20_000, 20_000)  # 400 MP, beyond even Pillow's own hard limit
    assert len(bomb) < 100_000
    assert rejection(bomb) == (422, "INVALID_IMAGE")
    # Pillow's global limit is not what protects us: MAX_IMAGE_PIXELS is untouched and
    # a huge max_pixels still ends in a clean rejection, never a Pillow exception.
    assert Image.MAX_IMAGE_PIXELS == 89_478_485
    assert rejection(bomb, max_pixels=10**12) == (422, "INVALID_IMAGE")


def test_pixel_limit_is_ours_below_pillows() -> None:
    between = bilevel_png(8_000, 8_000)  # 64 MP: over our 50 MP, under Pillow's 89 MP
    with pytest.raises(ImageRejected, match="more than 50000000 pixels"):
        decode(between)
    small = encode(synthetic_photo(400, 400, 2), "PNG")
    assert rejection(small, max_pixels=100_000) == (422, "INVALID_IMAGE")
    assert decode(small, max_pixels=160_000).width == 400


def test_pillow_bomb_warning_as_error_is_still_a_clean_rejection() -> None:
    warned = bilevel_png(10_000, 10_000)  # 100 MP: Pillow warns (89-179 MP)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rejection(warned, max_pixels=10**9) == (422, "INVALID_IMAGE")


def test_accepted_upload_reports_type_size_and_model_input() -> None:
    photo = synthetic_photo(300, 200, 3)
    png = decode_upload(encode(photo, "PNG"), max_pixels=MAX_PIXELS)
    assert (png.content_type, png.extension, png.width, png.height) == (
        "image/png",
        "png",
        300,
        200,
    )
    assert png.array.dtype == np.float32
    assert png.array.shape == (3, 224, 224)
    assert png.array.flags.c_contiguous
    jpeg = decode_upload(encode(photo, "JPEG"), max_pixels=MAX_PIXELS)
    assert (jpeg.content_type, jpeg.extension) == ("image/jpeg", "jpg")


def test_model_input_matches_torchvision_exactly() -> None:
    for data in (
        encode(synthetic_photo(300, 200, 4), "PNG"),
        encode(synthetic_photo(640, 480, 5), "JPEG", quality=90),
        encode(synthetic_photo(224, 224, 6), "PNG"),  # no resize at all
    ):
        ours = decode_upload(data, max_pixels=MAX_PIXELS, fast_jpeg=False).array
        np.testing.assert_array_equal(ours, reference_array(data))


def test_exif_orientation_6_swaps_width_and_height() -> None:
    photo = synthetic_photo(320, 200, 7)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode(photo, "JPEG", exif=exif.tobytes())
    decoded = decode_upload(data, max_pixels=MAX_PIXELS)
    assert (decoded.width, decoded.height) == (200, 320)
    np.testing.assert_array_equal(decoded.array, reference_array(data))


def test_exif_orientation_with_fast_jpeg_reports_the_original_size() -> None:
    photo = synthetic_photo(1600, 1000, 8)
    exif = Image.Exif()
    exif[0x0112] = 8
    data = encode(photo, "JPEG", exif=exif.tobytes(), quality=92)
    fast = decode_upload(data, max_pixels=MAX_PIXELS, fast_jpeg=True)
    full = decode_upload(data, max_pixels=MAX_PIXELS, fast_jpeg=False)
    assert (fast.width, fast.height) == (full.width, full.height) == (1000, 1600)
    np.testing.assert_array_equal(full.array, reference_array(data))
    assert np.abs(fast.array - full.array).mean() < 0.02  # normalized units (~1/255/std)


def test_fast_jpeg_is_close_to_the_full_decode() -> None:
    data = encode(synthetic_photo(2048, 2048, 9), "JPEG", quality=90)
    fast = decode_upload(data, max_pixels=MAX_PIXELS, fast_jpeg=True)
    full = decode_upload(data, max_pixels=MAX_PIXELS, fast_jpeg=False)
    assert (fast.width, fast.height) == (2048, 2048)
    np.testing.assert_array_equal(full.array, reference_array(data))
    difference = np.abs(fast.array - full.array)
    print(f"fast vs full 2048x2048 JPEG: mean {difference.mean():.4f}, max {difference.max():.4f}")
    assert difference.mean() < 0.02
    assert difference.max() < 0.2


@pytest.mark.parametrize(
    "make",
    [
        lambda: encode(synthetic_photo(200, 150, 10).convert("CMYK"), "JPEG"),
        lambda: encode(synthetic_photo(200, 150, 11).convert("L"), "JPEG"),
        lambda: encode(synthetic_photo(200, 150, 12).convert("L"), "PNG"),
        lambda: encode(synthetic_photo(200, 150, 13).convert("RGBA"), "PNG"),
        lambda: encode(synthetic_photo(200, 150, 14).convert("P"), "PNG"),
        lambda: encode(synthetic_photo(200, 150, 15).convert("LA"), "PNG"),
        lambda: encode(synthetic_photo(200, 150, 16), "JPEG", progressive=True),
    ],
    ids=[
        "cmyk-jpeg",
        "grey-jpeg",
        "grey-png",
        "rgba-png",
        "palette-png",
        "grey-alpha-png",
        "progressive-jpeg",
    ],
)
def test_other_modes_decode_like_the_reference(make: object) -> None:
    data = make()  # type: ignore[operator]
    decoded = decode_upload(data, max_pixels=MAX_PIXELS)
    assert (decoded.width, decoded.height) == (200, 150)
    np.testing.assert_array_equal(decoded.array, reference_array(data))


def test_16_bit_grey_png_is_scaled_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (128, 1))
    data = encode(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    decoded = decode_upload(data, max_pixels=MAX_PIXELS)
    eight_bit = encode(Image.fromarray((ramp >> 8).astype(np.uint8)), "PNG")
    np.testing.assert_array_equal(decoded.array, reference_array(eight_bit))


def test_16_bit_rgb_png_decodes() -> None:
    rng = np.random.default_rng(16)
    samples = (rng.integers(0, 65536, (96, 128, 3), dtype=np.uint16)).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in samples)
    data = png_bytes(128, 96, 16, 2, raw)
    decoded = decode_upload(data, max_pixels=MAX_PIXELS)
    assert (decoded.width, decoded.height) == (128, 96)
    np.testing.assert_array_equal(decoded.array, reference_array(data))
    assert np.isfinite(decoded.array).all()
