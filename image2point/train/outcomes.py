"""Per-sample outcomes of an evaluation, the raw material of paired statistics (``outcomes.npz`` beside
``metrics.json``).

Classification: every evaluated shape's id, label and prediction. Segmentation: confusion counts per
resampling unit, as rows (sample, block_x, block_y, target, prediction, count). A unit is a whole scan when
the evaluation has at least :data:`SCAN_UNITS_FROM` scans; with fewer (a fold of leave-one-scan-out holds
one) it is a ``BLOCK_METRES`` square of a scan's ground plane, so that a bootstrap has units to resample.
Points of one block are strongly correlated (one car, one wall); blocks of a scan much less, which is why
blocks and not single points are resampled. Blocks need the voxel batch's coordinates; other segmentation
batches (range images, point sets) record whole scans.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from image2point.checkpoint import atomic_write
from image2point.data.folds import sample_ids_of
from image2point.data.sample import IGNORE_INDEX
from image2point.errors import DataError
from image2point.tasks import Task

OUTCOMES_FILE = "outcomes.npz"
BLOCK_METRES = 10.0
SCAN_UNITS_FROM = 30
CELL_COLUMNS = ("sample", "block_x", "block_y", "target", "prediction", "count")
SAMPLE, BLOCK_X, BLOCK_Y, TARGET, PREDICTION, COUNT = range(len(CELL_COLUMNS))


@dataclass(frozen=True, eq=False)
class ClassificationOutcomes:
    """One row per evaluated shape."""

    sample_ids: tuple[str, ...]
    labels: np.ndarray
    predictions: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        return self.labels == self.predictions


@dataclass(frozen=True, eq=False)
class SegmentationOutcomes:
    """Confusion counts per (sample, block) unit: ``cells`` int64 [M, 6] in :data:`CELL_COLUMNS` order."""

    sample_ids: tuple[str, ...]
    num_classes: int
    cells: np.ndarray
    # None: every unit is a whole scan (block 0, 0).
    block_metres: float | None

    def unit_keys(self) -> list[tuple[str, int, int]]:
        """(sample id, block x, block y) of every cell row."""
        return [(self.sample_ids[row[SAMPLE]], int(row[BLOCK_X]), int(row[BLOCK_Y])) for row in self.cells]


Outcomes = ClassificationOutcomes | SegmentationOutcomes


class OutcomeRecorder:
    """Collects the outcomes of one pass over an unshuffled, single-process evaluation loader."""

    def __init__(self, task: Task, num_classes: int, voxel_size: float, num_samples: int) -> None:
        self.task, self.num_classes, self.voxel_size = Task(task), num_classes, voxel_size
        self.blocks = num_samples < SCAN_UNITS_FROM
        self.seen = 0
        self.available = True
        self.used_blocks = False
        self.parts: list[np.ndarray] = []

    def update(self, batch: object, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        if not self.available:
            return
        predictions, targets = predictions.detach().cpu(), targets.detach().cpu()
        if self.task == Task.CLASSIFICATION:
            self.parts.append(np.stack([targets.numpy(), predictions.numpy()], axis=1).astype(np.int64))
            self.seen += len(targets)
            return
        located = self._locate(batch, predictions)
        if located is None:
            self.available = False
            return
        sample, block_x, block_y, batch_size = located
        rows = np.stack([sample + self.seen, block_x, block_y, targets.reshape(-1).numpy(),
                         predictions.reshape(-1).numpy()], axis=1).astype(np.int64)
        rows = rows[rows[:, TARGET] != IGNORE_INDEX]
        unique, counts = np.unique(rows, axis=0, return_counts=True)
        self.parts.append(np.concatenate([unique, counts[:, None]], axis=1))
        self.seen += batch_size

    def _locate(self, batch: object, predictions: torch.Tensor):
        """Per scored point: its sample within the batch and its block; None when the batch cannot say."""
        voxels = getattr(batch, "voxels", None)
        if voxels is not None:
            coords = voxels.tensor.coords.cpu()[voxels.point_to_site.cpu()].numpy()
            block = np.floor(coords[:, 1:3] * self.voxel_size / BLOCK_METRES).astype(np.int64)
            if not self.blocks:
                block = np.zeros_like(block)
            self.used_blocks = self.blocks
            return coords[:, 0], block[:, 0], block[:, 1], voxels.batch_size
        if predictions.dim() == 2:  # point sets: [B, N]
            sample = np.repeat(np.arange(predictions.shape[0]), predictions.shape[1])
        else:
            projections = getattr(batch, "projections", None)
            if projections is None:
                return None
            sample = np.repeat(np.arange(len(projections)), [projection.num_points for projection in projections])
        zeros = np.zeros_like(sample)
        return sample, zeros, zeros, int(sample.max(initial=-1)) + 1

    def outcomes(self, sample_ids: tuple[str, ...]) -> Outcomes | None:
        """What was recorded, named by ``sample_ids`` (the evaluation set's, in loader order)."""
        if not self.available or self.seen != len(sample_ids):
            return None
        if self.task == Task.CLASSIFICATION:
            rows = np.concatenate(self.parts) if self.parts else np.zeros((0, 2), dtype=np.int64)
            return ClassificationOutcomes(sample_ids, rows[:, 0], rows[:, 1])
        cells = np.concatenate(self.parts) if self.parts else np.zeros((0, len(CELL_COLUMNS)), dtype=np.int64)
        return SegmentationOutcomes(sample_ids, self.num_classes, cells, BLOCK_METRES if self.used_blocks else None)


def write_outcomes(directory: Path, recorder: OutcomeRecorder | None, eval_set: Dataset) -> None:
    """The recorder's outcomes as ``directory/outcomes.npz``; nothing when it could not record them."""
    outcomes = None if recorder is None else recorder.outcomes(sample_ids_of(eval_set))
    if outcomes is not None:
        save_outcomes(directory / OUTCOMES_FILE, outcomes)


def save_outcomes(path: Path, outcomes: Outcomes) -> None:
    """``outcomes`` as a compressed npz at ``path``, written atomically."""
    arrays: dict[str, np.ndarray] = {"sample_ids": np.asarray(outcomes.sample_ids, dtype=str)}
    if isinstance(outcomes, ClassificationOutcomes):
        arrays.update(task=np.asarray(Task.CLASSIFICATION.value), labels=outcomes.labels,
                      predictions=outcomes.predictions)
    else:
        arrays.update(task=np.asarray(Task.SEGMENTATION.value), num_classes=np.asarray(outcomes.num_classes),
                      cells=outcomes.cells, block_metres=np.asarray(outcomes.block_metres or 0.0))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    with atomic_write(path, "wb") as stream:
        stream.write(buffer.getvalue())


def read_outcomes(path: Path) -> Outcomes:
    """The outcomes written by :func:`write_outcomes`; DataError naming the file when it is not one."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read outcomes: {error}", path) from None
    try:
        sample_ids = tuple(str(name) for name in arrays["sample_ids"])
        task = Task(str(arrays["task"]))
        if task == Task.CLASSIFICATION:
            labels, predictions = arrays["labels"].astype(np.int64), arrays["predictions"].astype(np.int64)
            if labels.shape != (len(sample_ids),) or predictions.shape != labels.shape:
                raise DataError("labels and predictions must have one entry per sample", path)
            return ClassificationOutcomes(sample_ids, labels, predictions)
        cells = arrays["cells"].astype(np.int64)
        if cells.ndim != 2 or cells.shape[1] != len(CELL_COLUMNS):
            raise DataError(f"cells must be [M, {len(CELL_COLUMNS)}]", path)
        block_metres = float(arrays["block_metres"])
        return SegmentationOutcomes(sample_ids, int(arrays["num_classes"]), cells, block_metres or None)
    except KeyError as error:
        raise DataError(f"outcomes lack the array {error}", path) from None
