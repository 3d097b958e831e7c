"""Fine-tuning (blocking torch work: the worker runs it in a thread of its own process).

- The network starts from the parent's weights; the recipe's `trainable_layers` train,
  the rest is frozen (batch-norm statistics included: frozen modules stay in eval mode).
- Each epoch draws its batches with a sampler (class-balanced: each class equally likely,
  with replacement; or a plain permutation), augments each training image with
  torchvision transforms v2 (flip, affine, colour jitter), and steps AdamW with a cosine
  learning rate from the recipe's max down to its min over all steps.
- After each epoch: the loss on the validation split decides early stopping (the best
  epoch's weights are kept), and a checkpoint (weights, optimizer, best weights, counters)
  is handed to `hooks.checkpoint`.
- Every epoch's randomness (sampler, augmentation, dropout) comes from a generator of
  its own seeded from (job seed, epoch), never torch's global one (another thread of the
  process may draw from that), so a job resumed from the checkpoint of epoch k computes
  epochs k+1.. exactly as an uninterrupted run does: the same weights, the same version.
- Before each batch `hooks.should_stop()` is asked (a cancel, a lost job, a shutdown):
  a cancel takes effect within one batch.

The test split never reaches this module; validation decides early stopping and the
calibration split only the temperature and the referral thresholds (calibration.py).
Augmentation and the network's logits on a split are in examples.py, the checkpoint's
contents in checkpoints.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from app.inference.network import EyeDiseaseClassifier
from app.schemas.recipes import LAYERS, Recipe
from app.training.calibration import cross_entropy
from app.training.checkpoints import CHECKPOINT_FORMAT, checkpoint_bytes, cpu_state
from app.training.examples import Augmenter, Examples, logits_of


class Stopped(Exception):
    """The job must stop before its next batch; `reason`: cancelled, lost or interrupted."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Progress:
    phase: str = "loading"
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    batches_done: int = 0
    loss: float | None = None
    val_loss: float | None = None
    images_per_s: float | None = None
    eta_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "epoch": self.epoch,
            "epochs": self.epochs,
            "step": self.step,
            "steps": self.steps,
            "batches_done": self.batches_done,
            "loss": _round(self.loss),
            "val_loss": _round(self.val_loss),
            "images_per_s": _round(self.images_per_s, 2),
            "eta_s": _round(self.eta_s, 1),
        }


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


class Hooks(Protocol):
    def should_stop(self) -> str | None:
        """A reason to stop before the next batch, or None."""
        ...

    def progress(self, progress: Progress) -> None: ...

    def checkpoint(self, epoch: int, data: bytes) -> None: ...


@dataclass
class Outcome:
    state_dict: dict[str, Tensor]
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------- pieces


