import numpy as np
import pytest
import yaml

from image2point.data.sample import IGNORE_INDEX
from image2point.data.semantickitti import LabelMap, ScanId, SemanticKITTI, read_velodyne_scan
from image2point.errors import DataError

SEMANTICKITTI_CLASSES = 19
CAR, ROAD, BUILDING = 0, 1, 2  # training classes of the fixture's label config


def test_real_scans_two_for_training_one_for_evaluation(shared_semantickitti_root):
    train = SemanticKITTI(shared_semantickitti_root, "train", scans=["00/000000", "00/000001"])
    evaluation = SemanticKITTI(shared_semantickitti_root, "val", scans=["00/000002"])
    assert (len(train), len(evaluation)) == (2, 1)
    assert train.num_classes == SEMANTICKITTI_CLASSES
    assert train.class_names[0] == "car" and train.class_names[-1] == "traffic-sign"
    sample = evaluation[0]
    assert sample.points.dtype == np.float32 and sample.points.shape[1] == 3
    assert sample.features.shape == (sample.num_points, 1)
    valid = sample.labels[sample.labels != IGNORE_INDEX]
    assert valid.min() >= 0 and valid.max() < SEMANTICKITTI_CLASSES
    assert (sample.labels == IGNORE_INDEX).any()


def test_real_labels_match_learning_map(shared_semantickitti_root):
    dataset = SemanticKITTI(shared_semantickitti_root, sequences=["00"])
    raw = np.fromfile(dataset.label_path(dataset.scans[0]), dtype=np.uint32) & 0xFFFF
    config = yaml.safe_load((shared_semantickitti_root / "semantic-kitti.yaml").read_text())
    learned = np.array([config["learning_map"][int(raw_id)] for raw_id in raw])
    np.testing.assert_array_equal(dataset[0].labels, np.where(learned == 0, IGNORE_INDEX, learned - 1))


def test_default_splits_follow_the_official_sequences(semantickitti_tree):
    # The fixture has no sequences 01-07, 09 or 10: the train split fails on the first missing one.
    with pytest.raises(DataError, match="sequence 01 has no velodyne"):
        SemanticKITTI(semantickitti_tree.root, "train")
    train = SemanticKITTI(semantickitti_tree.root, "train", sequences=[0])
    val = SemanticKITTI(semantickitti_tree.root, "val")
    assert [str(scan) for scan in train.scans] == ["00/000000", "00/000001"]
    assert [str(scan) for scan in val.scans] == ["08/000000"]


def test_labels_drop_instance_bits_and_map_unlabeled_to_ignore(semantickitti_tree):
    dataset = SemanticKITTI(semantickitti_tree.root, "val")
    raw = np.fromfile(semantickitti_tree.label_path("08", "000000"), dtype=np.uint32) & 0xFFFF
    labels = dataset[0].labels
    np.testing.assert_array_equal(labels[raw == 0], IGNORE_INDEX)
    np.testing.assert_array_equal(labels[(raw == 10) | (raw == 252)], CAR)
    np.testing.assert_array_equal(labels[raw == 40], ROAD)
    np.testing.assert_array_equal(labels[raw == 50], BUILDING)
    assert dataset.class_names == ("car", "road", "building")


def test_scan_values_are_points_and_intensity(semantickitti_tree):
    dataset = SemanticKITTI(semantickitti_tree.root, "val")
    raw = np.fromfile(semantickitti_tree.scan_path("08", "000000"), dtype=np.float32).reshape(-1, 4)
    sample = dataset[0]
    np.testing.assert_array_equal(sample.points, raw[:, :3])
    np.testing.assert_array_equal(sample.features[:, 0], raw[:, 3])


def test_unlabelled_reading_works_without_label_files(semantickitti_tree):
    for path in (semantickitti_tree.root / "sequences" / "08" / "labels").iterdir():
        path.unlink()
    (semantickitti_tree.root / "sequences" / "08" / "labels").rmdir()
    with pytest.raises(DataError, match="no labels directory"):
        SemanticKITTI(semantickitti_tree.root, "val")
    sample = SemanticKITTI(semantickitti_tree.root, "val", labelled=False)[0]
    assert sample.num_points == semantickitti_tree.points_per_scan
    assert (sample.labels == IGNORE_INDEX).all()


def test_truncated_scan(semantickitti_tree):
    path = semantickitti_tree.scan_path("08", "000000")
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match="not a multiple of the 16-byte record") as error:
        SemanticKITTI(semantickitti_tree.root, "val")[0]
    assert error.value.path == path


def test_label_count_differs_from_point_count(semantickitti_tree):
    path = semantickitti_tree.label_path("08", "000000")
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(DataError, match="has 49 labels but the scan has 50 points") as error:
        SemanticKITTI(semantickitti_tree.root, "val")[0]
    assert error.value.path == path


def test_label_id_missing_from_learning_map_is_named(semantickitti_tree):
    path = semantickitti_tree.label_path("08", "000000")
    labels = np.fromfile(path, dtype=np.uint32)
    labels[7] = 71 | (3 << 16)
    labels.tofile(path)
    with pytest.raises(DataError, match=r"label ids \[71\] are not in learning_map") as error:
        SemanticKITTI(semantickitti_tree.root, "val")[0]
    assert error.value.path == path


def test_missing_label_config(semantickitti_tree):
    (semantickitti_tree.root / "semantic-kitti.yaml").unlink()
    with pytest.raises(DataError, match=r"semantic-kitti.yaml\) not found"):
        SemanticKITTI(semantickitti_tree.root, "val")


def test_label_config_without_learning_map(semantickitti_tree, tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text(yaml.safe_dump({"labels": {0: "unlabeled"}}))
    with pytest.raises(DataError, match="'learning_map'") as error:
        LabelMap.from_yaml(config)
    assert error.value.path == config


def test_missing_velodyne_directory(semantickitti_tree):
    with pytest.raises(DataError, match="sequence 05 has no velodyne directory"):
        SemanticKITTI(semantickitti_tree.root, sequences=["05"])


def test_explicit_scans(semantickitti_tree):
    dataset = SemanticKITTI(semantickitti_tree.root, "train", scans=["00/000001", ScanId("08", "000000")])
    assert [str(scan) for scan in dataset.scans] == ["00/000001", "08/000000"]
    with pytest.raises(DataError, match="scan 00/000009 not found"):
        SemanticKITTI(semantickitti_tree.root, scans=["00/000009"])
    with pytest.raises(ValueError, match="not both"):
        SemanticKITTI(semantickitti_tree.root, sequences=["00"], scans=["00/000000"])
    with pytest.raises(ValueError, match="00/000000"):
        ScanId.parse("000000")


def test_read_velodyne_scan_rejects_non_finite_values(tmp_path):
    path = tmp_path / "scan.bin"
    np.array([[0, 0, 0, 1], [np.nan, 0, 0, 1]], np.float32).tofile(path)
    with pytest.raises(DataError, match="point 1 has NaN"):
        read_velodyne_scan(path)
