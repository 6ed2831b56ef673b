"""SemanticKITTI semantic segmentation in the official layout.

<root>/sequences/XX/velodyne/NNNNNN.bin holds float32 (x, y, z, intensity) records and
<root>/sequences/XX/labels/NNNNNN.label one uint32 per point (semantic id in the lower 16 bits,
instance id in the upper 16). The official semantic-kitti.yaml maps raw ids to 19 classes plus
"unlabeled", which becomes IGNORE_INDEX; the other classes are shifted down to 0..18.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from image2point.data.folds import fold_choice, fold_dataset
from image2point.data.pipelines import DatasetPipeline, PipelineSettings
from image2point.data.registry import DatasetLabels, DatasetRequest, InputFields, register_dataset
from image2point.data.sample import IGNORE_INDEX, PointCloudDataset, SceneSample, Transform
from image2point.errors import DataError
from image2point.io.kitti import (
    LABEL_CONFIG_FILENAME,
    OFFICIAL_COLOR_MAP_BGR,
    OFFICIAL_LEARNING_MAP_INV,
    SEMANTIC_MASK,
    UNMAPPED,
    KittiLabelTables,
    read_label_file,
    read_scan_records,
)
from image2point.tasks import Task
from image2point.viz import semantickitti_palette

SEQUENCES_DIRNAME = "sequences"
VELODYNE_DIRNAME = "velodyne"
LABELS_DIRNAME = "labels"
SCAN_SUFFIX = ".bin"
LABEL_SUFFIX = ".label"
INTENSITY = InputFields(("intensity",), 1, 0)
SPLIT_SEQUENCES = {
    "train": ("00", "01", "02", "03", "04", "05", "06", "07", "09", "10"),
    "val": ("08",),
    "test": ("11", "12", "13", "14", "15", "16", "17", "18", "19", "20", "21"),
}


@dataclass(frozen=True, eq=False)
class LabelMap:
    """Raw semantic id -> training class (0..K-1) or IGNORE_INDEX, from the official yaml."""

    class_names: tuple[str, ...]
    lookup: np.ndarray
    config_path: Path

    @classmethod
    def from_yaml(cls, path: str | Path) -> LabelMap:
        tables = KittiLabelTables.from_yaml(path)
        return cls(class_names=tables.class_names(), lookup=tables.lookup(IGNORE_INDEX), config_path=Path(path))

    def map(self, raw_semantic: np.ndarray, label_path: Path) -> np.ndarray:
        """int64 training labels of raw semantic ids read from label_path (named in errors)."""
        labels = self.lookup[raw_semantic]
        unmapped = labels == UNMAPPED
        if unmapped.any():
            unknown = sorted(set(raw_semantic[unmapped].tolist()))
            raise DataError(f"label ids {unknown} are not in learning_map of {self.config_path}", label_path)
        return labels


@dataclass(frozen=True)
class ScanId:
    """A scan named by its sequence and its number, written "08/000123"."""

    sequence: str
    scan: str

    @classmethod
    def parse(cls, text: str) -> ScanId:
        sequence, separator, scan = text.partition("/")
        if not separator or not sequence.isdigit() or not scan.isdigit():
            raise ValueError(f"scan id must look like '00/000000', got {text!r}")
        return cls(sequence=normalize_sequence(sequence), scan=scan)

    def __str__(self) -> str:
        return f"{self.sequence}/{self.scan}"


def normalize_sequence(sequence: int | str) -> str:
    """Two-digit sequence name: 8, "8" and "08" all become "08"."""
    return f"{int(sequence):02d}"


def read_velodyne_scan(path: str | Path) -> np.ndarray:
    """float32 [N, 4] (x, y, z, intensity) of one KITTI velodyne .bin file, every value finite."""
    scan = read_scan_records(path)
    non_finite = np.flatnonzero(~np.isfinite(scan).all(axis=1))
    if len(non_finite):
        raise DataError(f"point {int(non_finite[0])} has NaN or infinite values", Path(path))
    return scan


def read_semantic_ids(path: str | Path, num_points: int) -> np.ndarray:
    """Raw semantic ids (lower 16 bits) of a .label file, which must have one entry per point."""
    labels = read_label_file(path)
    if len(labels) != num_points:
        raise DataError(f"has {len(labels)} labels but the scan has {num_points} points", Path(path))
    return (labels & SEMANTIC_MASK).astype(np.int64)


class SemanticKITTI(PointCloudDataset[SceneSample]):
    """SemanticKITTI scans as SceneSamples: xyz points and intensity as the one feature channel.

    sequences overrides the split's sequences; scans (e.g. ["00/000000", "00/000001"]) selects
    exact scans instead. labelled=False reads scans without labels (every label IGNORE_INDEX),
    for prediction. config_path defaults to <root>/semantic-kitti.yaml.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        sequences: Sequence[int | str] | None = None,
        scans: Sequence[str | ScanId] | None = None,
        config_path: str | Path | None = None,
        labelled: bool = True,
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.label_map = LabelMap.from_yaml(
            config_path if config_path is not None else self.root / LABEL_CONFIG_FILENAME
        )
        super().__init__(split, self.label_map.class_names, transform, seed)
        self.labelled = labelled
        self.scans = self._select_scans(split, sequences, scans)
        if not self.scans:
            raise DataError(f"no scans found for split {split!r}", self.root / SEQUENCES_DIRNAME)

    def __len__(self) -> int:
        return len(self.scans)

    def scan_path(self, scan: ScanId) -> Path:
        return self.root / SEQUENCES_DIRNAME / scan.sequence / VELODYNE_DIRNAME / f"{scan.scan}{SCAN_SUFFIX}"

    def label_path(self, scan: ScanId) -> Path:
        return self.root / SEQUENCES_DIRNAME / scan.sequence / LABELS_DIRNAME / f"{scan.scan}{LABEL_SUFFIX}"

    def load(self, index: int) -> SceneSample:
        scan_id = self.scans[index]
        scan_path = self.scan_path(scan_id)
        scan = read_velodyne_scan(scan_path)
        if self.labelled:
            label_path = self.label_path(scan_id)
            labels = self.label_map.map(read_semantic_ids(label_path, len(scan)), label_path)
        else:
            labels = np.full(len(scan), IGNORE_INDEX, dtype=np.int64)
        return SceneSample(
            points=np.ascontiguousarray(scan[:, :3]),
            features=np.ascontiguousarray(scan[:, 3:]),
            labels=labels,
            source=str(scan_path),
        )

    def _select_scans(
        self,
        split: str,
        sequences: Sequence[int | str] | None,
        scans: Sequence[str | ScanId] | None,
    ) -> tuple[ScanId, ...]:
        if scans is not None:
            if sequences is not None:
                raise ValueError("give either sequences or scans, not both")
            selected = tuple(scan if isinstance(scan, ScanId) else ScanId.parse(scan) for scan in scans)
        else:
            names = (
                [normalize_sequence(name) for name in sequences] if sequences is not None else _split_sequences(split)
            )
            selected = tuple(scan for name in names for scan in self._list_sequence(name))
        for scan in selected:
            self._check_scan_files(scan)
        return selected

    def _list_sequence(self, sequence: str) -> list[ScanId]:
        velodyne = self.root / SEQUENCES_DIRNAME / sequence / VELODYNE_DIRNAME
        if not velodyne.is_dir():
            raise DataError(f"sequence {sequence} has no {VELODYNE_DIRNAME} directory", velodyne)
        if self.labelled and not velodyne.with_name(LABELS_DIRNAME).is_dir():
            raise DataError(
                f"sequence {sequence} has no {LABELS_DIRNAME} directory (use labelled=False to read scans only)",
                velodyne.with_name(LABELS_DIRNAME),
            )
        return [ScanId(sequence, path.stem) for path in sorted(velodyne.glob(f"*{SCAN_SUFFIX}"))]

    def _check_scan_files(self, scan: ScanId) -> None:
        if not self.scan_path(scan).is_file():
            raise DataError(f"scan {scan} not found", self.scan_path(scan))
        if self.labelled and not self.label_path(scan).is_file():
            raise DataError(f"labels of scan {scan} not found", self.label_path(scan))


