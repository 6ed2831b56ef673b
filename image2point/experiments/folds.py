"""Cross-validation in the study: a run of a table cell becomes one run per fold, and a seed's value pools
its folds.

Where the scale names folds for a dataset (:attr:`ScaleSetup.folds`), each run of that dataset is repeated
for data.fold = 0 .. k-1 with the run id suffix ``-fK``. Every row and every seed of a table uses the same
partition (data.fold_seed = :data:`FOLD_SEED`), so rows are compared on the same test samples and seeds
differ only in training. A seed's value is the metric of its folds' confusion matrices summed, every
sample tested once; mean ± std are then taken over seeds, as without folds.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from image2point.experiments.paired import Measure, metric_of
from image2point.experiments.specs import RunSpec

FOLD_SEED = 0
PERCENT = 100.0
METRICS_FILE = "metrics.json"


def fold_overrides(folds: int, fold: int) -> tuple[str, ...]:
    return f"data.folds={folds}", f"data.fold={fold}", f"data.fold_seed={FOLD_SEED}"


def fold_run_id(run_id: str, fold: int) -> str:
    return f"{run_id}-f{fold}"


def expand_folds(spec: RunSpec, folds: int | None) -> list[tuple[RunSpec, int | None]]:
    """The runs of ``spec`` with its fold: one per fold, or ``spec`` itself (fold None) without folds."""
    if folds is None:
        return [(spec, None)]
    return [(dataclasses.replace(spec, run_id=fold_run_id(spec.run_id, fold),
                                 overrides=(*spec.overrides, *fold_overrides(folds, fold))), fold)
            for fold in range(folds)]


@dataclass(frozen=True)
class SeedValue:
    """A seed's value of a cell (percent) and the runs it pools; None until every fold has finished."""

    seed: int
    value: float | None
    runs: tuple[str, ...]
    run_dirs: tuple[Path, ...]


def pooled_seed_values(plans: Sequence, metric: str) -> list[SeedValue]:
    """The cell's value per seed, from its planned runs (``spec.seed``, ``spec.run_id``, ``run_dir``, ``fold``):
    without folds a run's own final metric, with folds the metric of its folds' summed confusions (every fold
    finished; else value None). Seeds in increasing order.

    The aggregation hook: ``collect_cells`` / ``_cell`` take these values in place of one value per run.
    """
    by_seed: dict[int, list] = {}
    for planned in plans:
        by_seed.setdefault(planned.spec.seed, []).append(planned)
    values = []
    for seed in sorted(by_seed):
        runs = sorted(by_seed[seed], key=lambda planned: -1 if planned.fold is None else planned.fold)
        if all(planned.fold is None for planned in runs):
            # Official splits: the run's own headline, exactly as a table without folds reads it.
            value = _final_value(runs[0].run_dir / METRICS_FILE, metric)
        else:
            confusions = [final_confusion(planned.run_dir / METRICS_FILE) for planned in runs]
            finished = all(confusion is not None for confusion in confusions)
            value = confusion_metric(np.sum(confusions, axis=0), metric) if finished else None
        values.append(SeedValue(seed, value, tuple(p.spec.run_id for p in runs), tuple(p.run_dir for p in runs)))
    return values


def _final_value(metrics_file: Path, metric: str) -> float | None:
    if not metrics_file.is_file():
        return None
    value = json.loads(metrics_file.read_text())["final"].get(metric)
    return None if value is None else value * PERCENT


def final_confusion(metrics_file: Path) -> np.ndarray | None:
    """The final evaluation's confusion matrix of a finished run; None while it has not finished."""
    if not metrics_file.is_file():
        return None
    return np.asarray(json.loads(metrics_file.read_text())["final"]["confusion"], dtype=np.float64)


def confusion_metric(confusion: np.ndarray, metric: str) -> float | None:
    """Overall accuracy or mIoU of a confusion matrix, in percent; None when it counts nothing."""
    if confusion.sum() == 0:
        return None
    if Measure(metric) == Measure.ACCURACY:
        totals = np.array([np.trace(confusion), confusion.sum()])
    else:
        totals = confusion.reshape(-1)
    return float(metric_of(totals, Measure(metric))) * PERCENT
