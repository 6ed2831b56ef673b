"""Run a trained network on your own point cloud files: labels per point, probabilities, top-k classes.

:func:`load_trained` rebuilds the network of a training checkpoint (``last.pt`` / ``best.pt``) from the
config stored in it and refuses weights that do not fit that network. :func:`predict_cloud` runs it on
one :class:`~image2point.io.PointCloud`; :func:`predict_files` runs it on files and writes, for each
input ``<name>.<ext>``:

- ``<name>.labels.npy``: int64 class index per point (segmentation);
- ``<name>.label``: uint32 original SemanticKITTI ids (``learning_map_inv``), for KITTI ``.bin`` inputs
  of a SemanticKITTI model;
- ``<name>.probs.npy``: float32 class probabilities, [N, K] per point or [K] per shape (on request);
- ``<name>.topk.json``: the most likely classes of the shape (classification);
- ``<name>.pred.ply``: the points coloured by predicted class, with the class as property ``label``;
- ``<name>.png``: a top and a perspective view (see :mod:`image2point.viz`), with ground truth and an
  error map when ground truth is given.

Inputs are prepared as the network's evaluation data was: xyz plus the feature fields the dataset
used (intensity for SemanticKITTI, colours for S3DIS and the procedural scenes; ``fields`` names
others), colours stored as integers scaled to [0, 1], the dataset's deterministic transforms (colour
centring, S3DIS's centring on the mean; never its crop), shapes scaled into the unit sphere. Georeferenced clouds whose coordinates float32 cannot
hold are moved next to the origin first. Every input is read and checked before anything is written,
and the outputs of one input are written together once its prediction succeeded.

Scenes with more points than ``chunk_points`` are cut into tiles along x and y. Tiles overlap by
``overlap_voxels`` voxels on each side and every voxel takes its prediction from the one tile whose
core holds it, which is the tile where it lies deepest inside (see :func:`tile_owners`). Tiles keep
the whole cloud's voxel grid, so a voxel whose receptive field fits within the overlap gets exactly
the prediction the whole scene would give it. Shapes (classification) are never cut: the unit sphere
bounds their voxel count.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import yaml

from image2point.checkpoint import load_checkpoint
from image2point.data.collate import point_features
from image2point.data.modelnet40 import H5_SHAPE_NAMES_FILE, RESAMPLED_SHAPE_NAMES_FILE, read_shape_names
from image2point.data.procedural import SCENE_CLASS_NAMES, SHAPE_CLASS_NAMES
from image2point.data.s3dis import S3DIS_CLASS_NAMES
from image2point.data.sample import IGNORE_INDEX, SceneSample, ShapeSample, normalize_to_unit_sphere
from image2point.data.semantickitti import DEFAULT_CONFIG_FILENAME, SEMANTIC_MASK, LabelMap
from image2point.errors import CheckpointError, DataError
from image2point.io import (
    PointCloud,
    iter_input_paths,
    needs_recentring,
    read_labels,
    read_point_cloud,
    recentre,
    write_kitti_label,
    write_ply,
)
from image2point.io.output import atomic_output, require_output_directory
from image2point.io.readers import LABEL_EXTENSIONS, LABEL_FIELD
from image2point.models import TransferredNetwork
from image2point.sparse.backends import default_backend
from image2point.sparse.tensor import SparseTensor
from image2point.train.builders import build_model, build_transform, task_of, xyz_feature_scale
from image2point.train.config import DataConfig, RunConfig
from image2point.train.distributed import resolve_device
from image2point.train.metrics import ConfusionMatrix, Metrics
from image2point.train.stored import check_weights, is_legacy_config, stored_run_config
from image2point.viz import palette_for, render_png
from image2point.voxelize import Voxels, collate_voxels, voxelize

# 1 M points per tile: the same peak memory as 500 k on a dense 10 M-point scene at 1.25x the speed
# (docs/benchmarks.md, "Predict on a 10 M-point scene").
DEFAULT_CHUNK_POINTS = 1_000_000
DEFAULT_OVERLAP_VOXELS = 32
DEFAULT_TOP_K = 5
XYZ_CHANNELS = 3
KITTI_SCAN_SUFFIX = ".bin"
COLOUR_FIELD = "rgb"
# How a joined field is spelled column by column (files without names take one name per column).
FIELD_COLUMNS = {COLOUR_FIELD: "red,green,blue"}
# Integer colours are 8-bit unless some value exceeds 255 (16-bit LAS colours).
EIGHT_BIT_MAX = 255.0
SIXTEEN_BIT_MAX = 65535.0
# Deterministic evaluation transforms take a generator but draw nothing from it.
TRANSFORM_SEED = 0
SPLIT_AXES = (0, 1)
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

MODELNET40_CLASS_NAMES = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone", "cup",
    "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp", "laptop",
    "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink", "sofa",
    "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox",
)
# The official semantic-kitti.yaml, for machines without the dataset: raw id -> learned class
# (0 = unlabelled) and learned class -> raw id and name.
SEMANTIC_KITTI_LEARNING_MAP = {
    0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8, 40: 9, 44: 10, 48: 11,
    49: 12, 50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17, 80: 18, 81: 19, 99: 0, 252: 1, 253: 7,
    254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5,
}
SEMANTIC_KITTI_CLASSES = (
    (10, "car"), (11, "bicycle"), (15, "motorcycle"), (18, "truck"), (20, "other-vehicle"), (30, "person"),
    (31, "bicyclist"), (32, "motorcyclist"), (40, "road"), (44, "parking"), (48, "sidewalk"),
    (49, "other-ground"), (50, "building"), (51, "fence"), (70, "vegetation"), (71, "trunk"), (72, "terrain"),
    (80, "pole"), (81, "traffic-sign"),
)
_UNMAPPED = -1


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """The per-point features after xyz that a dataset's networks read, and how many are colours."""

    fields: tuple[str, ...]
    channels: int
    colour_channels: int


