"""Claims from synthetic run directories: verdicts, missing runs, unavailable cells, the CLI's files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from image2point.cli import EXIT_BAD_INPUT, main
from image2point.errors import ConfigError
from image2point.experiments import runner
from image2point.experiments.claims import (
    CLAIMS,
    CLAIMS_JSON,
    CLAIMS_MD,
    claim_plans,
    evaluate_claim,
    render_claims,
    select_claims,
    unit_outcomes,
)
from image2point.experiments.paired import Direction, Verdict
from image2point.experiments.scales import SMALL_MODELNET40_FOLDS, SMALL_SEMANTICKITTI_FOLDS
from image2point.experiments.specs import get_table
from image2point.train.outcomes import (
    OUTCOMES_FILE,
    ClassificationOutcomes,
    SegmentationOutcomes,
    save_outcomes,
)

CLAIM = {claim.name: claim for claim in CLAIMS}
SHAPES_PER_FOLD = 4


@pytest.fixture
def folded_context(small_context):
    return dataclasses.replace(small_context, cross_validate=True)


def finish(run_dir, outcomes) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    save_outcomes(run_dir / OUTCOMES_FILE, outcomes)
    (run_dir / "metrics.json").write_text(json.dumps({"final": {"overall_accuracy": 0.0, "miou": 0.0}}))


def write_shape_runs(out_dir, run_prefix, seeds, correct_per_fold, table="table1") -> None:
    """Classification runs of every fold: fold f tests shapes s_f_0..3 and gets ``correct_per_fold`` right."""
    for seed in seeds:
        for fold in range(SMALL_MODELNET40_FOLDS):
            labels = np.arange(SHAPES_PER_FOLD)
            predictions = np.where(np.arange(SHAPES_PER_FOLD) < correct_per_fold, labels, labels + 1)
            ids = tuple(f"s_{fold}_{index}" for index in range(SHAPES_PER_FOLD))
            outcomes = ClassificationOutcomes(ids, labels, predictions)
            finish(out_dir / table / f"{run_prefix}-s{seed}-f{fold}", outcomes)


def test_a_claim_that_holds_on_every_shape(folded_context):
    write_shape_runs(folded_context.out_dir, "modelnet40-cifar10-io_bn", (0, 1), correct_per_fold=4)
    write_shape_runs(folded_context.out_dir, "modelnet40-none-scratch", (0, 1), correct_per_fold=0)
    result = evaluate_claim(CLAIM["b · ModelNet40"], folded_context, (0, 1), replicates=200)
    assert result.verdict == Verdict.HOLDS and result.units == "shapes" and result.seeds == (0, 1)
    assert (result.result.difference, result.result.low, result.result.high) == (100.0, 100.0, 100.0)
    assert result.result.units == SHAPES_PER_FOLD * SMALL_MODELNET40_FOLDS


def test_seeds_with_unfinished_folds_are_left_out_and_named(folded_context):
    write_shape_runs(folded_context.out_dir, "modelnet40-cifar10-io_bn", (0, 1), correct_per_fold=1)
    write_shape_runs(folded_context.out_dir, "modelnet40-none-scratch", (0,), correct_per_fold=3)
    result = evaluate_claim(CLAIM["b · ModelNet40"], folded_context, (0, 1), replicates=200)
    assert result.seeds == (0,) and result.verdict == Verdict.REVERSED
    assert result.missing == tuple(f"modelnet40-none-scratch-s1-f{fold}" for fold in range(SMALL_MODELNET40_FOLDS))


def test_no_verdict_without_runs_or_without_weights(folded_context):
    assert evaluate_claim(CLAIM["d"], folded_context, (0,)).result is None
    hrnet = evaluate_claim(CLAIM["Table 2 · HRNet"], folded_context, (0,))
    assert hrnet.result is None and hrnet.reason.startswith("missing: no cityscapes weights")


def scan_outcomes(scan: str, right: int, wrong: int) -> SegmentationOutcomes:
    """Two blocks of one scan, class 0 everywhere; ``right`` points predicted 0 and ``wrong`` predicted 1 in each."""
    cells = np.array([[0, block, 0, 0, prediction, count] for block in (0, 1)
                      for prediction, count in ((0, right), (1, wrong))])
    return SegmentationOutcomes((scan,), 2, cells[cells[:, 5] > 0], 10.0)


def test_segmentation_claim_pairs_blocks_of_left_out_scans(folded_context):
    runs = folded_context.out_dir / "table1"
    for fold in range(SMALL_SEMANTICKITTI_FOLDS):
        scan = f"00/00000{fold}"
        finish(runs / f"semantickitti-cifar10-io_bn-s0-f{fold}", scan_outcomes(scan, right=3, wrong=1))
        finish(runs / f"semantickitti-none-scratch-s0-f{fold}", scan_outcomes(scan, right=1, wrong=3))
    result = evaluate_claim(CLAIM["b · SemanticKITTI"], folded_context, (0,), replicates=200)
    # Class 0 only in the targets: IoU of class 0 = right / (right + wrong): 75 % against 25 %.
    assert result.result.difference == pytest.approx(50.0) and result.verdict == Verdict.HOLDS
    assert result.units == "10 m blocks of scans" and result.result.units == 2 * SMALL_SEMANTICKITTI_FOLDS


@pytest.mark.parametrize("scale", ["small", "paper"])
def test_every_claim_names_cells_of_its_table(scale):
    for claim in CLAIMS:
        comparison = claim.cells.get(scale)
        if comparison is None:
            continue
        layout = get_table(claim.table).layout(scale)
        for row, column in (comparison.cell_a, comparison.cell_b):
            assert row in layout.rows and column in layout.columns, (claim.name, row, column)


def test_a_claim_across_columns_pairs_the_same_shapes_of_two_depths(folded_context):
    """Table 6: I,O on ResNet-56 against I,O on ResNet-32, fold by fold."""
    write_shape_runs(folded_context.out_dir, "modelnet40-cifar10-cifar_resnet56-io", (0,), 1, table="table6")
    write_shape_runs(folded_context.out_dir, "modelnet40-cifar10-cifar_resnet32-io", (0,), 3, table="table6")
    claim = CLAIM["Table 6 · deepest, I,O"]
    result = evaluate_claim(claim, folded_context, (0,), replicates=200)
    assert claim.direction == Direction.A_BELOW_B
    assert result.result.difference == pytest.approx(-50.0) and result.verdict == Verdict.HOLDS
    assert result.comparison.describe_b() == "I,O (ResNet-32 (CIFAR-10))"
    assert "| I,O | I,O (ResNet-32 (CIFAR-10)) | ResNet-56 (CIFAR-10) | -50.00 |" in render_claims([result], "cmd")
    same_depth = evaluate_claim(CLAIM["Table 6 · deepest, µ,σ"], folded_context, (0,), replicates=200)
    assert same_depth.result is None and same_depth.missing[0] == "modelnet40-cifar10-cifar_resnet56-io_stats-s0-f0"


def test_a_claim_across_schemes_pairs_one_source_under_two_columns(folded_context):
    """Table 4: FractalDB under I,O,µ,σ against FractalDB under I,O, the paper's Section 4.5."""
    write_shape_runs(folded_context.out_dir, "modelnet40-fractaldb-io_stats", (0, 1), 2, table="table4")
    write_shape_runs(folded_context.out_dir, "modelnet40-fractaldb-io", (0, 1), 3, table="table4")
    claim = CLAIM["Table 4 · FractalDB, µ,σ"]
    result = evaluate_claim(claim, folded_context, (0, 1), replicates=200)
    assert claim.direction == Direction.A_BELOW_B and claim.cells["paper"].cell_b == ("I,O", "FractalDB-1K")
    assert result.result.difference == pytest.approx(-25.0) and result.verdict == Verdict.HOLDS
    assert result.comparison.describe_b() == "FractalDB (ModelNet40 · I,O)"


