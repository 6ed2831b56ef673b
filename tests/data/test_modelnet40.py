from pathlib import Path

import numpy as np
import pytest

from image2point.data.modelnet40 import ModelNet40, ModelNet40H5, open_modelnet40, sample_shape_points
from image2point.data.sample import ShapeSample, normalize_to_unit_sphere
from image2point.errors import DataError
from image2point.voxelize import voxelize

SHARED_TRAIN_SHAPES = 94
SHARED_TEST_SHAPES = 33
SHARED_POINTS_PER_SHAPE = 10_000
MODELNET40_CLASSES = 40


def assert_unit_sphere(sample: ShapeSample) -> None:
    np.testing.assert_allclose(sample.points.mean(axis=0), 0.0, atol=1e-5)
    assert np.linalg.norm(sample.points, axis=1).max() == pytest.approx(1.0, abs=1e-5)


def test_real_modelnet40_train_split_loads_every_shape(shared_modelnet40_root):
    dataset = ModelNet40(shared_modelnet40_root, "train")
    assert len(dataset) == SHARED_TRAIN_SHAPES
    assert dataset.num_classes == MODELNET40_CLASSES
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample.points.shape == (SHARED_POINTS_PER_SHAPE, 3) and sample.features is None
        assert dataset.class_names[sample.label] == Path(sample.source).parent.name
        assert_unit_sphere(sample)
    np.testing.assert_array_equal(dataset.labels, [dataset[i].label for i in range(len(dataset))])


def test_real_modelnet40_test_split_keeps_the_first_points(shared_modelnet40_root):
    dataset = ModelNet40(shared_modelnet40_root, "test", num_points=1024)
    assert len(dataset) == SHARED_TEST_SHAPES
    sample = dataset[0]
    raw = np.loadtxt(dataset.shape_path(0), delimiter=",", dtype=np.float32)[:1024, :3]
    np.testing.assert_allclose(sample.points, normalize_to_unit_sphere(raw, "x"), atol=1e-6)


def test_random_point_sampling_draws_distinct_points_in_file_order():
    points = np.arange(300, dtype=np.float32).reshape(100, 3)
    chosen = sample_shape_points(points, 40, "random", seed=0, index=7, source="x")
    rows = chosen[:, 0].astype(int) // 3
    assert len(rows) == 40 and len(set(rows)) == 40 and np.all(np.diff(rows) > 0)
    assert not np.array_equal(rows, np.arange(40))
    np.testing.assert_array_equal(sample_shape_points(points, 40, "first", 0, 7, "x"), points[:40])
    np.testing.assert_array_equal(sample_shape_points(points, 100, "random", 0, 7, "x"), points)


def test_random_point_sampling_is_a_fixed_subset_per_shape(modelnet40_tree):
    dataset = ModelNet40(modelnet40_tree.root, "train", num_points=16, point_sampling="random", seed=3)
    sample = dataset[1]
    assert sample.points.shape == (16, 3)
    assert_unit_sphere(sample)
    # The same every epoch and for a new dataset with the same seed; another seed draws other points.
    dataset.set_epoch(5)
    np.testing.assert_array_equal(dataset[1].points, sample.points)
    again = ModelNet40(modelnet40_tree.root, "train", num_points=16, point_sampling="random", seed=3)
    np.testing.assert_array_equal(again[1].points, sample.points)
    other = ModelNet40(modelnet40_tree.root, "train", num_points=16, point_sampling="random", seed=4)
    assert not np.array_equal(other[1].points, sample.points)
    first = ModelNet40(modelnet40_tree.root, "train", num_points=16)
    assert not np.array_equal(first[1].points, sample.points)
    with pytest.raises(ValueError, match="point_sampling must be one of"):
        ModelNet40(modelnet40_tree.root, "train", point_sampling="fps")


def test_real_first_points_are_farthest_point_ordered_and_cover_more_voxels(shared_modelnet40_root):
    """Why the paper recipes read a random subset: the files' prefixes are more even than the i.i.d. surface
    samples of the authors' HDF5 files, so the first 2,048 points occupy more voxels than 2,048 random ones."""
    first = ModelNet40(shared_modelnet40_root, "train", num_points=2048)
    random = ModelNet40(shared_modelnet40_root, "train", num_points=2048, point_sampling="random")
    shapes = range(0, len(first), 8)
    first_voxels = np.mean([voxelize(first[i].points, 0.05).num_voxels for i in shapes])
    random_voxels = np.mean([voxelize(random[i].points, 0.05).num_voxels for i in shapes])
    assert first_voxels > 1.15 * random_voxels


def test_fixture_txt_layout_labels_follow_the_shape_names_file(modelnet40_tree):
    train = ModelNet40(modelnet40_tree.root, "train")
    test = ModelNet40(modelnet40_tree.root, "test", num_points=16)
    assert train.class_names == modelnet40_tree.class_names
    assert train.shape_ids == modelnet40_tree.train_ids and test.shape_ids == modelnet40_tree.test_ids
    np.testing.assert_array_equal(train.labels, [0, 0, 1, 2, 2])
    assert train[2].label == 1 and train[2].source == str(modelnet40_tree.shape_path("night_stand_0001"))
    assert train[0].points.shape == (modelnet40_tree.points_per_shape, 3)
    assert test[0].points.shape == (16, 3)
    assert_unit_sphere(test[1])


