"""Aggregation against a hand-computed case: mean, sample std, n, partial and missing cells, paper numbers."""

import csv
import dataclasses
import io
import json
import math

import pytest

from image2point.experiments.aggregate import collect_cells, render_csv, render_markdown, summarise, write_table_results
from image2point.experiments.plan import FINISHED, MISSING, NO_DATA, PENDING, ExperimentContext, PlannedRun
from image2point.experiments.paper_numbers import paper_cell
from image2point.experiments.specs import NO_PAPER_CELL, RunSpec, TableLayout, TableSpec

ROWS, COLUMNS = ("I,O", "scratch"), ("ModelNet40", "SemanticKITTI")
METRICS = {"ModelNet40": "overall_accuracy", "SemanticKITTI": "miou"}


def _spec(row, column, seed):
    return RunSpec("tableX", row, column, seed, f"{row}-{column}-s{seed}".lower().replace(",", "_"), "modelnet40",
                   "configs/demo/modelnet40_sample.yaml", ())


# Our I,O x ModelNet40 stands beside the paper's Table 1 cell, I,O x KITTI beside the mean ± std of Table 8;
# scratch x ModelNet40 has no paper cell for a stated reason, scratch x KITTI for the default one.
LAYOUT = TableLayout(ROWS, COLUMNS, METRICS,
                     paper={("I,O", "ModelNet40"): paper_cell(1, "I,O", "ModelNet40"),
                            ("I,O", "SemanticKITTI"): paper_cell(8, "I,O", "SemanticKITTI")},
                     paper_gaps={("scratch", "ModelNet40"): "not in the paper"})
TABLE = TableSpec("tableX", "A test table", "Does it add up?", {"small": LAYOUT}, expand=lambda scale, seeds: [],
                  paper_table=1, notes=("a note",))


@pytest.fixture
def plans(tmp_path, write_metrics):
    """I,O x ModelNet40: 30, 35, 40 %; I,O x KITTI: 1 of 2 seeds (mIoU 50 %); scratch x ModelNet40: missing;
    scratch x KITTI: no data."""
    planned = []
    for seed, accuracy in enumerate((0.30, 0.35, 0.40)):
        run_dir = tmp_path / f"io-mn-{seed}"
        write_metrics(run_dir, accuracy=accuracy)
        planned.append(PlannedRun(_spec("I,O", "ModelNet40", seed), run_dir, FINISHED, ()))
    write_metrics(tmp_path / "io-kitti-0", miou=0.5)
    planned.append(PlannedRun(_spec("I,O", "SemanticKITTI", 0), tmp_path / "io-kitti-0", FINISHED, ()))
    planned.append(PlannedRun(_spec("I,O", "SemanticKITTI", 1), tmp_path / "io-kitti-1", PENDING, ()))
    for seed in (0, 1):
        planned.append(PlannedRun(_spec("scratch", "ModelNet40", seed), tmp_path / "x", MISSING, (),
                                  "no imagenet weights given (--weights imagenet=PATH)"))
        planned.append(PlannedRun(_spec("scratch", "SemanticKITTI", seed), tmp_path / "y", NO_DATA, (),
                                  "no KITTI here"))
    return planned


def test_summarise_uses_the_sample_std():
    assert summarise([]) == (None, None)
    assert summarise([4.0]) == (4.0, None)
    mean, std = summarise([30.0, 35.0, 40.0])
    assert mean == pytest.approx(35.0) and std == pytest.approx(5.0)


def test_cells_by_hand(plans):
    cells = {(cell.row, cell.column): cell for cell in collect_cells(TABLE, plans, "small")}
    io_mn = cells[("I,O", "ModelNet40")]
    assert (io_mn.status, io_mn.n, io_mn.expected, io_mn.seeds) == ("ok", 3, 3, (0, 1, 2))
    assert io_mn.values == pytest.approx((30.0, 35.0, 40.0))
    assert io_mn.mean == pytest.approx(35.0) and io_mn.std == pytest.approx(5.0) and io_mn.paper == 78.69
    partial = cells[("I,O", "SemanticKITTI")]
    assert (partial.n, partial.expected, partial.mean, partial.std) == (1, 2, pytest.approx(50.0), None)
    assert (partial.paper, partial.paper_std, partial.paper_kind) == (55.74, 0.13, "mean ± std over the trials")
    assert partial.paper_cell == "Table 8 (I,O, SemanticKITTI)" and partial.paper_gap is None
    assert io_mn.paper_std is None and io_mn.paper_kind == "one moderate value of the trials"
    assert cells[("scratch", "ModelNet40")].paper_gap == "not in the paper"
    assert cells[("scratch", "SemanticKITTI")].paper_gap == NO_PAPER_CELL
    assert cells[("scratch", "ModelNet40")].status == "missing"
    assert cells[("scratch", "SemanticKITTI")].status == "no data"
    assert cells[("scratch", "SemanticKITTI")].mean is None


