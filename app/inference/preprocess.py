"""Upload validation and model-input preparation: pure CPU work, run it in a thread.

Reference semantics (the earlier back-end, torchvision on a PIL image): convert("RGB")
-> Resize((224, 224)) (PIL bilinear, antialiased) -> ToTensor -> Normalize(ImageNet).
`to_model_input` reproduces that in numpy with the same float32 operations.

Rejections raise the app.errors classes (all `ImageRejected`), decided in this order:
- InvalidImage (422 INVALID_IMAGE) for an empty file (the one check for it);
- UnsupportedMediaType (415): the bytes are neither JPEG, PNG (leading signature) nor
  DICOM Part 10 (`DICM` at offset 128); the filename and the client's content type are
  ignored;
- UnsupportedDicom (415): a DICOM file that is not an accepted photograph (app.inference.dicom);
- InvalidImage: more pixels than `max_pixels` (checked from the header, before any pixel is
  decoded), a side under 64 px, or data Pillow cannot decode (truncated, corrupt).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import ExifTags, Image

from app.clinical.quality import GATE_SIZE, UInt8Image
from app.errors import ImageRejected, InvalidImage, UnsupportedMediaType
from app.inference.arrays import FloatArray
from app.inference.dicom import DICOM_CONTENT_TYPE, is_dicom, read_dicom, too_many_pixels

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_SIDE = 64

ContentType = Literal["image/jpeg", "image/png", "application/dicom"]

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_FORMATS: dict[ContentType, tuple[str, str]] = {  # content type -> (Pillow format, extension)
    "image/jpeg": ("JPEG", "jpg"),
    "image/png": ("PNG", "png"),
    "application/dicom": ("DICOM", "dcm"),  # read by pydicom, not Pillow
}
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = {5, 6, 7, 8}


@dataclass(frozen=True)
class DecodedImage:
    content_type: ContentType
    extension: str  # "jpg" | "png" | "dcm"
    width: int  # of the original image, after EXIF orientation
    height: int
    array: FloatArray  # (3, input_size, input_size), normalized
    # (GATE_SIZE, GATE_SIZE, 3) uint8 RGB: the image as reduced for the model, for the
    # quality gate (the model's own resize when input_size == GATE_SIZE)
    picture: UInt8Image
    frames: int | None = None  # DICOM only: frames in the file (the first is classified)
    laterality: str | None = None  # DICOM only: "left" | "right" from the file, if it says


def sniff(data: bytes) -> ContentType | None:
    """The content type from the leading magic bytes only."""
    if data.startswith(_JPEG_MAGIC):
        return "image/jpeg"
    if data.startswith(_PNG_MAGIC):
        return "image/png"
    if is_dicom(data):
        return DICOM_CONTENT_TYPE
    return None


def decode_upload(
    data: bytes,
    *,
    max_pixels: int,
    fast_jpeg: bool = True,
    input_size: int = 224,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> DecodedImage:
    """Validate an upload and prepare the model input; raises an ImageRejected (app.errors),
    never Pillow's or pydicom's errors.

    With `fast_jpeg`, a large JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8)
    that still leaves at least twice `input_size` on each side, then resized as the
    reference does: much less decode and resize work, probabilities within ~1e-3.
    """
    if not data:
        raise InvalidImage("The file is empty.")
    content_type = sniff(data)
    if content_type is None:
        raise UnsupportedMediaType()
    try:
        return _decode(data, content_type, max_pixels, fast_jpeg, input_size, mean, std)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own (global) limit fired before ours; it is still "too many pixels".
        raise too_many_pixels(max_pixels) from exc
    except Exception as exc:  # Pillow reports bad data as OSError, ValueError, SyntaxError...
        raise InvalidImage() from exc


def to_model_input(
    image: Image.Image,
    input_size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> FloatArray:
    """(3, S, S) float32 from an RGB image, bit-for-bit what Resize+ToTensor+Normalize give."""
    return _normalized(_reduced(image, input_size), mean, std)


def model_input_and_picture(
    image: Image.Image,
    input_size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> tuple[FloatArray, UInt8Image]:
    """The model input and the quality gate's picture, sharing the resize when they can."""
    reduced = _reduced(image, input_size)
    picture = reduced if input_size == GATE_SIZE else _reduced(image, GATE_SIZE)
    return _normalized(reduced, mean, std), picture


