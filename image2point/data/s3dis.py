"""S3DIS semantic segmentation from Stanford3dDataset_v1.2_Aligned_Version.

Layout: Area_N/<room>/Annotations/<class>_<i>.txt, one object per file, lines "x y z r g b".
Each room becomes one SceneSample (features rgb / 255), optionally cropped to a cube around its centre
as the authors' loader does (core/datasets/s3dis.py, clip with configs/s3dis/*.yaml clip_bound 4). The first read of a room parses its
annotation files and writes one .npz per room into a cache directory; later reads use the cache
while it is newer than every source file of the room.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from image2point.data.pipelines import DatasetPipeline, PipelineSettings
from image2point.data.registry import COLOURS, DatasetRequest, register_dataset
from image2point.data.sample import PointCloudDataset, SceneSample, Transform, select_points
from image2point.errors import DataError
from image2point.io.text import read_numeric_table
from image2point.tasks import Task
from image2point.viz import s3dis_palette

S3DIS_DIRNAME = "Stanford3dDataset_v1.2_Aligned_Version"
S3DIS_CLASS_NAMES = (
    "ceiling",
    "floor",
    "wall",
    "beam",
    "column",
    "window",
    "door",
    "table",
    "chair",
    "sofa",
    "bookcase",
    "board",
    "clutter",
)
# Annotation names that are not one of the 13 evaluated classes. "stairs" occurs in a few rooms
# and is merged into clutter, as in PointNet's indoor3d_util and most later work.
S3DIS_CLASS_ALIASES = {"stairs": "clutter"}
AREAS = (1, 2, 3, 4, 5, 6)
TRAIN_AREAS = (1, 2, 3, 4, 6)
TEST_AREAS = (5,)
SPLIT_AREAS = {"train": TRAIN_AREAS, "test": TEST_AREAS}
ANNOTATIONS_DIRNAME = "Annotations"
DEFAULT_CACHE_DIRNAME = "image2point_cache"
COLUMNS = 6  # x, y, z, r, g, b
XYZ = slice(0, 3)
RGB = slice(3, 6)
MAX_COLOR = 255.0
CACHE_FORMAT_VERSION = 1

# The official archive has one corrupt line: Area_5/hallway_6/Annotations/ceiling_1.txt line
# 180389 reads "22.350 6.692 3.048 185\x00187 182", a NUL byte where the space between the red
# and green values belongs (numpy reports "could not convert string to float: '185\x00187'").
# Only that file is repaired, by putting the space back; a NUL anywhere else is reported as bad data.
KNOWN_CORRUPT_FILE = ("Area_5", "hallway_6", ANNOTATIONS_DIRNAME, "ceiling_1.txt")
KNOWN_CORRUPT_CHARACTER = "\x00"

_ANNOTATION_NAME = re.compile(r"^(?P<class_name>[A-Za-z]+)_\d+$")


@dataclass(frozen=True)
class Room:
    """One room of the dataset: its area number, name and annotation directory."""

    area: int
    name: str
    annotations: Path

    @property
    def key(self) -> str:
        return f"Area_{self.area}/{self.name}"


@dataclass(frozen=True, eq=False)
class RoomArrays:
    """A parsed room before conversion to a sample: float32 xyz, uint8 rgb, int64 labels."""

    points: np.ndarray
    colors: np.ndarray
    labels: np.ndarray


class S3DIS(PointCloudDataset[SceneSample]):
    """S3DIS rooms of the split's areas as SceneSamples (xyz, rgb / 255 features, 13 classes).

    root: the Stanford3dDataset_v1.2_Aligned_Version directory, or a directory containing it.
    areas: overrides the split's areas (train 1-4 and 6, test 5 by default).
    cache_dir: where the per-room .npz files go; default <root>/image2point_cache.
    clip_bound: keep only the points in the cube of this half-width (metres) around the room's
    bounding-box centre (see :func:`crop_to_cube`); None keeps the whole room.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        areas: Sequence[int] | None = None,
        cache_dir: str | Path | None = None,
        transform: Transform | None = None,
        seed: int = 0,
        clip_bound: float | None = None,
    ) -> None:
        if clip_bound is not None and not clip_bound > 0:
            raise ValueError(f"clip_bound must be positive or None, got {clip_bound!r}")
        super().__init__(split, S3DIS_CLASS_NAMES, transform, seed)
        self.clip_bound = clip_bound
        self.root = _dataset_root(Path(root))
        self.areas = tuple(areas) if areas is not None else _split_areas(split)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.root / DEFAULT_CACHE_DIRNAME
        self.rooms = tuple(room for area in self.areas for room in _list_rooms(self.root, area))
        if not self.rooms:
            raise DataError(f"no rooms in areas {list(self.areas)}", self.root)

    def __len__(self) -> int:
        return len(self.rooms)

    def load(self, index: int) -> SceneSample:
        room = self.rooms[index]
        sample = _read_room_cache(self._prepared_cache(room), source=str(room.annotations.parent))
        if self.clip_bound is None:
            return sample
        return select_points(sample, crop_to_cube(sample.points, self.clip_bound))

    def cache_path(self, room: Room) -> Path:
        return self.cache_dir / f"Area_{room.area}" / f"{room.name}.npz"

    def prepare(self) -> None:
        """Builds every missing or stale room cache now instead of on first access."""
        for room in self.rooms:
            self._prepared_cache(room)

    def _prepared_cache(self, room: Room) -> Path:
        cache_path = self.cache_path(room)
        if not _cache_is_fresh(cache_path, room):
            _write_room_cache(cache_path, read_room(room))
        return cache_path


