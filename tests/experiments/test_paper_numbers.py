"""The paper's numbers as transcribed: the count of cells per table (a dropped or extra value fails), a few
pinned cells per table, and the cross-checks the paper itself offers (cells that two tables repeat, the
differences its prose states)."""

import pytest

from image2point.experiments.paper_numbers import (
    PAPER_CELLS,
    STABILITY_OF,
    PaperCell,
    PaperKind,
    paper_cell,
    paper_cells,
    stability_cell,
)

# Tables 1 and 8: 4 schemes + scratch + linear I,O + from scratch (linear I,O) on three datasets, and the
# linear network on ModelNet40 only; Tables 4, 5, 11, 12: 4 schemes x columns + one scratch value per group.
CELLS_PER_TABLE = {1: 22, 2: 6, 3: 8, 4: 22, 5: 18, 6: 15, 7: 7, 8: 22, 9: 6, 10: 8, 11: 22, 12: 18, 13: 15, 14: 7}
PINNED = [
    (1, "I,O", "ModelNet40", 78.69, None), (1, "whole network", "SemanticKITTI", 65.59, None),
    (1, "from scratch (linear I,O)", "SemanticKITTI", 64.01, None), (1, "linear I,O", "S3DIS", 48.83, None),
    (2, "I,O,µ,σ", "Cityscapes → SemanticKITTI · HRNetV2-W48", 36.04, None),
    (2, "from scratch", "Tiny-ImageNet → ModelNet40 · PointNet++", 90.67, None),
    (3, "w/ pretraining", "1 %", 24.92, None), (3, "w/o pretraining", "10 %", 74.31, None),
    (4, "I,O", "FractalDB-1K", 85.54, None), (4, "I,O,µ,σ", "FractalDB-10K", 77.96, None),
    (4, "whole network", "ImageNet-21K", 89.19, None), (4, "from scratch", "FractalDB-10K", 88.53, None),
    (5, "I,O", "Cityscapes → SemanticKITTI", 58.48, None), (5, "whole network", "ADE20K → S3DIS", 56.11, None),
    (5, "from scratch", "ADE20K → S3DIS", 55.09, None),
    (6, "I,O", "ResNet-152", 69.33, None), (6, "from scratch", "ResNet-152", 88.74, None),
    (7, "I,O,µ,σ", "T2", 81.81, None), (7, "I,O,µ,σ", "NST(RI)", 86.35, None),
    (8, "linear network (w/o backbone)", "ModelNet40", 8.91, 3.46), (8, "I,O", "SemanticKITTI", 55.74, 0.13),
    (9, "whole network", "Tiny-ImageNet → ModelNet40 · PointNet++", 90.64, 0.35),
    (10, "w/o pretraining", "1 %", 20.61, 8.16), (10, "w/ pretraining", "100 %", 88.73, 0.13),
    (11, "I,O", "Tiny-ImageNet", 67.84, 0.33), (11, "I,O,µ,σ,W,b", "ImageNet-21K", 89.46, 0.20),
    (11, "I,O,µ,σ", "FractalDB-1K", 71.85, 0.56),
    (12, "I,O", "ADE20K → S3DIS", 55.21, 0.21), (12, "from scratch", "Cityscapes → SemanticKITTI", 64.66, 0.16),
    (13, "I,O", "ResNet-152", 69.42, 0.08), (13, "from scratch", "ResNet-152", 88.75, 0.02),
    (14, "I,O,µ,σ", "ST", 84.20, 0.97), (14, "I,O,µ,σ", "NST", 87.20, 0.06),
]


def test_count_of_cells_per_table():
    assert {table: len(cells) for table, cells in PAPER_CELLS.items()} == CELLS_PER_TABLE


@pytest.mark.parametrize("table,row,column,value,std", PINNED)
def test_pinned_cells(table, row, column, value, std):
    cell = paper_cell(table, row, column)
    assert (cell.value, cell.std) == (value, std)
    assert cell.kind is (PaperKind.MODERATE if table <= 7 else PaperKind.MEAN_STD)


def test_kinds_trials_and_uniqueness():
    for table, cells in PAPER_CELLS.items():
        assert all(cell.table == table for cell in cells)
        assert len({(cell.row, cell.column) for cell in cells}) == len(cells)
        assert all((cell.std is None) == (table <= 7) for cell in cells)
        assert all(0 < cell.value < 100 for cell in cells)
    # Three trials everywhere but Table 3 / 10's 1, 5 and 10 % columns.
    assert {cell.column: cell.trials for cell in paper_cells(10)} == {"1 %": 20, "5 %": 15, "10 %": 10, "100 %": 3}
    assert {cell.trials for table in (1, 2, 4, 5, 6, 7) for cell in paper_cells(table)} == {3}
    with pytest.raises(ValueError, match="std"):
        PaperCell(1, "r", "c", 1.0, 0.1, PaperKind.MODERATE, 3)


def test_no_cell_where_the_paper_prints_a_dash():
    with pytest.raises(KeyError):
        paper_cell(1, "linear network (w/o backbone)", "S3DIS")
    with pytest.raises(KeyError):
        paper_cell(8, "linear network (w/o backbone)", "SemanticKITTI")


