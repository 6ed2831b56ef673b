"""Which config changes a resume allows, refuses and records."""

from pathlib import Path

import pytest
import yaml

from image2point.errors import ConfigError
from image2point.train.config import config_to_dict, load_config
from image2point.train.resume import changed_keys, check_resume, record_changes
from image2point.train.yaml_io import flatten

CHECKPOINT = Path("run/last.pt")


def _stored(*overrides: str) -> dict:
    return config_to_dict(load_config(None, list(overrides)))


def test_flatten_names_every_leaf_by_its_dotted_key():
    assert flatten({"optim": {"lr": 0.1, "name": "sgd"}, "data": {"range_image": {"height": 64}}}) == {
        "optim.lr": 0.1, "optim.name": "sgd", "data.range_image.height": 64}


def test_neutral_keys_may_change_freely():
    stored = _stored("train.epochs=4")
    config = load_config(None, ["train.epochs=4", "train.device=cpu", "train.threads=3", "data.num_workers=0",
                                "train.log_every=1", "train.run_dir=elsewhere"])
    assert changed_keys(stored, config) == []
    assert check_resume(stored, config, CHECKPOINT, with_changes=False, next_epoch=2) == []


def test_more_epochs_extend_the_run_and_are_reported():
    stored = _stored("train.epochs=2")
    assert check_resume(stored, load_config(None, ["train.epochs=5"]), CHECKPOINT, False, 2) == ["train.epochs"]


def test_fewer_epochs_than_trained_are_refused():
    with pytest.raises(ConfigError, match=r"train.epochs=1, but the run has trained 2 epochs already"):
        check_resume(_stored("train.epochs=4"), load_config(None, ["train.epochs=1"]), CHECKPOINT, True, 2)


def test_other_changes_are_refused_naming_the_keys_and_the_values():
    stored = _stored("train.epochs=4")
    config = load_config(None, ["train.epochs=4", "optim.name=adam", "optim.lr=0.5", "train.seed=7"])
    with pytest.raises(ConfigError, match=r"run/last.pt: the config differs from the run's in optim.lr, optim.name, "
                                          r"train.seed \(optim.lr: 0.1 -> 0.5; optim.name: 'sgd' -> 'adam'; "
                                          r"train.seed: 0 -> 7\); .*--resume-with-changes.*resumed-at-epoch-3.yaml"):
        check_resume(stored, config, CHECKPOINT, with_changes=False, next_epoch=3)
    assert check_resume(stored, config, CHECKPOINT, True, 3) == ["optim.lr", "optim.name", "train.seed"]


def test_keys_an_older_config_lacks_are_not_compared():
    stored = _stored()
    del stored["data"]["s3dis"]
    assert changed_keys(stored, load_config(None, ["data.s3dis.clip_bound=null"])) == []


def test_the_continued_config_is_recorded_beside_the_runs(tmp_path):
    config = load_config(None, ["optim.lr=0.05", "train.epochs=3"])
    path = record_changes(tmp_path, config, 2)
    assert path == tmp_path / "config.resumed-at-epoch-2.yaml"
    assert yaml.safe_load(path.read_text())["optim"]["lr"] == 0.05
