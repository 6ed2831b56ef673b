"""Cross-validation folds: partitions (disjoint, covering, stratified), determinism, leave-one-scan-out, and the
data keys that ask for them."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from image2point.data.folds import (
    FoldChoice,
    block_folds,
    fold_indices,
    sample_ids_of,
    stratified_folds,
)
from image2point.errors import ConfigError
from image2point.train.builders import build_dataset, build_train_dataset
from image2point.train.config import load_config


def test_stratified_folds_partition_the_pool_and_balance_the_classes():
    labels = np.repeat(np.arange(4), [10, 7, 3, 1])
    assignment = stratified_folds(labels, 5, seed=3)
    evaluated = [fold_indices(assignment, fold, train=False) for fold in range(5)]
    # Disjoint and covering: every sample is evaluated by exactly one fold.
    assert sorted(np.concatenate(evaluated).tolist()) == list(range(len(labels)))
    # Each fold trains on exactly the others.
    for fold in range(5):
        trained = fold_indices(assignment, fold, train=True)
        assert set(trained) | set(evaluated[fold]) == set(range(len(labels)))
        assert not set(trained) & set(evaluated[fold])
    assert sorted(len(fold) for fold in evaluated) == [4, 4, 4, 4, 5]
    # Stratified: a class of m members lands in min(m, 5) folds, as evenly as dealing allows.
    for label, size in enumerate((10, 7, 3, 1)):
        per_fold = Counter(assignment[labels == label].tolist())
        assert len(per_fold) == min(size, 5)
        assert max(per_fold.values()) - min(per_fold.values()) <= 1


def test_folds_depend_on_the_seed_only():
    labels = np.repeat(np.arange(6), 5)
    first = stratified_folds(labels, 3, seed=7)
    assert np.array_equal(first, stratified_folds(labels, 3, seed=7))
    assert not np.array_equal(first, stratified_folds(labels, 3, seed=8))


def test_scans_fall_in_contiguous_blocks_and_leave_one_out():
    assert block_folds(3, 3).tolist() == [0, 1, 2]
    assert block_folds(7, 3).tolist() == [0, 0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("folds, fold, seed", [(1, 0, 0), (3, 3, 0), (3, -1, 0), (3, 0, -1)])
def test_bad_fold_choices_name_the_key(folds, fold, seed):
    with pytest.raises(ConfigError, match=r"data\.fold"):
        FoldChoice(folds, fold, seed)


def test_more_folds_than_samples_is_refused():
    with pytest.raises(ConfigError, match=r"data\.folds=4 needs at least 4 samples; the pooled splits have 3"):
        stratified_folds([0, 1, 2], 4)


def modelnet40_config(root, *overrides):
    return load_config(None, ["data.name=modelnet40", f"data.root={root}", *overrides]).data


def test_modelnet40_folds_pool_train_and_test_lists(modelnet40_tree):
    pool = set(modelnet40_tree.train_ids) | set(modelnet40_tree.test_ids)
    evaluated = []
    for fold in range(3):
        data = modelnet40_config(modelnet40_tree.root, "data.folds=3", f"data.fold={fold}", "data.fold_seed=5")
        train_ids = set(sample_ids_of(build_train_dataset(data)))
        eval_set = build_dataset(data, data.eval_split, train=False)
        eval_ids = set(sample_ids_of(eval_set))
        assert train_ids | eval_ids == pool and not train_ids & eval_ids
        # Labels follow the samples through the pool and the fold.
        assert [eval_set[i].label for i in range(len(eval_set))] == list(eval_set.labels)
        evaluated += sorted(eval_ids)
    assert sorted(evaluated) == sorted(pool)


def test_official_splits_without_folds(modelnet40_tree):
    data = modelnet40_config(modelnet40_tree.root)
    assert sample_ids_of(build_dataset(data, "test", train=False)) == modelnet40_tree.test_ids


def test_per_class_subsets_draw_from_the_fold_training_part(modelnet40_tree):
    data = modelnet40_config(modelnet40_tree.root, "data.folds=2", "data.fold=1", "data.per_class=1")
    subset = build_train_dataset(data)
    held_out = set(sample_ids_of(build_dataset(data, "test", train=False)))
    assert len(subset) == len(set(subset.labels)) and not set(sample_ids_of(subset)) & held_out


def test_shared_sample_folds_test_each_shape_once(shared_modelnet40_root):
    counts: Counter[str] = Counter()
    sizes = []
    for fold in range(5):
        data = modelnet40_config(shared_modelnet40_root, "data.folds=5", f"data.fold={fold}")
        eval_ids = sample_ids_of(build_dataset(data, "test", train=False))
        counts.update(eval_ids)
        sizes.append(len(eval_ids))
    assert len(counts) == 127 and set(counts.values()) == {1}
    assert sorted(sizes) == [25, 25, 25, 26, 26]


def kitti_config(root, *overrides):
    return load_config(None, ["data.name=semantickitti", f"data.root={root}", "data.eval_split=val",
                              "data.train_scans=[00/000000,00/000001]", "data.eval_scans=[08/000000]",
                              *overrides]).data


def test_leave_one_scan_out_on_semantickitti(semantickitti_tree):
    scans = ["00/000000", "00/000001", "08/000000"]
    for fold, held_out in enumerate(scans):
        data = kitti_config(semantickitti_tree.root, "data.folds=3", f"data.fold={fold}")
        assert sample_ids_of(build_dataset(data, "val", train=False)) == (held_out,)
        assert sample_ids_of(build_train_dataset(data)) == tuple(scan for scan in scans if scan != held_out)


def test_too_many_folds_is_a_one_line_config_error(modelnet40_tree, tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "image2point.cli", "train", "configs/demo/modelnet40_sample.yaml",
         f"data.root={modelnet40_tree.root}", "data.folds=20", f"train.run_dir={run_dir}", "train.epochs=1"],
        capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "data.folds=20" in result.stderr
    assert not run_dir.exists()
