"""DICOM Part 10 intake: an ophthalmic photograph as an RGB image. Pure CPU, run in a thread.

Accepted: Ophthalmic Photography 8 Bit, VL Photographic and secondary capture images with
8-bit pixel data, uncompressed (explicit or implicit VR little endian) or JPEG baseline.
Pixels are decoded by pydicom's own handlers, JPEG through its Pillow plugin (no GPL
pylibjpeg-libjpeg); YBR_FULL / YBR_FULL_422 become RGB by pydicom's conversion; 8-bit
monochrome is replicated to three channels; a multi-frame file gives its first frame.

Refusals (ImageRejected): 415 UNSUPPORTED_DICOM for a file that is DICOM but not one of
these (other SOP class or transfer syntax, no pixel data, other bit depths or colour
models); 422 INVALID_IMAGE for more than `max_pixels` (from Rows x Columns, before any
pixel is decoded), a side under 64 px, or a file that cannot be read (truncated, corrupt).

Privacy: nothing of the file but its pixels, size, frame count and laterality leaves this
module, and nothing of it is logged (patient name, id and birth date stay in the stored
original only).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pixel_array
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

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


class DicomRejected(Exception):
    """Why a DICOM file is refused: (status, code, detail), safe for clients."""

    def __init__(self, status_code: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.code = code
        self.detail = detail


def unsupported(detail: str) -> DicomRejected:
    return DicomRejected(415, "UNSUPPORTED_DICOM", detail)


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
    """The file's first frame as RGB; raises DicomRejected, never pydicom's errors."""
    ds = _parse(data)
    rows, columns, frames = _check(ds, max_pixels, min_side)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warnings may quote the file
            pixels = pixel_array(
                ds,
                index=0,
                decoding_plugin="pillow" if ds.file_meta.TransferSyntaxUID.is_compressed else "",
            )
    except Exception as exc:  # short pixel data, a broken JPEG stream...
        raise DicomRejected(422, "INVALID_IMAGE", "The DICOM pixel data cannot be read.") from exc
    if pixels.shape[:2] != (rows, columns) or pixels.dtype != np.uint8:
        raise DicomRejected(422, "INVALID_IMAGE", "The DICOM pixel data cannot be read.")
    if str(ds.PhotometricInterpretation) == "MONOCHROME1":
        pixels = 255 - pixels  # 0 is white in MONOCHROME1
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    return DicomPicture(image, columns, rows, frames, _laterality(ds))


def _parse(data: bytes) -> Dataset:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(io.BytesIO(data))
            ds.file_meta.TransferSyntaxUID  # noqa: B018 (a file without one is unreadable)
    except Exception as exc:
        raise DicomRejected(422, "INVALID_IMAGE", "The file is not a readable DICOM file.") from exc
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
        raise DicomRejected(422, "INVALID_IMAGE", "The DICOM header cannot be read.") from exc
    if sop_class not in SOP_CLASSES:
        raise unsupported(
            "Only ophthalmic photography, VL photographic and secondary capture images are "
            "accepted (not this DICOM SOP class)."
        )
    if syntax not in TRANSFER_SYNTAXES:
        raise unsupported(
            "This DICOM transfer syntax is not accepted: use uncompressed (little endian) "
            "or JPEG baseline."
        )
    if not has_pixels:
        raise unsupported("The DICOM file has no pixel data.")
    if bits != 8 or samples not in (1, 3) or photometric not in _PHOTOMETRIC:
        raise unsupported(
            "Only 8-bit RGB, YBR_FULL, YBR_FULL_422 or monochrome DICOM images are accepted."
        )
    if rows * columns > max_pixels:
        raise DicomRejected(422, "INVALID_IMAGE", f"The image has more than {max_pixels} pixels.")
    if min(rows, columns) < min_side:
        raise DicomRejected(
            422, "INVALID_IMAGE", f"The image must be at least {min_side}x{min_side} pixels."
        )
    if frames < 1:
        raise DicomRejected(422, "INVALID_IMAGE", "The DICOM file has no frame.")
    return rows, columns, frames


def _laterality(ds: Dataset) -> str | None:
    """Image Laterality (0020,0062), falling back to Laterality (0020,0060)."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword) or "").strip().upper()
        if value:
            return _LATERALITY.get(value)
    return None
