"""KITTI velodyne scans and SemanticKITTI labels: the one reader of each file, and the label tables.

A velodyne scan (``.bin``) is float32 records of x, y, z, intensity. A SemanticKITTI ``.label`` file
holds one uint32 per point: the semantic id in the lower 16 bits, the instance id above them.
``semantic-kitti.yaml`` names the raw semantic ids (``labels``), maps them to learned classes
(``learning_map``; learned class 0, "unlabeled", is no class), maps learned classes back
(``learning_map_inv``) and colours raw ids (``color_map``, BGR). The official tables are kept here for
machines without the dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from image2point.errors import DataError

SCAN_FIELDS = ("x", "y", "z", "intensity")
SCAN_VALUE_DTYPE = np.dtype("<f4")
LABEL_DTYPE = np.dtype("<u4")
SEMANTIC_BITS = 16
SEMANTIC_MASK = (1 << SEMANTIC_BITS) - 1
LABEL_CONFIG_FILENAME = "semantic-kitti.yaml"
# learning_map sends ignored raw ids (unlabeled, outlier, other-structure, ...) to this class.
LEARNING_IGNORE_CLASS = 0
UNMAPPED = -1  # lookup entry of a raw id that learning_map does not mention

# The official semantic-kitti.yaml: raw id -> learned class, learned class -> raw id, the names of
# the raw ids the learned classes stand for, and raw id -> BGR colour.
OFFICIAL_LEARNING_MAP: Mapping[int, int] = {
    0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8, 40: 9, 44: 10, 48: 11,
    49: 12, 50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17, 80: 18, 81: 19, 99: 0, 252: 1, 253: 7,
    254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5,
}
OFFICIAL_LEARNING_MAP_INV: Mapping[int, int] = {
    0: 0, 1: 10, 2: 11, 3: 15, 4: 18, 5: 20, 6: 30, 7: 31, 8: 32, 9: 40, 10: 44, 11: 48, 12: 49, 13: 50,
    14: 51, 15: 70, 16: 71, 17: 72, 18: 80, 19: 81,
}
OFFICIAL_LABEL_NAMES: Mapping[int, str] = {
    0: "unlabeled", 10: "car", 11: "bicycle", 15: "motorcycle", 18: "truck", 20: "other-vehicle", 30: "person",
    31: "bicyclist", 32: "motorcyclist", 40: "road", 44: "parking", 48: "sidewalk", 49: "other-ground",
    50: "building", 51: "fence", 70: "vegetation", 71: "trunk", 72: "terrain", 80: "pole", 81: "traffic-sign",
}
OFFICIAL_COLOR_MAP_BGR: Mapping[int, tuple[int, int, int]] = {
    0: (0, 0, 0), 1: (0, 0, 255), 10: (245, 150, 100), 11: (245, 230, 100), 13: (250, 80, 100),
    15: (150, 60, 30), 16: (255, 0, 0), 18: (180, 30, 80), 20: (255, 0, 0), 30: (30, 30, 255),
    31: (200, 40, 255), 32: (90, 30, 150), 40: (255, 0, 255), 44: (255, 150, 255), 48: (75, 0, 75),
    49: (75, 0, 175), 50: (0, 200, 255), 51: (50, 120, 255), 52: (0, 150, 255), 60: (170, 255, 150),
    70: (0, 175, 0), 71: (0, 60, 135), 72: (80, 240, 150), 80: (150, 240, 255), 81: (0, 0, 255),
    99: (255, 255, 50), 252: (245, 150, 100), 253: (200, 40, 255), 254: (30, 30, 255), 255: (90, 30, 150),
    256: (255, 0, 0), 257: (250, 80, 100), 258: (180, 30, 80), 259: (255, 0, 0),
}


def read_scan_records(path: str | Path, names: Sequence[str] = SCAN_FIELDS) -> np.ndarray:
    """float32 [N, len(names)]: the records of a KITTI velodyne file (x, y, z, intensity by default)."""
    path = Path(path)
    record_bytes = len(names) * SCAN_VALUE_DTYPE.itemsize
    try:
        size = path.stat().st_size
    except OSError as error:
        raise DataError(f"cannot read scan: {error.strerror or error}", path) from error
    if size == 0:
        raise DataError("empty file (0 bytes)", path)
    if record_bytes == 0 or size % record_bytes:
        raise DataError(
            f"size {size} bytes is not a multiple of the {record_bytes}-byte record of float32 "
            f"{', '.join(names)}: the file is truncated or holds other records",
            path,
        )
    return np.fromfile(path, dtype=SCAN_VALUE_DTYPE).reshape(-1, len(names))


def read_label_file(path: str | Path) -> np.ndarray:
    """uint32 [N]: the raw labels of a SemanticKITTI .label file, as stored (instance id included)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise DataError(f"cannot read labels: {error.strerror or error}", path) from error
    if size % LABEL_DTYPE.itemsize:
        raise DataError(f"size {size} bytes is not a multiple of the 4-byte uint32 label: the file is truncated", path)
    return np.fromfile(path, dtype=LABEL_DTYPE).astype(np.uint32)


