"""The convergence study: is the small scale trained long enough? Table 1's scratch and I,O,µ,σ,W,b runs on
ModelNet40 and SemanticKITTI, each at several training lengths (epoch budgets).

Not a table of the paper (it has no such study): small scale only. With the cosine schedule the learning
rate reaches 0 at the end of every budget, so one run's per-epoch curve cannot say whether a longer budget
would end higher; the final metric as a function of the budget can (figure and paired budget differences:
:mod:`image2point.experiments.convergence`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from image2point.experiments.scales import (
    DATASET_LABELS,
    MODELNET40,
    PAPER,
    SEMANTICKITTI,
    SMALL,
    SMALL_MODELNET40_EPOCHS,
    SMALL_SEMANTICKITTI_EPOCHS,
    scale_setup,
)
from image2point.experiments.specs import RunSpec, TableLayout, TableSpec, get_table, register_table, run_id
from image2point.experiments.tables.common import HEADLINE_NOTE

# The study's rows are Table 1's small-scale rows of the same labels: its runs, trained longer or shorter.
SOURCE_TABLE = "table1"
SCRATCH_ROW, PRETRAINED_ROW = "scratch", "I,O,µ,σ,W,b"
ROWS = (SCRATCH_ROW, PRETRAINED_ROW)
# Half, once, twice and four times the small scale's earlier length (8 / 12 epochs), the budgets the study was
# run and documented at; the small scale's length is now the budget it found sufficient (scales.py), one of these.
BUDGETS: dict[str, tuple[int, ...]] = {MODELNET40: (4, 8, 16, 32), SEMANTICKITTI: (6, 12, 24, 48)}
SMALL_SCALE_BUDGET = {MODELNET40: SMALL_MODELNET40_EPOCHS, SEMANTICKITTI: SMALL_SEMANTICKITTI_EPOCHS}
# Overrides of the training length, replaced by the budget's.
LENGTH_KEYS = ("train.epochs", "train.eval_every")
NO_PAPER_STUDY = ("the paper has no convergence study: it checks the small scale's training length; run "
                  "--scale small")
SMALL_NOTE = ("small scale: CIFAR-10 ResNet-20 (../shared/weights) inflated with T/K, SGD lr 0.05 with cosine to 0; "
              "the ModelNet40 sample (1024 points, batch 16) and the SemanticKITTI sample (0.3 m voxels, batch 1); "
              "with --folds every sample shape and every scan is tested once per seed (docs/statistics.md). "
              "Paired differences between budgets and the learning curves: convergence.md, convergence_curves.png.")


def budget_column(dataset: str, epochs: int) -> str:
    """``ModelNet40 · 8 epochs``."""
    return f"{DATASET_LABELS[dataset]} · {epochs} epochs"


COLUMNS = tuple(budget_column(dataset, epochs) for dataset, budgets in BUDGETS.items() for epochs in budgets)
# Column -> (dataset, budget).
BUDGET_OF = {budget_column(dataset, epochs): (dataset, epochs)
             for dataset, budgets in BUDGETS.items() for epochs in budgets}


def with_budget(run: RunSpec, epochs: int) -> RunSpec:
    """A run of Table 1 trained for ``epochs`` and evaluated once, at the end; nothing else changes."""
    kept = tuple(item for item in run.overrides if item.partition("=")[0] not in LENGTH_KEYS)
    stem = run.run_id.removesuffix(f"-s{run.seed}")
    return dataclasses.replace(run, table="convergence", column=budget_column(run.dataset, epochs),
                               run_id=run_id(stem, f"e{epochs}", seed=run.seed),
                               overrides=(*kept, f"train.epochs={epochs}", f"train.eval_every={epochs}"))


def _convergence_runs(scale: str, seeds: Sequence[int]) -> list[RunSpec]:
    """Budget by budget, shortest first, scratch before I,O,µ,σ,W,b: a study cut short loses the longest budget
    of the pretrained row first, then of scratch, never a fold."""
    table1 = [run for run in get_table(SOURCE_TABLE).runs(scale, seeds) if run.row in ROWS and run.dataset in BUDGETS]
    return [with_budget(run, budgets[index]) for index in range(len(BUDGETS[MODELNET40])) for row in ROWS
            for dataset, budgets in BUDGETS.items() for run in table1 if run.dataset == dataset and run.row == row]


def _layout() -> TableLayout:
    metrics = {column: scale_setup(SMALL).dataset(BUDGET_OF[column][0]).metric for column in COLUMNS}
    return TableLayout(ROWS, COLUMNS, metrics)


@register_table
def convergence() -> TableSpec:
    return TableSpec(
        name="convergence",
        title="Convergence: the final metric against the training length",
        question=("Has the from-scratch row (and the pretrained I,O,µ,σ,W,b row) converged at the small scale's "
                  "length (8 epochs on ModelNet40, 12 on SemanticKITTI when the study was made; the scale now "
                  "trains 16 and 48), or does a longer budget end higher?"),
        layouts={SMALL: _layout()},
        expand=_convergence_runs,
        absent_scales={PAPER: NO_PAPER_STUDY},
        notes=(HEADLINE_NOTE,
               "Every run is Table 1's run of its row (same recipe, source, seed and fold) with train.epochs and "
               "train.eval_every set to the column's budget: the cosine schedule reaches lr 0 at the end of each "
               "budget, so each column is a complete run of that length, not a point on one run's curve.",
               SMALL_NOTE),
    )
