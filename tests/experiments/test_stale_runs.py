"""A run directory holding another config's run (the recipe changed since it ran) is stale: never resumed,
never read into a table or a claim, and refused before anything trains."""

import dataclasses
import json
import os
import shutil

import pytest

from image2point.cli import EXIT_BAD_INPUT, main
from image2point.errors import ConfigError
from image2point.experiments import ExperimentRequest, get_table, plan_table, run_experiment
from image2point.experiments.claims import CLAIMS, evaluate_claim
from image2point.experiments.plan import (FINISHED, PENDING, STALE, config_differences, load_run_config,
                                          refuse_stale)
from image2point.experiments.runner import execute_plan
from image2point.experiments.sources import SOURCES, run_pretraining
from image2point.train.yaml_io import save_config

TABLE, RUN = "table1", "modelnet40-cifar10-io_bn-s0"


def _plan(context, seeds=(0,)):
    return {planned.spec.run_id: planned for planned in plan_table(get_table(TABLE), context, seeds)}


def _finish(planned, write_metrics, **changes):
    """A finished run of ``planned`` whose saved config has ``changes`` (section -> field -> value) applied."""
    config = load_run_config(planned)
    for section, fields in changes.items():
        setattr(config, section, dataclasses.replace(getattr(config, section), **fields))
    write_metrics(planned.run_dir, accuracy=0.3)
    save_config(config, planned.run_dir / "config.yaml")


def test_config_differences_are_settings_not_locations():
    saved = {"data": {"root": "/a", "num_points": 1024, "old_key": 1}, "model": {"pretrained": "/x/w.th"},
             "train": {"epochs": 8, "run_dir": "/runs/a"}}
    planned = {"data": {"root": "/b", "num_points": 1024, "new_key": 2}, "model": {"pretrained": "/y/w.th"},
               "train": {"epochs": 16, "run_dir": "/runs/b"}}
    assert config_differences(saved, planned) == ["train.epochs: 8 -> 16"]
    planned["model"]["pretrained"] = None
    assert config_differences(saved, planned) == ["model.pretrained: a checkpoint -> None", "train.epochs: 8 -> 16"]


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


def test_training_refuses_before_anything_runs(small_context, write_metrics, fake_training):
    _finish(_plan(small_context)[RUN], write_metrics, train={"epochs": 8})
    with pytest.raises(ConfigError, match=f"{RUN}: ran under another config"):
        run_experiment(ExperimentRequest(TABLE, small_context, (0,)), echo=lambda line: None)
    with pytest.raises(ConfigError, match="ran under another config"):
        run_experiment(ExperimentRequest("claims", small_context, (0,)), echo=lambda line: None)
    assert fake_training == []
    assert not (small_context.out_dir / TABLE / "table.md").exists()


def test_the_command_line_refuses_in_one_line(small_context, write_metrics, fake_training, capsys):
    _finish(_plan(small_context)[RUN], write_metrics, train={"epochs": 8})
    argv = ["experiment", TABLE, "--seeds", "1", "--out-dir", str(small_context.out_dir)]
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and RUN in err and "train.epochs: 8 -> 16" in err
    assert fake_training == []


def _fake_pretrain(pretraining):
    pretraining.run_dir.mkdir(parents=True)
    pretraining.checkpoint.write_bytes(b"weights")
    (pretraining.run_dir / "metrics.json").write_text(json.dumps({"val_top1": 0.5}))
    return 0.5


def _tiny_imagenet_runs(context):
    return [planned for planned in plan_table(get_table("table4"), context, (0,))
            if planned.spec.source == "tiny-imagenet"]


def test_a_source_pretrained_with_other_settings_makes_its_runs_stale(small_context, fake_training, monkeypatch):
    source = dataclasses.replace(SOURCES["tiny-imagenet"], pretrain=_fake_pretrain)
    monkeypatch.setitem(SOURCES, "tiny-imagenet", source)
    runs = _tiny_imagenet_runs(small_context)
    execute_plan(get_table("table4"), runs, small_context, lambda line: None)
    for planned in runs:  # as the training loop leaves them: the config it ran, saved when it started
        save_config(load_run_config(planned), planned.run_dir / "config.yaml")
        os.utime(planned.run_dir / "config.yaml", (1, 1))
        os.utime(runs[0].pretraining.checkpoint, (0, 0))
    assert {planned.status for planned in _tiny_imagenet_runs(small_context)} == {FINISHED}

    epochs = source.settings["small"].epochs
    longer = {**source.settings, "small": dataclasses.replace(source.settings["small"], epochs=epochs + 1)}
    monkeypatch.setitem(SOURCES, "tiny-imagenet", dataclasses.replace(source, settings=longer))
    stale = _tiny_imagenet_runs(small_context)
    assert {planned.status for planned in stale} == {STALE}
    assert f"ran with other settings (epochs: {epochs} -> {epochs + 1})" in stale[0].reason
    with pytest.raises(ConfigError, match="tiny-imagenet-cifar_resnet20 ran with other settings"):
        refuse_stale(stale)

    # The old pretraining moved away and made again: the runs trained from the old one are stale in turn.
    shutil.move(stale[0].pretraining.run_dir, small_context.out_dir / "old-pretraining")
    run_pretraining(stale[0].pretraining)
    remade = _tiny_imagenet_runs(small_context)
    assert {planned.status for planned in remade} == {STALE}
    assert "started before its source pretraining" in remade[0].reason
