"""Classification output layers (paper Appendix 6.4): a global average pool, then fully connected layers.

- ``mlp`` (Listing 3): ``Linear(C, hidden)``, ``BatchNorm1d(hidden)``, ReLU, ``Linear(hidden, classes)``
  with ``hidden = 1024`` in the listing (``model.head_hidden``).
- ``linear`` (Listings 1 and 5): ``Linear(C, classes)``, ``BatchNorm1d(classes)`` (also the authors'
  ``classifier`` in core/models/collection/spvcnn18_cls.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from image2point.sparse import functional as SF
from image2point.sparse.tensor import SparseTensor

# Listing 3's hidden width.
HEAD_HIDDEN_CHANNELS = 1024

ClassifierFactory = Callable[[int, int, int], nn.Sequential]
# ``model.head`` of a classification network → ``fn(in_channels, num_classes, hidden_channels)``.
CLASSIFICATION_HEADS: dict[str, ClassifierFactory] = {}


def register_classification_head(name: str):
    """Decorator: ``model.head=name`` of a classification network builds its classifier with ``fn``."""

    def decorator(fn: ClassifierFactory) -> ClassifierFactory:
        CLASSIFICATION_HEADS[name] = fn
        return fn

    return decorator


@register_classification_head("mlp")
def mlp_classifier(in_channels: int, num_classes: int, hidden_channels: int) -> nn.Sequential:
    # No bias on the first FC: the BatchNorm right after it subtracts any constant (the listing's
    # default bias would get zero gradient).
    return nn.Sequential(
        nn.Linear(in_channels, hidden_channels, bias=False),
        nn.BatchNorm1d(hidden_channels),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_channels, num_classes),
    )


@register_classification_head("linear")
def linear_classifier(in_channels: int, num_classes: int, hidden_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_channels, num_classes), nn.BatchNorm1d(num_classes))


class ClassificationHead(nn.Module):
    """Global average pool, then the classifier registered as ``kind``."""

    def __init__(self, in_channels: int, num_classes: int, kind: str = "mlp",
                 hidden_channels: int = HEAD_HIDDEN_CHANNELS):
        super().__init__()
        if kind not in CLASSIFICATION_HEADS:
            raise ValueError(f"unknown classification head {kind!r}; choose one of {sorted(CLASSIFICATION_HEADS)}")
        if hidden_channels < 1:
            raise ValueError(f"hidden_channels must be at least 1, got {hidden_channels}")
        self.classifier = CLASSIFICATION_HEADS[kind](in_channels, num_classes, hidden_channels)
        self.kind = kind

    def forward(self, x: SparseTensor) -> torch.Tensor:
        return self.classifier(SF.global_avg_pool(x))
