"""Every number of the paper's Tables 1-14 (Xu et al., "Image2Point", ECCV 2022), as typed cells.

Tables 1-7 (main text) report "one moderate value of the trials"; Tables 8-14 (appendix 6.5, stability
analysis) report mean ± standard deviation over the same trials: three per cell, except Table 10 (the
stability view of Table 3), which runs 20, 15 and 10 trials at 1, 5 and 10 % of the training data.
Transcribed from the paper's text (../shared/paper/image2point-eccv2022.txt); where the extracted text
scrambles a table's columns (Tables 4, 5, 11, 12), the column of each value was checked against the
differences the paper's prose states (e.g. Table 4: FractalDB1K beats ImageNet-1K by 2.07 under I,O;
I,O,µ,σ,W,b improves FractalDB1K / 10K by 15.64 / 10.37 over I,O,µ,σ; Table 5: Cityscapes beats
ImageNet-1K by 2.70 under I,O) and against the cells other tables repeat (Table 6's ResNet-50 column is
Table 4's ImageNet-1K column; Table 12's ImageNet-1K columns are Table 8's).

Table 1's third group (ten prior point-cloud methods, 3DShapeNets ... SqueezeSegV3: numbers of other
papers, not of this paper's protocol) is kept as :data:`TABLE1_PRIOR_ART`, column by column as printed. The
extracted text lists each column's values without its empty cells, so which method a value belongs to is
not read off it except where the paper's prose pins it down (:class:`PriorArtColumn`).

A cell the paper prints as "-" (Table 1's linear network on S3DIS and SemanticKITTI: not run) has no
:class:`PaperCell`. A value the paper prints once for a group of columns (the from-scratch row of Tables
4, 5, 11 and 12) is one cell whose ``spans`` names every column of the group.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

# Row labels shared by the tables of finetuning schemes (the paper writes "I, O" with spaces).
IO, IO_STATS, IO_BN, WHOLE, SCRATCH = "I,O", "I,O,µ,σ", "I,O,µ,σ,W,b", "whole network", "from scratch"
SCHEME_ROWS = (IO, IO_STATS, IO_BN, WHOLE)
LINEAR_IO, LINEAR_NET, SCRATCH_LINEAR = "linear I,O", "linear network (w/o backbone)", "from scratch (linear I,O)"
MODELNET, S3DIS, KITTI = "ModelNet40", "S3DIS", "SemanticKITTI"
# Table 2's columns: source -> target, model family.
POINTNET2_COLUMN = "Tiny-ImageNet → ModelNet40 · PointNet++"
HRNET_COLUMN = "Cityscapes → SemanticKITTI · HRNetV2-W48"
PRETRAINED, NOT_PRETRAINED = "w/ pretraining", "w/o pretraining"
FRACTIONS = ("1 %", "5 %", "10 %", "100 %")
# The paper's trials per Table 3 column (Table 10's header and the text of appendix 6.5: "we run 20, 15,
# and 10 trials ... of 1%, 5%, and 10% training data"); every other cell: "we run three trials".
DEFAULT_TRIALS = 3
FRACTION_TRIALS = {"1 %": 20, "5 %": 15, "10 %": 10, "100 %": DEFAULT_TRIALS}
SOURCES_4 = ("Tiny-ImageNet", "ImageNet-1K", "ImageNet-21K", "FractalDB-1K", "FractalDB-10K")
NATURAL_GROUP, FRACTAL_GROUP = SOURCES_4[:3], SOURCES_4[3:]
PAIRS_5 = ("ImageNet-1K → SemanticKITTI", "Cityscapes → SemanticKITTI", "ImageNet-1K → S3DIS", "ADE20K → S3DIS")
KITTI_GROUP, S3DIS_GROUP = PAIRS_5[:2], PAIRS_5[2:]
DEPTHS = ("ResNet-18", "ResNet-50", "ResNet-152")
T_ROW = "I,O,µ,σ"
TRANSFORMS_7 = ("T1", "T2", "T3", "ST", "NST", "ST(RI)", "NST(RI)")
# Main table -> its stability table.
STABILITY_OF = {1: 8, 2: 9, 3: 10, 4: 11, 5: 12, 6: 13, 7: 14}


class PaperKind(enum.Enum):
    """What a paper number is."""

    MODERATE = "one moderate value of the trials"
    MEAN_STD = "mean ± std over the trials"


@dataclass(frozen=True)
class PaperCell:
    """One number of the paper: its table, row and column labels, value (percent) and, for Tables 8-14,
    the standard deviation; ``trials`` is how many runs the paper made for it."""

    table: int
    row: str
    column: str
    value: float
    std: float | None
    kind: PaperKind
    trials: int
    # The columns the value stands for; (column,) unless the paper prints one value for a group.
    spans: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.spans:
            object.__setattr__(self, "spans", (self.column,))
        if (self.std is None) != (self.kind is PaperKind.MODERATE):
            raise ValueError(f"Table {self.table} ({self.row}, {self.column}): std goes with mean ± std only")

    def text(self) -> str:
        """``78.69`` or ``79.32 ± 0.46``."""
        return f"{self.value:.2f}" if self.std is None else f"{self.value:.2f} ± {self.std:.2f}"

    @property
    def label(self) -> str:
        return f"Table {self.table} ({self.row}, {self.column})"


Value = float | tuple[float, float] | None


def _grid(table: int, columns: Sequence[str], rows: Sequence[tuple[str, Sequence[Value]]],
          trials: dict[str, int] | None = None) -> list[PaperCell]:
    """Cells of a grid, row by row; a value is a float (Tables 1-7), (mean, std) (8-14) or None ('-')."""
    cells = []
    for row, values in rows:
        if len(values) != len(columns):
            raise ValueError(f"Table {table} row {row!r}: {len(values)} values for {len(columns)} columns")
        for column, value in zip(columns, values, strict=True):
            if value is not None:
                cells.append(_cell(table, row, column, value, (column,), trials))
    return cells


def _spanning(table: int, row: str, label: str, spans: Sequence[str], value: Value) -> PaperCell:
    """A value the paper prints once for the group of columns ``spans``."""
    return _cell(table, row, label, value, tuple(spans), None)


def _cell(table: int, row: str, column: str, value: Value, spans: tuple[str, ...],
          trials: dict[str, int] | None) -> PaperCell:
    count = (trials or {}).get(column, DEFAULT_TRIALS)
    if isinstance(value, tuple):
        return PaperCell(table, row, column, value[0], value[1], PaperKind.MEAN_STD, count, spans)
    return PaperCell(table, row, column, float(value), None, PaperKind.MODERATE, count, spans)


def _table1(table: int, v: dict[str, Sequence[Value]]) -> list[PaperCell]:
    order = (*SCHEME_ROWS, SCRATCH, LINEAR_IO, LINEAR_NET, SCRATCH_LINEAR)
    return _grid(table, (MODELNET, S3DIS, KITTI), [(row, v[row]) for row in order])


def _schemes_with_scratch(table: int, columns: Sequence[str], v: dict[str, Sequence[Value]],
                          groups: Sequence[tuple[Sequence[str], Value]]) -> list[PaperCell]:
    """The four scheme rows by column, then the from-scratch value once per group of columns."""
    cells = _grid(table, columns, [(row, v[row]) for row in SCHEME_ROWS])
    for group, value in groups:
        cells.append(_spanning(table, SCRATCH, " / ".join(group), group, value))
    return cells


TABLE1 = {IO: (78.69, 53.54, 55.78), IO_STATS: (83.45, 54.86, 56.29), IO_BN: (88.09, 55.22, 58.76),
          WHOLE: (89.14, 56.62, 65.59), SCRATCH: (88.61, 55.09, 64.75), LINEAR_IO: (69.74, 48.83, 54.43),
          LINEAR_NET: (8.91, None, None), SCRATCH_LINEAR: (88.53, 54.79, 64.01)}
TABLE8 = {IO: ((79.32, 0.46), (53.40, 0.25), (55.74, 0.13)), IO_STATS: ((83.11, 0.23), (54.82, 0.21), (56.19, 0.11)),
          IO_BN: ((88.36, 0.17), (55.26, 0.22), (58.62, 0.14)), WHOLE: ((88.87, 0.35), (56.53, 0.21), (65.33, 0.23)),
          SCRATCH: ((88.65, 0.23), (55.05, 0.17), (64.66, 0.16)),
          LINEAR_IO: ((69.74, 0.45), (48.83, 0.23), (54.31, 0.14)), LINEAR_NET: ((8.91, 3.46), None, None),
          SCRATCH_LINEAR: ((88.53, 0.36), (54.79, 0.21), (63.75, 0.29))}
TABLE2 = ((T_ROW, (82.34, 36.04)), (WHOLE, (90.72, 49.37)), (SCRATCH, (90.67, 44.12)))
TABLE9 = ((T_ROW, ((82.14, 0.44), (36.02, 0.11))), (WHOLE, ((90.64, 0.35), (49.33, 0.11))),
          (SCRATCH, ((90.61, 0.33), (44.09, 0.12))))
TABLE3 = ((PRETRAINED, (24.92, 71.11, 76.82, 88.90)), (NOT_PRETRAINED, (13.66, 68.56, 74.31, 88.53)))
TABLE10 = ((PRETRAINED, ((26.77, 5.48), (68.96, 1.91), (76.44, 0.64), (88.73, 0.13))),
           (NOT_PRETRAINED, ((20.61, 8.16), (68.28, 1.64), (75.74, 0.93), (88.56, 0.18))))
# Tables 4 and 11, by row: Tiny-ImageNet, ImageNet-1K, ImageNet-21K, FractalDB-1K, FractalDB-10K.
TABLE4 = {IO: (68.40, 83.47, 81.81, 85.54, 83.55), IO_STATS: (81.69, 83.28, 82.10, 72.53, 77.96),
          IO_BN: (88.70, 88.98, 89.18, 88.17, 88.33), WHOLE: (89.06, 88.90, 89.19, 88.45, 88.49)}
TABLE11 = {IO: ((67.84, 0.33), (83.99, 0.30), (81.37, 0.33), (85.55, 0.02), (83.32, 0.16)),
           IO_STATS: ((81.23, 0.37), (82.53, 0.45), (81.78, 0.24), (71.85, 0.56), (77.92, 0.06)),
           IO_BN: ((88.86, 0.48), (88.92, 0.22), (89.46, 0.20), (88.36, 0.30), (88.57, 0.18)),
           WHOLE: ((88.84, 0.14), (88.73, 0.13), (89.21, 0.04), (88.48, 0.07), (88.55, 0.14))}
# Tables 5 and 12, by row: ImageNet-1K -> SemanticKITTI, Cityscapes -> SemanticKITTI, ImageNet-1K -> S3DIS,
# ADE20K -> S3DIS.
TABLE5 = {IO: (55.78, 58.48, 53.54, 55.28), IO_STATS: (56.29, 56.71, 54.86, 54.95),
          IO_BN: (58.76, 59.54, 55.22, 55.28), WHOLE: (65.59, 65.55, 56.62, 56.11)}
TABLE12 = {IO: ((55.74, 0.13), (58.41, 0.11), (53.40, 0.25), (55.21, 0.21)),
           IO_STATS: ((56.19, 0.11), (56.69, 0.12), (54.82, 0.21), (54.85, 0.25)),
           IO_BN: ((58.62, 0.14), (59.47, 0.17), (55.26, 0.22), (55.28, 0.25)),
           WHOLE: ((65.33, 0.23), (65.51, 0.22), (56.53, 0.21), (56.22, 0.24))}
# Tables 6 and 13, by row: ResNet-18, ResNet-50, ResNet-152.
TABLE6 = {IO: (78.69, 83.47, 69.33), IO_STATS: (83.45, 83.28, 81.68), IO_BN: (88.09, 88.98, 88.66),
          WHOLE: (89.14, 88.90, 88.45), SCRATCH: (88.61, 88.53, 88.74)}
TABLE13 = {IO: ((79.32, 0.46), (83.99, 0.30), (69.42, 0.08)), IO_STATS: ((83.11, 0.23), (82.53, 0.45), (81.16, 0.38)),
           IO_BN: ((88.36, 0.17), (88.92, 0.22), (88.74, 0.09)), WHOLE: ((88.87, 0.35), (88.73, 0.13), (88.45, 0.23)),
           SCRATCH: ((88.65, 0.23), (88.56, 0.18), (88.75, 0.02))}
TABLE7 = (82.21, 81.81, 82.25, 84.36, 87.24, 84.40, 86.35)
TABLE14 = ((82.24, 0.73), (81.82, 0.18), (82.35, 0.29), (84.20, 0.97), (87.20, 0.06), (84.54, 0.51), (86.59, 0.29))


def _all_cells() -> dict[int, tuple[PaperCell, ...]]:
    tables = {
        1: _table1(1, TABLE1), 8: _table1(8, TABLE8),
        2: _grid(2, (POINTNET2_COLUMN, HRNET_COLUMN), TABLE2), 9: _grid(9, (POINTNET2_COLUMN, HRNET_COLUMN), TABLE9),
        3: _grid(3, FRACTIONS, TABLE3, FRACTION_TRIALS), 10: _grid(10, FRACTIONS, TABLE10, FRACTION_TRIALS),
        4: _schemes_with_scratch(4, SOURCES_4, TABLE4, ((NATURAL_GROUP, 88.53), (FRACTAL_GROUP, 88.53))),
        11: _schemes_with_scratch(11, SOURCES_4, TABLE11, ((NATURAL_GROUP, (88.56, 0.18)),
                                                           (FRACTAL_GROUP, (88.56, 0.18)))),
        5: _schemes_with_scratch(5, PAIRS_5, TABLE5, ((KITTI_GROUP, 64.75), (S3DIS_GROUP, 55.09))),
        12: _schemes_with_scratch(12, PAIRS_5, TABLE12, ((KITTI_GROUP, (64.66, 0.16)), (S3DIS_GROUP, (55.05, 0.17)))),
        6: _grid(6, DEPTHS, [(row, TABLE6[row]) for row in (*SCHEME_ROWS, SCRATCH)]),
        13: _grid(13, DEPTHS, [(row, TABLE13[row]) for row in (*SCHEME_ROWS, SCRATCH)]),
        7: _grid(7, TRANSFORMS_7, ((T_ROW, TABLE7),)), 14: _grid(14, TRANSFORMS_7, ((T_ROW, TABLE14),)),
    }
    return {number: tuple(tables[number]) for number in sorted(tables)}


PAPER_CELLS: dict[int, tuple[PaperCell, ...]] = _all_cells()


def paper_cells(table: int) -> tuple[PaperCell, ...]:
    """Every cell of the paper's Table ``table`` (1-14), row by row."""
    return PAPER_CELLS[table]


