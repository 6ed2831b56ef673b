"""Planning and running a table: dry runs write nothing, finished runs are skipped, interrupted ones resumed,
missing sources and absent data are reported and never run."""

import dataclasses
import json

import pytest

from image2point.cli import EXIT_BAD_INPUT, main
from image2point.errors import ConfigError, DataError
from image2point.experiments import ExperimentContext, ExperimentRequest, get_table, plan_table, run_experiment
from image2point.experiments.plan import (FINISHED, MISSING, NO_DATA, PENDING, RESUME, format_seeds, make_context,
                                         parse_seeds)
from image2point.experiments.runner import command_line, execute_plan, plan_trials
from image2point.experiments.sources import SOURCES


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_parse_and_format_seeds():
    assert parse_seeds("3") == (0, 1, 2)
    assert parse_seeds("0,1,2") == (0, 1, 2)
    assert parse_seeds("5,") == (5,)
    assert parse_seeds(None) is None  # no --seeds: the table's default
    for text in ("0", "x", "1,1", "-1,2"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(text)
    for seeds in ((0, 1, 2), (5,), (2, 4)):
        assert parse_seeds(format_seeds(seeds)) == seeds


def test_dry_run_lists_every_run_and_writes_nothing(fake_shared, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    assert main(["experiment", "all", "--dry-run", "--seeds", "2", "--out-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert _tree(tmp_path) == before
    total = sum(len(get_table(f"table{n}").runs("small", (0, 1))) for n in range(1, 8))
    assert len([line for line in out.splitlines() if "  [" in line]) == total
    assert "modelnet40-cifar10-io-s1  [pending]" in out
    assert "s3dis-cifar10-io-s0  [no data: s3dis is not in the shared directory; pass --data-root s3dis=PATH]" in out
    assert "[missing: no imagenet weights given (--weights imagenet=PATH)]" in out
    assert "(after pretraining tiny-imagenet-cifar_resnet20)" in out
    assert "finetune.scheme=io_bn" in out and "train.run_dir=" in out


def test_paper_scale_dry_run_of_table2(fake_shared, tmp_path, capsys):
    out_dir = tmp_path / "out"
    assert main(["experiment", "table2", "--scale", "paper", "--dry-run", "--seeds", "1", "--out-dir",
                 str(out_dir), "--weights", f"cityscapes:hrnet_w48={fake_shared}"]) == 0
    out = capsys.readouterr().out
    # The paper's PointNet++ pretrains on the full Tiny-ImageNet, which ../shared does not hold.
    assert ("modelnet40-pointnet2_ssg-tiny-imagenet-io_stats-s0  [missing: tiny-imagenet pretrains on the full "
            "tiny-imagenet at paper scale") in out
    assert "semantickitti-hrnet_w48-cityscapes-all-s0  [pending]" in out
    assert "semantickitti-hrnet_w48-cityscapes-io_stats-s0  [pending]" in out
    assert "model.backbone=hrnet_w48" in out and "hrnet_w18" not in out
    assert "model.family=range" in out and "model.family=pointnet2" in out and "train.epochs=200" in out
    assert "  rows: I,O,µ,σ | whole network | from scratch" in out
    assert "  backbones: hrnet_w48, pointnet2_ssg" in out
    assert not out_dir.exists()


def test_skip_finished_resume_interrupted_start_pending(small_context, fake_training, write_metrics):
    table = get_table("table5")
    runs_dir = small_context.out_dir / "table5"
    write_metrics(runs_dir / "semantickitti-cifar10-io_bn-s0", miou=0.3)
    (runs_dir / "semantickitti-cifar10-io_bn-s1").mkdir(parents=True)
    (runs_dir / "semantickitti-cifar10-io_bn-s1" / "last.pt").write_bytes(b"checkpoint")
    plans = plan_table(table, small_context, (0, 1, 2))
    status = {plan.spec.run_id: plan.status for plan in plans}
    assert status["semantickitti-cifar10-io_bn-s0"] == FINISHED
    assert status["semantickitti-cifar10-io_bn-s1"] == RESUME
    assert status["semantickitti-cifar10-io_bn-s2"] == PENDING
    assert status["semantickitti-imagenet-io_bn-s0"] == MISSING
    assert status["s3dis-cifar10-io_bn-s0"] == NO_DATA
    lines = []
    execute_plan(table, plans, small_context, lines.append)
    # The fake shared directory lacks the Cityscapes ESPNet-C file: its row is missing, its scratch row runs.
    assert status["semantickitti-cityscapes-espnet_c-io_bn-s0"] == MISSING
    assert fake_training == [(runs_dir / "semantickitti-cifar10-io_bn-s1", True),
                             (runs_dir / "semantickitti-cifar10-io_bn-s2", False),
                             *((runs_dir / f"semantickitti-none-espnet_c-scratch-s{seed}", False) for seed in range(3))]
    text = "\n".join(lines)
    assert "semantickitti-cifar10-io_bn-s0: skipped (finished), mIoU 30.00 %" in text
    assert "semantickitti-cifar10-io_bn-s1: resumed, mIoU 20.00 %" in text
    assert "semantickitti-cifar10-io_bn-s2: started, mIoU 20.00 %" in text
    assert ("semantickitti-cityscapes-io_bn-s0: missing (no cityscapes weights given (--weights cityscapes=PATH))"
            in text)
    assert not (runs_dir / "semantickitti-imagenet-io_bn-s0").exists()
    assert not any(path.name.startswith("s3dis") for path in runs_dir.iterdir())


def test_missing_sources_run_once_given(small_context, fake_training, tmp_path):
    weights = tmp_path / "imagenet.pth"
    context = dataclasses.replace(small_context, weights={"imagenet": weights})
    plans = plan_table(get_table("table5"), context, (0,))
    imagenet = next(plan for plan in plans if plan.spec.run_id == "semantickitti-imagenet-io_bn-s0")
    assert imagenet.status == PENDING and f"model.pretrained={weights}" in imagenet.overrides


def test_pretraining_happens_once_before_the_runs_needing_it(small_context, fake_training, monkeypatch):
    pretrained = []

    def fake_pretrain(pretraining):
        pretrained.append(pretraining.name)
        pretraining.run_dir.mkdir(parents=True)
        pretraining.checkpoint.write_bytes(b"weights")
        (pretraining.run_dir / "metrics.json").write_text(json.dumps({"val_top1": 0.5}))
        return 0.5

    for name in ("fractaldb", "tiny-imagenet", "mnist"):
        monkeypatch.setitem(SOURCES, name, dataclasses.replace(SOURCES[name], pretrain=fake_pretrain))
    table = get_table("table4")
    plans = plan_table(table, small_context, (0, 1))
    lines = []
    execute_plan(table, plans, small_context, lines.append)
    assert sorted(pretrained) == ["fractaldb-cifar_resnet20", "mnist-cifar_resnet20", "tiny-imagenet-cifar_resnet20"]
    # 29 runs per seed, less the ImageNet rows (ResNet-20: no weights; MobileNetV1: no file in the fake shared).
    assert len(fake_training) == 42
    assert any(line.startswith("pretrained mnist-cifar_resnet20: validation top-1 50.00 %") for line in lines)


def test_run_experiment_aggregates_partial_grids(small_context, fake_training, write_metrics):
    write_metrics(small_context.out_dir / "table5" / "semantickitti-cifar10-io_bn-s0", miou=0.3)
    request = ExperimentRequest("table5", small_context, (0, 1), aggregate_only=True, date="2026-11-24")
    written = run_experiment(request, echo=lambda line: None)
    assert fake_training == []
    assert {path.name for path in written} == {"results.json", "results.csv", "table.md"}
    table = (small_context.out_dir / "table5" / "table.md").read_text()
    assert "| classification: CIFAR-10 | no data [1] | — (a) | 30.00 (1 of 2) | — (a) |" in table
    assert "| classification: ImageNet | no data [1] | 55.22 | missing [2] | 58.76 |" in table


def test_command_line_round_trips(small_context):
    assert command_line("table1", small_context, (0, 1, 2)).startswith(
        "image2point experiment table1 --scale small --seeds 3 --out-dir ")
    default = ExperimentContext()
    assert command_line("all", default, (7,)) == "image2point experiment all --scale small --seeds 7,"


def test_context_validation(fake_shared, tmp_path):
    with pytest.raises(ConfigError, match="unknown name 'laion'"):
        make_context("small", tmp_path, weights=["laion=x"])
    with pytest.raises(DataError, match="nope.pth"):
        make_context("small", tmp_path, weights=[f"imagenet={tmp_path / 'nope.pth'}"])
    with pytest.raises(ConfigError, match="NAME=PATH"):
        make_context("small", tmp_path, data_roots=["s3dis"])
    context = make_context("small", tmp_path, data_roots=[f"s3dis={fake_shared}"])
    assert context.data_roots == {"s3dis": fake_shared.resolve()}


@pytest.mark.parametrize("argv,expected", [
    (["experiment", "table15", "--dry-run"], "unknown table 'table15'"),
    (["experiment", "table1", "--dry-run", "--seeds", "0"], "--seeds '0'"),
    (["experiment", "table1", "--dry-run", "--weights", "imagenet"], "expected NAME=PATH"),
    (["experiment", "table1", "--dry-run", "--data-root", "kitti=/tmp"], "unknown name 'kitti'"),
])
def test_cli_errors_are_one_line(argv, expected, fake_shared, capsys):
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err


def test_missing_shared_data_names_the_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IMAGE2POINT_SHARED", str(tmp_path / "no_shared"))
    assert main(["experiment", "table1", "--dry-run", "--out-dir", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert str(tmp_path / "no_shared") in err and "IMAGE2POINT_SHARED" in err


def test_experiment_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "--dry-run" in help_text and "--weights" in help_text and "--aggregate-only" in help_text


def test_paper_scale_dry_run_of_all_fourteen_tables(fake_shared, tmp_path, capsys):
    out_dir = tmp_path / "out"
    imagenet = tmp_path / "resnet18.pth"
    imagenet.write_bytes(b"")
    assert main(["experiment", "all", "--scale", "paper", "--dry-run", "--out-dir", str(out_dir),
                 "--weights", f"imagenet={imagenet}"]) == 0
    out = capsys.readouterr().out
    assert not out_dir.exists()
    headers = [line for line in out.splitlines() if line.startswith("table") and "] at paper scale" in line]
    assert [line.split(":")[0] for line in headers] == [f"table{number}" for number in range(1, 15)]
    assert "table8: Stability of table1 (Finetuning schemes)" in out
    assert "adds no runs: the runs of table1, as mean ± std" in out
    assert "  columns: Tiny-ImageNet | ImageNet-1K | ImageNet-21K | FractalDB-1K | FractalDB-10K" in out
    assert out.count("  trials: 20 (1 %), 15 (5 %), 10 (10 %), 3 (100 %)") == 2  # tables 3 and 10
    assert out.count("  runs: 96 (") == 2
    assert "  backbones: resnet152, resnet18, resnet50" in out
    assert "    imagenet:resnet18  available: " + str(imagenet.resolve()) in out
    assert "    imagenet21k:resnet50  missing: no imagenet21k weights given for resnet50" in out
    assert "    ade20k:resnet18  missing: no ade20k weights given (--weights ade20k=PATH)" in out
    assert "    fractaldb-1k:resnet50  made: generated here: 1000 categories x 1000 images at 362 px" in out
    assert "    tiny-imagenet:resnet50  missing: tiny-imagenet pretrains on the full tiny-imagenet" in out
    # Table 7: T1-T3 apart; the default T is Table 1's I,O,µ,σ.
    assert "  paper cells: 7 in the paper's table, 4 beside ours (and 1 of Table 1), 3 listed apart" in out
    assert "  paper cells: 22 in the paper's table, 22 beside ours, 0 listed apart" in out
    # Runs are listed once, by their main table: the stability tables add none.
    run_lines = [line for line in out.splitlines() if line.startswith("  ") and "  [" in line]
    context = make_context("paper", out_dir)
    assert len(run_lines) == sum(len(plan_trials(get_table(f"table{n}"), context, None)) for n in range(1, 8))
    assert "table1/modelnet40-imagenet-io-s2" in out and "table1/modelnet40-imagenet-io-s3" not in out


def test_paper_trials_without_seeds_and_explicit_seeds(fake_shared, tmp_path):
    context = make_context("paper", tmp_path / "out")
    table3 = get_table("table3")
    default = plan_trials(table3, context, None)
    assert len(default) == 2 * (20 + 15 + 10 + 3)
    assert max(plan.spec.seed for plan in default if plan.spec.column == "100 %") == 2
    assert len(plan_trials(table3, context, (0, 1))) == 2 * 4 * 2
    expected = f"image2point experiment table3 --scale paper --out-dir {tmp_path / 'out'}"
    assert command_line("table3", context, None) == expected


def test_stability_table_trains_nothing_and_aggregates_the_main_runs(small_context, fake_training, write_metrics):
    for seed, accuracy in enumerate((0.30, 0.40)):
        write_metrics(small_context.out_dir / "table1" / f"modelnet40-cifar10-io-s{seed}", accuracy=accuracy)
    lines = []
    written = run_experiment(ExperimentRequest("table8", small_context, (0, 1), date="2026-11-24"), lines.append)
    assert fake_training == []
    assert lines[0] == "table8: no runs of its own; aggregates the runs of table1"
    assert {path.parent.name for path in written} == {"table8"}
    table = (small_context.out_dir / "table8" / "table.md").read_text()
    assert "| I,O | 35.00 ± 7.07 (2) | 79.32 ± 0.46 |" in table
    assert not (small_context.out_dir / "table8" / "modelnet40-cifar10-io-s0").exists()
