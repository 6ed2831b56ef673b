"""Per-sample outcomes beside metrics.json: they add up to the run's confusion matrix, name the samples, and
read back as written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from image2point.errors import DataError
from image2point.tasks import Task
from image2point.train.loop import run_training
from image2point.train.outcomes import (
    BLOCK_METRES,
    COUNT,
    OUTCOMES_FILE,
    PREDICTION,
    TARGET,
    ClassificationOutcomes,
    OutcomeRecorder,
    SegmentationOutcomes,
    read_outcomes,
    save_outcomes,
)

SCENES = ("data.name=procedural_scenes", "data.train_samples=2", "data.eval_samples=2", "data.batch_size=2",
          "data.num_workers=0", "model.backbone=cifar_resnet20", "train.epochs=1")


def final_confusion(run_dir) -> np.ndarray:
    return np.asarray(json.loads((run_dir / "metrics.json").read_text())["final"]["confusion"])


def test_classification_run_writes_every_shape(tmp_path, tiny_run_config):
    run_dir = tmp_path / "run"
    run_training(tiny_run_config(run_dir), quiet=True)
    outcomes = read_outcomes(run_dir / OUTCOMES_FILE)
    assert isinstance(outcomes, ClassificationOutcomes)
    assert outcomes.sample_ids == tuple(str(index) for index in range(12))
    confusion = np.zeros_like(final_confusion(run_dir))
    np.add.at(confusion, (outcomes.labels, outcomes.predictions), 1)
    assert np.array_equal(confusion, final_confusion(run_dir))


def test_segmentation_run_writes_block_confusions(tmp_path, tiny_run_config):
    run_dir = tmp_path / "run"
    run_training(tiny_run_config(run_dir, base=SCENES), quiet=True)
    outcomes = read_outcomes(run_dir / OUTCOMES_FILE)
    assert isinstance(outcomes, SegmentationOutcomes) and outcomes.block_metres == BLOCK_METRES
    confusion = np.zeros_like(final_confusion(run_dir))
    np.add.at(confusion, (outcomes.cells[:, TARGET], outcomes.cells[:, PREDICTION]), outcomes.cells[:, COUNT])
    assert np.array_equal(confusion, final_confusion(run_dir))
    assert {key[0] for key in outcomes.unit_keys()} == {"0", "1"}


class FakeVoxels:
    """The members of a voxel batch the recorder reads: two scans, points 0-2 in scan 0, 3-4 in scan 1."""

    class tensor:  # noqa: N801  (stands for a SparseTensor)
        coords = torch.tensor([[0, 0, 0, 0], [0, 40, 0, 0], [1, 0, 80, 0]])

    point_to_site = torch.tensor([0, 0, 1, 2, 2])
    batch_size = 2


class FakeBatch:
    voxels = FakeVoxels


@pytest.mark.parametrize("num_samples, blocks", [(2, {(0, 0), (1, 0), (0, 2)}), (40, {(0, 0)})])
def test_units_are_blocks_of_few_scans_and_whole_scans_of_many(num_samples, blocks):
    recorder = OutcomeRecorder(Task.SEGMENTATION, 3, 0.25, num_samples)
    recorder.update(FakeBatch(), torch.tensor([0, 1, 1, 2, 2]), torch.tensor([0, 1, 0, 2, -100]))
    recorder.seen = num_samples  # the rest of the loader
    outcomes = recorder.outcomes(tuple(str(index) for index in range(num_samples)))
    assert {(key[1], key[2]) for key in outcomes.unit_keys()} == blocks
    # The ignored point is not counted.
    assert outcomes.cells[:, COUNT].sum() == 4


def test_round_trip_and_a_bad_file(tmp_path):
    written = ClassificationOutcomes(("a_1", "b_2"), np.array([0, 1]), np.array([1, 1]))
    save_outcomes(tmp_path / OUTCOMES_FILE, written)
    read = read_outcomes(tmp_path / OUTCOMES_FILE)
    assert read.sample_ids == written.sample_ids and read.correct.tolist() == [False, True]
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.npz"):
        read_outcomes(tmp_path / "bad.npz")
