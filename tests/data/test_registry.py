"""The dataset registry: one typed entry per dataset, and what the rest of the package reads from it."""

from __future__ import annotations

import numpy as np
import pytest

from image2point.data.collate import input_channels
from image2point.data.registry import (
    DATASETS,
    XYZ_ONLY,
    DatasetRequest,
    dataset_entry,
    dataset_names,
    dataset_palette,
    register_dataset,
)
from image2point.errors import ConfigError
from image2point.tasks import Task
from image2point.train.builders import build_dataset, num_input_features, task_of
from image2point.train.config import DataConfig
from image2point.viz import generic_palette

BUILT_IN = ("modelnet40", "procedural_scenes", "procedural_shapes", "s3dis", "semantickitti")


def test_the_built_in_datasets_are_registered_with_their_task():
    assert set(BUILT_IN) <= set(dataset_names())
    tasks = {name: dataset_entry(name).task for name in BUILT_IN}
    assert tasks == {"modelnet40": Task.CLASSIFICATION, "procedural_shapes": Task.CLASSIFICATION,
                     "procedural_scenes": Task.SEGMENTATION, "s3dis": Task.SEGMENTATION,
                     "semantickitti": Task.SEGMENTATION}
    assert all(isinstance(task, Task) for task in tasks.values())
    assert task_of(DataConfig(name="s3dis")) is Task.SEGMENTATION


def test_an_unknown_dataset_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown dataset 'shapenet'; known: modelnet40, "):
        dataset_entry("shapenet")
    with pytest.raises(ValueError, match="name must be one of 'modelnet40', "):
        DataConfig(name="shapenet")


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="registered twice"):
        register_dataset("s3dis", Task.SEGMENTATION, ("a",))(lambda request: None)
    assert dataset_entry("s3dis").class_names[0] == "ceiling"


@pytest.mark.parametrize("name,overrides", [
    ("procedural_shapes", {"num_points": 64}),
    ("procedural_scenes", {}),
    ("modelnet40", {}),
    ("s3dis", {"test_area": 5}),
    ("semantickitti", {"eval_split": "val"}),
])
def test_registered_inputs_are_what_the_samples_hold(name, overrides, request):
    """The builders size networks from the registration, without loading a sample; it must agree."""
    root = {"modelnet40": "modelnet40_tree", "s3dis": "s3dis_tree", "semantickitti": "semantickitti_tree"}.get(name)
    data = DataConfig(name=name, root=None if root is None else str(request.getfixturevalue(root).root),
                      eval_samples=1, **overrides)
    dataset = build_dataset(data, data.eval_split, train=False)
    sample = dataset[len(dataset) - 1]
    assert num_input_features(data) == input_channels(sample) == dataset_entry(name).inputs.in_features


def test_a_dataset_that_needs_files_asks_for_data_root():
    with pytest.raises(ConfigError, match="data.root must name the s3dis directory"):
        build_dataset(DataConfig(name="s3dis"), "test", train=False)


def test_dataset_palettes_are_fixed_and_a_missing_one_is_generic():
    modelnet = dataset_palette("modelnet40", 40)
    assert modelnet.shape == (40, 3) and len({tuple(colour) for colour in modelnet}) == 40
    np.testing.assert_array_equal(dataset_palette("procedural_shapes", 12), modelnet[:12])
    assert dataset_palette("s3dis", 13)[0].tolist() == [0, 255, 0]
    np.testing.assert_array_equal(dataset_palette("procedural_scenes", 7), generic_palette(7))
    assert len(dataset_palette("semantickitti", 19)) == 19


def test_a_registration_without_options_is_xyz_only_without_transforms():
    try:
        register_dataset("registry_test_plain", Task.CLASSIFICATION, ("a", "b"))(lambda request: request)
        entry = dataset_entry("registry_test_plain")
        assert entry.inputs is XYZ_ONLY and entry.inputs.in_features == 3
        assert entry.labels(None).scheme().class_names == ("a", "b")
        request = DatasetRequest(DataConfig(name="registry_test_plain"), "train", True, lambda s, rng: s, None)
        assert entry.open(request) is request
    finally:
        DATASETS.pop("registry_test_plain", None)
