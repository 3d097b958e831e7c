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
    "encapsulated_dicom",
    "flat_jpeg",
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
    data = encapsulated_dicom(
        [jpeg],
        rows=image.height,
        columns=image.width,
        image_laterality=image_laterality,
        syntax=syntax,
    )
    return data, jpeg


def encapsulated_dicom(
    frames: list[bytes],
    *,
    rows: int,
    columns: int,
    image_laterality: str | None = None,
    syntax: UID = JPEGBaseline8Bit,
) -> bytes:
    """A YBR_FULL_422 OP 8-bit file of these encoded frames, whatever their real size:
    the header says `rows` x `columns` (and the number of frames when more than one)."""
    ds = _dataset(OP_8BIT, syntax, rows, columns, 3, "YBR_FULL_422", image_laterality, None)
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate(frames, has_bot=len(frames) > 1)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.LossyImageCompression = "01"
    return _saved(ds)


def flat_jpeg(width: int, height: int) -> bytes:
    """A valid baseline JPEG (YCbCr 4:2:2) of mid grey, made without holding its pixels.

    In a flat image of value 128 every block has a DC of 0 and no AC coefficient, so with
    the standard Huffman tables every 16x8 MCU codes as the same 20 bits (two luma blocks
    `00 1010`, two chroma blocks `00 00`): headers from a 16x8 image Pillow encodes, the
    size in SOF0 patched, the scan repeated. A 13000 x 13000 frame (507 MB decoded) is
    3.3 MB of file; decoders read it as a full grey image.
    """
    out = io.BytesIO()
    Image.new("RGB", (16, 8), (128, 128, 128)).save(out, "JPEG", quality=95, subsampling="4:2:2")
    small = out.getvalue()
    sos = small.index(b"\xff\xda")
    scan_start = sos + 2 + int.from_bytes(small[sos + 2 : sos + 4], "big")
    assert small[scan_start:] == b"\x28\xa0\x0f\xff\xd9"  # one MCU, padded with 1s
    sof = small.index(b"\xff\xc0")
    header = bytearray(small[:scan_start])
    header[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    mcus = -(-width // 16) * -(-height // 8)
    scan = b"\x28\xa0\x02\x8a\x00" * (mcus // 2) + (b"\x28\xa0\x0f" if mcus % 2 else b"")
    return bytes(header) + scan + b"\xff\xd9"
