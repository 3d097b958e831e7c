"""The ResNet18 classifier, laid out so the earlier back-end's `.pth` files load strictly."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torchvision.models import resnet18

FEATURES = 512  # resnet18's pooled feature width
HIDDEN = 128


class EyeDiseaseClassifier(nn.Module):
    """`base` is torchvision's resnet18 with a two-layer head; state-dict keys are
    `base.conv1.weight` ... `base.fc.3.bias`. `forward` returns logits (no softmax)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.base = resnet18(weights=None)  # never download: weights come from a state dict
        self.base.fc = nn.Sequential(
            nn.Linear(FEATURES, HIDDEN),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(HIDDEN, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.base(x)
        return logits


def load_network(state_dict: Mapping[str, Tensor], num_classes: int) -> EyeDiseaseClassifier:
    """A network in eval mode holding exactly `state_dict` (strict: no missing or extra keys)."""
    network = EyeDiseaseClassifier(num_classes)
    network.load_state_dict(state_dict, strict=True)
    return network.eval()


def seeded_state_dict(num_classes: int, seed: int) -> dict[str, Tensor]:
    """Deterministic untrained weights (demo mode and tests); the global RNG is left as is."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return EyeDiseaseClassifier(num_classes).state_dict()
