"""What predicting one input writes, and committing those files together.

For an input ``<name>.<ext>``:

- ``<name>.labels.npy``: int64 class index per point (segmentation);
- ``<name>.label``: uint32 original SemanticKITTI ids (``learning_map_inv``), for KITTI ``.bin`` inputs
  of a model whose classes have dataset ids;
- ``<name>.probs.npy``: float32 class probabilities, [N, K] per point or [K] per shape (on request);
- ``<name>.topk.json``: the most likely classes of the shape (classification);
- ``<name>.pred.ply``: the points coloured by predicted class, with the class as property ``label``;
- ``<name>.png``: a top and a perspective view (see :mod:`image2point.viz`), with ground truth and an
  error map when ground truth is given.

The outputs of one input are staged next to their targets and moved into place together
(:func:`commit_outputs`), so an input's outputs are either all new or all as they were.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from image2point.errors import DataError
from image2point.inference.model import TrainedModel
from image2point.inference.predict import Prediction, ScenePrediction, ShapePrediction
from image2point.io import write_kitti_label, write_ply
from image2point.io.output import atomic_output
from image2point.tasks import Task
from image2point.viz import render_png

KITTI_SCAN_SUFFIX = ".bin"
PLY_LABEL_FIELD = "label"
STAGING_SUFFIX = ".part"
DIRECTORY_IN_THE_WAY = "cannot write: it is a directory"

# Output name suffixes, appended to the input's stem.
LABELS_SUFFIX = ".labels.npy"
KITTI_LABEL_SUFFIX = ".label"
PROBABILITIES_SUFFIX = ".probs.npy"
TOPK_SUFFIX = ".topk.json"
PLY_SUFFIX = ".pred.ply"
PNG_SUFFIX = ".png"

Writer = Callable[[Path], None]


def output_suffixes(model: TrainedModel, source: Path, save_probabilities: bool) -> list[str]:
    """What predicting ``source`` writes, as suffixes of its stem, in the order they are written."""
    suffixes = [LABELS_SUFFIX] if model.task is Task.SEGMENTATION else [TOPK_SUFFIX]
    if writes_kitti_label(model, source):
        suffixes.append(KITTI_LABEL_SUFFIX)
    if save_probabilities:
        suffixes.append(PROBABILITIES_SUFFIX)
    return [*suffixes, PLY_SUFFIX, PNG_SUFFIX]


def output_paths(model: TrainedModel, source: Path, out_dir: Path, save_probabilities: bool) -> list[Path]:
    """The files predicting ``source`` writes into ``out_dir``."""
    return [out_dir / f"{source.stem}{suffix}" for suffix in output_suffixes(model, source, save_probabilities)]


def check_free(paths: list[Path], force: bool) -> None:
    """DataError for an output path that is a directory, or that exists when ``force`` is not given."""
    for output in paths:
        if output.is_dir():
            raise DataError(DIRECTORY_IN_THE_WAY, output)
        if output.exists() and not force:
            raise DataError(f"{output}: exists; pass --force to replace it")


def writes_kitti_label(model: TrainedModel, source: Path) -> bool:
    return (model.task is Task.SEGMENTATION and source.suffix.lower() == KITTI_SCAN_SUFFIX
            and model.labels.original_ids is not None)


def write_outputs(model: TrainedModel, source: Path, points: np.ndarray, prediction: Prediction,
                  truth: np.ndarray | None, out_dir: Path, save_probabilities: bool) -> tuple[Path, ...]:
    """Write every output of ``source`` (whose cloud had ``points``) together; the paths written."""
    names = model.class_names
    writers: dict[str, Writer] = {}
    if isinstance(prediction, ScenePrediction):
        writers[LABELS_SUFFIX] = lambda target: _save_npy(target, prediction.labels)
        title = f"{source.name}: {len(points)} points"
    else:
        assert isinstance(prediction, ShapePrediction)
        document = _top_k_document(source, prediction, names)
        writers[TOPK_SUFFIX] = lambda target: _save_text(target, document)
        best, confidence = prediction.top_k[0]
        title = f"{source.name}: {names[best]} ({confidence:.2f})"
    if writes_kitti_label(model, source):
        original = np.asarray(model.labels.original_ids, dtype=np.uint32)[prediction.labels]
        writers[KITTI_LABEL_SUFFIX] = lambda target: write_kitti_label(target, original)
    if save_probabilities:
        writers[PROBABILITIES_SUFFIX] = lambda target: _save_npy(target, prediction.probabilities)
    colours = model.labels.palette[prediction.labels]
    label_field = {PLY_LABEL_FIELD: prediction.labels.astype(np.int32)}
    writers[PLY_SUFFIX] = lambda target: write_ply(target, points, label_field, colours)
    picture = render_png(points - prediction.offset, prediction.labels, truth, model.labels.palette, names,
                         title=title)
    writers[PNG_SUFFIX] = lambda target: _save_bytes(target, picture)
    outputs = {out_dir / f"{source.stem}{suffix}": writers[suffix]
               for suffix in output_suffixes(model, source, save_probabilities)}
    commit_outputs(outputs)
    return tuple(outputs)


def _top_k_document(source: Path, prediction: ShapePrediction, names: tuple[str, ...]) -> str:
    ranking = [{"class": index, "name": names[index], "probability": probability}
               for index, probability in prediction.top_k]
    return json.dumps({"source": str(source), "prediction": names[prediction.best], "top_k": ranking}, indent=2) + "\n"


def commit_outputs(writers: Mapping[Path, Writer]) -> None:
    """Write every output through a staging file next to it, then move them all into place.

    Each writer is called with its staging path. If any writer fails, the staged files are removed
    and no output is touched; a directory at a target's path is refused before anything is staged.
    """
    for target in writers:
        if target.is_dir():
            raise DataError(DIRECTORY_IN_THE_WAY, target)
    staged: list[tuple[Path, Path]] = []
    try:
        for target, write in writers.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{STAGING_SUFFIX}")
            staged.append((staging, target))
            write(staging)
        for staging, target in staged:
            os.replace(staging, target)
    except BaseException:
        for staging, _ in staged:
            staging.unlink(missing_ok=True)
        raise


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_output(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def _save_text(path: Path, text: str) -> None:
    with atomic_output(path, "w") as handle:
        handle.write(text)


def _save_bytes(path: Path, data: bytes) -> None:
    with atomic_output(path, "wb") as handle:
        handle.write(data)
