"""Check an ImageNet-1k classifier on real images: Tiny-ImageNet's validation set.

Tiny-ImageNet's 200 classes are ImageNet-1k classes, so a model that outputs the 1000 ImageNet logits
can be scored on its validation images without any training: the image's class is the wnid's position
in the sorted ImageNet-1k list (:data:`image2point.models2d.imagenet_classes.TINY_IMAGENET_TO_IMAGENET1K`),
and a prediction counts when the arg-max over all 1000 logits hits it (chance: 0.1 %). The 64x64 images
are upsampled bilinearly to the model's input size and normalised with the ImageNet mean and std.
Upsampled 64x64 images cost much accuracy (the MobileNetV1 x0.25 checkpoint, 46.75 % on ImageNet,
scores 12-15 % here), so the number is far below, not a copy of, the model's ImageNet top-1; it tells
a correctly loaded checkpoint from a broken one (chance level).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from image2point.errors import DataError
from image2point.models2d.imagenet_classes import IMAGENET1K_NUM_CLASSES, TINY_IMAGENET_TO_IMAGENET1K
from image2point.pretrain2d.image_folders import TinyImageNet

DEFAULT_NUM_IMAGES = 400
DEFAULT_BATCH_SIZE = 100


@dataclass(frozen=True)
class ImageNetSubsetScore:
    """Top-1 of an ImageNet-1k classifier on the first ``num_images`` Tiny-ImageNet validation images."""

    num_images: int
    num_correct: int
    num_correct_among_200: int
    mean_nll: float
    image_size: int

    @property
    def top1(self) -> float:
        """Top-1 accuracy in percent, arg-max over all 1000 classes (chance 0.1 %)."""
        return 100.0 * self.num_correct / self.num_images

    @property
    def top1_among_200(self) -> float:
        """Top-1 in percent when the arg-max is taken over Tiny-ImageNet's 200 classes only (chance 0.5 %)."""
        return 100.0 * self.num_correct_among_200 / self.num_images


def imagenet_labels(dataset: TinyImageNet) -> torch.Tensor:
    """ImageNet-1k class index of every item of ``dataset`` (int64 ``[N]``)."""
    unknown = [wnid for wnid in dataset.wnids if wnid not in TINY_IMAGENET_TO_IMAGENET1K]
    if unknown:
        raise DataError(f"wnids that are not ImageNet-1k classes: {', '.join(unknown[:5])}", dataset.root)
    by_label = torch.tensor([TINY_IMAGENET_TO_IMAGENET1K[wnid] for wnid in dataset.wnids])
    return by_label[dataset.labels]


def load_tiny_imagenet_val(
    root: str | Path, num_images: int = DEFAULT_NUM_IMAGES, image_size: int = 224
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``num_images`` validation images of the Tiny-ImageNet tree at ``root``, resized to
    ``image_size`` and normalised (float32 ``[N, 3, S, S]``), and their ImageNet-1k classes (``[N]``)."""
    dataset = TinyImageNet(root, "val", image_size=image_size)
    if not 0 < num_images <= len(dataset):
        raise ValueError(f"num_images must be in 1..{len(dataset)}, got {num_images}")
    images = torch.stack([dataset[index][0] for index in range(num_images)])
    return images, imagenet_labels(dataset)[:num_images]


def score_imagenet_classifier(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, batch_size: int = DEFAULT_BATCH_SIZE
) -> ImageNetSubsetScore:
    """Score ``model`` (1000 ImageNet logits, run in eval mode) on ``images`` of ImageNet-1k classes
    ``targets``."""
    logits = _logits(model, images.split(batch_size))
    return score_logits(logits, targets, int(images.shape[-1]))


def score_on_tiny_imagenet(
    model: nn.Module,
    root: str | Path,
    num_images: int = DEFAULT_NUM_IMAGES,
    image_size: int = 224,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ImageNetSubsetScore:
    """Score ``model`` on the first ``num_images`` Tiny-ImageNet validation images under ``root``,
    upsampled to ``image_size``; images are decoded one batch at a time, so all 10,000 fit in memory."""
    dataset = TinyImageNet(root, "val", image_size=image_size)
    if not 0 < num_images <= len(dataset):
        raise ValueError(f"num_images must be in 1..{len(dataset)}, got {num_images}")
    batches = (
        torch.stack([dataset[index][0] for index in range(start, min(start + batch_size, num_images))])
        for start in range(0, num_images, batch_size)
    )
    logits = _logits(model, batches)
    return score_logits(logits, imagenet_labels(dataset)[:num_images], image_size)


@torch.no_grad()
def _logits(model: nn.Module, batches: Iterable[torch.Tensor]) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        logits = torch.cat([model(batch) for batch in batches])
    finally:
        model.train(was_training)
    if logits.shape[-1] != IMAGENET1K_NUM_CLASSES:
        raise ValueError(f"model gives {logits.shape[-1]} logits, not the 1000 ImageNet classes")
    return logits


def score_logits(logits: torch.Tensor, targets: torch.Tensor, image_size: int) -> ImageNetSubsetScore:
    """Top-1 over all 1000 classes and over the 200 Tiny-ImageNet ones, and the mean negative
    log-likelihood of the true class under the softmax over all 1000 logits: a continuous score that
    separates two variants of a model with fewer images than top-1 needs."""
    subset = torch.tensor(sorted(TINY_IMAGENET_TO_IMAGENET1K.values()))
    among_200 = subset[logits[:, subset].argmax(dim=1)]
    return ImageNetSubsetScore(
        num_images=len(targets),
        num_correct=int((logits.argmax(dim=1) == targets).sum()),
        num_correct_among_200=int((among_200 == targets).sum()),
        mean_nll=float(F.cross_entropy(logits, targets)),
        image_size=image_size,
    )
