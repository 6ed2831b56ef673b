"""The convergence study: Table 1's runs at several budgets, small scale only, and what it writes beside its
table (paired budget differences, training losses, the figure) from synthetic run directories."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from image2point.cli import main
from image2point.errors import ConfigError
from image2point.experiments import TABLES, get_table, plan_table
from image2point.experiments.aggregate import collect_cells, render_markdown
from image2point.experiments.convergence import (
    CONVERGENCE_JSON,
    CONVERGENCE_MD,
    CONVERGENCE_PNG,
    ComparisonKind,
    comparisons,
    write_convergence,
)
from image2point.experiments.paired import Verdict
from image2point.experiments.plan import table_names
from image2point.experiments.scales import SMALL_MODELNET40_FOLDS, SMALL_SEMANTICKITTI_FOLDS
from image2point.experiments.tables.convergence import BUDGETS, COLUMNS, LENGTH_KEYS, ROWS
from image2point.train.outcomes import OUTCOMES_FILE, ClassificationOutcomes, SegmentationOutcomes, save_outcomes

SHAPES_PER_FOLD = 4


def _without_length(overrides):
    return [item for item in overrides if item.partition("=")[0] not in LENGTH_KEYS]


def test_runs_are_table1_runs_at_each_budget():
    runs = get_table("convergence").runs("small", (0, 1))
    assert len(runs) == len(ROWS) * len(COLUMNS) * 2
    assert len({run.run_id for run in runs}) == len(runs)
    table1 = {(run.row, run.dataset, run.seed): run for run in get_table("table1").runs("small", (0, 1))}
    for run in runs:
        same = table1[(run.row, run.dataset, run.seed)]
        epochs = int(run.column.split(" · ")[1].split()[0])
        assert epochs in BUDGETS[run.dataset]
        assert run.table == "convergence"
        assert run.run_id == same.run_id.replace(f"-s{run.seed}", f"-e{epochs}-s{run.seed}")
        assert _without_length(run.overrides) == _without_length(same.overrides)
        assert (run.source, run.arch, run.recipe) == (same.source, same.arch, same.recipe)
        lengths = [item for item in run.overrides if item.partition("=")[0] in LENGTH_KEYS]
        assert lengths == [f"train.epochs={epochs}", f"train.eval_every={epochs}"]
    assert {run.row for run in runs} == {"scratch", "I,O,µ,σ,W,b"}
    assert {run.source for run in runs} == {"cifar10", None}
    # Shortest budget first, scratch first within it: a study cut short loses the pretrained row's longest budget.
    assert {run.column for run in runs[:8]} == {"ModelNet40 · 4 epochs", "SemanticKITTI · 6 epochs"}
    assert {(run.row, run.column) for run in runs[-4:]} == {("I,O,µ,σ,W,b", "ModelNet40 · 32 epochs"),
                                                           ("I,O,µ,σ,W,b", "SemanticKITTI · 48 epochs")}
    assert [run.row for run in runs[:8]] == ["scratch"] * 4 + ["I,O,µ,σ,W,b"] * 4


def test_folds_repeat_every_budget(small_context):
    plans = plan_table(get_table("convergence"), dataclasses.replace(small_context, cross_validate=True), (0,))
    modelnet = [plan for plan in plans if plan.spec.dataset == "modelnet40"]
    assert len(modelnet) == len(ROWS) * len(BUDGETS["modelnet40"]) * SMALL_MODELNET40_FOLDS
    assert len(plans) - len(modelnet) == len(ROWS) * len(BUDGETS["semantickitti"]) * SMALL_SEMANTICKITTI_FOLDS
    assert "modelnet40-none-scratch-e32-s0-f4" in {plan.spec.run_id for plan in plans}
    assert all(str(plan.run_dir.parent).endswith("convergence") for plan in plans)


def test_paper_scale_says_there_is_no_such_study(fake_shared, tmp_path, capsys):
    with pytest.raises(ConfigError, match="no convergence study"):
        get_table("convergence").runs("paper", (0,))
    out = tmp_path / "out"
    assert main(["experiment", "convergence", "--scale", "paper", "--dry-run", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "convergence --scale paper: the paper has no convergence study" in err[0]
    assert not out.exists()


def test_all_means_the_papers_tables(fake_shared, tmp_path, capsys):
    assert "convergence" in TABLES and "convergence" not in table_names("all")
    assert table_names("convergence") == ["convergence"]
    assert main(["experiment", "convergence", "--dry-run", "--seeds", "1", "--out-dir", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "[not a table of the paper] at small scale" in out and "paper cells" not in out
    assert "modelnet40-cifar10-io_bn-e16-s0  [pending]" in out and "train.epochs=16 train.eval_every=16" in out


def test_comparisons_pair_budgets_and_rows():
    found = comparisons()
    kinds = [item.kind for item in found]
    # Per dataset and row: 3 steps to the next budget, 2 more to the longest; then 4 pretrained - scratch.
    assert kinds.count(ComparisonKind.NEXT_BUDGET) == 2 * 2 * 3
    assert kinds.count(ComparisonKind.LONGEST_BUDGET) == 2 * 2 * 2
    assert kinds.count(ComparisonKind.PRETRAINING) == 2 * 4
    assert found[0].label == "scratch · ModelNet40: 8 − 4 epochs"
    assert found[0].a == ("scratch", "ModelNet40 · 8 epochs") and found[0].b == ("scratch", "ModelNet40 · 4 epochs")


def _finish(planned, outcomes, confusion, losses):
    run_dir = planned.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    save_outcomes(run_dir / OUTCOMES_FILE, outcomes)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"epoch": epoch, "train_loss": loss}) + "\n"
                                                   for epoch, loss in enumerate(losses)))
    (run_dir / "metrics.json").write_text(json.dumps({"final": {"confusion": confusion}}))


def _shape_run(planned, correct):
    """Fold f tests shapes s_f_0..3 (labels 0..3) and gets the first ``correct`` right."""
    labels = np.arange(SHAPES_PER_FOLD)
    predictions = np.where(labels < correct, labels, (labels + 1) % SHAPES_PER_FOLD)
    outcomes = ClassificationOutcomes(tuple(f"s_{planned.fold}_{i}" for i in labels), labels, predictions)
    confusion = np.zeros((SHAPES_PER_FOLD, SHAPES_PER_FOLD), dtype=int)
    np.add.at(confusion, (labels, predictions), 1)
    epochs = int(planned.spec.column.split(" · ")[1].split()[0])
    return outcomes, confusion.tolist(), [2.0 / (1 + epoch) for epoch in range(epochs)]


def _scan_run(planned):
    cells = np.array([[0, 0, 0, 0, 0, 3], [0, 0, 0, 1, 1, 1]])
    outcomes = SegmentationOutcomes((f"00/00000{planned.fold}",), 2, cells, 10.0)
    epochs = int(planned.spec.column.split(" · ")[1].split()[0])
    return outcomes, [[3, 0], [0, 1]], [1.0] * epochs


def test_a_tiny_study_aggregates(small_context):
    context = dataclasses.replace(small_context, cross_validate=True)
    table = get_table("convergence")
    plans = plan_table(table, context, (0,))
    for planned in plans:
        if planned.spec.dataset == "semantickitti":
            _finish(planned, *_scan_run(planned))
            continue
        # Scratch: 1 of 4 right at 4 epochs, 3 of 4 from 8 on; I,O,µ,σ,W,b: 2 of 4 at every budget.
        short = planned.spec.column == "ModelNet40 · 4 epochs"
        correct = (1 if short else 3) if planned.spec.row == "scratch" else 2
        _finish(planned, *_shape_run(planned, correct))
    # Fold 4 of the longest scratch budget is unfinished: its comparisons report the missing run.
    (next(p for p in plans if p.spec.run_id == "modelnet40-none-scratch-e32-s0-f4").run_dir / "metrics.json").unlink()
    written = write_convergence(table, plans, context)
    assert [path.name for path in written] == [CONVERGENCE_PNG, CONVERGENCE_MD, CONVERGENCE_JSON]
    payload = json.loads((context.out_dir / "convergence" / CONVERGENCE_JSON).read_text())
    entries = {entry["comparison"]: entry for entry in payload["comparisons"]}
    step = entries["scratch · ModelNet40: 8 − 4 epochs"]
    assert step["difference"] == pytest.approx(50.0) and step["reading"] == Verdict.HOLDS.value
    assert step["unit_count"] == SHAPES_PER_FOLD * SMALL_MODELNET40_FOLDS and step["units"] == "shapes"
    assert entries["scratch · ModelNet40: 16 − 8 epochs"]["interval"] == [0.0, 0.0]
    assert entries["scratch · ModelNet40: 16 − 8 epochs"]["reading"] == Verdict.CANNOT_TELL.value
    assert entries["I,O,µ,σ,W,b − scratch · ModelNet40 · 8 epochs"]["reading"] == Verdict.REVERSED.value
    unfinished = entries["scratch · ModelNet40: 32 − 16 epochs"]
    assert unfinished["reading"] is None and unfinished["missing_runs"] == ["modelnet40-none-scratch-e32-s0-f4"]
    assert entries["scratch · SemanticKITTI: 12 − 6 epochs"]["difference"] == pytest.approx(0.0)
    curves = {(curve["row"], curve["column"]): curve["train_loss"] for curve in payload["train_loss"]}
    assert curves[("scratch", "ModelNet40 · 4 epochs")] == pytest.approx([2.0, 1.0, 2 / 3, 0.5])
    assert len(curves[("I,O,µ,σ,W,b", "SemanticKITTI · 48 epochs")]) == 48
    markdown = (context.out_dir / "convergence" / CONVERGENCE_MD).read_text()
    assert "| scratch · ModelNet40: 8 − 4 epochs | next budget | +50.00 | [+" in markdown
    assert "not finished (1 runs missing)" in markdown
    assert (context.out_dir / "convergence" / CONVERGENCE_PNG).read_bytes()[:4] == b"\x89PNG"
    # The table itself: our cells only, no paper columns.
    table_md = render_markdown(table, collect_cells(table, plans, "small"), "small", "cmd", "2026-12-04")
    grid = next(line for line in table_md.splitlines() if line.startswith("| | "))
    assert grid.startswith("| | ModelNet40 · 4 epochs | ModelNet40 · 8 epochs |") and "paper" not in table_md
    assert "| scratch | 25.00 (1) | 75.00 (1) | 75.00 (1) | pending (0 of 1) |" in table_md
