"""ModelNet40 classification in its two standard layouts.

modelnet40_normal_resampled: <class>/<class>_NNNN.txt with 10,000 lines of x,y,z,nx,ny,nz,
modelnet40_shape_names.txt and the split lists modelnet40_train.txt / modelnet40_test.txt.
modelnet40_ply_hdf5_2048 (PointNet): ply_data_train*.h5 / ply_data_test*.h5 holding data
[B, 2048, 3] and label [B, 1], with shape_names.txt.

Only xyz is used (as in the paper); points are centred on their mean and scaled into the unit sphere.
``num_points`` points are read from each shape: its first ones, or with ``point_sampling="random"`` a
random subset fixed per shape (see :class:`image2point.data.pipelines.ModelNet40Pipeline`).
"""

from __future__ import annotations

import re
from abc import abstractmethod
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from image2point.data.folds import fold_choice, open_fold
from image2point.data.pipelines import POINT_SAMPLINGS, DatasetPipeline, PipelineSettings, PointSampling
from image2point.data.registry import DatasetLabels, DatasetRequest, register_dataset
from image2point.data.sample import PointCloudDataset, ShapeSample, Transform, normalize_to_unit_sphere
from image2point.errors import DataError
from image2point.io.text import read_numeric_table
from image2point.tasks import Task
from image2point.viz import modelnet40_palette

SPLITS = ("train", "test")
RESAMPLED_SHAPE_NAMES_FILE = "modelnet40_shape_names.txt"
RESAMPLED_SPLIT_FILES = {"train": "modelnet40_train.txt", "test": "modelnet40_test.txt"}
RESAMPLED_COLUMNS = 6  # x, y, z, nx, ny, nz
H5_SHAPE_NAMES_FILE = "shape_names.txt"
H5_SPLIT_PATTERNS = {"train": "ply_data_train*.h5", "test": "ply_data_test*.h5"}
XYZ = slice(0, 3)
# The official class list (modelnet40_shape_names.txt), for machines without the dataset.
MODELNET40_CLASS_NAMES = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone", "cup",
    "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp", "laptop",
    "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink", "sofa",
    "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox",
)

# Keeps the per-shape point subsets apart from the augmentation stream of the same seed.
POINT_SUBSET_STREAM = 0x2048

_SHAPE_ID = re.compile(r"^(?P<class_name>.+)_(?P<number>\d+)$")
_TRAILING_NUMBER = re.compile(r"(\d+)\.h5$")


class _ModelNet40Layout(PointCloudDataset[ShapeSample]):
    """What both layouts share: checked arguments, class names from the layout's names file, and the
    per-shape point selection; a layout reads its split in ``_read_split``."""

    shape_names_file: str

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_points: int | None = None,
        transform: Transform | None = None,
        seed: int = 0,
        point_sampling: PointSampling = "first",
    ) -> None:
        self.root = Path(root)
        _check_split(split)
        self.num_points = _checked_num_points(num_points)
        self.point_sampling = _checked_point_sampling(point_sampling)
        class_names = read_shape_names(self.root / self.shape_names_file)
        super().__init__(split, class_names, transform, seed)
        self._read_split(split)

    @abstractmethod
    def _read_split(self, split: str) -> None:
        """Read the split's shapes and labels (called once, at the end of ``__init__``)."""

    def _selected_points(self, points: np.ndarray, index: int, source: str | Path) -> np.ndarray:
        return sample_shape_points(points, self.num_points, self.point_sampling, self.seed, index, source)


