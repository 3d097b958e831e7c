"""A split's labelled images as the network sees them (blocking torch work).

The images are uint8 arrays as the inference path's resize leaves them; `normalized` and
`logits_of` turn them into what inference would feed the network, `Augmenter` into what
the fit loop trains on (flip, affine, colour jitter, drawn from the epoch's generator).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as F

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


class Augmenter:
    """The recipe's augmentation of one uint8 (3,S,S) image, drawn from `generator`.

    torchvision's v2 transforms (RandomAffine, ColorJitter...) draw from torch's global
    generator, which any other thread of the process may use at the same moment (a model
    built for a swap initialises its layers from it): a resumed job would then augment
    differently from an uninterrupted one. So the parameters are drawn here, from the
    epoch's own generator, as the v2 transforms draw them, and applied with v2.functional.
    """

    def __init__(self, aug: Augmentation, mean: Sequence[float], std: Sequence[float]) -> None:
        self.aug = aug
        self.mean, self.std = list(mean), list(std)

    def __call__(self, image: Tensor, generator: torch.Generator) -> Tensor:
        aug = self.aug

        def uniform(low: float, high: float) -> float:
            return low + (high - low) * float(torch.rand((), generator=generator))

        if aug.horizontal_flip > 0 and uniform(0, 1) < aug.horizontal_flip:
            image = F.horizontal_flip(image)
        if aug.rotation_degrees or aug.translate or aug.scale != (1.0, 1.0):
            height, width = image.shape[-2:]
            image = F.affine(
                image,
                angle=uniform(-aug.rotation_degrees, aug.rotation_degrees),
                translate=[
                    round(uniform(-aug.translate * width, aug.translate * width)),
                    round(uniform(-aug.translate * height, aug.translate * height)),
                ],
                scale=uniform(*aug.scale),
                shear=[0.0, 0.0],
            )
        jitters = [
            (F.adjust_brightness, aug.brightness),
            (F.adjust_contrast, aug.contrast),
            (F.adjust_saturation, aug.saturation),
        ]
        for index in torch.randperm(len(jitters), generator=generator).tolist():
            adjust, amount = jitters[index]
            if amount:
                image = adjust(image, uniform(max(0.0, 1 - amount), 1 + amount))
        image = F.to_dtype(image, torch.float32, scale=True)
        pixels: Tensor = F.normalize(image, self.mean, self.std)
        return pixels


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
