"""Helpers for the inference tests: the torchvision reference pipeline the service must
match, and state dicts (a calibrated one whose outputs are clearly non-uniform and sensitive
to the input; seeded ones with a scaled head for the registry)."""

from __future__ import annotations

import functools
import io

import numpy as np
import torch
from torch import Tensor
from torchvision import transforms

from app.inference.network import load_network, seeded_state_dict
from app.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD, to_model_input
from tests.support.images import synthetic_photo

# The reference pipeline the service must match: torchvision's resize (bilinear, no
# crop), ToTensor and ImageNet normalisation.
REFERENCE = transforms.Compose(
    [
        transforms.Resize((224, 224)),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]
)


@functools.cache
def _calibrated(seed: int, num_classes: int) -> dict[str, Tensor]:
    # A random ResNet's logits are dominated by an input-independent offset (near-constant
    # probabilities). Centre the last layer on synthetic photos and scale it so the logits
    # spread by ~2: probabilities then move a lot with the input, making parity meaningful.
    state = seeded_state_dict(num_classes, seed)
    network = load_network(state, num_classes)
    calibration = torch.from_numpy(
        np.stack(
            [
                to_model_input(synthetic_photo(256, 256, 100 + i), 224, IMAGENET_MEAN, IMAGENET_STD)
                for i in range(8)
            ]
        )
    )
    hidden: list[Tensor] = []
    hook = network.base.fc[3].register_forward_hook(lambda _m, inputs, _o: hidden.append(inputs[0]))
    with torch.inference_mode():
        network(calibration)
    hook.remove()
    h = hidden[0].double()
    weight = state["base.fc.3.weight"].double()
    gain = 2.0 / ((h - h.mean(0)) @ weight.T).std().item()
    state["base.fc.3.weight"] = (gain * weight).float()
    state["base.fc.3.bias"] = (-gain * weight @ h.mean(0)).float()
    return state


def sensitive_state_dict(seed: int = 2, num_classes: int = 4) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in _calibrated(seed, num_classes).items()}


def state_dict_file_bytes(state: dict[str, Tensor]) -> bytes:
    out = io.BytesIO()
    torch.save(state, out)
    return out.getvalue()


def weights_bytes(seed: int, num_classes: int = 4, scale_head: float = 1.0) -> bytes:
    """A seeded state dict (its last layer scaled by `scale_head`) as a .pth file's bytes:
    each seed is another model version for the registry."""
    state = seeded_state_dict(num_classes, seed)
    if scale_head != 1.0:
        for name in ("base.fc.3.weight", "base.fc.3.bias"):
            state[name] = state[name] * scale_head
    return state_dict_file_bytes(state)