def epoch_seed(seed: int, epoch: int) -> int:
    digest = hashlib.sha256(f"{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def freeze(network: EyeDiseaseClassifier, layers: Sequence[str]) -> list[nn.Parameter]:
    """requires_grad only for the recipe's layers; the trainable parameters."""
    names = set(LAYERS) if "all" in layers else set(layers)
    for layer in LAYERS:
        module = getattr(network.base, layer)
        for parameter in module.parameters():
            parameter.requires_grad_(layer in names)
    return [p for p in network.parameters() if p.requires_grad]


def _frozen_modules(network: EyeDiseaseClassifier, layers: Sequence[str]) -> list[nn.Module]:
    if "all" in layers:
        return []
    return [getattr(network.base, layer) for layer in LAYERS if layer not in layers]


# --------------------------------------------------------------------------- training


def _learning_rate(recipe: Recipe, step: int, total: int) -> float:
    lr = recipe.learning_rate
    return lr.min + 0.5 * (lr.max - lr.min) * (1 + math.cos(math.pi * step / max(1, total)))


class _SeededDropout(nn.Module):
    """nn.Dropout with its mask drawn from the epoch's generator (on the CPU, so the same
    masks on a GPU), not from torch's global one."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.generator = torch.Generator()

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, generator=self.generator) >= self.p
        return x * keep.to(x.device, x.dtype) / (1 - self.p)


@contextlib.contextmanager
def _seeded_dropouts(network: nn.Module) -> Iterator[list[_SeededDropout]]:
    """Each nn.Dropout of `network` swapped for a _SeededDropout while training (the
    state dict is unchanged: dropout holds no weights); put back afterwards."""
    swapped: list[tuple[nn.Module, str, nn.Dropout, _SeededDropout]] = []
    for parent in list(network.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Dropout):
                seeded = _SeededDropout(child.p)
                setattr(parent, name, seeded)
                swapped.append((parent, name, child, seeded))
    try:
        yield [seeded for *_, seeded in swapped]
    finally:
        for parent, name, original, _ in swapped:
            setattr(parent, name, original)


def _order(labels: npt.NDArray[np.int64], balanced: bool, generator: torch.Generator) -> Tensor:
    n = len(labels)
    if not balanced:
        return torch.randperm(n, generator=generator)
    counts = Counter(labels.tolist())
    weights = torch.tensor([1.0 / counts[int(y)] for y in labels], dtype=torch.float64)
    return torch.multinomial(weights, n, replacement=True, generator=generator)


def train(
    network: EyeDiseaseClassifier,
    recipe: Recipe,
    train_set: Examples,
    validation: Examples,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    seed: int,
    hooks: Hooks,
    device: torch.device,
    resume: dict[str, Any] | None = None,
) -> Outcome:
    if len(train_set) == 0:
        raise ValueError("there are no training images")
    if device.type == "cuda":  # the same batches give the same weights on a GPU too
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    network.to(device)
    parameters = freeze(network, recipe.trainable_layers)
    frozen = _frozen_modules(network, recipe.trainable_layers)
    optimizer = torch.optim.AdamW(
        parameters, lr=recipe.learning_rate.max, weight_decay=recipe.weight_decay
    )
    augment = Augmenter(recipe.augmentation, mean, std)
    steps = math.ceil(len(train_set) / recipe.batch_size)
    total = recipe.epochs * steps
    labels_t = torch.from_numpy(train_set.labels)
    images_t = torch.from_numpy(np.ascontiguousarray(train_set.images.transpose(0, 3, 1, 2)))
    progress = Progress(phase="training", epochs=recipe.epochs, steps=steps)

    first_epoch = 1
    best_state = cpu_state(network.state_dict())
    best_val = math.inf
    best_epoch = 0
    bad_epochs = 0
    history: list[dict[str, Any]] = []
    if resume is not None:
        if resume.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("the checkpoint has another format")
        network.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        best_state = resume["best_state"]
        best_val = float(resume["best_val"])
        best_epoch = int(resume["best_epoch"])
        bad_epochs = int(resume["bad_epochs"])
        history = list(resume["history"])
        progress.batches_done = int(resume["batches_done"])
        progress.val_loss = history[-1]["val_loss"] if history else None
        first_epoch = int(resume["epoch"]) + 1
        if resume.get("stopped"):  # early stopping had ended the run
            first_epoch = recipe.epochs + 1

    criterion = nn.CrossEntropyLoss()
    window: list[tuple[float, int]] = []  # (seconds, images) of recent batches
    stopped_early = bool(resume and resume.get("stopped"))
    with _seeded_dropouts(network) as dropouts:
        for epoch in range(first_epoch, recipe.epochs + 1):
            generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
            for dropout in dropouts:
                dropout.generator = generator
            order = _order(train_set.labels, recipe.class_balancing == "sampler", generator)
            network.train()
            for module in frozen:
                module.eval()
            progress.epoch, progress.step = epoch, 0
            running = 0.0
            for step in range(steps):
                reason = hooks.should_stop()
                if reason is not None:
                    raise Stopped(reason)
                started = time.perf_counter()
                index = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
                batch = torch.stack([augment(images_t[i], generator) for i in index.tolist()])
                batch = batch.to(device)
                target = labels_t[index].to(device)
                for group in optimizer.param_groups:
                    group["lr"] = _learning_rate(recipe, (epoch - 1) * steps + step, total)
                loss = criterion(network(batch), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                value = float(loss.detach())
                running += value * len(index)
                window = [*window[-19:], (time.perf_counter() - started, len(index))]
                rate = sum(n for _, n in window) / max(1e-9, sum(s for s, _ in window))
                left = (recipe.epochs - epoch) * steps + (steps - step - 1)
                progress.step = step + 1
                progress.batches_done += 1
                progress.loss = value
                progress.images_per_s = rate
                progress.eta_s = left * recipe.batch_size / rate
                hooks.progress(progress)

            val_loss = cross_entropy(
                logits_of(network, validation.images, mean, std, device), validation.labels
            )
            history.append(
                {
                    "epoch": epoch,
                    "loss": _round(running / max(1, len(train_set))),
                    "val_loss": _round(val_loss),
                }
            )
            progress.val_loss = val_loss if math.isfinite(val_loss) else None
            improved = not math.isfinite(val_loss) or val_loss < best_val - (
                recipe.early_stopping.min_delta if recipe.early_stopping else 0.0
            )
            if improved:
                best_val = val_loss if math.isfinite(val_loss) else math.inf
                best_state, best_epoch, bad_epochs = cpu_state(network.state_dict()), epoch, 0
            else:
                bad_epochs += 1
            stopped_early = (
                recipe.early_stopping is not None
                and bad_epochs >= recipe.early_stopping.patience
                and epoch < recipe.epochs
            )
            hooks.checkpoint(
                epoch,
                checkpoint_bytes(
                    network,
                    optimizer,
                    epoch=epoch,
                    best_state=best_state,
                    best_val=best_val,
                    best_epoch=best_epoch,
                    bad_epochs=bad_epochs,
                    history=history,
                    batches_done=progress.batches_done,
                    stopped=stopped_early,
                ),
            )
            hooks.progress(progress)
            if stopped_early:
                break
    return Outcome(
        state_dict=best_state,
        epochs_run=len(history),
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        history=history,
    )
