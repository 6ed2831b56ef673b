"""Classification and segmentation metrics from a confusion matrix.

Rows of the matrix are target classes and columns predicted classes. Averages follow the usual
point-cloud conventions: mean class accuracy and mIoU average over the classes that occur in the
targets, so a class missing from a (sub)set does not count as a zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from image2point.train.distributed import all_reduce_sum

PERCENT = 100.0


@dataclass(frozen=True)
class Metrics:
    overall_accuracy: float
    # NaN where a value is undefined (no targets at all, or a class absent from targets and predictions).
    mean_class_accuracy: float
    miou: float
    class_accuracy: tuple[float, ...]
    class_iou: tuple[float, ...]
    class_names: tuple[str, ...]
    # [num_classes, num_classes] int64 counts, rows = target, columns = prediction.
    confusion: torch.Tensor = field(repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values; undefined (NaN) entries become None."""
        return {
            "overall_accuracy": _finite_or_none(self.overall_accuracy),
            "mean_class_accuracy": _finite_or_none(self.mean_class_accuracy),
            "miou": _finite_or_none(self.miou),
            "class_accuracy": {
                name: _finite_or_none(value) for name, value in zip(self.class_names, self.class_accuracy, strict=True)
            },
            "class_iou": {
                name: _finite_or_none(value) for name, value in zip(self.class_names, self.class_iou, strict=True)
            },
            "confusion": self.confusion.tolist(),
        }

    def iou_table(self) -> str:
        """A Markdown table of per-class IoU and accuracy in percent, with the means as the last row."""
        lines = ["| class | IoU (%) | accuracy (%) |", "|---|---:|---:|"]
        for name, iou, accuracy in zip(self.class_names, self.class_iou, self.class_accuracy, strict=True):
            lines.append(f"| {name} | {_percent(iou)} | {_percent(accuracy)} |")
        lines.append(f"| **mean** | {_percent(self.miou)} | {_percent(self.mean_class_accuracy)} |")
        return "\n".join(lines)


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value * PERCENT:.2f}"


class ConfusionMatrix:
    """Accumulates predictions over batches (and processes) and turns them into :class:`Metrics`."""

    def __init__(self, num_classes: int, ignore_index: int = -100, class_names: Sequence[str] | None = None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names given for {num_classes} classes")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = tuple(class_names) if class_names is not None else tuple(str(c) for c in range(num_classes))
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.matrix.zero_()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Count one batch of integer class predictions against targets of the same shape."""
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
        for name, tensor in (("pred", pred), ("target", target)):
            if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
                raise ValueError(f"{name} must hold integer class indices, got dtype {tensor.dtype}")
        pred = pred.reshape(-1).long()
        target = target.reshape(-1).long()
        kept = target != self.ignore_index
        pred, target = pred[kept], target[kept]
        self._check_range("target", target)
        self._check_range("pred", pred)
        if self.matrix.device != target.device:
            # Count where the predictions live (no per-batch copies); compute() brings the result back.
            self.matrix = self.matrix.to(target.device)
        flat_index = target * self.num_classes + pred
        counts = torch.bincount(flat_index, minlength=self.num_classes * self.num_classes)
        self.matrix += counts.reshape(self.num_classes, self.num_classes)

    def _check_range(self, name: str, values: torch.Tensor) -> None:
        outside = (values < 0) | (values >= self.num_classes)
        if bool(outside.any()):
            bad_value = int(values[outside][0])
            raise ValueError(
                f"{name} value {bad_value} is outside [0, {self.num_classes}) "
                f"and is not ignore_index ({self.ignore_index})"
            )

    def all_reduce(self) -> None:
        """Sum the counts of every process into each process's matrix (no-op without a process group)."""
        all_reduce_sum(self.matrix)

    def compute(self) -> Metrics:
        confusion = self.matrix.detach().cpu().clone()
        counts = confusion.double()
        true_positives = counts.diagonal()
        target_totals = counts.sum(dim=1)
        pred_totals = counts.sum(dim=0)
        union = target_totals + pred_totals - true_positives
        total = float(target_totals.sum())
        nan = torch.full_like(true_positives, math.nan)
        present = target_totals > 0
        class_accuracy = torch.where(present, true_positives / target_totals.clamp(min=1), nan)
        class_iou = torch.where(union > 0, true_positives / union.clamp(min=1), nan)
        return Metrics(
            overall_accuracy=float(true_positives.sum()) / total if total > 0 else math.nan,
            mean_class_accuracy=_mean_or_nan(class_accuracy[present]),
            miou=_mean_or_nan(class_iou[present]),
            class_accuracy=tuple(class_accuracy.tolist()),
            class_iou=tuple(class_iou.tolist()),
            class_names=self.class_names,
            confusion=confusion,
        )


def _mean_or_nan(values: torch.Tensor) -> float:
    return float(values.mean()) if values.numel() > 0 else math.nan