def test_num_points_above_the_file_size_is_an_error_naming_the_file(modelnet40_tree):
    dataset = ModelNet40(modelnet40_tree.root, "train", num_points=modelnet40_tree.points_per_shape + 1)
    with pytest.raises(DataError, match="fewer than num_points") as error:
        dataset[0]
    assert error.value.path == modelnet40_tree.shape_path("chair_0001")


def test_missing_list_file(modelnet40_tree):
    (modelnet40_tree.root / "modelnet40_test.txt").unlink()
    with pytest.raises(DataError, match="not found") as error:
        ModelNet40(modelnet40_tree.root, "test")
    assert error.value.path.name == "modelnet40_test.txt"


def test_list_naming_a_missing_shape(modelnet40_tree):
    modelnet40_tree.shape_path("table_0002").unlink()
    with pytest.raises(DataError, match=r"line 5: shape 'table_0002' has no file") as error:
        ModelNet40(modelnet40_tree.root, "train")
    assert error.value.path.name == "modelnet40_train.txt"


def test_list_naming_an_unknown_class(modelnet40_tree):
    list_path = modelnet40_tree.root / "modelnet40_train.txt"
    list_path.write_text(list_path.read_text() + "sofa_0001\n")
    with pytest.raises(DataError, match=r"line 6: .*class 'sofa'"):
        ModelNet40(modelnet40_tree.root, "train")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("0.1,0.2,0.3,0,0,1\n0.1,0.2,0.3,0,0\n", "line 2: expected 6"),
        ("0.1,0.2,0.3,0,0,1\n0.1,abc,0.3,0,0,1\n", "line 2: 'abc' is not a number"),
        ("0.1,0.2,0.3,0,0,1\n0.1,0.2,nan,0,0,1\n", "line 2: 'nan' is not a finite"),
        ("", "empty"),
    ],
)
def test_malformed_shape_file_names_file_and_line(modelnet40_tree, content, problem):
    shape_path = modelnet40_tree.shape_path("chair_0002")
    shape_path.write_text(content)
    dataset = ModelNet40(modelnet40_tree.root, "train")
    with pytest.raises(DataError, match=problem) as error:
        dataset[1]
    assert error.value.path == shape_path


def test_degenerate_shape_cannot_be_normalised(modelnet40_tree):
    modelnet40_tree.write_shape("chair_0001", np.ones((8, 3), np.float32))
    with pytest.raises(DataError, match="coincide"):
        ModelNet40(modelnet40_tree.root, "train")[0]


def test_h5_layout_concatenates_files_in_numeric_order(modelnet40_h5_tree):
    train = ModelNet40H5(modelnet40_h5_tree.root, "train", num_points=20)
    test = ModelNet40H5(modelnet40_h5_tree.root, "test")
    assert len(train) == sum(count for _, count in modelnet40_h5_tree.train_files)
    assert len(test) == sum(count for _, count in modelnet40_h5_tree.test_files)
    assert train.class_names == modelnet40_h5_tree.class_names
    np.testing.assert_array_equal(train.labels, [0, 1, 2, 0, 1])
    assert train[3].source.endswith("ply_data_train1.h5[0]")
    assert train[3].points.shape == (20, 3) and test[0].points.shape == (modelnet40_h5_tree.points_per_shape, 3)
    assert_unit_sphere(train[4])


def rewrite_h5(path: Path, **arrays: np.ndarray) -> None:
    import h5py

    with h5py.File(path, "w") as file:
        for key, array in arrays.items():
            file[key] = array


def test_h5_missing_dataset_key(modelnet40_h5_tree):
    rewrite_h5(modelnet40_h5_tree.root / "ply_data_test0.h5", points=np.zeros((2, 8, 3), np.float32))
    with pytest.raises(DataError, match="missing dataset 'data'") as error:
        ModelNet40H5(modelnet40_h5_tree.root, "test")
    assert error.value.path.name == "ply_data_test0.h5"


@pytest.mark.parametrize(
    ("points", "labels", "problem"),
    [
        (np.zeros((2, 8, 3)), np.array([[0], [7]]), "sample 1 has label 7"),
        (np.full((2, 8, 3), np.nan), np.array([[0], [1]]), "sample 0 has NaN"),
        (np.zeros((2, 8, 2)), np.array([[0], [1]]), r"shape \[B, N, 3\]"),
        (np.zeros((2, 8, 3)), np.array([[0], [1], [2]]), "'label' must have shape"),
    ],
)
def test_h5_bad_contents(modelnet40_h5_tree, points, labels, problem):
    path = modelnet40_h5_tree.root / "ply_data_test0.h5"
    rewrite_h5(path, data=points.astype(np.float32), label=labels.astype(np.uint8))
    with pytest.raises(DataError, match=problem) as error:
        ModelNet40H5(modelnet40_h5_tree.root, "test")
    assert error.value.path == path


def test_open_modelnet40_detects_the_layout(modelnet40_tree, modelnet40_h5_tree, tmp_path):
    assert isinstance(open_modelnet40(modelnet40_tree.root, "test"), ModelNet40)
    assert isinstance(open_modelnet40(modelnet40_h5_tree.root, "test"), ModelNet40H5)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="not a ModelNet40 directory"):
        open_modelnet40(empty, "train")
    with pytest.raises(ValueError, match="split"):
        open_modelnet40(modelnet40_tree.root, "val")