def test_cells_the_paper_repeats_agree():
    # Table 6's ResNet-18 column is Table 1's ModelNet40 column; its ResNet-50 column Table 4's ImageNet-1K.
    for row in ("I,O", "I,O,µ,σ", "I,O,µ,σ,W,b", "whole network", "from scratch"):
        assert paper_cell(6, row, "ResNet-18").value == paper_cell(1, row, "ModelNet40").value
        assert paper_cell(13, row, "ResNet-18").std == paper_cell(8, row, "ModelNet40").std
        assert paper_cell(6, row, "ResNet-50").value == paper_cell(4, row, "ImageNet-1K").value
        assert paper_cell(13, row, "ResNet-50").value == paper_cell(11, row, "ImageNet-1K").value
        # Table 5's ImageNet-1K columns are Table 1's SemanticKITTI and S3DIS columns.
        assert paper_cell(5, row, "ImageNet-1K → SemanticKITTI").value == paper_cell(1, row, "SemanticKITTI").value
        assert paper_cell(12, row, "ImageNet-1K → S3DIS").value == paper_cell(8, row, "S3DIS").value
    # Table 3's 100 % columns: ResNet-50 whole network and from scratch (Tables 4 and 6).
    assert paper_cell(3, "w/ pretraining", "100 %").value == paper_cell(4, "whole network", "ImageNet-1K").value
    assert paper_cell(3, "w/o pretraining", "100 %").value == paper_cell(6, "from scratch", "ResNet-50").value
    assert paper_cell(10, "w/o pretraining", "100 %").std == paper_cell(13, "from scratch", "ResNet-50").std


def test_differences_the_text_states():
    def diff(a, b):
        return round(a.value - b.value, 2)

    # Section 4.4: ImageNet-1K beats Tiny-ImageNet by 15.07 under I,O. Section 4.5: FractalDB1K beats ImageNet by
    # 2.07 under I,O; I,O,µ,σ,W,b gains 15.64 / 10.37 over I,O,µ,σ on FractalDB1K / 10K.
    assert diff(paper_cell(4, "I,O", "ImageNet-1K"), paper_cell(4, "I,O", "Tiny-ImageNet")) == 15.07
    assert diff(paper_cell(4, "I,O", "FractalDB-1K"), paper_cell(4, "I,O", "ImageNet-1K")) == 2.07
    assert diff(paper_cell(4, "I,O,µ,σ,W,b", "FractalDB-1K"), paper_cell(4, "I,O,µ,σ", "FractalDB-1K")) == 15.64
    assert diff(paper_cell(4, "I,O,µ,σ,W,b", "FractalDB-10K"), paper_cell(4, "I,O,µ,σ", "FractalDB-10K")) == 10.37
    # Section 4.6: Cityscapes beats ImageNet-1K by 2.70 under I,O; Section 4.3: 11.26, 2.55, 2.51 at 1, 5, 10 %.
    assert diff(paper_cell(5, "I,O", "Cityscapes → SemanticKITTI"),
                paper_cell(5, "I,O", "ImageNet-1K → SemanticKITTI")) == 2.70
    gains = [diff(paper_cell(3, "w/ pretraining", f), paper_cell(3, "w/o pretraining", f)) for f in ("1 %", "5 %",
                                                                                                     "10 %")]
    assert gains == [11.26, 2.55, 2.51]
    # Section 4.7: ResNet-50 beats ResNet-18 by 4.78 under I,O; ResNet-152 drops by 14.14.
    assert diff(paper_cell(6, "I,O", "ResNet-50"), paper_cell(6, "I,O", "ResNet-18")) == 4.78
    assert diff(paper_cell(6, "I,O", "ResNet-50"), paper_cell(6, "I,O", "ResNet-152")) == 14.14


def test_grouped_scratch_cells_and_stability_views():
    natural = paper_cell(4, "from scratch", "ImageNet-21K")
    assert natural is paper_cell(4, "from scratch", "Tiny-ImageNet")
    assert natural.spans == ("Tiny-ImageNet", "ImageNet-1K", "ImageNet-21K")
    assert natural is not paper_cell(4, "from scratch", "FractalDB-1K")
    for main, stability in STABILITY_OF.items():
        for cell in paper_cells(main):
            view = stability_cell(cell)
            assert (view.table, view.row, view.spans) == (stability, cell.row, cell.spans)
            assert abs(view.value - cell.value) < 2 * max(view.std, 1.0) + 5, cell.label


def test_prior_art_anchors_agree_with_the_differences_the_prose_states():
    from image2point.experiments.paper_numbers import TABLE1_PRIOR_ART, paper_cell, printed_value

    anchors = [(column, *anchor) for column in TABLE1_PRIOR_ART for anchor in column.anchors]
    assert len(anchors) == 3
    for column, _method, value, row, gap in anchors:
        assert value in column.printed
        assert paper_cell(1, row, column.column).value - printed_value(value) == pytest.approx(gap, abs=0.005)


def test_prior_art_columns_keep_every_printed_value():
    from image2point.experiments.paper_numbers import TABLE1_PRIOR_ART, printed_value
    from image2point.experiments.tables.table1 import PRIOR_ART_NOTE

    assert [len(column.printed) for column in TABLE1_PRIOR_ART] == [7, 7, 5]
    assert [printed_value(text) for text in ("77.63", "50.73†", "20.00 (test)", "57.31 †", "-")] == [
        77.63, 50.73, 20.0, 57.31, None]
    assert all(value in PRIOR_ART_NOTE for column in TABLE1_PRIOR_ART for value in column.printed)
