"""Running a trained network on one prepared cloud: the class of a shape, or the class of every point of a scene.

Each task has its own result type, so every array has one shape: :class:`ShapePrediction` holds the
shape's probabilities [K] and its top classes, :class:`ScenePrediction` per-point probabilities [N, K]
(when asked for). Scenes larger than a budget of points are predicted tile by tile
(:mod:`image2point.inference.tiling`); shapes are never cut, since the unit sphere bounds their voxel count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from image2point.data.collate import point_features
from image2point.inference.model import TrainedModel
from image2point.inference.prepare import ModelInput, model_input
from image2point.inference.tiling import DEFAULT_CHUNK_POINTS, DEFAULT_OVERLAP_VOXELS, plan_tiles, tile_owners
from image2point.io import PointCloud
from image2point.sparse.tensor import SparseTensor
from image2point.tasks import Task
from image2point.train.builders import xyz_feature_scale
from image2point.voxelize import Voxels, collate_voxels, voxelize

DEFAULT_TOP_K = 5


@dataclasses.dataclass(frozen=True, eq=False)
class Prediction:
    """What the network says about one cloud of N points.

    labels: int64 [N], the class of every point (a shape's class at each of its points). offset:
    float64 [3] subtracted from the coordinates before the network saw them (zero unless the cloud
    needed recentring). num_tiles: how many passes of the network the cloud took.
    """

    labels: np.ndarray
    offset: np.ndarray
    num_tiles: int


@dataclasses.dataclass(frozen=True, eq=False)
class ShapePrediction(Prediction):
    """A shape's class. probabilities: float32 [K] of the shape; top_k: (class, probability), most likely first."""

    probabilities: np.ndarray
    top_k: tuple[tuple[int, float], ...]

    @property
    def best(self) -> int:
        return self.top_k[0][0]


@dataclasses.dataclass(frozen=True, eq=False)
class ScenePrediction(Prediction):
    """Every point's class. probabilities: float32 [N, K] per point, None unless asked for."""

    probabilities: np.ndarray | None


@dataclasses.dataclass(frozen=True)
class PredictionSettings:
    """How a cloud is predicted.

    voxel_size: None uses the training voxel size. chunk_points: most points one tile may hold,
    overlap included. overlap_voxels: voxels each tile reads beyond its core on every side;
    predictions equal the whole scene's when it covers the receptive field. probabilities: also keep
    per-point class probabilities (a shape's are always kept). top_k: how many classes a shape ranks.
    """

    voxel_size: float | None = None
    chunk_points: int = DEFAULT_CHUNK_POINTS
    overlap_voxels: int = DEFAULT_OVERLAP_VOXELS
    probabilities: bool = False
    top_k: int = DEFAULT_TOP_K

    def __post_init__(self) -> None:
        if self.chunk_points < 1:
            raise ValueError(f"chunk_points must be >= 1, got {self.chunk_points}")
        if self.overlap_voxels < 0:
            raise ValueError(f"overlap_voxels must be >= 0, got {self.overlap_voxels}")


def predict_cloud(model: TrainedModel, cloud: PointCloud, voxel_size: float | None = None,
                  chunk_points: int = DEFAULT_CHUNK_POINTS, feature_fields: Sequence[str] | None = None,
                  probabilities: bool = False, top_k: int = DEFAULT_TOP_K,
                  overlap_voxels: int = DEFAULT_OVERLAP_VOXELS) -> Prediction:
    """Predict ``cloud``: prepare it as the model's evaluation data was, then run the network (see
    :class:`PredictionSettings` for the options; feature_fields: see :func:`model_input`)."""
    settings = PredictionSettings(voxel_size, chunk_points, overlap_voxels, probabilities, top_k)
    return predict_prepared(model, model_input(model, cloud, feature_fields), settings)


@torch.inference_mode()
def predict_prepared(model: TrainedModel, prepared: ModelInput, settings: PredictionSettings) -> Prediction:
    """Run the network on a cloud :func:`model_input` prepared: a ShapePrediction for a classifier, a
    ScenePrediction for a segmenter."""
    size = model.config.data.voxel_size if settings.voxel_size is None else settings.voxel_size
    # The xyz features as the network was trained on them (in training voxels for the authors' S3DIS).
    features = point_features(prepared.points, prepared.features, xyz_feature_scale(model.config.data))
    voxels = voxelize(prepared.points, size, features)
    if model.task is Task.CLASSIFICATION:
        return classify(model, voxels, prepared.offset, settings.top_k)
    return segment(model, voxels, prepared.offset, settings)


def classify(model: TrainedModel, voxels: Voxels, offset: np.ndarray, top_k: int) -> ShapePrediction:
    """The class of the one shape in ``voxels``, in one pass."""
    batch = collate_voxels([voxels], model.backend)
    tensor = batch.tensor
    tensor = SparseTensor(tensor.features.to(model.device), tensor.coords.to(model.device), 1, model.backend)
    shape_probabilities = torch.softmax(model.network(tensor).float(), dim=1)[0].cpu()
    best = torch.topk(shape_probabilities, min(top_k, model.num_classes))
    ranked = tuple((int(index), float(value)) for value, index in zip(best.values, best.indices, strict=True))
    labels = np.full(voxels.num_points, ranked[0][0], dtype=np.int64)
    return ShapePrediction(labels, offset, 1, shape_probabilities.numpy(), ranked)


def segment(model: TrainedModel, voxels: Voxels, offset: np.ndarray, settings: PredictionSettings) -> ScenePrediction:
    """The class of every point of the scene in ``voxels``, tile by tile."""
    logits, num_tiles = _segment_logits(model, voxels, settings.chunk_points, settings.overlap_voxels)
    voxel_probabilities = torch.softmax(logits, dim=1)
    inverse = voxels.inverse
    labels = voxel_probabilities.argmax(1)[inverse].numpy().astype(np.int64)
    point_probabilities = voxel_probabilities[inverse].numpy() if settings.probabilities else None
    return ScenePrediction(labels, offset, num_tiles, point_probabilities)


def _segment_logits(model: TrainedModel, voxels: Voxels, chunk_points: int, overlap: int) -> tuple[torch.Tensor, int]:
    """float32 [V, K] logits of every voxel, computed tile by tile."""
    coords = voxels.coords.numpy()
    xy = coords[:, :2]
    tiles = plan_tiles(xy, voxels.counts.numpy(), chunk_points, overlap)
    owners = tile_owners(xy, tiles)
    logits = torch.empty((voxels.num_voxels, model.num_classes), dtype=torch.float32)
    for index, tile in enumerate(tiles):
        rows = np.flatnonzero(tile.contains(xy))
        if not np.any(owners[rows] == index):
            continue
        rows_tensor = torch.from_numpy(rows)
        site_coords = torch.cat([torch.zeros((len(rows), 1), dtype=torch.int64), voxels.coords[rows_tensor]], dim=1)
        tensor = SparseTensor(voxels.features[rows_tensor].to(model.device), site_coords.to(model.device), 1,
                              model.backend)
        tile_logits = model.network(tensor).float().cpu()
        owned = torch.from_numpy(owners[rows] == index)
        logits[rows_tensor[owned]] = tile_logits[owned]
    return logits, len(tiles)