def crop_to_cube(points: np.ndarray, half_width: float) -> np.ndarray:
    """bool [N]: the points in the half-open cube [c - half_width, c + half_width) on every axis, c the
    centre of the points' bounding box (the authors' clip; a room less than 2 * half_width across
    keeps every point)."""
    low, high = points.min(axis=0).astype(np.float64), points.max(axis=0).astype(np.float64)
    center = low + (high - low) * 0.5
    return np.all((points >= center - half_width) & (points < center + half_width), axis=1)


def read_room(room: Room) -> RoomArrays:
    """Parses every annotation file of a room; the class comes from the file name."""
    files = sorted(room.annotations.glob("*.txt"))
    if not files:
        raise DataError("no annotation .txt files", room.annotations)
    classes = [annotation_class_index(path) for path in files]  # names are checked before the slow parse
    tables = [read_annotation_file(path) for path in files]
    labels = np.repeat(np.asarray(classes, dtype=np.int64), [len(table) for table in tables])
    table = np.concatenate(tables)
    return RoomArrays(
        points=np.ascontiguousarray(table[:, XYZ]),
        colors=table[:, RGB].astype(np.uint8),
        labels=labels,
    )


def read_annotation_file(path: Path) -> np.ndarray:
    """float32 [N, 6] of one annotation file, repairing the one known corrupt file of the archive."""
    text = None
    if path.parts[-len(KNOWN_CORRUPT_FILE) :] == KNOWN_CORRUPT_FILE:
        try:
            text = path.read_text(encoding="utf-8").replace(KNOWN_CORRUPT_CHARACTER, " ")
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"cannot read file: {error}", path) from error
    table = read_numeric_table(path, COLUMNS, delimiter=None, text=text)
    colors = table[:, RGB]
    bad_rows = np.flatnonzero(((colors < 0) | (colors > MAX_COLOR) | (colors != np.round(colors))).any(axis=1))
    if len(bad_rows):
        raise DataError(
            f"data row {int(bad_rows[0]) + 1}: colour {colors[bad_rows[0]].tolist()} is not integers in 0..255",
            path,
        )
    return table


