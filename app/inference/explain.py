"""Grad-CAM heatmaps: where in the photograph the network looked for a class.

captum's LayerGradCam takes the gradients of the class logit at a layer (for the ResNet18,
`base.layer4[-1]`, 7x7 at 224 px), averages them per channel into weights, and sums the
weighted activations (ReLU'd). It registers hooks on the module it explains, so the
Explainer owns a dedicated copy of the network (never the classifier's, which may be
serving batches at the same moment) and serialises its use with a lock. Everything here
is blocking CPU work: call `render` from a worker thread.
"""

from __future__ import annotations

import copy
import io
import threading

import numpy as np
import torch
from captum.attr import LayerGradCam
from PIL import Image
from torch import nn

from app.inference.manifest import ModelManifest
from app.inference.network import EyeDiseaseClassifier
from app.inference.preprocess import to_model_input

MAX_SIDE = 512  # the heatmap PNG's longest side
ALPHA = 0.45  # weight of the heatmap colour over the photograph, where the map is hot

# A perceptually ordered blue -> cyan -> yellow -> red ramp (anchors of the "turbo" map).
_RAMP_AT = np.asarray([0.0, 0.25, 0.5, 0.75, 1.0])
_RAMP_RGB = np.asarray(
    [[48, 18, 59], [40, 188, 235], [164, 252, 60], [251, 128, 34], [122, 4, 3]], np.float32
)


class Explainer:
    def __init__(self, network: nn.Module, layer: nn.Module, manifest: ModelManifest) -> None:
        """`network` must be a copy nobody else uses; `layer` one of its modules."""
        self._network = network.cpu().eval()
        for parameter in self._network.parameters():
            parameter.requires_grad_(False)  # gradients flow to the input side only
        self._cam = LayerGradCam(self._network, layer)
        self._manifest = manifest
        self._lock = threading.Lock()
        self.computed = 0  # heatmaps rendered by this explainer (not served from a cache)

    @classmethod
    def for_classifier(cls, network: EyeDiseaseClassifier, manifest: ModelManifest) -> Explainer:
        """A dedicated deep copy of the classifier's network, explained at layer4[-1]."""
        mine = copy.deepcopy(network).cpu()
        return cls(mine, mine.base.layer4[-1], manifest)

    def attribution(self, image: Image.Image, class_index: int) -> np.ndarray:
        """The class's Grad-CAM map at the layer's resolution, scaled to 0..1 (all zero
        when nothing in the image speaks for the class)."""
        if not 0 <= class_index < self._manifest.num_classes:
            raise ValueError(f"class index {class_index} out of range")
        m = self._manifest
        batch = torch.from_numpy(to_model_input(image, m.input_size, m.mean, m.std)[None])
        batch.requires_grad_(True)
        with self._lock, torch.enable_grad():
            attribution = self._cam.attribute(batch, target=class_index, relu_attributions=True)
            self.computed += 1
        cam = attribution.detach()[0].sum(dim=0).numpy().astype(np.float32)
        peak = float(cam.max())
        return cam / peak if peak > 0 else np.zeros_like(cam)

    def render(self, image: Image.Image, class_index: int) -> bytes:
        """A PNG of `image` (longest side at most MAX_SIDE) with the heatmap over it."""
        cam = self.attribution(image, class_index)
        photo = image.convert("RGB")
        photo.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR)
        # The model saw the photo squashed to a square; stretching the map back to the
        # photo's own aspect puts each cell where it came from.
        heat = Image.fromarray(cam, mode="F").resize(photo.size, Image.Resampling.BILINEAR)
        weight = np.clip(np.asarray(heat, np.float32), 0, 1)[..., None]
        colour = np.stack(
            [np.interp(weight[..., 0], _RAMP_AT, _RAMP_RGB[:, c]) for c in range(3)], axis=-1
        )
        pixels = np.asarray(photo, np.float32)
        blend = pixels * (1 - ALPHA * weight) + colour * (ALPHA * weight)
        out = io.BytesIO()
        Image.fromarray(np.clip(blend, 0, 255).astype(np.uint8)).save(out, "PNG")
        return out.getvalue()
