"""A split's labelled images as the network sees them (blocking torch work).

The images are uint8 arrays as the inference path's resize leaves them; `normalized` and
`logits_of` turn them into what inference would feed the network, `augmenter` into what
the fit loop trains on (torchvision transforms v2: flip, affine, colour jitter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor
from torchvision.transforms import v2

from app.inference.network import EyeDiseaseClassifier
from app.schemas.recipes import Augmentation

EVAL_BATCH = 64
UInt8Images = npt.NDArray[np.uint8]  # (N, S, S, 3) RGB, as the inference resize leaves them


@dataclass
class Examples:
    """Images and labels (class indices) of one split."""

    images: UInt8Images
    labels: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def augmenter(aug: Augmentation, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    ops: list[Any] = []
    if aug.horizontal_flip > 0:
        ops.append(v2.RandomHorizontalFlip(aug.horizontal_flip))
    if aug.rotation_degrees or aug.translate or aug.scale != (1.0, 1.0):
        ops.append(
            v2.RandomAffine(
                degrees=aug.rotation_degrees,
                translate=(aug.translate, aug.translate) if aug.translate else None,
                scale=aug.scale if aug.scale != (1.0, 1.0) else None,
            )
        )
    if aug.brightness or aug.contrast or aug.saturation:
        ops.append(
            v2.ColorJitter(
                brightness=aug.brightness or None,
                contrast=aug.contrast or None,
                saturation=aug.saturation or None,
            )
        )
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


def normalized(images: UInt8Images, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(N,3,S,S) float32 exactly as the inference preprocessing makes it."""
    pixels = images.astype(np.float32) / 255
    pixels = (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))


def logits_of(
    network: EyeDiseaseClassifier,
    images: UInt8Images,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
) -> npt.NDArray[np.float64]:
    network.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), EVAL_BATCH):
            batch = normalized(images[start : start + EVAL_BATCH], mean, std).to(device)
            out.append(network(batch).float().cpu().numpy())
    if not out:
        return np.zeros((0, network.base.fc[-1].out_features), np.float64)
    return np.concatenate(out).astype(np.float64)