def _split_sequences(split: str) -> tuple[str, ...]:
    if split not in SPLIT_SEQUENCES:
        raise ValueError(
            f"SemanticKITTI split must be one of {tuple(SPLIT_SEQUENCES)} unless sequences or scans are given, "
            f"got {split!r}"
        )
    return SPLIT_SEQUENCES[split]


def read_semantickitti_labels(root: Path | None) -> DatasetLabels:
    """Classes, raw ids and colours of ``<root>/semantic-kitti.yaml`` when present, else the official tables.

    The yaml's own ``color_map`` colours its classes (through its ``learning_map_inv``); without one, the
    official colours do.
    """
    yaml_path = root / LABEL_CONFIG_FILENAME if root is not None else None
    if yaml_path is not None and yaml_path.is_file():
        tables = KittiLabelTables.from_yaml(yaml_path)
        colours = tables.colours()
    else:
        tables, colours = KittiLabelTables.official(), None
    inverse = tables.learning_map_inv if colours is not None else OFFICIAL_LEARNING_MAP_INV
    palette = semantickitti_palette(colours or OFFICIAL_COLOR_MAP_BGR, inverse)
    return DatasetLabels(tables.class_names(), palette, tables.original_ids(), tables.lookup(IGNORE_INDEX))


def _semantickitti_pipeline(settings: PipelineSettings) -> DatasetPipeline:
    return settings.semantickitti


@register_dataset("semantickitti", Task.SEGMENTATION, KittiLabelTables.official().class_names(), inputs=INTENSITY,
                  pipeline=_semantickitti_pipeline, palette=semantickitti_palette(), needs_root=True,
                  read_labels=read_semantickitti_labels, splits=tuple(SPLIT_SEQUENCES))
def open_semantickitti_split(request: DatasetRequest) -> Dataset:
    """The split's sequences, or data.train_scans / data.eval_scans when set; with ``data.folds``, the fold's
    part of the training and evaluation scans pooled (in that order: leave-one-scan-out when data.folds is
    their number)."""
    data = request.data
    choice = fold_choice(data)
    if choice is None:
        scans = data.train_scans if request.train else data.eval_scans
        return SemanticKITTI(request.root, request.split, scans=scans, transform=request.transform,
                             seed=data.dataset_seed)
    pooled = SemanticKITTI(request.root, request.split, scans=_pooled_scans(request), transform=request.transform,
                           seed=data.dataset_seed)
    return fold_dataset(pooled, choice, request.train)


def _pooled_scans(request: DatasetRequest) -> list[ScanId]:
    """The training then the evaluation scans, each once: the explicit lists, else their splits' sequences."""
    data = request.data
    pooled: list[ScanId] = []
    for scans, split in ((data.train_scans, "train"), (data.eval_scans, data.eval_split)):
        if scans is None:
            listed = SemanticKITTI(request.root, split, transform=None, seed=data.dataset_seed).scans
        else:
            listed = tuple(ScanId.parse(scan) for scan in scans)
        pooled += [scan for scan in listed if scan not in pooled]
    return pooled