def test_unit_outcomes_sum_confusions_per_block():
    units, width = unit_outcomes(scan_outcomes("00/000000", right=2, wrong=5))
    assert width == 4 and units[("00/000000", 1, 0)].tolist() == [2.0, 5.0, 0.0, 0.0]


def test_claims_command_writes_both_files(folded_context, capsys):
    write_shape_runs(folded_context.out_dir, "modelnet40-cifar10-io_bn", (0,), correct_per_fold=2)
    write_shape_runs(folded_context.out_dir, "modelnet40-none-scratch", (0,), correct_per_fold=2)
    argv = ["experiment", "claims", "--scale", "small", "--seeds", "0,", "--folds", "--aggregate-only",
            "--out-dir", str(folded_context.out_dir)]
    assert main(argv) == 0
    payload = json.loads((folded_context.out_dir / CLAIMS_JSON).read_text())
    entry = next(item for item in payload["claims"] if item["claim"] == "b · ModelNet40")
    assert entry["difference"] == 0.0 and entry["verdict"] == Verdict.CANNOT_TELL.value
    assert "--folds" in payload["command"]
    assert "| b · ModelNet40 | table1 | I,O,µ,σ,W,b | scratch | ModelNet40 | +0.00 |" in (
        folded_context.out_dir / CLAIMS_MD).read_text()
    assert "b · ModelNet40: +0.00" in capsys.readouterr().out