def paper_cell(table: int, row: str, column: str) -> PaperCell:
    """The paper's cell of ``table`` in ``row`` under ``column`` (a column a grouped value spans counts)."""
    for cell in PAPER_CELLS[table]:
        if cell.row == row and column in cell.spans:
            return cell
    raise KeyError(f"Table {table} has no cell ({row!r}, {column!r})")


def stability_cell(cell: PaperCell) -> PaperCell:
    """The mean ± std (Tables 8-14) of a main-table cell (Tables 1-7), same row and column."""
    return paper_cell(STABILITY_OF[cell.table], cell.row, cell.spans[0])


# Table 1's third group, in the paper's row order.
PRIOR_ART_METHODS = ("3DShapeNets [8]", "DeepPano [9]", "Xu et al. [71]", "PointNet [30]", "PointNet++ [31]",
                     "DGCNN [72]", "RSNet [73]", "SPGraph [74]", "TangentConv [75]", "SqueezeSegV3 [22]")


@dataclass(frozen=True)
class PriorArtColumn:
    """One column of Table 1's third group: its values top to bottom as printed ('†': the authors' reproduction,
    '(test)': the test set), and the methods the paper's prose ties a value to: ``anchors`` holds
    (method, value, the Table 1 row it is compared with, the difference the prose states)."""

    column: str
    printed: tuple[str, ...]
    anchors: tuple[tuple[str, str, str, float], ...] = ()

    def text(self) -> str:
        values = ", ".join(self.printed)
        pinned = "; ".join(f"{method} = {value}, {row} {abs(gap):.2f} {'above' if gap > 0 else 'below'} it"
                           for method, value, row, gap in self.anchors)
        return f"{self.column}: {values}" + (f" (the prose pins {pinned})" if pinned else "")


def printed_value(text: str) -> float | None:
    """77.63 from '77.63', '50.73†' or '20.00 (test)'; None for '-'."""
    number = text.split("(")[0].strip(" †")
    return None if number == "-" else float(number)


# Section 4.1: I,O "outperforms 3D ShapeNet [8] and DeepPano [9] by 1.69% and 1.06%" (ModelNet40) and is "only
# 1.53 points mIoU lower" than SqueezeSegV3 (SemanticKITTI).
TABLE1_PRIOR_ART = (
    PriorArtColumn(MODELNET, ("77.0", "77.63", "81.26", "89.2", "90.7", "90.7", "-"),
                   (("3DShapeNets [8]", "77.0", IO, 1.69), ("DeepPano [9]", "77.63", IO, 1.06))),
    PriorArtColumn(S3DIS, ("42.97", "50.73†", "47.94", "51.93", "58.04", "52.6", "-")),
    PriorArtColumn(KITTI, ("17.4†", "22.1†", "20.00 (test)", "35.9 (test)", "57.31 †"),
                   (("SqueezeSegV3 [22]", "57.31 †", IO, -1.53),)),
)
