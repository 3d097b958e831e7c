"""DICOM Part 10 intake: an ophthalmic photograph as an RGB image. Pure CPU, run in a thread.

Accepted: Ophthalmic Photography 8 Bit, VL Photographic and secondary capture images with
8-bit pixel data, uncompressed (explicit or implicit VR little endian) or JPEG baseline.
Pixels are decoded by pydicom's own handlers, JPEG through its Pillow plugin (no GPL
pylibjpeg-libjpeg); YBR_FULL / YBR_FULL_422 become RGB by pydicom's conversion; 8-bit
monochrome is replicated to three channels; a multi-frame file gives its first frame.

Refusals (app.errors): UnsupportedDicom (415) for a file that is DICOM but not one of
these (other SOP class or transfer syntax, no pixel data, other bit depths or colour
models); InvalidImage (422) for more than `max_pixels` (from Rows x Columns, before any
pixel is decoded), a side under 64 px, or a file that cannot be read (truncated, corrupt).

A compressed frame carries its own size, which need not be the header's: a 3 MB file
that says 64 x 64 may hold a 13000 x 13000 JPEG (507 MB once decoded). So the frame to be
decoded is taken out of the file first, its JPEG header read (Pillow reads the markers up
to the scan and decodes nothing), and it is refused (InvalidImage) when it has more than
`max_pixels` or is not Rows x Columns with Samples per Pixel channels; only that checked
frame is then handed to the decoder, under Pillow's decompression-bomb limit as an error.

Privacy: nothing of the file but its pixels, size, frame count and laterality leaves this
module, and nothing of it is logged (patient name, id and birth date stay in the stored
original only).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, get_frame
from pydicom.pixels.utils import pixel_array
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

from app.errors import InvalidImage, UnsupportedDicom

DICOM_CONTENT_TYPE: Final = "application/dicom"
_MAGIC_OFFSET = 128
_MAGIC = b"DICM"

SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.77.1.5.1": "Ophthalmic Photography 8 Bit Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
}
TRANSFER_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit)
_PHOTOMETRIC = {"RGB", "YBR_FULL", "YBR_FULL_422", "MONOCHROME1", "MONOCHROME2"}
_LATERALITY = {"R": "right", "L": "left"}
UNREADABLE_PIXELS = "The DICOM pixel data cannot be read."


@dataclass(frozen=True)
class DicomPicture:
    image: Image.Image  # RGB, the first frame
    width: int  # Columns
    height: int  # Rows
    frames: int  # Number of Frames (1 for a single-frame file)
    laterality: str | None  # "left" | "right" from the file, None when absent, B or unknown


def is_dicom(data: bytes) -> bool:
    """A DICOM Part 10 file: the `DICM` magic after the 128-byte preamble."""
    return data[_MAGIC_OFFSET : _MAGIC_OFFSET + 4] == _MAGIC


def read_dicom(data: bytes, *, max_pixels: int, min_side: int) -> DicomPicture:
    """The file's first frame as RGB; raises InvalidImage or UnsupportedDicom, never
    pydicom's or Pillow's errors."""
    ds = _parse(data)
    rows, columns, frames = _check(ds, max_pixels, min_side)
    compressed = ds.file_meta.TransferSyntaxUID.is_compressed
    try:
        with _decoding_warnings():
            if compressed:
                frame = _checked_first_frame(ds, (rows, columns), frames, max_pixels)
                _keep_first_frame(ds, frame)
            pixels = pixel_array(ds, index=0, decoding_plugin="pillow" if compressed else "")
    except InvalidImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise too_many_pixels(max_pixels) from exc
    except Exception as exc:  # short pixel data, a broken JPEG stream...
        raise InvalidImage(UNREADABLE_PIXELS) from exc
    if pixels.shape[:2] != (rows, columns) or pixels.dtype != np.uint8:
        raise InvalidImage(UNREADABLE_PIXELS)
    if str(ds.PhotometricInterpretation) == "MONOCHROME1":
        pixels = 255 - pixels  # 0 is white in MONOCHROME1
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    return DicomPicture(image, columns, rows, frames, _laterality(ds))


@contextmanager
def _decoding_warnings() -> Iterator[None]:
    """pydicom's own user warnings are not shown (they may quote the file's values, that
    is patient data; pydicom logs them anyway); Pillow's decompression-bomb warning is an
    error; every other warning goes where warnings go."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
        yield