def test_a_dry_run_prints_the_verdicts_and_writes_nothing(folded_context, capsys):
    argv = ["experiment", "claims", "--scale", "small", "--seeds", "1", "--folds", "--dry-run", "--out-dir",
            str(folded_context.out_dir)]
    assert main(argv) == 0
    assert "b · ModelNet40: no verdict (10 runs not finished: modelnet40-cifar10-io_bn-s0-f0" in capsys.readouterr().out
    assert not folded_context.out_dir.exists()


def test_claims_need_only_their_cells(folded_context):
    plans = claim_plans(folded_context, (0,))
    assert list(plans) == ["table4", "table1", "table5", "table7", "table3", "table6", "table2"]
    table1 = {(p.spec.row, p.spec.column) for p in plans["table1"]}
    assert table1 == {(row, column) for row in ("I,O,µ,σ,W,b", "scratch") for column in ("ModelNet40", "SemanticKITTI")
                      } | {("linear I/O", "ModelNet40"), ("linear network", "ModelNet40")}
    assert {p.spec.row for p in plans["table7"]} == {"learned T, per conv, default init", "default T (authors' z-axis)"}
    # Table 3's from-scratch row at 1 / class, each run once, every fold.
    assert len(plans["table3"]) == 2 * SMALL_MODELNET40_FOLDS
    assert all(len({p.run_dir for p in runs}) == len(runs) for runs in plans.values())


def test_the_claims_command_trains_only_the_claims_cells_then_judges(folded_context, monkeypatch):
    trained = []
    monkeypatch.setattr(runner, "execute_plan", lambda table, plans, context, echo: trained.append(
        (table.name, len(plans))))
    argv = ["experiment", "claims", "--scale", "small", "--seeds", "0,", "--folds", "--out-dir",
            str(folded_context.out_dir)]
    assert main(argv) == 0
    expected = claim_plans(folded_context, (0,))
    assert trained == [(name, len(runs)) for name, runs in expected.items()]
    assert (folded_context.out_dir / CLAIMS_MD).is_file()


def test_a_dry_run_lists_the_runs_the_claims_need(folded_context, capsys):
    argv = ["experiment", "claims", "--scale", "small", "--seeds", "0,", "--folds", "--dry-run", "--out-dir",
            str(folded_context.out_dir)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "table1: Finetuning schemes (26 runs)" in out and "modelnet40-none-scratch-s0-f4  [pending]" in out
    assert "modelnet40-cifar10-io-s0-f0" not in out.split("table1:")[1].split("table5:")[0]


def test_claim_selectors_name_a_claim_or_its_group():
    assert [claim.name for claim in select_claims(["d", "b · ModelNet40"])] == ["b · ModelNet40", "d"]
    assert [claim.name for claim in select_claims(["B"])] == [
        "b · ModelNet40", "b · SemanticKITTI", "b · MobileNetV1 ImageNet-1K · ModelNet40",
        "b · ESPNet-C Cityscapes · SemanticKITTI"]
    assert select_claims([]) == CLAIMS
    with pytest.raises(ConfigError, match="--claim 'b · Model': no such claim"):
        select_claims(["b · Model"])


def test_the_claims_command_trains_only_the_selected_claims_and_judges_every_claim(folded_context, monkeypatch):
    trained = []
    monkeypatch.setattr(runner, "execute_plan", lambda table, plans, context, echo: trained.append(
        (table.name, len(plans))))
    argv = ["experiment", "claims", "--scale", "small", "--seeds", "0,", "--folds", "--out-dir",
            str(folded_context.out_dir), "--claim", "d", "--claim", "b · SemanticKITTI"]
    assert main(argv) == 0
    assert trained == [("table1", 2 * SMALL_SEMANTICKITTI_FOLDS), ("table3", 2 * SMALL_MODELNET40_FOLDS)]
    payload = json.loads((folded_context.out_dir / CLAIMS_JSON).read_text())
    assert [item["claim"] for item in payload["claims"]] == [claim.name for claim in CLAIMS]
    assert "--folds --claim d --claim 'b · SemanticKITTI' --out-dir" in payload["command"]


@pytest.mark.parametrize("argv,expected", [
    (["experiment", "claims", "--claim", "e", "--dry-run"], "--claim 'e': no such claim (claims: a; a · linear network; b · ModelNet40;"),
    (["experiment", "table1", "--claim", "a", "--dry-run"], "--claim selects claims of 'image2point experiment claims'"),
])
def test_bad_claim_selections_are_refused_in_one_line(argv, expected, folded_context, capsys):
    assert main([*argv, "--out-dir", str(folded_context.out_dir)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert not folded_context.out_dir.exists()
