"""A run directory holding another config's run (the recipe changed since it ran), or a run trained from
another pretraining than the source's, is stale: never resumed, never read into a table, a claim or the
convergence study, and refused before anything trains."""

import dataclasses
import itertools
import json
import shutil

import pytest

from image2point.cli import EXIT_BAD_INPUT, main
from image2point.errors import ConfigError
from image2point.experiments import ExperimentRequest, get_table, plan_table, run_experiment
from image2point.experiments.claims import CLAIMS, evaluate_claim
from image2point.experiments.convergence import fold_values, loss_curves
from image2point.experiments.plan import FINISHED, PENDING, STALE, load_run_config, refuse_stale
from image2point.experiments.runner import execute_plan
from image2point.experiments.sources import SOURCES, run_pretraining
from image2point.experiments.staleness import SETTINGS_FILE, config_differences
from image2point.train.yaml_io import config_to_dict, save_config

TABLE, RUN = "table1", "modelnet40-cifar10-io_bn-s0"


def _plan(context, seeds=(0,), table=TABLE):
    return {planned.spec.run_id: planned for planned in plan_table(get_table(table), context, seeds)}


def _finish(planned, write_metrics, **changes):
    """A finished run of ``planned`` whose saved config has ``changes`` (section -> field -> value) applied."""
    config = load_run_config(planned)
    for section, fields in changes.items():
        setattr(config, section, dataclasses.replace(getattr(config, section), **fields))
    write_metrics(planned.run_dir, accuracy=0.3)
    save_config(config, planned.run_dir / "config.yaml")


def test_config_differences_are_settings_not_locations_or_machine_choices(small_context):
    planned = load_run_config(_plan(small_context)[RUN])
    saved = config_to_dict(planned)
    saved["data"].update(root="/elsewhere", num_workers=4, an_old_key=1)
    saved["train"].update(run_dir="/runs/a", threads=8)
    saved["model"]["pretrained"] = "/other/copy/of/weights.th"
    assert config_differences(saved, planned) == []
    saved["train"]["epochs"] = 8
    assert config_differences(saved, planned) == ["train.epochs: 8 -> 16"]
    saved["model"]["pretrained"] = None
    assert config_differences(saved, planned) == [f"model.pretrained: None -> {planned.model.pretrained}",
                                                  "train.epochs: 8 -> 16"]


def test_a_run_of_the_planned_config_is_finished_wherever_its_data_lay(small_context, write_metrics):
    planned = _plan(small_context)[RUN]
    _finish(planned, write_metrics, data={"root": "/elsewhere/modelnet40"}, train={"run_dir": "/elsewhere/run"})
    assert _plan(small_context)[RUN].status == FINISHED


def test_a_run_of_another_length_is_stale_and_its_cell_says_so(small_context, write_metrics, fake_training):
    planned = _plan(small_context, (0, 1))[RUN]
    _finish(planned, write_metrics, train={"epochs": 8})
    replanned = _plan(small_context, (0, 1))
    assert replanned[RUN].status == STALE
    assert "train.epochs: 8 -> 16" in replanned[RUN].reason and "--out-dir" in replanned[RUN].reason
    assert replanned[RUN.replace("-s0", "-s1")].status == PENDING
    request = ExperimentRequest(TABLE, small_context, (0, 1), aggregate_only=True, date="2026-12-05")
    run_experiment(request, echo=lambda line: None)
    table = (small_context.out_dir / TABLE / "table.md").read_text()
    assert "stale [" in table and "train.epochs: 8 -> 16" in table and "30.00" not in table
    claim = next(claim for claim in CLAIMS if claim.name == "b · ModelNet40")
    result = evaluate_claim(claim, small_context, (0,))
    assert result.verdict is None and result.reason.startswith("stale: ran under another config")
    assert fake_training == []


def test_an_unreadable_saved_config_makes_the_run_stale_not_the_table_fail(small_context, write_metrics):
    planned = _plan(small_context)[RUN]
    _finish(planned, write_metrics)
    (planned.run_dir / "config.yaml").write_text("train: [unclosed")
    replanned = _plan(small_context)[RUN]
    assert replanned.status == STALE and "config.yaml: invalid YAML" in replanned.reason


def test_training_refuses_before_anything_runs(small_context, write_metrics, fake_training):
    _finish(_plan(small_context)[RUN], write_metrics, train={"epochs": 8})
    with pytest.raises(ConfigError, match=f"{RUN}: ran under another config"):
        run_experiment(ExperimentRequest(TABLE, small_context, (0,)), echo=lambda line: None)
    with pytest.raises(ConfigError, match="ran under another config"):
        run_experiment(ExperimentRequest("claims", small_context, (0,)), echo=lambda line: None)
    assert fake_training == []
    assert not (small_context.out_dir / TABLE / "table.md").exists()
    # Table 8 only aggregates Table 1's runs: it trains nothing, so it has nothing to refuse.
    run_experiment(ExperimentRequest("table8", small_context, (0,)), echo=lambda line: None)
    assert fake_training == []