class ModelNet40(_ModelNet40Layout):
    """ModelNet40 in the modelnet40_normal_resampled layout; points are read lazily, one file per shape.

    num_points: points kept per shape, None keeps all of them; point_sampling: "first" keeps the first
    num_points of the file (the files list points in farthest-point order), "random" a random subset
    drawn once per (seed, shape), the same in every epoch.
    """

    shape_names_file = RESAMPLED_SHAPE_NAMES_FILE

    def _read_split(self, split: str) -> None:
        self.shape_ids, self.labels = self._read_split_list(self.root / RESAMPLED_SPLIT_FILES[split])

    def __len__(self) -> int:
        return len(self.shape_ids)

    def shape_path(self, index: int) -> Path:
        shape_id = self.shape_ids[index]
        return self.root / self.class_names[self.labels[index]] / f"{shape_id}.txt"

    def load(self, index: int) -> ShapeSample:
        path = self.shape_path(index)
        table = read_numeric_table(path, RESAMPLED_COLUMNS, delimiter=",")
        points = self._selected_points(table[:, XYZ], index, path)
        return ShapeSample(
            points=normalize_to_unit_sphere(points, path),
            features=None,
            label=int(self.labels[index]),
            source=str(path),
        )

    def _read_split_list(self, list_path: Path) -> tuple[tuple[str, ...], np.ndarray]:
        class_index = {name: index for index, name in enumerate(self.class_names)}
        shape_ids: list[str] = []
        labels: list[int] = []
        for line_number, shape_id in _non_blank_lines(list_path):
            class_name = _class_of_shape_id(shape_id, list_path, line_number)
            if class_name not in class_index:
                raise DataError(
                    f"line {line_number}: shape {shape_id!r} has class {class_name!r}, "
                    f"which is not in {RESAMPLED_SHAPE_NAMES_FILE}",
                    list_path,
                )
            shape_file = self.root / class_name / f"{shape_id}.txt"
            if not shape_file.is_file():
                raise DataError(f"line {line_number}: shape {shape_id!r} has no file {shape_file}", list_path)
            shape_ids.append(shape_id)
            labels.append(class_index[class_name])
        if not shape_ids:
            raise DataError("split list names no shapes", list_path)
        return tuple(shape_ids), np.asarray(labels, dtype=np.int64)


class ModelNet40H5(_ModelNet40Layout):
    """ModelNet40 in PointNet's HDF5 layout; the split's arrays are read into memory once."""

    shape_names_file = H5_SHAPE_NAMES_FILE

    def _read_split(self, split: str) -> None:
        self.files = _h5_split_files(self.root, split)
        batches = [_read_h5_file(path, self.num_classes) for path in self.files]
        self.points = np.concatenate([points for points, _ in batches])
        self.labels = np.concatenate([labels for _, labels in batches])
        # (file, row) of every sample, so errors and sources name the original file.
        self._origins = [
            (path, row) for path, (_, labels) in zip(self.files, batches, strict=True) for row in range(len(labels))
        ]

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> ShapeSample:
        path, row = self._origins[index]
        source = f"{path}[{row}]"
        points = self._selected_points(self.points[index], index, source)
        return ShapeSample(
            points=normalize_to_unit_sphere(points, source),
            features=None,
            label=int(self.labels[index]),
            source=source,
        )


def open_modelnet40(
    root: str | Path,
    split: str = "train",
    num_points: int | None = None,
    transform: Transform | None = None,
    seed: int = 0,
    point_sampling: PointSampling = "first",
) -> ModelNet40 | ModelNet40H5:
    """Opens a ModelNet40 directory in whichever standard layout it holds."""
    root = Path(root)
    _check_split(split)
    if (root / RESAMPLED_SHAPE_NAMES_FILE).is_file():
        return ModelNet40(root, split, num_points, transform, seed, point_sampling)
    if any(root.glob(H5_SPLIT_PATTERNS[split])):
        return ModelNet40H5(root, split, num_points, transform, seed, point_sampling)
    raise DataError(
        f"not a ModelNet40 directory: neither {RESAMPLED_SHAPE_NAMES_FILE} (modelnet40_normal_resampled) "
        f"nor ply_data_{split}*.h5 files (modelnet40_ply_hdf5_2048) found",
        root,
    )


def read_shape_names(path: Path) -> tuple[str, ...]:
    """Class names, one per line, in label order."""
    names: list[str] = []
    for line_number, name in _non_blank_lines(path):
        if name in names:
            raise DataError(f"line {line_number}: class {name!r} is listed twice", path)
        names.append(name)
    if not names:
        raise DataError("no class names listed", path)
    return tuple(names)


def _non_blank_lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise DataError("file not found", path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read file: {error}", path) from error
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _class_of_shape_id(shape_id: str, list_path: Path, line_number: int) -> str:
    match = _SHAPE_ID.match(shape_id)
    if match is None:
        raise DataError(f"line {line_number}: {shape_id!r} is not a shape id like 'airplane_0001'", list_path)
    return match["class_name"]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"ModelNet40 split must be one of {SPLITS}, got {split!r}")


def _checked_num_points(num_points: int | None) -> int | None:
    if num_points is not None and num_points < 1:
        raise ValueError(f"num_points must be >= 1 or None, got {num_points}")
    return num_points


