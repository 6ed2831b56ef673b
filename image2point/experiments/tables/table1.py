"""Table 1: how much of an image-pretrained, inflated ResNet must be finetuned (and the linear variants)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from image2point.experiments.paper_numbers import (
    IO,
    IO_BN,
    IO_STATS,
    KITTI,
    LINEAR_IO,
    LINEAR_NET,
    PRIOR_ART_METHODS,
    S3DIS,
    SCRATCH,
    SCRATCH_LINEAR,
    TABLE1_PRIOR_ART,
    WHOLE,
)
from image2point.experiments.scales import PAPER, SMALL, scale_setup
from image2point.experiments.specs import RunSpec, TableLayout, TableSpec, register_table
from image2point.experiments.table_cells import COLUMN_OF, DATASET_COLUMNS, dataset_layout, voxel_run
from image2point.experiments.tables.common import HEADLINE_NOTE, SMALL_BACKBONE_NOTE, moderate_note, place, row_gaps

LINEAR_LAYERS = ("model.input_layer=linear", "model.head=linear")


@dataclass(frozen=True)
class Table1Row:
    """A row: its id part, scheme, and whether it is pretrained, has linear I/O layers, has a backbone."""

    variant: str
    scheme: str
    pretrained: bool = True
    linear: bool = False
    backbone: bool = True


IO_ROW, STATS_ROW, BN_ROW = Table1Row("io", "io"), Table1Row("io_stats", "io_stats"), Table1Row("io_bn", "io_bn")
ALL_ROW, SCRATCH_ROW = Table1Row("all", "all"), Table1Row("scratch", "scratch", pretrained=False)
LINEAR_IO_ROW = Table1Row("linear_io", "io", linear=True)
# Listing 1: the linear input and output layers with no backbone at all, everything trained.
LINEAR_NET_ROW = Table1Row("linear_net", "io", pretrained=False, linear=True, backbone=False)
SCRATCH_LINEAR_ROW = Table1Row("scratch_linear", "scratch", pretrained=False, linear=True)

# Small scale keeps its labels (runs already made are aggregated under them); paper scale: the paper's.
SMALL_ROWS = (("I,O", IO_ROW), ("I,O,µ,σ", STATS_ROW), ("I,O,µ,σ,W,b", BN_ROW), ("all", ALL_ROW),
              ("scratch", SCRATCH_ROW), ("linear I/O", LINEAR_IO_ROW), ("linear network", LINEAR_NET_ROW))
PAPER_ROWS = ((IO, IO_ROW), (IO_STATS, STATS_ROW), (IO_BN, BN_ROW), (WHOLE, ALL_ROW), (SCRATCH, SCRATCH_ROW),
              (LINEAR_IO, LINEAR_IO_ROW), (LINEAR_NET, LINEAR_NET_ROW), (SCRATCH_LINEAR, SCRATCH_LINEAR_ROW))
SMALL_TO_PAPER_ROW = dict(zip((row for row, _ in SMALL_ROWS), (row for row, _ in PAPER_ROWS), strict=False))
PRIOR_ART_NOTE = (f"The paper's third group, {len(PRIOR_ART_METHODS)} prior methods ({', '.join(PRIOR_ART_METHODS)}; "
                  "numbers of other papers, nothing of ours stands beside them), each column's values top to bottom "
                  "as printed, its empty cells lost in the extracted text: "
                  + "; ".join(column.text() for column in TABLE1_PRIOR_ART) + ".")
LINEAR_NET_GAP = "the paper prints '-': its linear network (w/o backbone) ran on ModelNet40 only"


def _rows(scale: str) -> tuple[tuple[str, Table1Row], ...]:
    return SMALL_ROWS if scale == SMALL else PAPER_ROWS


def _run(label: str, row: Table1Row, dataset: str, seed: int, scale: str, source: str) -> RunSpec:
    extra = (*(LINEAR_LAYERS if row.linear else ()), f"finetune.scheme={row.scheme}")
    return voxel_run("table1", label, COLUMN_OF[dataset], seed, scale, dataset, row.variant,
                     source=source if row.pretrained else None, arch=None if row.backbone else "none", extra=extra)


def _table1_runs(scale: str, seeds: Sequence[int]) -> list[RunSpec]:
    source = scale_setup(scale).classification_source
    return [_run(label, row, dataset, seed, scale, source)
            for dataset in DATASET_COLUMNS for label, row in _rows(scale) for seed in seeds]


def _layout(scale: str) -> TableLayout:
    rows = [label for label, _ in _rows(scale)]
    layout = dataset_layout(rows)
    to_paper = SMALL_TO_PAPER_ROW if scale == SMALL else {row: row for row in rows}
    paper = place(1, (((row, column), (to_paper[row], column)) for row in rows for column in layout.columns
                      if not (to_paper[row] == LINEAR_NET and column != layout.columns[0])))
    linear_net = next(row for row in rows if to_paper[row] == LINEAR_NET)
    gaps = row_gaps({linear_net: LINEAR_NET_GAP}, (S3DIS, KITTI))
    return TableLayout(layout.rows, layout.columns, layout.metrics, paper, gaps)


@register_table
def table1() -> TableSpec:
    return TableSpec(
        name="table1",
        title="Finetuning schemes",
        question=("How much of an image-pretrained, inflated ConvNet must be finetuned on point clouds: only the "
                  "input and output layers (I,O), plus BN statistics (µ,σ), plus BN weight and bias (W,b), "
                  "everything, or nothing pretrained at all?"),
        layouts={SMALL: _layout(SMALL), PAPER: _layout(PAPER)},
        expand=_table1_runs,
        paper_table=1,
        notes=(HEADLINE_NOTE, moderate_note(1),
               "linear I,O: one conv + BN in, FC + BN out, frozen pretrained backbone (scheme io; Listing 5); "
               "linear network: the same input and output layers with no backbone at all, all trained (Listing "
               "1); from scratch (linear I,O): the linear I,O network trained from random weights.",
               PRIOR_ART_NOTE),
        scale_notes={SMALL: (SMALL_BACKBONE_NOTE, "small scale has no 'from scratch (linear I,O)' row (paper scale "
                                                  "has); its paper cells are listed below the table."),
                     PAPER: ("paper scale: ResNet-18 from ImageNet-1K (--weights imagenet=PATH) on ModelNet40, "
                             "S3DIS (area 5) and SemanticKITTI (sequence 08), three trials per cell.",)},
    )