DATASET_INPUTS = {
    "procedural_shapes": InputSpec((), 0, 0),
    "modelnet40": InputSpec((), 0, 0),
    "procedural_scenes": InputSpec((COLOUR_FIELD,), 3, 3),
    "s3dis": InputSpec((COLOUR_FIELD,), 3, 3),
    "semantickitti": InputSpec(("intensity",), 1, 0),
}


@dataclasses.dataclass(frozen=True, eq=False)
class LabelScheme:
    """Class names and colours of a model's outputs, and SemanticKITTI's raw-id tables when they apply.

    original_ids: the dataset id of each class (written to ``.label`` files); raw_lookup: raw id ->
    class index or IGNORE_INDEX (-1 for ids the dataset does not know), for ground-truth ``.label`` files.
    """

    class_names: tuple[str, ...]
    palette: np.ndarray
    original_ids: tuple[int, ...] | None = None
    raw_lookup: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclasses.dataclass(frozen=True, eq=False)
class TrainedModel:
    """A network in eval mode with everything needed to prepare its inputs and name its outputs."""

    network: TransferredNetwork
    config: RunConfig
    task: str
    labels: LabelScheme
    in_features: int
    source: Path
    device: torch.device

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.labels.class_names

    @property
    def num_classes(self) -> int:
        return self.labels.num_classes

    @property
    def dataset(self) -> str:
        return self.config.data.name

    @property
    def input_spec(self) -> InputSpec:
        return DATASET_INPUTS[self.dataset]

    @property
    def backend(self) -> str:
        return self.config.model.backend or default_backend(self.device)


@dataclasses.dataclass(frozen=True, eq=False)
class Prediction:
    """What the network says about one cloud.

    labels: int64 [N], the class of every point (classification: the shape's class at every point).
    probabilities: float32 [N, K] per point (segmentation, on request) or [K] for the shape.
    top_k: (class index, probability) pairs, most likely first (classification; empty otherwise).
    offset: float64 [3] subtracted from the coordinates before the network saw them (zero unless the
    cloud needed recentring); num_tiles: how many tiles the scene was cut into.
    """

    labels: np.ndarray
    probabilities: np.ndarray | None
    top_k: tuple[tuple[int, float], ...]
    offset: np.ndarray
    num_tiles: int


