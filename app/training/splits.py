"""Which split a dataset item falls in (the dataset decides, never a training run).

sha256 of the patient_ref (of the image when there is none; such items are flagged
`split_from_image`) decides train (80%), validation (10%) or calibration (10%); all
images of a patient fall on one side. A test set's items are all `test`.
"""

from __future__ import annotations

import hashlib

SPLIT_SCHEME = "v1: sha256('split-v1:' + patient_ref or image sha256) -> 80/10/10"
SPLITS = ("train", "validation", "calibration")


def split_of(kind: str, patient_ref: str | None, image_sha256: str) -> tuple[str, bool]:
    """(split, derived from the image because patient_ref is absent)."""
    from_image = not patient_ref
    if kind == "test":
        return "test", from_image
    key = image_sha256 if from_image else patient_ref
    digest = hashlib.sha256(f"split-v1:{key}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % 100
    if bucket < 80:
        return "train", from_image
    return ("validation" if bucket < 90 else "calibration"), from_image