def _checked_point_sampling(point_sampling: str) -> str:
    if point_sampling not in POINT_SAMPLINGS:
        raise ValueError(f"point_sampling must be one of {POINT_SAMPLINGS}, got {point_sampling!r}")
    return point_sampling


def sample_shape_points(points: np.ndarray, num_points: int | None, point_sampling: str, seed: int, index: int,
                        source: str | Path) -> np.ndarray:
    """num_points of a shape's points: the first ones, or a random subset fixed by (seed, index), in file order."""
    if num_points is None or len(points) == num_points:
        return points
    if len(points) < num_points:
        raise DataError(f"has {len(points)} points, fewer than num_points={num_points}", source)
    if point_sampling == "first":
        return points[:num_points]
    rng = np.random.default_rng([POINT_SUBSET_STREAM, seed, index])
    return points[np.sort(rng.choice(len(points), num_points, replace=False))]


def _h5_split_files(root: Path, split: str) -> list[Path]:
    files = sorted(root.glob(H5_SPLIT_PATTERNS[split]), key=_h5_file_order)
    if not files:
        raise DataError(f"no {H5_SPLIT_PATTERNS[split]} files", root)
    return files


def _h5_file_order(path: Path) -> tuple[int, str]:
    # ply_data_train10.h5 comes after ply_data_train9.h5.
    match = _TRAILING_NUMBER.search(path.name)
    return (int(match[1]) if match else -1, path.name)


def _read_h5_file(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as file:
            points = _h5_array(file, "data", path)
            labels = _h5_array(file, "label", path)
    except OSError as error:
        raise DataError(f"cannot read HDF5 file: {error}", path) from error
    if points.ndim != 3 or points.shape[2] != 3 or points.shape[1] == 0:
        raise DataError(f"'data' must have shape [B, N, 3], got {list(points.shape)}", path)
    if labels.shape not in ((len(points), 1), (len(points),)):
        raise DataError(f"'label' must have shape [{len(points)}, 1], got {list(labels.shape)}", path)
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"'label' must hold integers, got {labels.dtype}", path)
    labels = labels.reshape(-1).astype(np.int64)
    _check_h5_contents(points, labels, num_classes, path)
    return points.astype(np.float32), labels


def _h5_array(file: object, key: str, path: Path) -> np.ndarray:
    if key not in file:
        raise DataError(f"missing dataset {key!r}", path)
    return np.asarray(file[key])


def _check_h5_contents(points: np.ndarray, labels: np.ndarray, num_classes: int, path: Path) -> None:
    out_of_range = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(out_of_range):
        row = int(out_of_range[0])
        raise DataError(f"sample {row} has label {labels[row]}, outside 0..{num_classes - 1}", path)
    non_finite = np.flatnonzero(~np.isfinite(points).all(axis=(1, 2)))
    if len(non_finite):
        raise DataError(f"sample {int(non_finite[0])} has NaN or infinite coordinates", path)


def read_modelnet40_labels(root: Path | None) -> DatasetLabels:
    """The shape names of the ModelNet40 directory ``root`` (either layout), else the official list."""
    for filename in (RESAMPLED_SHAPE_NAMES_FILE, H5_SHAPE_NAMES_FILE):
        if root is not None and (root / filename).is_file():
            return DatasetLabels(read_shape_names(root / filename), modelnet40_palette())
    return DatasetLabels(MODELNET40_CLASS_NAMES, modelnet40_palette())


def _modelnet40_pipeline(settings: PipelineSettings) -> DatasetPipeline:
    return settings.modelnet40


@register_dataset("modelnet40", Task.CLASSIFICATION, MODELNET40_CLASS_NAMES, pipeline=_modelnet40_pipeline,
                  palette=modelnet40_palette(), needs_root=True, read_labels=read_modelnet40_labels, splits=SPLITS)
def open_modelnet40_split(request: DatasetRequest) -> Dataset:
    """The split, or with ``data.folds`` the fold's part of the train and test lists pooled."""
    data = request.data

    def open_split(split: str) -> ModelNet40 | ModelNet40H5:
        return open_modelnet40(request.root, split, data.num_points, request.transform, data.dataset_seed,
                               data.modelnet40.point_sampling)

    choice = fold_choice(data)
    if choice is None:
        return open_split(request.split)
    return open_fold(open_split, SPLITS, choice, request.train, request.split)