@dataclasses.dataclass(frozen=True)
class Tile:
    """A rectangle of voxel columns: the core ``[low, high)`` in x and y, read with ``overlap`` more on each side."""

    low: tuple[int, int]
    high: tuple[int, int]
    overlap: int

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """Which of the columns ``xy`` ([V, 2] voxel x, y) the tile reads (core plus overlap)."""
        low = np.asarray(self.low) - self.overlap
        high = np.asarray(self.high) + self.overlap
        return ((xy >= low) & (xy < high)).all(axis=1)

    def owns(self, xy: np.ndarray) -> np.ndarray:
        """Which of the columns ``xy`` lie in the core, whose predictions the tile provides."""
        return ((xy >= np.asarray(self.low)) & (xy < np.asarray(self.high))).all(axis=1)

    def depth_inside(self, xy: np.ndarray) -> np.ndarray:
        """Voxels between each column and the nearest edge of the region the tile reads (< 0 outside)."""
        low = np.asarray(self.low) - self.overlap
        high = np.asarray(self.high) + self.overlap - 1
        return np.minimum(xy - low, high - xy).min(axis=1)


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


# ---------------------------------------------------------------------------------------------------
# Loading a trained network.


def load_trained(checkpoint_path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """The network of a training checkpoint (``{"model": state_dict, "config": ...}``) in eval mode.

    Raises CheckpointError when the file is unreadable or unsafe, lacks ``model`` or ``config``, or
    holds weights that do not fit the network its config builds (the message names the first key or
    shape that differs).
    """
    path = Path(checkpoint_path)
    state = load_checkpoint(path)
    missing = [key for key in ("model", "config") if key not in state]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint (no {' or '.join(repr(k) for k in missing)} entry)")
    config = config_from_checkpoint(state["config"], path)
    class_names, in_features = state.get("class_names"), state.get("in_features")
    if class_names is not None and (not isinstance(class_names, (list, tuple))
                                    or not all(isinstance(name, str) for name in class_names)):
        raise CheckpointError(f"{path}: its 'class_names' entry is not a list of names")
    if in_features is not None and (isinstance(in_features, bool) or not isinstance(in_features, int)):
        raise CheckpointError(f"{path}: its 'in_features' entry is not an integer")
    return assemble_model(config, state["model"], path, class_names=class_names, in_features=in_features,
                          device=device, legacy=is_legacy_config(state["config"]))


def config_from_checkpoint(mapping: object, source: str | Path) -> RunConfig:
    """The RunConfig stored in a checkpoint, validated exactly as a config file is (a config stored by an
    older image2point reads with that version's behaviour, see :mod:`image2point.train.stored`)."""
    return stored_run_config(mapping, source)


def assemble_model(config: RunConfig, weights: Mapping[str, torch.Tensor], source: str | Path,
                   class_names: Sequence[str] | None = None, in_features: int | None = None,
                   original_ids: Sequence[int] | None = None,
                   device: str | torch.device = "cpu", legacy: bool = False) -> TrainedModel:
    """Build ``config``'s network, check ``weights`` fit it, load them; the model in eval mode.

    class_names and in_features default to what the config's dataset gives (its class list, read from
    ``data.root`` when the dataset is there, else the official one; xyz plus its feature channels).
    ``legacy``: the weights come with a config stored by an older image2point (a misfit is reported so).
    """
    source = Path(source)
    if not isinstance(weights, Mapping):
        raise CheckpointError(f"{source}: weights are a {type(weights).__name__}, not a mapping of tensors")
    if config.data.name not in DATASET_INPUTS:
        raise CheckpointError(f"{source}: trained on {config.data.name!r}, which prediction does not support")
    if config.model.family != "voxel":
        # Tiling, recentring and the voxel -> point map are written for voxel networks.
        raise CheckpointError(f"{source}: predict runs voxel models; this is a model.family={config.model.family} "
                              "model (score it with `image2point eval`)")
    task = task_of(config.data)
    scheme = label_scheme(config.data, class_names, original_ids)
    features = in_features if in_features is not None else XYZ_CHANNELS + DATASET_INPUTS[config.data.name].channels
    structural = dataclasses.replace(config, model=dataclasses.replace(config.model, pretrained=None))
    try:
        network = build_model(structural, features, scheme.num_classes, task).network
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{source}: its config does not build a network: {error}") from None
    check_weights(network, weights, source, legacy)
    try:
        network.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{source}: weights do not load into the network: {first_line}") from None
    resolved = resolve_device(str(device))
    network.to(resolved).eval()
    return TrainedModel(network, config, task, scheme, features, source, resolved)


def label_scheme(data: DataConfig, class_names: Sequence[str] | None = None,
                 original_ids: Sequence[int] | None = None) -> LabelScheme:
    """Class names, palette and (SemanticKITTI) id tables of a model trained on ``data``.

    The dataset's own files under ``data.root`` are used when present (ModelNet40's shape names,
    SemanticKITTI's semantic-kitti.yaml), else the official lists; ``class_names`` and
    ``original_ids`` (stored with a model) override them.
    """
    root = Path(data.root) if data.root is not None else None
    if data.name == "semantickitti":
        return _kitti_scheme(root, class_names, original_ids)
    if class_names is None:
        class_names = _dataset_class_names(data.name, root)
    names = tuple(str(name) for name in class_names)
    return LabelScheme(names, palette_for(data.name, len(names)))


def _dataset_class_names(name: str, root: Path | None) -> tuple[str, ...]:
    if name == "procedural_shapes":
        return SHAPE_CLASS_NAMES
    if name == "procedural_scenes":
        return SCENE_CLASS_NAMES
    if name == "s3dis":
        return S3DIS_CLASS_NAMES
    for filename in (RESAMPLED_SHAPE_NAMES_FILE, H5_SHAPE_NAMES_FILE):
        if root is not None and (root / filename).is_file():
            return read_shape_names(root / filename)
    return MODELNET40_CLASS_NAMES


def _kitti_scheme(root: Path | None, class_names: Sequence[str] | None,
                  original_ids: Sequence[int] | None) -> LabelScheme:
    yaml_path = root / DEFAULT_CONFIG_FILENAME if root is not None else None
    if yaml_path is not None and yaml_path.is_file():
        label_map = LabelMap.from_yaml(yaml_path)
        tables = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
        inverse = {int(key): int(value) for key, value in tables["learning_map_inv"].items()}
        colours = _color_map(tables.get("color_map"), yaml_path)
        names, lookup = label_map.class_names, label_map.lookup
    else:
        inverse = {learned: raw for learned, (raw, _) in enumerate(SEMANTIC_KITTI_CLASSES, start=1)}
        colours = None
        names = tuple(name for _, name in SEMANTIC_KITTI_CLASSES)
        lookup = np.full(SEMANTIC_MASK + 1, _UNMAPPED, dtype=np.int64)
        for raw, learned in SEMANTIC_KITTI_LEARNING_MAP.items():
            lookup[raw] = IGNORE_INDEX if learned == 0 else learned - 1
    ids = tuple(inverse[learned] for learned in range(1, len(names) + 1))
    if class_names is not None:
        names = tuple(str(name) for name in class_names)
    if original_ids is not None:
        ids = tuple(int(value) for value in original_ids)
    if len(ids) != len(names):
        ids = None
    palette = palette_for("semantickitti", len(names), colours, inverse if colours is not None else None)
    return LabelScheme(names, palette, ids, lookup)


def _color_map(value: object, path: Path) -> dict[int, tuple[int, int, int]] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise DataError("'color_map' is not a mapping of raw id to [b, g, r]", path)
    colours = {}
    for raw, colour in value.items():
        if not isinstance(raw, int) or not isinstance(colour, (list, tuple)) or len(colour) != 3:
            raise DataError(f"'color_map' entry {raw!r}: {colour!r} is not an id -> [b, g, r] pair", path)
        colours[raw] = (int(colour[0]), int(colour[1]), int(colour[2]))
    return colours


# ---------------------------------------------------------------------------------------------------
# Preparing one cloud and predicting it.


@dataclasses.dataclass(frozen=True, eq=False)
class ModelInput:
    """One cloud as the network reads it: float32 points and features, and the recentring offset."""

    points: np.ndarray
    features: np.ndarray | None
    offset: np.ndarray


def model_input(model: TrainedModel, cloud: PointCloud, feature_fields: Sequence[str] | None = None) -> ModelInput:
    """Points and features of ``cloud`` prepared as the model's evaluation data was (see the module docstring).

    feature_fields: the cloud's fields to read after xyz, in order; None reads the dataset's own
    (``intensity``, ``rgb``). Their total width must be the model's feature channels.
    """
    source = cloud.source or None
    names = tuple(feature_fields) if feature_fields is not None else model.input_spec.fields
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
    if features is not None and model.input_spec.colour_channels:
        features = _unit_colours(features, model.input_spec.colour_channels, source)
    offset = np.zeros(XYZ_CHANNELS)
    if needs_recentring(cloud.points):
        cloud, offset = recentre(cloud)
    points = cloud.points.astype(np.float32)
    transform = build_transform(model.config.data, train=False)
    rng = np.random.default_rng(TRANSFORM_SEED)
    description = cloud.source or "cloud"
    if model.task == "classification":
        points = normalize_to_unit_sphere(points, description)
        sample = transform(ShapeSample(points, features, 0, description), rng)
    else:
        labels = np.full(len(points), IGNORE_INDEX, dtype=np.int64)
        sample = transform(SceneSample(points, features, labels, description), rng)
    return ModelInput(sample.points, sample.features, offset)


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


@torch.inference_mode()
def predict_cloud(model: TrainedModel, cloud: PointCloud, voxel_size: float | None = None,
                  chunk_points: int = DEFAULT_CHUNK_POINTS, feature_fields: Sequence[str] | None = None,
                  probabilities: bool = False, top_k: int = DEFAULT_TOP_K,
                  overlap_voxels: int = DEFAULT_OVERLAP_VOXELS) -> Prediction:
    """Predict every point of ``cloud`` (segmentation) or the class of the shape (classification).

    voxel_size: None uses the training voxel size. chunk_points: most points one tile may hold,
    overlap included (segmentation). probabilities: also return per-point class probabilities
    (classification always returns the shape's). overlap_voxels: voxels each tile reads beyond its
    core on every side; predictions equal the whole scene's when it covers the receptive field.
    """
    if chunk_points < 1:
        raise ValueError(f"chunk_points must be >= 1, got {chunk_points}")
    if overlap_voxels < 0:
        raise ValueError(f"overlap_voxels must be >= 0, got {overlap_voxels}")
    prepared = model_input(model, cloud, feature_fields)
    size = model.config.data.voxel_size if voxel_size is None else voxel_size
    # The xyz features as the network was trained on them (in training voxels for the authors' S3DIS).
    features = point_features(prepared.points, prepared.features, xyz_feature_scale(model.config.data))
    voxels = voxelize(prepared.points, size, features)
    if model.task == "classification":
        return _classify(model, voxels, prepared.offset, top_k)
    logits, num_tiles = _segment(model, voxels, chunk_points, overlap_voxels)
    voxel_probabilities = torch.softmax(logits, dim=1)
    inverse = voxels.inverse
    labels = voxel_probabilities.argmax(1)[inverse].numpy().astype(np.int64)
    point_probabilities = voxel_probabilities[inverse].numpy() if probabilities else None
    return Prediction(labels, point_probabilities, (), prepared.offset, num_tiles)


def _classify(model: TrainedModel, voxels: Voxels, offset: np.ndarray, top_k: int) -> Prediction:
    batch = collate_voxels([voxels], model.backend)
    tensor = batch.tensor
    tensor = SparseTensor(tensor.features.to(model.device), tensor.coords.to(model.device), 1, model.backend)
    shape_probabilities = torch.softmax(model.network(tensor).float(), dim=1)[0].cpu()
    best = torch.topk(shape_probabilities, min(top_k, model.num_classes))
    ranked = tuple((int(index), float(value)) for value, index in zip(best.values, best.indices, strict=True))
    labels = np.full(voxels.num_points, ranked[0][0], dtype=np.int64)
    return Prediction(labels, shape_probabilities.numpy(), ranked, offset, 1)


def _segment(model: TrainedModel, voxels: Voxels, chunk_points: int, overlap: int) -> tuple[torch.Tensor, int]:
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


def plan_tiles(xy: np.ndarray, point_counts: np.ndarray, chunk_points: int, overlap: int) -> list[Tile]:
    """Tiles whose cores partition the columns ``xy`` ([V, 2] voxel x, y), each reading at most ``chunk_points``.

    point_counts: points in each voxel. A core too heavy is halved along its longer side at the
    point-weighted median; DataError when a single column with its overlap holds too many points.
    """
    xy = np.asarray(xy, dtype=np.int64)
    weights = np.asarray(point_counts, dtype=np.int64)
    pending = [Tile((int(xy[:, 0].min()), int(xy[:, 1].min())), (int(xy[:, 0].max()) + 1,
                                                                     int(xy[:, 1].max()) + 1), overlap)]
    tiles = []
    while pending:
        tile = pending.pop()
        if not tile.owns(xy).any():
            continue
        load = int(weights[tile.contains(xy)].sum())
        if load <= chunk_points:
            tiles.append(tile)
            continue
        halves = _halves(tile, xy, weights)
        if halves is None:
            raise DataError(f"a tile of one voxel column with {overlap} voxels of overlap holds {load} points, more "
                            f"than the chunk budget of {chunk_points}; raise the chunk budget or lower the overlap")
        pending.extend(reversed(halves))
    return sorted(tiles, key=lambda tile: (tile.low, tile.high))


def _halves(tile: Tile, xy: np.ndarray, weights: np.ndarray) -> tuple[Tile, Tile] | None:
    extents = [tile.high[axis] - tile.low[axis] for axis in SPLIT_AXES]
    for axis in sorted(SPLIT_AXES, key=lambda axis: -extents[axis]):
        if extents[axis] < 2:
            continue
        inside = tile.owns(xy)
        column = xy[inside, axis]
        order = np.argsort(column, kind="stable")
        cumulative = np.cumsum(weights[inside][order])
        median = int(column[order][np.searchsorted(cumulative, cumulative[-1] / 2.0)]) if len(column) else 0
        cut = min(max(median, tile.low[axis] + 1), tile.high[axis] - 1)
        first_high = list(tile.high)
        first_high[axis] = cut
        second_low = list(tile.low)
        second_low[axis] = cut
        return (Tile(tile.low, (first_high[0], first_high[1]), tile.overlap),
                Tile((second_low[0], second_low[1]), tile.high, tile.overlap))
    return None


def tile_owners(xy: np.ndarray, tiles: Sequence[Tile]) -> np.ndarray:
    """int64 [V]: the tile whose core holds each column, which is where it lies deepest inside.

    A column in a tile's core is at least ``overlap`` voxels from the edge of what that tile reads;
    in any other tile it lies in the overlap band, less than ``overlap`` from the edge.
    """
    owners = np.full(len(xy), -1, dtype=np.int64)
    for index, tile in enumerate(tiles):
        owners[tile.owns(xy)] = index
    if (owners < 0).any():
        raise ValueError("the tiles' cores do not cover every voxel column")
    return owners


# ---------------------------------------------------------------------------------------------------
# Files in, files out.


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
    a ``labels`` field in the file counts too. Every input is read and checked, and every output
    path checked (existing ones are only replaced with ``force``), before anything is written.
    on_file: called with each input's result as soon as its outputs are written. overlap_voxels:
    see :func:`predict_cloud`.
    """
    model = checkpoint if isinstance(checkpoint, TrainedModel) else load_trained(checkpoint)
    paths = iter_input_paths(inputs)
    out_dir = Path(out_dir)
    require_output_directory(out_dir)
    _check_unique_names(paths)
    label_paths = _label_paths(paths, labels)
    if isinstance(fields, str):
        raise TypeError(f"fields must be a sequence of names, not the string {fields!r}")
    for path in paths:
        for suffix in _output_suffixes(model, path, save_probabilities):
            output = _output_path(out_dir, path, suffix)
            if output.is_dir():
                raise DataError(DIRECTORY_IN_THE_WAY, output)
            if output.exists() and not force:
                raise DataError(f"{output}: exists; pass --force to replace it")
    for path in paths:
        cloud = read_point_cloud(path, fields)
        model_input(model, cloud, _feature_fields(cloud, fields))
        _ground_truth(model, cloud, label_paths[path])
    total = ConfusionMatrix(model.num_classes, IGNORE_INDEX, model.class_names)
    scored = False
    results = []
    for path in paths:
        cloud = read_point_cloud(path, fields)
        truth = _ground_truth(model, cloud, label_paths[path])
        prediction = predict_cloud(model, cloud, voxel_size, chunk_points, _feature_fields(cloud, fields),
                                   save_probabilities, overlap_voxels=overlap_voxels)
        result = _write_outputs(model, path, cloud, prediction, truth, out_dir, save_probabilities)
        if truth is not None:
            scored = True
            _update(total, model, prediction, truth)
        results.append(result)
        if on_file is not None:
            on_file(result)
    return PredictionRun(tuple(results), total.compute() if scored else None)


def _feature_fields(cloud: PointCloud, fields: Sequence[str] | None) -> tuple[str, ...] | None:
    """The model's features when ``fields`` named the columns: the cloud's fields as read, but labels."""
    if fields is None:
        return None
    return tuple(name for name in cloud.fields if name != LABEL_FIELD)


def _check_unique_names(paths: Sequence[Path]) -> None:
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            raise DataError(f"inputs {seen[path.stem]} and {path} would write the same outputs ({path.stem}.*); "
                            "predict them into different output directories")
        seen[path.stem] = path


def _label_paths(paths: Sequence[Path], labels: str | Path | None) -> dict[Path, Path | None]:
    if labels is None:
        return {path: None for path in paths}
    labels = Path(labels)
    if labels.is_dir():
        found = {}
        for path in paths:
            candidates = [labels / f"{path.stem}{suffix}" for suffix in LABEL_EXTENSIONS]
            match = next((candidate for candidate in candidates if candidate.is_file()), None)
            if match is None:
                raise DataError(f"no labels for {path.name} (looked for {path.stem} with "
                                f"{', '.join(LABEL_EXTENSIONS)})", labels)
            found[path] = match
        return found
    if not labels.is_file():
        raise DataError("no such labels file or directory", labels)
    if len(paths) != 1:
        raise DataError(f"one labels file for {len(paths)} inputs; give a directory of <name>.label files", labels)
    return {paths[0]: labels}


def _output_suffixes(model: TrainedModel, path: Path, save_probabilities: bool) -> list[str]:
    suffixes = [LABELS_SUFFIX] if model.task == "segmentation" else [TOPK_SUFFIX]
    if _writes_kitti_label(model, path):
        suffixes.append(KITTI_LABEL_SUFFIX)
    if save_probabilities:
        suffixes.append(PROBABILITIES_SUFFIX)
    return [*suffixes, PLY_SUFFIX, PNG_SUFFIX]


def _output_path(out_dir: Path, path: Path, suffix: str) -> Path:
    return out_dir / f"{path.stem}{suffix}"


def _writes_kitti_label(model: TrainedModel, path: Path) -> bool:
    return (model.task == "segmentation" and path.suffix.lower() == KITTI_SCAN_SUFFIX
            and model.labels.original_ids is not None)


def _ground_truth(model: TrainedModel, cloud: PointCloud, labels_path: Path | None) -> np.ndarray | None:
    """int64 [N] class per point (IGNORE_INDEX where none) from ``labels_path`` or the cloud's labels field."""
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
    classes = label_classes(raw, model.labels, where)
    too_large = classes >= model.num_classes
    if too_large.any():
        raise DataError(f"label {int(classes[too_large][0])} is not a class of this model (0.."
                        f"{model.num_classes - 1})", where)
    if model.task == "classification":
        distinct = np.unique(classes[classes != IGNORE_INDEX])
        if len(distinct) > 1:
            raise DataError(f"a shape has one class, but its labels hold {len(distinct)} different ones", where)
    return classes


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
        unmapped = classes == _UNMAPPED
        if unmapped.any():
            unknown = sorted(set((raw[unmapped].astype(np.int64) & SEMANTIC_MASK).tolist()))
            raise DataError(f"label ids {unknown} are not in this model's SemanticKITTI learning_map", source)
        return classes
    classes = raw.astype(np.int64)
    classes[classes < 0] = IGNORE_INDEX
    return classes


def _update(confusion: ConfusionMatrix, model: TrainedModel, prediction: Prediction, truth: np.ndarray) -> None:
    if model.task == "classification":
        distinct = np.unique(truth[truth != IGNORE_INDEX])
        if len(distinct):
            confusion.update(torch.tensor([prediction.top_k[0][0]]), torch.tensor([int(distinct[0])]))
        return
    confusion.update(torch.from_numpy(prediction.labels), torch.from_numpy(truth))


def _write_outputs(model: TrainedModel, path: Path, cloud: PointCloud, prediction: Prediction,
                   truth: np.ndarray | None, out_dir: Path, save_probabilities: bool) -> FileResult:
    names = model.class_names
    writers: dict[str, Callable[[Path], None]] = {}
    if model.task == "segmentation":
        writers[LABELS_SUFFIX] = lambda target: _save_npy(target, prediction.labels)
    else:
        ranking = [{"class": index, "name": names[index], "probability": probability}
                   for index, probability in prediction.top_k]
        document = json.dumps({"source": str(path), "prediction": names[prediction.top_k[0][0]], "top_k": ranking},
                              indent=2) + "\n"
        writers[TOPK_SUFFIX] = lambda target: _save_text(target, document)
    if _writes_kitti_label(model, path):
        original = np.asarray(model.labels.original_ids, dtype=np.uint32)[prediction.labels]
        writers[KITTI_LABEL_SUFFIX] = lambda target: write_kitti_label(target, original)
    if save_probabilities:
        writers[PROBABILITIES_SUFFIX] = lambda target: _save_npy(target, prediction.probabilities)
    colours = model.labels.palette[prediction.labels]
    label_field = {PLY_LABEL_FIELD: prediction.labels.astype(np.int32)}
    writers[PLY_SUFFIX] = lambda target: write_ply(target, cloud.points, label_field, colours)
    if model.task == "classification":
        best, confidence = prediction.top_k[0]
        title = f"{path.name}: {names[best]} ({confidence:.2f})"
    else:
        title = f"{path.name}: {cloud.num_points} points"
    picture = render_png(cloud.points - prediction.offset, prediction.labels, truth, model.labels.palette, names,
                         title=title)
    writers[PNG_SUFFIX] = lambda target: _save_bytes(target, picture)
    outputs = {_output_path(out_dir, path, suffix): writers[suffix]
               for suffix in _output_suffixes(model, path, save_probabilities)}
    commit_outputs(outputs)
    metrics = None
    if truth is not None:
        confusion = ConfusionMatrix(model.num_classes, IGNORE_INDEX, names)
        _update(confusion, model, prediction, truth)
        metrics = confusion.compute()
    top_k = tuple((names[index], probability) for index, probability in prediction.top_k)
    return FileResult(path, tuple(outputs), cloud.num_points, prediction.num_tiles, top_k, metrics)


def commit_outputs(writers: Mapping[Path, Callable[[Path], None]]) -> None:
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
