"""DICOM Part 10 files built with pydicom for the intake tests (no fixture files)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    generate_uid,
)

OP_8BIT = UID("1.2.840.10008.5.1.4.1.1.77.1.5.1")
SECONDARY_CAPTURE = UID("1.2.840.10008.5.1.4.1.1.7")
MULTIFRAME_TRUE_COLOR_SC = UID("1.2.840.10008.5.1.4.1.1.7.4")
OCT = UID("1.2.840.10008.5.1.4.1.1.77.1.5.4")  # Ophthalmic Tomography: refused

PATIENT_NAME = "Doe^Jane^Q"
PATIENT_ID = "PID-7731-XK"
BIRTH_DATE = "19580214"

__all__ = [
    "BIRTH_DATE",
    "MULTIFRAME_TRUE_COLOR_SC",
    "OCT",
    "OP_8BIT",
    "PATIENT_ID",
    "PATIENT_NAME",
    "SECONDARY_CAPTURE",
    "JPEG2000Lossless",
    "JPEGBaseline8Bit",
    "dicom_bytes",
    "jpeg_dicom",
]


def _dataset(
    sop_class: UID,
    syntax: UID,
    rows: int,
    columns: int,
    samples: int,
    photometric: str,
    image_laterality: str | None,
    laterality: str | None,
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OP" if sop_class == OP_8BIT else "OT"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH_DATE
    if image_laterality is not None:
        ds.ImageLaterality = image_laterality
    if laterality is not None:
        ds.Laterality = laterality
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    return ds


def _saved(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def dicom_bytes(
    pixels: np.ndarray,
    *,
    sop_class: UID = OP_8BIT,
    syntax: UID = ExplicitVRLittleEndian,
    frames: int = 1,
    image_laterality: str | None = None,
    laterality: str | None = None,
    with_pixels: bool = True,
    rows_columns: tuple[int, int] | None = None,
) -> bytes:
    """An uncompressed file: (rows, cols, 3) uint8 is RGB, (rows, cols) MONOCHROME2.
    `frames` > 1 repeats the image with its channels rolled, so frames differ.
    `rows_columns` overrides the declared size (the pixel data stays what it is)."""
    assert pixels.dtype == np.uint8
    samples = 3 if pixels.ndim == 3 else 1
    rows, columns = rows_columns or pixels.shape[:2]
    ds = _dataset(
        sop_class,
        syntax,
        rows,
        columns,
        samples,
        "RGB" if samples == 3 else "MONOCHROME2",
        image_laterality,
        laterality,
    )
    if frames > 1:
        ds.NumberOfFrames = frames
    if with_pixels:
        stack = [
            np.roll(pixels, i, axis=-1) if samples == 3 else pixels // (i + 1)
            for i in range(frames)
        ]
        ds.PixelData = b"".join(np.ascontiguousarray(f).tobytes() for f in stack)
    return _saved(ds)


def jpeg_dicom(
    image: Image.Image,
    *,
    quality: int = 95,
    image_laterality: str | None = None,
    syntax: UID = JPEGBaseline8Bit,
) -> tuple[bytes, bytes]:
    """(DICOM, the JPEG it encapsulates): a YBR_FULL_422 JPEG baseline OP 8-bit file."""
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality, subsampling="4:2:2")
    jpeg = out.getvalue()
    ds = _dataset(
        OP_8BIT, syntax, image.height, image.width, 3, "YBR_FULL_422", image_laterality, None
    )
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.LossyImageCompression = "01"
    return _saved(ds), jpeg
