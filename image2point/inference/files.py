"""Predicting files: discover the inputs, read and check every one of them, then predict and write each.

Every input is read once. It is read, prepared (:mod:`image2point.inference.prepare`) and its ground
truth mapped to classes before anything is written, so a bad input leaves no output behind, not even
for the good inputs before it; the prepared clouds are kept until their turn comes. The outputs of
one input (:mod:`image2point.inference.outputs`) are written together once its prediction succeeded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from image2point.inference.discovery import InputFile, discover_inputs
from image2point.inference.labels import ground_truth
from image2point.inference.model import TrainedModel, load_trained
from image2point.inference.outputs import check_free, output_paths, write_outputs
from image2point.inference.predict import (
    Prediction,
    PredictionSettings,
    ShapePrediction,
    predict_prepared,
)
from image2point.inference.prepare import ModelInput, model_input, named_feature_fields
from image2point.inference.tiling import DEFAULT_CHUNK_POINTS, DEFAULT_OVERLAP_VOXELS
from image2point.io import read_point_cloud
from image2point.io.output import require_output_directory
from image2point.tasks import IGNORE_INDEX
from image2point.train.metrics import ConfusionMatrix, Metrics


@dataclasses.dataclass(frozen=True, eq=False)
class FileResult:
    """The outputs written for one input, and its scores when it had ground truth."""

    source: Path
    outputs: tuple[Path, ...]
    num_points: int
    num_tiles: int
    top_k: tuple[tuple[str, float], ...]
    metrics: Metrics | None


@dataclasses.dataclass(frozen=True, eq=False)
class PredictionRun:
    """Every input's result, and the scores over all inputs with ground truth (None without any)."""

    files: tuple[FileResult, ...]
    metrics: Metrics | None


@dataclasses.dataclass(frozen=True, eq=False)
class CheckedInput:
    """One input after its single read: its points as read, the network's input and its ground truth."""

    source: Path
    points: np.ndarray
    prepared: ModelInput
    truth: np.ndarray | None


def predict_files(
    checkpoint: str | Path | TrainedModel,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    fields: Sequence[str] | None = None,
    voxel_size: float | None = None,
    save_probabilities: bool = False,
    chunk_points: int = DEFAULT_CHUNK_POINTS,
    labels: str | Path | None = None,
    force: bool = False,
    on_file: Callable[[FileResult], None] | None = None,
    overlap_voxels: int = DEFAULT_OVERLAP_VOXELS,
) -> PredictionRun:
    """Predict every input file and write its outputs into ``out_dir`` (see the module docstring).

    inputs: files, directories and glob patterns (see :func:`image2point.io.iter_input_paths`).
    fields: column names for files without them, or the fields to read from files with them; the
    ones after x, y, z (and other than ``labels``) are the model's features. labels: ground truth, a
    file (one input only) or a directory holding ``<name>.label`` / ``.npy`` / ``.txt`` / ``.labels``;
    a ``labels`` field in the file counts too. Every output path is checked (existing ones are only
    replaced with ``force``) before anything is written. on_file: called with each input's result as
    soon as its outputs are written. voxel_size, chunk_points, overlap_voxels: see
    :class:`~image2point.inference.predict.PredictionSettings`.
    """
    if isinstance(fields, str):
        raise TypeError(f"fields must be a sequence of names, not the string {fields!r}")
    settings = PredictionSettings(voxel_size, chunk_points, overlap_voxels, save_probabilities)
    model = checkpoint if isinstance(checkpoint, TrainedModel) else load_trained(checkpoint)
    files = discover_inputs(inputs, labels)
    out_dir = Path(out_dir)
    require_output_directory(out_dir)
    for file in files:
        check_free(output_paths(model, file.path, out_dir, save_probabilities), force)
    checked = [check_input(model, file, fields) for file in files]
    total = ConfusionMatrix(model.num_classes, IGNORE_INDEX, model.class_names)
    scored = False
    results = []
    for item in checked:
        prediction = predict_prepared(model, item.prepared, settings)
        outputs = write_outputs(model, item.source, item.points, prediction, item.truth, out_dir, save_probabilities)
        metrics = None
        if item.truth is not None:
            scored = True
            score(total, prediction, item.truth)
            metrics = _scores_of_one(model, prediction, item.truth)
        top_k = _named_top_k(model, prediction)
        result = FileResult(item.source, outputs, len(item.points), prediction.num_tiles, top_k, metrics)
        results.append(result)
        if on_file is not None:
            on_file(result)
    return PredictionRun(tuple(results), total.compute() if scored else None)


def check_input(model: TrainedModel, file: InputFile, fields: Sequence[str] | None) -> CheckedInput:
    """Read ``file`` once, prepare it for the network and read its ground truth; DataError naming the
    file for anything wrong with it."""
    cloud = read_point_cloud(file.path, fields)
    prepared = model_input(model, cloud, named_feature_fields(cloud, fields))
    truth = ground_truth(model.labels, model.task, cloud, file.labels)
    return CheckedInput(file.path, cloud.points, prepared, truth)


def score(confusion: ConfusionMatrix, prediction: Prediction, truth: np.ndarray) -> None:
    """Add one cloud to ``confusion``: a shape counts once (its one class), a scene once per point."""
    if isinstance(prediction, ShapePrediction):
        distinct = np.unique(truth[truth != IGNORE_INDEX])
        if len(distinct):
            confusion.update(torch.tensor([prediction.best]), torch.tensor([int(distinct[0])]))
        return
    confusion.update(torch.from_numpy(prediction.labels), torch.from_numpy(truth))


def _named_top_k(model: TrainedModel, prediction: Prediction) -> tuple[tuple[str, float], ...]:
    if not isinstance(prediction, ShapePrediction):
        return ()
    return tuple((model.class_names[index], probability) for index, probability in prediction.top_k)


def _scores_of_one(model: TrainedModel, prediction: Prediction, truth: np.ndarray) -> Metrics:
    confusion = ConfusionMatrix(model.num_classes, IGNORE_INDEX, model.class_names)
    score(confusion, prediction, truth)
    return confusion.compute()
