"""The classes a model names and the ground truth it is scored against.

:func:`label_scheme` asks the model's dataset (its registry entry) for class names, colours and, for
SemanticKITTI, its raw-id tables; :func:`ground_truth` reads a labels file (or a cloud's ``labels``
field) once and maps it to class indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from image2point.data.registry import LabelScheme, dataset_entry
from image2point.errors import DataError
from image2point.io import PointCloud, read_labels
from image2point.io.kitti import SEMANTIC_MASK, UNMAPPED
from image2point.io.readers import LABEL_FIELD
from image2point.tasks import IGNORE_INDEX, Task
from image2point.train.config import DataConfig


def label_scheme(data: DataConfig, class_names: Sequence[str] | None = None,
                 original_ids: Sequence[int] | None = None) -> LabelScheme:
    """Class names, palette and (SemanticKITTI) id tables of a model trained on ``data``.

    The dataset's own files under ``data.root`` are used when present (ModelNet40's shape names,
    SemanticKITTI's semantic-kitti.yaml), else its official lists; ``class_names`` and
    ``original_ids`` (stored with a model) override them.
    """
    root = Path(data.root) if data.root is not None else None
    return dataset_entry(data.name).labels(root).scheme(class_names, original_ids)


def label_classes(raw: np.ndarray, scheme: LabelScheme | None, source: str | Path) -> np.ndarray:
    """int64 class indices of labels read from a file, IGNORE_INDEX for "no class".

    uint32 labels (SemanticKITTI ``.label`` files) under a scheme with raw ids are raw values: their
    lower 16 bits go through learning_map. Other labels are class indices; negative ones mean no class.
    """
    raw = np.asarray(raw)
    whole = raw.dtype.kind in "iu" or (raw.dtype.kind == "f" and bool(np.all(raw == np.round(raw))))
    if raw.ndim != 1 or not whole:
        raise DataError(f"labels must be one integer per point, got {raw.dtype} of shape {raw.shape}", source)
    if raw.dtype == np.uint32 and scheme is not None and scheme.raw_lookup is not None:
        classes = scheme.raw_lookup[raw.astype(np.int64) & SEMANTIC_MASK]
        unmapped = classes == UNMAPPED
        if unmapped.any():
            unknown = sorted(set((raw[unmapped].astype(np.int64) & SEMANTIC_MASK).tolist()))
            raise DataError(f"label ids {unknown} are not in this model's SemanticKITTI learning_map", source)
        return classes
    classes = raw.astype(np.int64)
    classes[classes < 0] = IGNORE_INDEX
    return classes


def ground_truth(scheme: LabelScheme, task: Task, cloud: PointCloud, labels_path: Path | None) -> np.ndarray | None:
    """int64 [N] class per point (IGNORE_INDEX where none) from ``labels_path`` or the cloud's labels field;
    None without either. A shape's labels must name one class."""
    if labels_path is not None:
        raw = read_labels(labels_path)
        if len(raw) != cloud.num_points:
            raise DataError(f"label count mismatch: {len(raw)} labels for the {cloud.num_points} points of "
                            f"{cloud.source}", labels_path)
        where: str | Path = labels_path
    elif LABEL_FIELD in cloud.fields:
        raw, where = cloud.fields[LABEL_FIELD], cloud.source
    else:
        return None
    classes = label_classes(raw, scheme, where)
    too_large = classes >= scheme.num_classes
    if too_large.any():
        raise DataError(f"label {int(classes[too_large][0])} is not a class of this model (0.."
                        f"{scheme.num_classes - 1})", where)
    if task is Task.CLASSIFICATION:
        distinct = np.unique(classes[classes != IGNORE_INDEX])
        if len(distinct) > 1:
            raise DataError(f"a shape has one class, but its labels hold {len(distinct)} different ones", where)
    return classes