def test_the_command_line_refuses_in_one_line(small_context, write_metrics, fake_training, capsys):
    _finish(_plan(small_context)[RUN], write_metrics, train={"epochs": 8})
    argv = ["experiment", TABLE, "--seeds", "1", "--out-dir", str(small_context.out_dir)]
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and RUN in err and "train.epochs: 8 -> 16" in err
    assert fake_training == []


def test_the_convergence_study_reads_no_stale_run(small_context, write_metrics):
    context = dataclasses.replace(small_context, cross_validate=True)
    plans = plan_table(get_table("convergence"), context, (0,))
    first = plans[0]
    _finish(first, write_metrics, train={"epochs": 3})
    (first.run_dir / "metrics.jsonl").write_text(json.dumps({"train_loss": 1.0}) + "\n")
    replanned = plan_table(get_table("convergence"), context, (0,))
    assert replanned[0].status == STALE
    metrics = get_table("convergence").layout("small").metrics
    assert loss_curves(replanned) == {} and fold_values(replanned, metrics) == {}


@pytest.fixture
def fake_pretraining(monkeypatch):
    """Tiny-ImageNet 'pretrains' by writing a checkpoint that differs each time it is made."""
    made = itertools.count()

    def pretrain(pretraining):
        pretraining.run_dir.mkdir(parents=True)
        pretraining.checkpoint.write_bytes(f"weights {next(made)}".encode())
        (pretraining.run_dir / "metrics.json").write_text(json.dumps({"val_top1": 0.5}))
        return 0.5

    source = dataclasses.replace(SOURCES["tiny-imagenet"], pretrain=pretrain)
    monkeypatch.setitem(SOURCES, "tiny-imagenet", source)
    return source


def _tiny_imagenet_runs(context):
    return [planned for planned in plan_table(get_table("table4"), context, (0,))
            if planned.spec.source == "tiny-imagenet"]


def _train_tiny_imagenet_runs(context):
    """As the loop would: a fresh start (resume False) refuses a directory that holds anything."""
    runs = _tiny_imagenet_runs(context)
    for planned in runs:
        assert not planned.run_dir.exists()
    execute_plan(get_table("table4"), runs, context, lambda line: None)
    for planned in runs:  # as the training loop leaves them: the config it ran, saved when it started
        save_config(load_run_config(planned), planned.run_dir / "config.yaml")
    return runs


def test_a_source_pretrained_with_other_settings_makes_its_runs_stale(small_context, fake_training,
                                                                       fake_pretraining, monkeypatch):
    _train_tiny_imagenet_runs(small_context)
    assert {planned.status for planned in _tiny_imagenet_runs(small_context)} == {FINISHED}
    epochs = fake_pretraining.settings["small"].epochs
    longer = {**fake_pretraining.settings, "small": dataclasses.replace(fake_pretraining.settings["small"],
                                                                        epochs=epochs + 1)}
    monkeypatch.setitem(SOURCES, "tiny-imagenet", dataclasses.replace(fake_pretraining, settings=longer))
    stale = _tiny_imagenet_runs(small_context)
    assert {planned.status for planned in stale} == {STALE}
    assert f"was made with other settings (epochs: {epochs} -> {epochs + 1})" in stale[0].reason
    with pytest.raises(ConfigError, match="tiny-imagenet-cifar_resnet20 was made with other settings"):
        refuse_stale(stale)


def test_runs_trained_from_a_pretraining_made_again_or_gone_are_stale(small_context, fake_training,
                                                                      fake_pretraining):
    runs = _train_tiny_imagenet_runs(small_context)
    pretraining = runs[0].pretraining
    shutil.move(pretraining.run_dir, small_context.out_dir / "old-pretraining")
    gone = _tiny_imagenet_runs(small_context)
    assert {planned.status for planned in gone} == {STALE}
    assert "trained from a source pretraining no longer at" in gone[0].reason
    # Made again (another checkpoint): the runs trained from the old one stay stale, named so.
    run_pretraining(pretraining)
    remade = _tiny_imagenet_runs(small_context)
    assert {planned.status for planned in remade} == {STALE}
    assert "trained from another pretraining than the one now at" in remade[0].reason


def test_a_pretraining_is_finished_only_once_it_recorded_its_settings(small_context, fake_training,
                                                                      fake_pretraining):
    runs = _train_tiny_imagenet_runs(small_context)
    pretraining = runs[0].pretraining
    assert pretraining.finished
    (pretraining.run_dir / SETTINGS_FILE).unlink()
    assert not pretraining.finished
    assert {planned.status for planned in _tiny_imagenet_runs(small_context)} == {STALE}
    (pretraining.run_dir / SETTINGS_FILE).write_text("[1, 2]")
    with pytest.raises(ConfigError, match="settings.json: expected a JSON object, found list"):
        _tiny_imagenet_runs(small_context)
