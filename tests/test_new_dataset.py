"""Adding a dataset is one module plus its registration: this file is that module.

It defines a toy dataset (scenes of two horizontal layers of points with a per-point "reflectance",
the class being the layer), registers it, then trains, evaluates and predicts on it through the CLI.
No other module of the package knows about it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from image2point.checkpoint import load_training_checkpoint
from image2point.cli import main
from image2point.data.registry import DATASETS, DatasetRequest, InputFields, register_dataset
from image2point.data.sample import PointCloudDataset, SceneSample, Transform
from image2point.io import write_ply
from image2point.tasks import Task

NAME = "toy_layers"
CLASS_NAMES = ("floor", "shelf")
REFLECTANCE = InputFields(("reflectance",), channels=1, colour_channels=0)
POINTS_PER_LAYER = 300
LAYER_HEIGHTS = (0.0, 1.5)
SPLIT_SEEDS = {"train": 1, "test": 2}
RUN = ["data.num_workers=0", "data.train_samples=2", "data.eval_samples=1", "data.batch_size=2", "train.epochs=1",
       "train.threads=1", "model.backbone=none", "model.linear_width=32", "model.head=unet", "data.voxel_size=0.25"]


def toy_scene(seed: int) -> SceneSample:
    """Two 4 m x 4 m layers of points; reflectance is low on the floor, high on the shelf."""
    rng = np.random.default_rng(seed)
    layers = []
    for label, height in enumerate(LAYER_HEIGHTS):
        xy = rng.uniform(-2.0, 2.0, (POINTS_PER_LAYER, 2))
        z = np.full((POINTS_PER_LAYER, 1), height) + rng.normal(0.0, 0.02, (POINTS_PER_LAYER, 1))
        reflectance = rng.uniform(0.1, 0.3, (POINTS_PER_LAYER, 1)) + 0.5 * label
        layers.append((np.hstack([xy, z]), reflectance, np.full(POINTS_PER_LAYER, label)))
    points, features, labels = (np.concatenate(parts) for parts in zip(*layers, strict=True))
    return SceneSample(points.astype(np.float32), features.astype(np.float32), labels.astype(np.int64),
                       f"toy scene {seed}")


class ToyLayers(PointCloudDataset[SceneSample]):
    def __init__(self, split: str, count: int, transform: Transform | None, seed: int) -> None:
        super().__init__(split, CLASS_NAMES, transform, seed)
        self.count = count

    def __len__(self) -> int:
        return self.count

    def load(self, index: int) -> SceneSample:
        return toy_scene(1000 * SPLIT_SEEDS[self.split] + 10 * self.seed + index)


def open_toy_layers(request: DatasetRequest) -> ToyLayers:
    return ToyLayers(request.split, request.num_samples, request.transform, request.data.dataset_seed)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """The dataset registered (for this module only) and a run trained on it through the CLI."""
    register_dataset(NAME, Task.SEGMENTATION, CLASS_NAMES, inputs=REFLECTANCE)(open_toy_layers)
    try:
        run_dir = tmp_path_factory.mktemp("toy") / "run"
        assert main(["train", f"data.name={NAME}", f"train.run_dir={run_dir}", *RUN, "--quiet"]) == 0
        yield run_dir
    finally:
        DATASETS.pop(NAME)


def test_a_registered_dataset_trains_evaluates_and_predicts_through_the_cli(toy_run, tmp_path, capsys):
    run_dir = toy_run
    checkpoint = load_training_checkpoint(run_dir / "last.pt")
    assert checkpoint.class_names == CLASS_NAMES and checkpoint.in_features == REFLECTANCE.in_features == 4
    assert checkpoint.resumable(run_dir / "last.pt").epoch == 0
    capsys.readouterr()

    assert main(["eval", str(run_dir / "config.yaml"), str(run_dir / "best.pt")]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"overall_accuracy", "mean_class_accuracy", "miou"}

    scene = toy_scene(seed=7)
    cloud = tmp_path / "room.ply"
    write_ply(cloud, scene.points, {"reflectance": scene.features[:, 0], "labels": scene.labels.astype(np.int32)})
    out = tmp_path / "predicted"
    assert main(["predict", str(run_dir / "best.pt"), str(cloud), "--out-dir", str(out), "--probabilities"]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "mIoU" in printed
    labels = np.load(out / "room.labels.npy")
    probabilities = np.load(out / "room.probs.npy")
    assert labels.shape == (2 * POINTS_PER_LAYER,) and set(np.unique(labels)) <= {0, 1}
    assert probabilities.shape == (2 * POINTS_PER_LAYER, len(CLASS_NAMES))
    np.testing.assert_array_equal(probabilities.argmax(axis=1), labels)
    assert (out / "room.pred.ply").is_file() and (out / "room.png").is_file()


def test_a_cloud_without_the_registered_field_is_refused_in_one_line(toy_run, tmp_path, capsys):
    scene = toy_scene(seed=3)
    cloud = tmp_path / "bare.ply"
    write_ply(cloud, scene.points)
    assert main(["predict", str(toy_run / "last.pt"), str(cloud), "--out-dir", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "no 'reflectance'" in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()
