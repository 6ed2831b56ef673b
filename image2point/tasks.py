"""What a network is trained to say about a cloud, and the label that means "no class".

Every floor may import this module: it imports nothing from image2point.
"""

from __future__ import annotations

import enum


class Task(enum.StrEnum):
    """Classification: one class per cloud (a shape). Segmentation: one class per point (a scene).

    A ``StrEnum``, so configs, logs and metrics.json spell a task as before ("classification").
    """

    CLASSIFICATION = "classification"
    SEGMENTATION = "segmentation"


IGNORE_INDEX = -100
"""Label of points that carry no class; losses and metrics skip them (PyTorch's default ignore_index)."""
