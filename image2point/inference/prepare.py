"""One cloud prepared as the model's evaluation data was.

xyz plus the feature fields the dataset used (its registered inputs: intensity for SemanticKITTI,
colours for S3DIS and the procedural scenes; ``feature_fields`` names others), colours stored as
integers scaled to [0, 1], the dataset's deterministic transforms (colour centring, S3DIS's centring on
the mean; never its crop), shapes scaled into the unit sphere. Georeferenced clouds whose coordinates
float32 cannot hold are moved next to the origin first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from image2point.channels import XYZ_CHANNELS
from image2point.data.registry import COLOUR_FIELD
from image2point.data.sample import SceneSample, ShapeSample, normalize_to_unit_sphere
from image2point.errors import DataError
from image2point.inference.model import TrainedModel
from image2point.io import PointCloud, needs_recentring, recentre
from image2point.io.readers import LABEL_FIELD
from image2point.tasks import IGNORE_INDEX, Task
from image2point.train.builders import build_transform

# How a joined field is spelled column by column (files without names take one name per column).
FIELD_COLUMNS = {COLOUR_FIELD: "red,green,blue"}
# Integer colours are 8-bit unless some value exceeds 255 (16-bit LAS colours).
EIGHT_BIT_MAX = 255.0
SIXTEEN_BIT_MAX = 65535.0
# Deterministic evaluation transforms take a generator but draw nothing from it.
TRANSFORM_SEED = 0


@dataclasses.dataclass(frozen=True, eq=False)
class ModelInput:
    """One cloud as the network reads it: float32 points and features, and the recentring offset."""

    points: np.ndarray
    features: np.ndarray | None
    offset: np.ndarray


def named_feature_fields(cloud: PointCloud, fields: Sequence[str] | None) -> tuple[str, ...] | None:
    """The model's features when ``fields`` named the columns: the cloud's fields as read, but labels."""
    if fields is None:
        return None
    return tuple(name for name in cloud.fields if name != LABEL_FIELD)


def model_input(model: TrainedModel, cloud: PointCloud, feature_fields: Sequence[str] | None = None) -> ModelInput:
    """Points and features of ``cloud`` prepared as the model's evaluation data was (see the module docstring).

    feature_fields: the cloud's fields to read after xyz, in order; None reads the dataset's own
    (``intensity``, ``rgb``). Their total width must be the model's feature channels.
    """
    features = _features(model, cloud, feature_fields)
    offset = np.zeros(XYZ_CHANNELS)
    if needs_recentring(cloud.points):
        cloud, offset = recentre(cloud)
    points = cloud.points.astype(np.float32)
    transform = build_transform(model.config.data, train=False)
    rng = np.random.default_rng(TRANSFORM_SEED)
    description = cloud.source or "cloud"
    if model.task is Task.CLASSIFICATION:
        points = normalize_to_unit_sphere(points, description)
        sample = transform(ShapeSample(points, features, 0, description), rng)
    else:
        labels = np.full(len(points), IGNORE_INDEX, dtype=np.int64)
        sample = transform(SceneSample(points, features, labels, description), rng)
    return ModelInput(sample.points, sample.features, offset)


def _features(model: TrainedModel, cloud: PointCloud, feature_fields: Sequence[str] | None) -> np.ndarray | None:
    """The cloud's feature channels after xyz, checked against the model's width, colours in [0, 1]."""
    source = cloud.source or None
    names = tuple(feature_fields) if feature_fields is not None else model.inputs.fields
    expected = model.in_features - XYZ_CHANNELS
    missing = [name for name in names if name not in cloud.fields]
    if missing:
        raise DataError(
            f"the model reads {expected} feature channel(s) after x, y, z ({', '.join(names)}), but the cloud has "
            f"no {', '.join(repr(name) for name in missing)} (fields: {', '.join(cloud.fields) or 'none'}); "
            "name its columns with fields, e.g. x,y,z," + ",".join(FIELD_COLUMNS.get(name, name) for name in names),
            source)
    features = cloud.features(names) if names else None
    width = 0 if features is None else features.shape[1]
    if width != expected:
        raise DataError(f"the model reads {expected} feature channel(s) after x, y, z, but fields "
                        f"{', '.join(names) or '(none)'} give {width}", source)
    if features is not None and model.inputs.colour_channels:
        features = _unit_colours(features, model.inputs.colour_channels, source)
    return features


def _unit_colours(features: np.ndarray, colour_channels: int, source: str | None) -> np.ndarray:
    """Colours given as 0..255 (or 0..65535) numbers scaled to [0, 1], as the datasets store them."""
    features = features.copy()
    colours = features[:, :colour_channels]
    largest = float(colours.max(initial=0.0))
    if largest > SIXTEEN_BIT_MAX or colours.min(initial=0.0) < 0:
        raise DataError(f"colour values must lie in [0, 1], 0..255 or 0..65535; found {colours.min()}..{largest}",
                        source)
    if largest > EIGHT_BIT_MAX:
        colours /= SIXTEEN_BIT_MAX
    elif largest > 1.0:
        colours /= EIGHT_BIT_MAX
    return features