def _checked_first_frame(
    ds: Dataset, rows_columns: tuple[int, int], frames: int, max_pixels: int
) -> bytes:
    """The encoded first frame, once its own header agrees with the DICOM header: read
    from its JPEG markers, nothing decoded."""
    offsets = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    frame = get_frame(ds.PixelData, 0, number_of_frames=frames, extended_offsets=offsets)
    with Image.open(io.BytesIO(frame), formats=["JPEG"]) as jpeg:  # SOF read, not decoded
        width, height = jpeg.size
        channels = len(jpeg.getbands())
    if width * height > max_pixels:
        raise too_many_pixels(max_pixels)
    if (height, width) != rows_columns:
        raise InvalidImage("The DICOM frame's size does not match its Rows and Columns.")
    if channels != int(ds.SamplesPerPixel):
        raise InvalidImage("The DICOM frame's channels do not match its Samples per Pixel.")
    return frame


def _keep_first_frame(ds: Dataset, frame: bytes) -> None:
    """Make the checked frame the only one, so the decoder reads exactly those bytes."""
    ds.PixelData = encapsulate([frame])
    if "NumberOfFrames" in ds:
        ds.NumberOfFrames = 1
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            delattr(ds, keyword)


def too_many_pixels(max_pixels: int) -> InvalidImage:
    return InvalidImage(f"The image has more than {max_pixels} pixels.")


def _parse(data: bytes) -> Dataset:
    try:
        with _decoding_warnings():
            ds = dcmread(io.BytesIO(data))
            ds.file_meta.TransferSyntaxUID  # noqa: B018 (a file without one is unreadable)
    except Exception as exc:
        raise InvalidImage("The file is not a readable DICOM file.") from exc
    return ds


def _check(ds: Dataset, max_pixels: int, min_side: int) -> tuple[int, int, int]:
    """(rows, columns, frames) of an acceptable file, from the header only."""
    try:
        sop_class = str(ds.file_meta.get("MediaStorageSOPClassUID") or ds.SOPClassUID)
        syntax = ds.file_meta.TransferSyntaxUID
        has_pixels = "PixelData" in ds
        rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        frames = int(ds.get("NumberOfFrames") or 1)
        bits = int(ds.get("BitsAllocated") or 0)
        samples = int(ds.get("SamplesPerPixel") or 0)
        photometric = str(ds.get("PhotometricInterpretation") or "")
    except Exception as exc:
        raise InvalidImage("The DICOM header cannot be read.") from exc
    if sop_class not in SOP_CLASSES:
        raise UnsupportedDicom(
            "Only ophthalmic photography, VL photographic and secondary capture images are "
            "accepted (not this DICOM SOP class)."
        )
    if syntax not in TRANSFER_SYNTAXES:
        raise UnsupportedDicom(
            "This DICOM transfer syntax is not accepted: use uncompressed (little endian) "
            "or JPEG baseline."
        )
    if not has_pixels:
        raise UnsupportedDicom("The DICOM file has no pixel data.")
    if bits != 8 or samples not in (1, 3) or photometric not in _PHOTOMETRIC:
        raise UnsupportedDicom(
            "Only 8-bit RGB, YBR_FULL, YBR_FULL_422 or monochrome DICOM images are accepted."
        )
    if rows * columns > max_pixels:
        raise too_many_pixels(max_pixels)
    if min(rows, columns) < min_side:
        raise InvalidImage(f"The image must be at least {min_side}x{min_side} pixels.")
    if frames < 1:
        raise InvalidImage("The DICOM file has no frame.")
    return rows, columns, frames


def _laterality(ds: Dataset) -> str | None:
    """Image Laterality (0020,0062), falling back to Laterality (0020,0060)."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword) or "").strip().upper()
        if value:
            return _LATERALITY.get(value)
    return None
