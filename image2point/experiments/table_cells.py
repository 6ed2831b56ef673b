"""The cells of the paper's tables as runs: one dataset per column, and a run of the scale's recipe for an
inflated voxel network or for another model family (PointNet++, range images)."""

from __future__ import annotations

from collections.abc import Sequence

from image2point.experiments.scales import (
    CLASSIFICATION_METRIC,
    MODELNET40,
    S3DIS,
    SEGMENTATION_METRIC,
    SEMANTICKITTI,
    scale_setup,
)
from image2point.experiments.specs import RunSpec, TableLayout, run_id

DATASET_COLUMNS = (MODELNET40, S3DIS, SEMANTICKITTI)
DATASET_METRICS = {"ModelNet40": CLASSIFICATION_METRIC, "S3DIS": SEGMENTATION_METRIC,
                   "SemanticKITTI": SEGMENTATION_METRIC}
COLUMN_OF = {MODELNET40: "ModelNet40", S3DIS: "S3DIS", SEMANTICKITTI: "SemanticKITTI"}

def dataset_layout(rows: Sequence[str]) -> TableLayout:
    columns = tuple(COLUMN_OF[name] for name in DATASET_COLUMNS)
    return TableLayout(tuple(rows), columns, {column: DATASET_METRICS[column] for column in columns})


def voxel_run(table: str, row: str, column: str, seed: int, scale: str, dataset: str, variant: str, *,
               source: str | None, arch: str | None = None, extra: Sequence[str] = ()) -> RunSpec:
    """A run of an inflated sparse ConvNet: the scale's dataset recipe, its backbone, ``extra`` on top."""
    setup = scale_setup(scale)
    data = setup.dataset(dataset)
    arch = arch or setup.backbone
    overrides = (*data.overrides, *setup.common_overrides, *setup.voxel_overrides, f"model.backbone={arch}",
                 *extra, f"train.seed={seed}")
    return RunSpec(table, row, column, seed, run_id(dataset, source or "none", variant, seed=seed), dataset,
                   data.recipe, overrides, source, arch if source else None)


def family_run(table: str, row: str, column: str, seed: int, scale: str, dataset: str, family: str, arch: str, *,
                source: str | None, scheme: str = "all", extra: Sequence[str] = ()) -> RunSpec:
    """A PointNet++ or range-image run (Table 2), from the source's weights or none; ``scheme`` is what
    trains (everything by default), ``extra`` goes on top of the family's overrides."""
    setup = scale_setup(scale)
    data = setup.dataset(dataset)
    overrides = (*data.overrides, *setup.common_overrides, *setup.family_overrides[family][dataset], *extra,
                 f"finetune.scheme={scheme}", f"train.seed={seed}")
    return RunSpec(table, row, column, seed, run_id(dataset, arch, source or "none", scheme, seed=seed), dataset,
                   data.recipe, overrides, source, arch if source else None)