def test_markdown_layout_with_paper_numbers_and_footnotes(plans):
    text = render_markdown(TABLE, collect_cells(TABLE, plans, "small"), "small", "image2point experiment tableX",
                           "2026-11-24")
    assert "| | ModelNet40 | paper | SemanticKITTI | paper |" in text
    assert "| I,O | 35.00 ± 5.00 (3) | 78.69 | 50.00 (1 of 2) | 55.74 ± 0.13 |" in text
    assert "| scratch | missing [1] | — (a) | no data [2] | — (b) |" in text
    assert "(a) not in the paper" in text and f"(b) {NO_PAPER_CELL}" in text
    # Every other cell of the paper's Table 1 is listed apart, with its value.
    assert "Paper cells beside none of ours at this scale (21):" in text
    assert "- Table 1 (linear network (w/o backbone), ModelNet40): 8.91" in text
    assert "Table 1 (I,O, ModelNet40)" not in text.split("beside none of ours")[1]
    assert "[1] no imagenet weights given (--weights imagenet=PATH)" in text and "[2] no KITTI here" in text
    assert "- command: `image2point experiment tableX`" in text and "- date: 2026-11-24" in text
    assert "- scale: small" in text and "- a note" in text
    assert "cross-validated" not in text


def test_markdown_of_a_cross_validated_run_says_its_folds(plans):
    text = render_markdown(TABLE, collect_cells(TABLE, plans, "small"), "small", "image2point experiment tableX",
                           "2026-11-24", folds={"modelnet40": 5, "semantickitti": 3})
    assert "- cross-validated (folds per dataset: modelnet40 5, semantickitti 3): a seed's value is the metric" in text


def test_a_cross_validated_table_names_the_folds_of_its_own_datasets_only(plans, tmp_path):
    context = dataclasses.replace(ExperimentContext("small", tmp_path / "out", {}, {}, tmp_path), cross_validate=True)
    modelnet_only = [planned for planned in plans if planned.spec.dataset == "modelnet40"]
    write_table_results(TABLE, modelnet_only, context, "cmd", "2026-11-24")
    text = (tmp_path / "out" / TABLE.name / "table.md").read_text()
    assert "- cross-validated (folds per dataset: modelnet40 5): a seed's value" in text


def test_csv_and_json(plans, tmp_path):
    context = ExperimentContext("small", tmp_path / "out", {}, {}, tmp_path)
    written = write_table_results(TABLE, plans, context, "cmd", "2026-11-24")
    assert [path.name for path in written] == ["results.json", "results.csv", "table.md"]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "tableX" / "results.csv").read_text())))
    first = rows[0]
    assert (first["row"], first["column"], first["status"], first["n"], first["mean"], first["std"], first["paper"],
            first["seeds"], first["values"]) == ("I,O", "ModelNet40", "ok", "3", "35.0000", "5.0000", "78.69", "0;1;2",
                                                 "30.0000;35.0000;40.0000")
    assert (rows[1]["paper"], rows[1]["paper_std"], rows[1]["paper_cell"]) == ("55.74", "0.13",
                                                                                "Table 8 (I,O, SemanticKITTI)")
    assert rows[2]["status"] == "missing" and rows[2]["reason"].startswith("no imagenet")
    assert (rows[2]["paper"], rows[2]["paper_gap"]) == ("—", "not in the paper")
    payload = json.loads((tmp_path / "out" / "tableX" / "results.json").read_text())
    assert payload["unit"] == "percent" and payload["date"] == "2026-11-24"
    cell = payload["cells"][1]
    assert cell["std"] is None and cell["n"] == 1 and math.isclose(cell["mean"], 50.0)
    assert payload["footnotes"] == {"1": "no imagenet weights given (--weights imagenet=PATH)", "2": "no KITTI here"}
    assert payload["paper_table"] == 1 and len(payload["unplaced_paper_cells"]) == 21
    assert payload["cells"][0]["paper_cell"] == "Table 1 (I,O, ModelNet40)"
    assert render_csv(TABLE, collect_cells(TABLE, plans, "small")).splitlines()[0].startswith("table,row,column")
