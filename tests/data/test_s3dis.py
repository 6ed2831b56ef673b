import os

import numpy as np
import pytest

from image2point.data.s3dis import S3DIS, S3DIS_CLASS_NAMES, crop_to_cube, read_annotation_file
from image2point.data.sample import SceneSample
from image2point.errors import DataError


def room_index(dataset: S3DIS, name: str) -> int:
    return [room.name for room in dataset.rooms].index(name)


def expected_labels(objects: tuple[str, ...], points_per_object: int) -> np.ndarray:
    # Annotation files are read in sorted order; stairs counts as clutter.
    names = sorted(objects)
    classes = [
        S3DIS_CLASS_NAMES.index("clutter" if name.startswith("stairs") else name.rsplit("_", 1)[0]) for name in names
    ]
    return np.repeat(classes, points_per_object)


def test_splits_select_their_areas_and_rooms(s3dis_tree, tmp_path):
    test = S3DIS(s3dis_tree.root, "test", cache_dir=tmp_path / "cache")
    assert test.areas == (5,)
    assert [room.key for room in test.rooms] == ["Area_5/hallway_6", "Area_5/office_2"]
    train = S3DIS(s3dis_tree.root.parent, "train", areas=[1], cache_dir=tmp_path / "cache")
    assert [room.name for room in train.rooms] == ["hallway_1", "office_1"]
    assert train.num_classes == len(S3DIS_CLASS_NAMES) == 13


def test_default_train_split_needs_areas_1_to_4_and_6(s3dis_tree):
    with pytest.raises(DataError, match="area 2 not found"):
        S3DIS(s3dis_tree.root, "train")


def test_room_sample_has_rgb_features_and_labels_by_file_name(s3dis_tree, tmp_path):
    dataset = S3DIS(s3dis_tree.root, "train", areas=[1], cache_dir=tmp_path / "cache")
    for name in ("office_1", "hallway_1"):
        sample = dataset[room_index(dataset, name)]
        objects = s3dis_tree.rooms[1][name]
        assert isinstance(sample, SceneSample)
        assert sample.points.shape == (len(objects) * s3dis_tree.points_per_object, 3)
        assert sample.features.dtype == np.float32 and sample.features.shape == sample.points.shape
        assert 0.0 <= sample.features.min() and sample.features.max() <= 1.0
        np.testing.assert_array_equal(sample.labels, expected_labels(objects, s3dis_tree.points_per_object))


def test_stairs_are_merged_into_clutter(s3dis_tree, tmp_path):
    dataset = S3DIS(s3dis_tree.root, "train", areas=[1], cache_dir=tmp_path / "cache")
    labels = dataset[room_index(dataset, "hallway_1")].labels
    assert S3DIS_CLASS_NAMES.index("clutter") in labels


def test_the_known_corrupt_line_of_area_5_hallway_6_is_repaired(s3dis_tree, tmp_path):
    path = s3dis_tree.annotation_path(5, "hallway_6", "ceiling_1")
    table = read_annotation_file(path)
    assert len(table) == s3dis_tree.points_per_object
    np.testing.assert_allclose(table[s3dis_tree.corrupt_line - 1], [22.350, 6.692, 3.048, 185, 187, 182], rtol=1e-6)
    dataset = S3DIS(s3dis_tree.root, "test", cache_dir=tmp_path / "cache")
    sample = dataset[room_index(dataset, "hallway_6")]
    np.testing.assert_allclose(sample.features[s3dis_tree.corrupt_line - 1], np.array([185, 187, 182]) / 255, rtol=1e-6)


def test_the_same_defect_in_another_file_is_reported_with_its_line(s3dis_tree, tmp_path):
    path = s3dis_tree.annotation_path(1, "office_1", "chair_1")
    lines = path.read_text().splitlines()
    lines[1] = "1.0 2.0 3.0 185\x00187 182"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="line 2: expected 6 whitespace-separated values") as error:
        read_annotation_file(path)
    assert error.value.path == path


def test_cache_is_written_once_and_reused(s3dis_tree, tmp_path):
    dataset = S3DIS(s3dis_tree.root, "test", cache_dir=tmp_path / "cache")
    first = dataset[0]
    cache_path = dataset.cache_path(dataset.rooms[0])
    assert cache_path.is_file()
    assert [path.name for path in cache_path.parent.iterdir()] == [cache_path.name]  # no temporary left behind
    written = cache_path.stat().st_mtime_ns
    second = dataset[0]
    assert cache_path.stat().st_mtime_ns == written
    np.testing.assert_array_equal(first.points, second.points)
    np.testing.assert_array_equal(first.labels, second.labels)