def annotation_class_index(path: Path) -> int:
    """Class index of an annotation file named <class>_<i>.txt."""
    match = _ANNOTATION_NAME.match(path.stem)
    if match is None:
        raise DataError("annotation file name is not <class>_<number>.txt", path)
    class_name = S3DIS_CLASS_ALIASES.get(match["class_name"], match["class_name"])
    if class_name not in S3DIS_CLASS_NAMES:
        raise DataError(f"unknown S3DIS class {match['class_name']!r}", path)
    return S3DIS_CLASS_NAMES.index(class_name)


def _dataset_root(root: Path) -> Path:
    if (root / S3DIS_DIRNAME).is_dir():
        return root / S3DIS_DIRNAME
    if not root.is_dir():
        raise DataError("S3DIS directory not found", root)
    return root


def _split_areas(split: str) -> tuple[int, ...]:
    if split not in SPLIT_AREAS:
        raise ValueError(f"S3DIS split must be one of {tuple(SPLIT_AREAS)} unless areas are given, got {split!r}")
    return SPLIT_AREAS[split]


def _list_rooms(root: Path, area: int) -> list[Room]:
    area_dir = root / f"Area_{area}"
    if not area_dir.is_dir():
        raise DataError(f"area {area} not found", area_dir)
    rooms = []
    for room_dir in sorted(path for path in area_dir.iterdir() if path.is_dir()):
        annotations = room_dir / ANNOTATIONS_DIRNAME
        if not annotations.is_dir():
            raise DataError(f"room has no {ANNOTATIONS_DIRNAME} directory", room_dir)
        rooms.append(Room(area=area, name=room_dir.name, annotations=annotations))
    return rooms


def _newest_source_mtime(room: Room) -> float:
    # The directory's own mtime changes when annotation files are added or removed.
    times = [room.annotations.stat().st_mtime] + [path.stat().st_mtime for path in room.annotations.glob("*.txt")]
    return max(times)


def _cache_is_fresh(cache_path: Path, room: Room) -> bool:
    if not cache_path.is_file():
        return False
    if cache_path.stat().st_mtime <= _newest_source_mtime(room):
        return False
    with np.load(cache_path) as cached:
        return "version" in cached and int(cached["version"]) == CACHE_FORMAT_VERSION


def _write_room_cache(cache_path: Path, room: RoomArrays) -> None:
    """Writes to a temporary file in the same directory and renames it, so readers (other workers
    or ranks preparing the same room) never see a partial file."""
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=cache_path.parent, prefix=f".{cache_path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez(
                    file,
                    version=np.int64(CACHE_FORMAT_VERSION),
                    points=room.points,
                    colors=room.colors,
                    labels=room.labels,
                )
            os.replace(temporary, cache_path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise DataError(f"cannot write the preprocessing cache: {error}", cache_path) from error


def _read_room_cache(cache_path: Path, source: str) -> SceneSample:
    with np.load(cache_path) as cached:
        points = cached["points"]
        colors = cached["colors"]
        labels = cached["labels"]
    return SceneSample(
        points=points.astype(np.float32, copy=False),
        features=(colors / np.float32(MAX_COLOR)).astype(np.float32),
        labels=labels.astype(np.int64, copy=False),
        source=source,
    )


def _s3dis_pipeline(settings: PipelineSettings) -> DatasetPipeline:
    return settings.s3dis


@register_dataset("s3dis", Task.SEGMENTATION, S3DIS_CLASS_NAMES, inputs=COLOURS, pipeline=_s3dis_pipeline,
                  palette=s3dis_palette(), needs_root=True)
def open_s3dis_split(request: DatasetRequest) -> S3DIS:
    """Training: every area but data.test_area; evaluation: data.test_area."""
    data = request.data
    areas = [area for area in AREAS if area != data.test_area] if request.train else [data.test_area]
    return S3DIS(request.root, request.split, areas=areas, transform=request.transform, seed=data.dataset_seed,
                 clip_bound=data.s3dis.clip_bound)
