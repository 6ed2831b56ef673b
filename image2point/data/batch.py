"""What the training loop asks of a batch, whichever model family collated it.

Voxel batches (:class:`~image2point.data.collate.ShapeBatch`, :class:`~image2point.data.collate.SceneBatch`),
point sets (:class:`~image2point.data.point_collate.PointBatch`) and range images
(:class:`~image2point.data.range_collate.RangeBatch`) all satisfy :class:`Batch`; a new family's batch
only has to offer the same members.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Batch(Protocol):
    """A collated batch: moved to a device, fed to the network, trained against and scored."""

    @property
    def device(self) -> torch.device:
        """Where the batch's tensors are."""

    def to(self, device: torch.device) -> Batch:
        """The same batch on ``device`` (itself when already there)."""

    def network_inputs(self) -> tuple[Any, ...]:
        """The network's positional arguments (a sparse tensor, point sets, range images, ...)."""

    @property
    def loss_targets(self) -> torch.Tensor:
        """What the logits are trained against (``cross_entropy`` with the ignore index)."""

    def scored(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted and true class of every scored item (shape, or point of the original clouds)."""


# A DataLoader collate function: samples -> one batch.
Collate = Callable[[Sequence[Any]], Batch]
