"""Scoring an ImageNet-1k classifier on Tiny-ImageNet's validation images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from image2point.models2d.imagenet_classes import IMAGENET1K_NUM_CLASSES, TINY_IMAGENET_TO_IMAGENET1K
from image2point.pretrain2d.imagenet_check import (
    imagenet_labels,
    load_tiny_imagenet_val,
    score_imagenet_classifier,
    score_on_tiny_imagenet,
)
from image2point.pretrain2d.image_folders import TinyImageNet

TINY_IMAGENET = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tiny-imagenet-200"


def test_the_200_indices_are_distinct_imagenet_classes():
    indices = list(TINY_IMAGENET_TO_IMAGENET1K.values())
    assert len(indices) == 200 == len(set(indices))
    assert all(0 <= i < IMAGENET1K_NUM_CLASSES for i in indices)
    # Sorted wnids have sorted indices (the ImageNet-1k order is the sorted wnid order).
    by_wnid = [TINY_IMAGENET_TO_IMAGENET1K[w] for w in sorted(TINY_IMAGENET_TO_IMAGENET1K)]
    assert by_wnid == sorted(by_wnid)
    # Well-known positions: goldfish, Egyptian cat, orange.
    assert TINY_IMAGENET_TO_IMAGENET1K["n01443537"] == 1
    assert TINY_IMAGENET_TO_IMAGENET1K["n02124075"] == 285
    assert TINY_IMAGENET_TO_IMAGENET1K["n07747607"] == 950


class _Oracle(nn.Module):
    """Outputs one-hot logits of given classes, one row per call position."""

    def __init__(self, classes: torch.Tensor):
        super().__init__()
        self.classes = classes
        self.position = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.classes[self.position:self.position + len(x)]
        self.position += len(x)
        return nn.functional.one_hot(rows, IMAGENET1K_NUM_CLASSES).float() * 10


def test_scores_count_hits_over_1000_and_over_200_classes():
    images = torch.zeros(4, 3, 8, 8)
    targets = torch.tensor([1, 285, 950, 1])
    # Right, right, a class outside the 200 (among the 200 the all-zero arg-max falls on goldfish), wrong.
    predictions = torch.tensor([1, 285, 0, 950])
    score = score_imagenet_classifier(_Oracle(predictions), images, targets, batch_size=3)
    assert score.num_images == 4 and score.num_correct == 2 and score.top1 == 50.0
    assert score.num_correct_among_200 == 2
    assert score.image_size == 8 and score.mean_nll > 0
    with pytest.raises(ValueError, match="1000 ImageNet classes"):
        score_imagenet_classifier(nn.Flatten(), images, targets)


def test_labels_of_real_validation_images():
    if not (TINY_IMAGENET / "wnids.txt").is_file():
        pytest.skip(f"Tiny-ImageNet {TINY_IMAGENET} is not available")
    dataset = TinyImageNet(TINY_IMAGENET, "val")
    labels = imagenet_labels(dataset)
    assert labels.shape == (len(dataset),)
    # val_0.JPEG is annotated n03444034 (go-kart), ImageNet-1k class 573.
    assert dataset.files[0].name == "val_0.JPEG" and int(labels[0]) == 573
    images, targets = load_tiny_imagenet_val(TINY_IMAGENET, 3, image_size=32)
    assert images.shape == (3, 3, 32, 32) and torch.equal(targets, labels[:3])
    with pytest.raises(ValueError, match="num_images"):
        load_tiny_imagenet_val(TINY_IMAGENET, 0)
    score = score_on_tiny_imagenet(_Oracle(labels[:5]), TINY_IMAGENET, num_images=5, image_size=16, batch_size=2)
    assert score.num_correct == 5 and score.num_correct_among_200 == 5 and score.image_size == 16
