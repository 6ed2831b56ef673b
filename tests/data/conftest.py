"""Fixture datasets written into tmp_path in each standard layout, and access to the shared real data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

FIXTURE_POINTS_PER_SHAPE = 64
MODELNET_FIXTURE_CLASSES = ("chair", "night_stand", "table")
MODELNET_FIXTURE_TRAIN_IDS = ("chair_0001", "chair_0002", "night_stand_0001", "table_0001", "table_0002")
MODELNET_FIXTURE_TEST_IDS = ("chair_0003", "night_stand_0002", "table_0003")

H5_POINTS = 32
H5_TRAIN_FILES = {"ply_data_train0.h5": 3, "ply_data_train1.h5": 2}
H5_TEST_FILES = {"ply_data_test0.h5": 2}

S3DIS_CORRUPT_LINE = 3  # line number of the NUL byte in the fixture's Area_5/hallway_6 ceiling_1.txt
S3DIS_FIXTURE_ROOMS = {
    1: {"office_1": ("ceiling_1", "floor_1", "chair_1"), "hallway_1": ("wall_1", "stairs_1")},
    5: {"hallway_6": ("ceiling_1", "floor_1"), "office_2": ("table_1", "clutter_1", "bookcase_1")},
}
S3DIS_POINTS_PER_OBJECT = 5

KITTI_FIXTURE_SCANS = {"00": ("000000", "000001"), "08": ("000000",)}
KITTI_POINTS_PER_SCAN = 50
KITTI_FIXTURE_CONFIG = {
    "labels": {0: "unlabeled", 10: "car", 40: "road", 50: "building", 252: "moving-car"},
    "learning_map": {0: 0, 10: 1, 40: 2, 50: 3, 252: 1},
    "learning_map_inv": {0: 0, 1: 10, 2: 40, 3: 50},
}
KITTI_FIXTURE_RAW_IDS = (0, 10, 40, 50, 252)


@dataclass(frozen=True)
class ModelNetTree:
    """A generated modelnet40_normal_resampled directory and what it holds."""

    root: Path
    class_names: tuple[str, ...] = MODELNET_FIXTURE_CLASSES
    train_ids: tuple[str, ...] = MODELNET_FIXTURE_TRAIN_IDS
    test_ids: tuple[str, ...] = MODELNET_FIXTURE_TEST_IDS
    points_per_shape: int = FIXTURE_POINTS_PER_SHAPE

    def shape_path(self, shape_id: str) -> Path:
        return self.root / shape_id.rsplit("_", 1)[0] / f"{shape_id}.txt"

    def write_shape(self, shape_id: str, points: np.ndarray) -> None:
        write_resampled_shape(self.shape_path(shape_id), points)


@dataclass(frozen=True)
class ModelNetH5Tree:
    """A generated modelnet40_ply_hdf5_2048 directory and what it holds."""

    root: Path
    class_names: tuple[str, ...] = MODELNET_FIXTURE_CLASSES
    train_files: tuple[tuple[str, int], ...] = tuple(H5_TRAIN_FILES.items())
    test_files: tuple[tuple[str, int], ...] = tuple(H5_TEST_FILES.items())
    points_per_shape: int = H5_POINTS


@dataclass(frozen=True)
class S3disTree:
    """A generated Stanford3dDataset_v1.2_Aligned_Version directory and what it holds."""

    root: Path
    rooms: dict
    points_per_object: int = S3DIS_POINTS_PER_OBJECT
    corrupt_line: int = S3DIS_CORRUPT_LINE

    def annotation_path(self, area: int, room: str, name: str) -> Path:
        return self.root / f"Area_{area}" / room / "Annotations" / f"{name}.txt"


@dataclass(frozen=True)
class SemanticKittiTree:
    """A generated SemanticKITTI directory and what it holds."""

    root: Path
    scans: dict
    points_per_scan: int = KITTI_POINTS_PER_SCAN

    def scan_path(self, sequence: str, scan: str) -> Path:
        return self.root / "sequences" / sequence / "velodyne" / f"{scan}.bin"

    def label_path(self, sequence: str, scan: str) -> Path:
        return self.root / "sequences" / sequence / "labels" / f"{scan}.label"


def require_shared(relative: str) -> Path:
    """Path of a real dataset under ../shared/data, or skip the test when it is not there."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data {relative} not found under {SHARED_DATA.resolve()}")
    return path


def random_points(seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (count, 3)).astype(np.float32)