@dataclass(frozen=True)
class KittiLabelTables:
    """The label tables of a semantic-kitti.yaml (or the official ones), checked when read.

    color_map stays as read until :meth:`colours` checks it: training never looks at colours.
    """

    learning_map: Mapping[int, int]
    learning_map_inv: Mapping[int, int]
    raw_names: Mapping[int, str]
    color_map: object = None
    source: Path | None = None

    @classmethod
    def official(cls) -> KittiLabelTables:
        return cls(OFFICIAL_LEARNING_MAP, OFFICIAL_LEARNING_MAP_INV, OFFICIAL_LABEL_NAMES, OFFICIAL_COLOR_MAP_BGR)

    @classmethod
    def from_yaml(cls, path: str | Path) -> KittiLabelTables:
        path = Path(path)
        config = _read_yaml(path)
        learning_map = _id_mapping(config, "learning_map", path, int)
        learning_map_inv = _id_mapping(config, "learning_map_inv", path, int)
        raw_names = _id_mapping(config, "labels", path, str)
        if min(learning_map) < 0 or max(learning_map) > SEMANTIC_MASK or min(learning_map.values()) < 0:
            raise DataError(f"learning_map must map ids in 0..{SEMANTIC_MASK} to classes >= 0", path)
        return cls(learning_map, learning_map_inv, raw_names, config.get("color_map"), path)

    @property
    def num_classes(self) -> int:
        """Learned classes 1..K of learning_map (class 0 is no class)."""
        return max(self.learning_map.values())

    def class_names(self) -> tuple[str, ...]:
        """The name of each learned class 1..K, through learning_map_inv and labels."""
        return tuple(self._name_of(learned) for learned in range(1, self.num_classes + 1))

    def original_ids(self) -> tuple[int, ...]:
        """The raw id each learned class 1..K is written back as (learning_map_inv)."""
        return tuple(int(self.learning_map_inv[learned]) for learned in range(1, self.num_classes + 1))

    def lookup(self, ignore_index: int) -> np.ndarray:
        """int64 [2^16]: raw semantic id -> class 0..K-1, ``ignore_index`` for learned class 0, UNMAPPED
        for ids learning_map does not mention."""
        lookup = np.full(SEMANTIC_MASK + 1, UNMAPPED, dtype=np.int64)
        for raw_id, learned in self.learning_map.items():
            lookup[raw_id] = ignore_index if learned == LEARNING_IGNORE_CLASS else learned - 1
        return lookup

    def colours(self) -> Mapping[int, tuple[int, int, int]] | None:
        """raw id -> (b, g, r) of color_map, None when the yaml has none."""
        if self.color_map is None:
            return None
        if not isinstance(self.color_map, Mapping):
            raise DataError("'color_map' is not a mapping of raw id to [b, g, r]", self.source)
        colours = {}
        for raw, colour in self.color_map.items():
            if not isinstance(raw, int) or not isinstance(colour, (list, tuple)) or len(colour) != 3:
                raise DataError(f"'color_map' entry {raw!r}: {colour!r} is not an id -> [b, g, r] pair", self.source)
            colours[raw] = (int(colour[0]), int(colour[1]), int(colour[2]))
        return colours

    def _name_of(self, learned: int) -> str:
        if learned not in self.learning_map_inv:
            raise DataError(f"learning_map_inv has no entry for class {learned}", self.source)
        raw_id = self.learning_map_inv[learned]
        if raw_id not in self.raw_names:
            raise DataError(f"labels has no name for id {raw_id} (learning_map_inv of class {learned})", self.source)
        return self.raw_names[raw_id]


def _read_yaml(path: Path) -> dict[Any, Any]:
    if not path.is_file():
        raise DataError("SemanticKITTI label config (semantic-kitti.yaml) not found", path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise DataError(f"cannot read label config: {error}", path) from error
    if not isinstance(config, dict):
        raise DataError("label config is not a YAML mapping", path)
    return config


def _id_mapping(config: dict[Any, Any], key: str, path: Path, value_type: type) -> dict[int, Any]:
    """The config's mapping from integer ids to values of value_type (class ids or names)."""
    mapping = config.get(key)
    if not isinstance(mapping, dict) or not mapping:
        raise DataError(f"missing or empty {key!r} mapping", path)
    for raw, value in mapping.items():
        if not isinstance(raw, int) or isinstance(value, bool) or not isinstance(value, value_type):
            raise DataError(f"{key!r} entry {raw!r}: {value!r} is not an integer -> {value_type.__name__} pair", path)
    return mapping
