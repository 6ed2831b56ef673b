"""What a network is trained to say about a cloud.

Every floor may import this module: it imports nothing from image2point.
"""

from __future__ import annotations

import enum


class Task(str, enum.Enum):
    """Classification: one class per cloud (a shape). Segmentation: one class per point (a scene).

    A ``str`` whose text is its value, so logs, metrics.json and exports spell a task as before
    ("classification").
    """

    CLASSIFICATION = "classification"
    SEGMENTATION = "segmentation"

    def __str__(self) -> str:
        return self.value