def test_stale_cache_is_rebuilt_when_a_source_file_changes(s3dis_tree, tmp_path):
    dataset = S3DIS(s3dis_tree.root, "test", cache_dir=tmp_path / "cache")
    room = dataset.rooms[room_index(dataset, "office_2")]
    before = dataset[room_index(dataset, "office_2")]
    cache_path = dataset.cache_path(room)
    older = cache_path.stat().st_mtime - 10
    os.utime(cache_path, (older, older))  # the cache now predates the annotation files
    table_path = room.annotations / "table_1.txt"
    table_path.write_text("0.0 0.0 0.0 10 20 30\n")
    after = dataset[room_index(dataset, "office_2")]
    assert after.num_points == before.num_points - s3dis_tree.points_per_object + 1


def test_prepare_builds_every_room_cache(s3dis_tree, tmp_path):
    dataset = S3DIS(s3dis_tree.root, "test", cache_dir=tmp_path / "cache")
    dataset.prepare()
    assert all(dataset.cache_path(room).is_file() for room in dataset.rooms)


def test_unknown_class_file_is_an_error(s3dis_tree, tmp_path):
    path = s3dis_tree.annotation_path(5, "office_2", "lamp_1")
    path.write_text("0 0 0 1 2 3\n")
    dataset = S3DIS(s3dis_tree.root, "test", cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="unknown S3DIS class 'lamp'") as error:
        dataset[room_index(dataset, "office_2")]
    assert error.value.path == path


def test_colour_outside_0_255_is_an_error(s3dis_tree):
    path = s3dis_tree.annotation_path(1, "office_1", "floor_1")
    path.write_text("0 0 0 1 2 3\n0 0 0 1 256 3\n")
    with pytest.raises(DataError, match="data row 2: colour"):
        read_annotation_file(path)


def test_room_without_annotations_is_an_error(s3dis_tree, tmp_path):
    (s3dis_tree.root / "Area_5" / "office_9").mkdir()
    with pytest.raises(DataError, match="no Annotations directory"):
        S3DIS(s3dis_tree.root, "test", cache_dir=tmp_path / "cache")


def test_missing_dataset_directory(tmp_path):
    with pytest.raises(DataError, match="S3DIS directory not found"):
        S3DIS(tmp_path / "absent", "test")


def _write_room(tree, area: int, room: str, objects: dict[str, np.ndarray]) -> None:
    annotations = tree.root / f"Area_{area}" / room / "Annotations"
    annotations.mkdir(parents=True)
    for name, points in objects.items():
        lines = [f"{x:.3f} {y:.3f} {z:.3f} 10 20 30" for x, y, z in points]
        (annotations / f"{name}.txt").write_text("\n".join(lines) + "\n")


def test_crop_keeps_the_half_open_cube_around_the_bounding_box_centre():
    points = np.array([[0.0, 0.0, 0.0], [20.0, 2.0, 3.0], [6.0, 1.0, 1.0], [14.0, 1.0, 1.0], [13.999, 1.0, 1.0]],
                      dtype=np.float32)
    # Centre (10, 1, 1.5); x must lie in [6, 14).
    np.testing.assert_array_equal(crop_to_cube(points, 4.0), [False, False, True, False, True])
    small = np.array([[0.0, 0.0, 0.0], [7.9, 7.9, 3.0]], dtype=np.float32)
    assert crop_to_cube(small, 4.0).all()


def test_room_wider_than_the_clip_bound_is_cropped_with_its_colours_and_labels(s3dis_tree, tmp_path):
    xs = np.linspace(0.0, 20.0, 201)
    wall = np.stack([xs, np.zeros_like(xs), np.full_like(xs, 1.0)], axis=1)
    floor = np.stack([xs, np.full_like(xs, 2.0), np.zeros_like(xs)], axis=1)
    _write_room(s3dis_tree, 5, "hallway_9", {"wall_1": wall, "floor_1": floor})
    whole = S3DIS(s3dis_tree.root, "test", cache_dir=tmp_path / "cache")
    cropped = S3DIS(s3dis_tree.root, "test", cache_dir=tmp_path / "cache", clip_bound=4.0)
    index = room_index(whole, "hallway_9")
    full, sample = whole[index], cropped[index]
    assert full.num_points == 402
    assert sample.points[:, 0].min() == pytest.approx(6.0) and sample.points[:, 0].max() < 14.0
    assert sample.num_points == 2 * 80  # x = 6.0, 6.1, ..., 13.9 of both objects
    keep = crop_to_cube(full.points, 4.0)
    np.testing.assert_array_equal(sample.labels, full.labels[keep])
    np.testing.assert_array_equal(sample.features, full.features[keep])
    # Rooms that fit inside the cube are untouched.
    other = room_index(whole, "office_2")
    np.testing.assert_array_equal(cropped[other].points, whole[other].points)


def test_clip_bound_must_be_positive(s3dis_tree):
    with pytest.raises(ValueError, match="clip_bound must be positive"):
        S3DIS(s3dis_tree.root, "test", clip_bound=0.0)
