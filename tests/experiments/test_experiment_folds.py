"""Fold expansion of a table's runs and the pooling of a seed's folds."""

from __future__ import annotations

import dataclasses
import json

import pytest

from image2point.experiments import get_table, plan_table
from image2point.experiments.folds import confusion_metric, pooled_seed_values
from image2point.experiments.scales import PAPER_SETUP, SMALL_MODELNET40_FOLDS, SMALL_SEMANTICKITTI_FOLDS


def test_runs_repeat_per_fold_only_when_asked(small_context):
    table = get_table("table5")
    official = plan_table(table, small_context, (0,))
    folded = plan_table(table, dataclasses.replace(small_context, cross_validate=True), (0,))
    assert all(plan.fold is None for plan in official)
    kitti = [plan for plan in folded if plan.spec.run_id.startswith("semantickitti-cifar10-io_bn-s0")]
    assert [plan.spec.run_id for plan in kitti] == [f"semantickitti-cifar10-io_bn-s0-f{fold}"
                                                    for fold in range(SMALL_SEMANTICKITTI_FOLDS)]
    assert [plan.fold for plan in kitti] == list(range(SMALL_SEMANTICKITTI_FOLDS))
    assert all(f"data.folds={SMALL_SEMANTICKITTI_FOLDS}" in plan.overrides and "data.fold_seed=0" in plan.overrides
               and f"data.fold={plan.fold}" in plan.overrides for plan in kitti)
    # S3DIS has no folds at small scale: its runs keep the official split.
    assert all(plan.fold is None for plan in folded if plan.spec.dataset == "s3dis")
    assert len(folded) == len(official) + sum(SMALL_SEMANTICKITTI_FOLDS - 1 for plan in official
                                              if plan.spec.dataset == "semantickitti")


def test_paper_scale_keeps_the_official_splits():
    assert dict(PAPER_SETUP.folds) == {}


def test_table1_modelnet40_rows_share_one_partition(small_context):
    plans = plan_table(get_table("table1"), dataclasses.replace(small_context, cross_validate=True), (0, 1))
    modelnet = [plan for plan in plans if plan.spec.dataset == "modelnet40"]
    assert len(modelnet) == 7 * 2 * SMALL_MODELNET40_FOLDS
    assert {override for plan in modelnet for override in plan.overrides if override.startswith("data.fold_seed")} == {
        "data.fold_seed=0"}


def write_confusion(run_dir, confusion) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps({"final": {"confusion": confusion}}))


def test_a_seed_pools_its_folds_before_the_mean_over_seeds(small_context):
    plans = plan_table(get_table("table5"), dataclasses.replace(small_context, cross_validate=True), (0, 1))
    cell = [plan for plan in plans if plan.spec.run_id.startswith("semantickitti-cifar10-io_bn")]
    # Seed 0: folds of 1 / 3 / 3 points, 1 + 3 + 0 right: pooled accuracy 4 / 7, not the mean of 1, 1, 0.
    for plan, confusion in zip([p for p in cell if p.spec.seed == 0],
                               ([[1, 0], [0, 0]], [[2, 0], [0, 1]], [[0, 3], [0, 0]]), strict=True):
        write_confusion(plan.run_dir, confusion)
    write_confusion(next(p for p in cell if p.spec.seed == 1).run_dir, [[1, 0], [0, 0]])
    values = pooled_seed_values(cell, "overall_accuracy")
    assert [value.seed for value in values] == [0, 1]
    assert values[0].value == pytest.approx(400 / 7) and values[1].value is None
    assert values[0].runs == tuple(f"semantickitti-cifar10-io_bn-s0-f{fold}" for fold in range(3))
    # mIoU of the summed confusion [[3, 3], [0, 1]]: IoU 3/6 and 1/4.
    assert pooled_seed_values(cell, "miou")[0].value == pytest.approx(100 * (0.5 + 0.25) / 2)


def test_official_split_runs_keep_their_own_value(small_context, write_metrics):
    plans = plan_table(get_table("table5"), small_context, (0, 1))
    cell = [plan for plan in plans if plan.spec.run_id.startswith("semantickitti-cifar10-io_bn")]
    write_metrics(cell[0].run_dir, miou=0.3)
    assert [value.value for value in pooled_seed_values(cell, "miou")] == [pytest.approx(30.0), None]


def test_an_empty_confusion_has_no_value():
    import numpy as np

    assert confusion_metric(np.zeros((2, 2)), "miou") is None


def test_a_table_cell_pools_folds_per_seed(small_context):
    from image2point.experiments.aggregate import collect_cells

    table = get_table("table5")
    context = dataclasses.replace(small_context, cross_validate=True)
    plans = plan_table(table, context, (0,))
    cell_plans = [plan for plan in plans if plan.spec.run_id.startswith("semantickitti-cifar10-io_bn")]
    for plan, confusion in zip(cell_plans, ([[1, 0], [0, 0]], [[2, 0], [0, 1]], [[0, 3], [0, 0]]), strict=True):
        write_confusion(plan.run_dir, confusion)
    row, column = cell_plans[0].spec.row, cell_plans[0].spec.column
    cell = next(c for c in collect_cells(table, plans, "small") if (c.row, c.column) == (row, column))
    # One value for the seed, not one per fold run: the mIoU of the pooled confusion [[3, 3], [0, 1]],
    # IoU 3 / 6 and 1 / 4.
    assert cell.n == 1 and cell.expected == 1 and cell.seeds == (0,)
    assert cell.values == (pytest.approx(100 * (0.5 + 0.25) / 2),)
    assert len(cell.runs) == 3