def _reduced(image: Image.Image, side: int) -> UInt8Image:
    resized = image.resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def _normalized(
    reduced: UInt8Image, mean: tuple[float, float, float], std: tuple[float, float, float]
) -> FloatArray:
    pixels = reduced.astype(np.float32) / 255
    pixels = (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def _decode(
    data: bytes,
    content_type: ContentType,
    max_pixels: int,
    fast_jpeg: bool,
    input_size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> DecodedImage:
    frames = laterality = None
    if content_type == DICOM_CONTENT_TYPE:
        dicom = read_dicom(data, max_pixels=max_pixels, min_side=MIN_SIDE)
        rgb, width, height = dicom.image, dicom.width, dicom.height
        frames, laterality = dicom.frames, dicom.laterality
    else:
        rgb, width, height = _open_rgb(
            data, content_type, max_pixels, 2 * input_size if fast_jpeg else None
        )
    array, picture = model_input_and_picture(rgb, input_size, mean, std)
    return DecodedImage(
        content_type=content_type,
        extension=_FORMATS[content_type][1],
        width=width,
        height=height,
        array=array,
        picture=picture,
        frames=frames,
        laterality=laterality,
    )


def decode_rgb(data: bytes, *, max_pixels: int, min_side: int | None) -> Image.Image:
    """A stored image as RGB with EXIF orientation applied, a JPEG decoded at the smallest
    DCT scale that keeps `min_side` on each side (None: full size). Raises ImageRejected."""
    content_type = sniff(data)
    if content_type is None:
        raise UnsupportedMediaType()
    try:
        if content_type == DICOM_CONTENT_TYPE:
            return read_dicom(data, max_pixels=max_pixels, min_side=MIN_SIDE).image
        return _open_rgb(data, content_type, max_pixels, min_side)[0]
    except ImageRejected:
        raise
    except Exception as exc:
        raise InvalidImage() from exc


def render_png(data: bytes, *, max_pixels: int) -> bytes:
    """A stored image (a DICOM's first frame) as an RGB PNG at full size, for a browser."""
    out = io.BytesIO()
    decode_rgb(data, max_pixels=max_pixels, min_side=None).save(out, "PNG", compress_level=1)
    return out.getvalue()


def _open_rgb(
    data: bytes, content_type: ContentType, max_pixels: int, draft_side: int | None
) -> tuple[Image.Image, int, int]:
    """(RGB image after EXIF orientation, width, height of the original after orientation)."""
    with Image.open(io.BytesIO(data), formats=[_FORMATS[content_type][0]]) as image:
        # Only the header has been read: refuse bombs before any pixel is decoded.
        width, height = image.size
        if width * height > max_pixels:
            raise too_many_pixels(max_pixels)
        if min(width, height) < MIN_SIDE:
            raise InvalidImage(f"The image must be at least {MIN_SIDE}x{MIN_SIDE} pixels.")
        if draft_side is not None and content_type == "image/jpeg":
            # Square request, so the scale is the same whatever the EXIF rotation.
            image.draft("RGB", (draft_side, draft_side))
        orientation = _orientation(image)
        image.load()
        rgb = _to_rgb(image)
        transpose = _ORIENTATION.get(orientation)
        if transpose is not None:
            rgb = rgb.transpose(transpose)  # before resizing, as exif_transpose in the reference
            if orientation in _SWAPS_SIDES:
                width, height = height, width
    return rgb, width, height


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a broken EXIF block must not reject an otherwise valid photo
        return 1
    return value if isinstance(value, int) else 1


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I"):
        # 16-bit greyscale PNG: convert("RGB") would clip everything above 255 to white.
        grey = np.asarray(image).astype(np.int64) >> 8
        return Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")
