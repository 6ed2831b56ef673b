"""What the table modules share: scheme labels, notes, and helpers that place the paper's cells."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from image2point.experiments.paper_numbers import (
    IO,
    IO_BN,
    IO_STATS,
    STABILITY_OF,
    WHOLE,
    PaperCell,
    paper_cell,
)
from image2point.experiments.scales import SMALL_MODELNET40_EPOCHS, SMALL_SEMANTICKITTI_EPOCHS
from image2point.experiments.specs import Cell

SCHEME_LABELS = {"io": "I,O", "io_stats": "I,O,µ,σ", "io_bn": "I,O,µ,σ,W,b", "all": "all", "scratch": "scratch",
                 "t": "I,O,µ,σ,T"}
# The paper's rows of finetuning schemes -> finetune.scheme.
PAPER_SCHEMES = ((IO, "io"), (IO_STATS, "io_stats"), (IO_BN, "io_bn"), (WHOLE, "all"))
SMALL_BACKBONE_NOTE = ("small scale: CIFAR-10 ResNet-20 (../shared/weights) inflated with T/K on the ModelNet40 "
                       f"sample (94 train / 33 test shapes, 1024 points, {SMALL_MODELNET40_EPOCHS} epochs) and the "
                       "SemanticKITTI sample (scans 00/000000-1 train, 00/000002 evaluates, 0.3 m voxels, "
                       f"{SMALL_SEMANTICKITTI_EPOCHS} epochs); S3DIS is not in ../shared. Paper numbers (ResNet-18, "
                       "ImageNet, full data) are beside ours for orientation only.")
HEADLINE_NOTE = "Our numbers: metric of the final epoch's weights on the test split (no selection on it), in percent."
MODERATE_NOTE = ("Paper numbers: Table {table} of the paper, each 'one moderate value of the trials' (three per cell "
                 "unless the column says otherwise); their mean ± std is the paper's Table {stability} "
                 "(image2point experiment table{stability}).")
NOT_THIS_SOURCE = "the paper has no run from this source"


def moderate_note(table: int) -> str:
    return MODERATE_NOTE.format(table=table, stability=STABILITY_OF[table])


def place(table: int, pairs: Iterable[tuple[Cell, tuple[str, str]]]) -> dict[Cell, PaperCell]:
    """Our cell -> the paper's cell of ``table`` at (paper row, paper column); a typo raises KeyError."""
    return {ours: paper_cell(table, *theirs) for ours, theirs in pairs}


def place_same_labels(table: int, rows: Iterable[str], columns: Iterable[str]) -> dict[Cell, PaperCell]:
    """Our cells labelled as the paper's: every (row, column) the paper has a number for."""
    columns = tuple(columns)
    placed = {}
    for row in rows:
        for column in columns:
            try:
                placed[(row, column)] = paper_cell(table, row, column)
            except KeyError:
                continue
    return placed


def gaps(cells: Iterable[Cell], reason: str) -> dict[Cell, str]:
    return dict.fromkeys(cells, reason)


def row_gaps(reasons: Mapping[str, str], columns: Iterable[str]) -> dict[Cell, str]:
    """Every cell of each row in ``reasons`` gets the row's reason."""
    columns = tuple(columns)
    return {(row, column): reason for row, reason in reasons.items() for column in columns}