def write_modelnet40_resampled(root: Path) -> Path:
    """A modelnet40_normal_resampled tree of 8 shapes over 3 classes (one with an underscore)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "modelnet40_shape_names.txt").write_text("\n".join(MODELNET_FIXTURE_CLASSES) + "\n")
    (root / "modelnet40_train.txt").write_text("\n".join(MODELNET_FIXTURE_TRAIN_IDS) + "\n")
    (root / "modelnet40_test.txt").write_text("\n".join(MODELNET_FIXTURE_TEST_IDS) + "\n")
    for seed, shape_id in enumerate(MODELNET_FIXTURE_TRAIN_IDS + MODELNET_FIXTURE_TEST_IDS):
        class_name = shape_id.rsplit("_", 1)[0]
        (root / class_name).mkdir(exist_ok=True)
        write_resampled_shape(root / class_name / f"{shape_id}.txt", random_points(seed, FIXTURE_POINTS_PER_SHAPE))
    return root


def write_resampled_shape(path: Path, points: np.ndarray) -> None:
    normals = points / np.linalg.norm(points, axis=1, keepdims=True)
    rows = np.concatenate([points, normals], axis=1)
    path.write_text("\n".join(",".join(f"{value:.6f}" for value in row) for row in rows) + "\n")


def write_modelnet40_h5(root: Path) -> Path:
    """A modelnet40_ply_hdf5_2048 directory with two train files and one test file."""
    import h5py

    root.mkdir(parents=True, exist_ok=True)
    (root / "shape_names.txt").write_text("\n".join(MODELNET_FIXTURE_CLASSES) + "\n")
    for seed, (name, count) in enumerate({**H5_TRAIN_FILES, **H5_TEST_FILES}.items()):
        rng = np.random.default_rng(seed)
        with h5py.File(root / name, "w") as file:
            file["data"] = rng.uniform(-1.0, 1.0, (count, H5_POINTS, 3)).astype(np.float32)
            file["label"] = (np.arange(count) % len(MODELNET_FIXTURE_CLASSES)).astype(np.uint8)[:, None]
    return root


def write_s3dis_tree(root: Path) -> Path:
    """Stanford3dDataset_v1.2_Aligned_Version with areas 1 and 5, two rooms each; Area_5/hallway_6's
    ceiling_1.txt carries the archive's NUL byte between two colour values."""
    dataset = root / "Stanford3dDataset_v1.2_Aligned_Version"
    rng = np.random.default_rng(0)
    for area, rooms in S3DIS_FIXTURE_ROOMS.items():
        for room, objects in rooms.items():
            annotations = dataset / f"Area_{area}" / room / "Annotations"
            annotations.mkdir(parents=True)
            for name in objects:
                lines = [_s3dis_line(rng) for _ in range(S3DIS_POINTS_PER_OBJECT)]
                (annotations / f"{name}.txt").write_text("\n".join(lines) + "\n")
    corrupt = dataset / "Area_5" / "hallway_6" / "Annotations" / "ceiling_1.txt"
    lines = corrupt.read_text().splitlines()
    lines[S3DIS_CORRUPT_LINE - 1] = "22.350 6.692 3.048 185\x00187 182"
    corrupt.write_text("\n".join(lines) + "\n")
    return dataset


def _s3dis_line(rng: np.random.Generator) -> str:
    x, y, z = rng.uniform(0.0, 5.0, 3)
    red, green, blue = rng.integers(0, 256, 3)
    return f"{x:.3f} {y:.3f} {z:.3f} {red} {green} {blue}"


def write_semantickitti_tree(root: Path) -> Path:
    """sequences 00 (two scans) and 08 (one scan) with labels, and a small label config."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "semantic-kitti.yaml").write_text(yaml.safe_dump(KITTI_FIXTURE_CONFIG))
    for seed, (sequence, scans) in enumerate(KITTI_FIXTURE_SCANS.items()):
        rng = np.random.default_rng(seed)
        velodyne = root / "sequences" / sequence / "velodyne"
        labels = root / "sequences" / sequence / "labels"
        velodyne.mkdir(parents=True)
        labels.mkdir()
        for scan in scans:
            rng.uniform(-20.0, 20.0, (KITTI_POINTS_PER_SCAN, 4)).astype(np.float32).tofile(velodyne / f"{scan}.bin")
            semantic = rng.choice(KITTI_FIXTURE_RAW_IDS, KITTI_POINTS_PER_SCAN).astype(np.uint32)
            instance = rng.integers(0, 5, KITTI_POINTS_PER_SCAN).astype(np.uint32)
            (semantic | (instance << 16)).tofile(labels / f"{scan}.label")
    return root


@pytest.fixture
def modelnet40_tree(tmp_path: Path) -> ModelNetTree:
    return ModelNetTree(write_modelnet40_resampled(tmp_path / "modelnet40_normal_resampled"))


@pytest.fixture
def modelnet40_h5_tree(tmp_path: Path) -> ModelNetH5Tree:
    pytest.importorskip("h5py")
    return ModelNetH5Tree(write_modelnet40_h5(tmp_path / "modelnet40_ply_hdf5_2048"))


@pytest.fixture
def s3dis_tree(tmp_path: Path) -> S3disTree:
    return S3disTree(write_s3dis_tree(tmp_path / "s3dis"), S3DIS_FIXTURE_ROOMS)


@pytest.fixture
def semantickitti_tree(tmp_path: Path) -> SemanticKittiTree:
    return SemanticKittiTree(write_semantickitti_tree(tmp_path / "semantickitti"), KITTI_FIXTURE_SCANS)


@pytest.fixture
def shared_modelnet40_root() -> Path:
    return require_shared("modelnet40_normal_resampled")


@pytest.fixture
def shared_semantickitti_root() -> Path:
    return require_shared("semantickitti")
