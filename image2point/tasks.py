"""What a network is trained to say about a cloud, and the label that means "no class".

Every floor may import this module: it imports nothing from image2point.
"""

from __future__ import annotations

import enum


class Task(str, enum.Enum):
    """Classification: one class per cloud (a shape). Segmentation: one class per point (a scene).

    A ``str`` whose text is its value, so logs, metrics.json and exports spell a task as before
    ("classification"); not ``enum.StrEnum``, which needs Python 3.11 where the package allows 3.10.
    """

    CLASSIFICATION = "classification"
    SEGMENTATION = "segmentation"

    def __str__(self) -> str:
        return self.value


IGNORE_INDEX = -100
"""Label of points that carry no class; losses and metrics skip them (PyTorch's default ignore_index)."""
