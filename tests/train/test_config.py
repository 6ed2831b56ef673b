from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Literal, Optional

import pytest
import yaml

from image2point.errors import ConfigError
from image2point.train.config import (
    DataConfig,
    OptimConfig,
    RunConfig,
    apply_override,
    config_to_dict,
    load_config,
    save_config,
)


@dataclasses.dataclass
class _Inner:
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[int, str] = (0, "a")
    names: list[str] = dataclasses.field(default_factory=list)
    # typing.Optional on purpose: the loader must handle it as well as the ``X | None`` spelling.
    scale: Optional[float] = None  # noqa: UP045


@dataclasses.dataclass
class _Schema:
    # No default: a file or an override must set it.
    label: str
    mode: Literal["fast", "slow"] = "fast"
    weights: dict[str, float] = dataclasses.field(default_factory=dict)
    out: Path = Path("out")
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    extra: Optional[_Inner] = None  # noqa: UP045


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_match_the_schema():
    assert load_config(None) == RunConfig()


def test_yaml_sets_a_subset_and_overrides_apply_in_order(tmp_path):
    path = _write(tmp_path / "run.yaml", "optim:\n  lr: 0.05\n  name: adam\ndata:\n  batch_size: 8\n")
    config = load_config(
        path,
        ["optim.lr=0.01", "train.epochs=3", "data.fraction=0.1", "model.pretrained=null", "train.epochs=4"],
    )
    assert config.optim == OptimConfig(name="adam", lr=0.01)
    assert config.data == DataConfig(batch_size=8, fraction=0.1)
    assert config.train.epochs == 4
    assert config.model.pretrained is None
    assert config.schedule == RunConfig().schedule


def test_override_values_are_coerced_by_field_type():
    config = load_config(
        None,
        ["optim.weight_decay=1e-5", "optim.lr=1", "model.pretrained=weights.pt", "data.augment=false"],
    )
    # PyYAML reads "1e-5" as a string and "1" as an int; the float fields still get floats.
    assert config.optim.weight_decay == pytest.approx(1e-5)
    assert isinstance(config.optim.lr, float) and config.optim.lr == 1.0
    assert config.model.pretrained == "weights.pt"
    assert config.data.augment is False


def test_text_fields_keep_the_override_text_as_typed():
    config = load_config(None, ["train.run_dir=0.10", "train.device=on", "model.backbone=18"])
    assert config.train.run_dir == "0.10"
    assert config.train.device == "on"
    assert config.model.backbone == "18"


def test_unknown_key_in_file_names_file_key_and_suggestion(tmp_path):
    path = _write(tmp_path / "run.yaml", "optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: unknown key 'optim.lrr' (did you mean 'optim.lr'?)"


def test_unknown_key_without_close_match_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'optim.zzz' \(valid keys: optim.name, optim.lr,"):
        load_config(None, ["optim.zzz=1"])


def test_unknown_section_is_reported():
    with pytest.raises(ConfigError, match=r"unknown key 'optimizer' \(did you mean 'optim'\?\)"):
        load_config(None, ["optimizer.lr=1"])


def test_wrong_type_in_file_names_file_and_key(tmp_path):
    path = _write(tmp_path / "run.yaml", "train:\n  epochs: many\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: key 'train.epochs': expected int, got str 'many'"


def test_bool_is_not_accepted_as_a_number():
    with pytest.raises(ConfigError, match=re.escape("key 'data.batch_size': expected int, got bool True")):
        load_config(None, ["data.batch_size=true"])


def test_bad_literal_value_lists_the_choices():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["model.head=transformer"])
    assert str(error.value) == (
        "override 'model.head=transformer': key 'model.head': must be one of 'mlp', 'linear', 'unet', got 'transformer'"
    )


def test_null_for_a_required_value_is_rejected():
    with pytest.raises(ConfigError, match=re.escape("key 'train.epochs': expected int, got NoneType None")):
        load_config(None, ["train.epochs=null"])


@pytest.mark.parametrize("override", ["optim.lr", "=3", "optim..lr=1"])
def test_malformed_override_is_rejected(override):
    with pytest.raises(ConfigError, match=re.escape(f"override {override!r}")):
        load_config(None, [override])


def test_override_below_a_value_is_rejected():
    with pytest.raises(ConfigError, match=re.escape("'optim.lr' is a value, not a section")):
        load_config(None, ["optim.lr.x=1"])


def test_a_single_string_of_overrides_is_a_usage_error():
    with pytest.raises(TypeError, match="sequence"):
        load_config(None, "optim.lr=1")


def test_range_checks_name_the_source_and_key(tmp_path):
    path = _write(tmp_path / "run.yaml", "data:\n  fraction: 1.5\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: data.fraction must be in (0, 1], got 1.5"


def test_range_check_failing_on_an_override_names_the_override(tmp_path):
    path = _write(tmp_path / "run.yaml", "data:\n  batch_size: 4\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, ["data.fraction=0"])
    assert str(error.value) == "override 'data.fraction=0': data.fraction must be in (0, 1], got 0.0"


def test_section_given_a_scalar_is_rejected(tmp_path):
    path = _write(tmp_path / "run.yaml", "optim: 3\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: 'optim' must be a mapping of keys, got int 3")):
        load_config(path)


def test_file_problems_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")
    broken = _write(tmp_path / "broken.yaml", "optim: [1, 2\n")
    with pytest.raises(ConfigError, match=re.escape(f"{broken}: invalid YAML")):
        load_config(broken)
    listed = _write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(
        ConfigError, match=re.escape(f"{listed}: expected a mapping of keys at the top level, got list")
    ):
        load_config(listed)


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(_write(tmp_path / "empty.yaml", "")) == RunConfig()


def test_save_then_load_round_trips(tmp_path):
    config = load_config(None, ["optim.name=adam", "optim.lr=3e-4", "model.pretrained=r18.pt", "data.num_points=1024"])
    path = tmp_path / "saved" / "config.yaml"
    save_config(config, path)
    assert load_config(path) == config
    assert yaml.safe_load(path.read_text())["optim"] == {
        "name": "adam",
        "lr": 3e-4,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "nesterov": False,
    }
    assert [entry.name for entry in path.parent.iterdir()] == ["config.yaml"]


def test_generic_schema_coerces_containers_paths_and_nested_optionals(tmp_path):
    path = _write(tmp_path / "custom.yaml", "label: demo\nweights: {a: 1, b: 2.5}\nout: results/x\n")
    config = load_config(
        path,
        ["inner.sizes=[3,4,5]", "inner.pair=[7, b]", "inner.names=[x, y]", "inner.scale=2", "extra.scale=0.5"],
        schema=_Schema,
    )
    assert config.label == "demo"
    assert config.weights == {"a": 1.0, "b": 2.5}
    assert config.out == Path("results/x")
    assert config.inner == _Inner(sizes=(3, 4, 5), pair=(7, "b"), names=["x", "y"], scale=2.0)
    assert config.extra == _Inner(scale=0.5)


def test_generic_schema_round_trips_through_yaml(tmp_path):
    config = load_config(None, ["label=x", "inner.sizes=[9]", "out=a/b"], schema=_Schema)
    path = tmp_path / "custom.yaml"
    save_config(config, path)
    assert load_config(path, schema=_Schema) == config
    assert config_to_dict(config)["inner"]["sizes"] == [9]
    assert config_to_dict(config)["out"] == "a/b"


def test_generic_schema_errors():
    with pytest.raises(ConfigError, match="missing required key 'label'"):
        load_config(None, schema=_Schema)
    with pytest.raises(ConfigError, match=r"key 'inner.pair': expected 2 items, got 3"):
        load_config(None, ["label=x", "inner.pair=[1, a, 2]"], schema=_Schema)
    with pytest.raises(ConfigError, match=r"key 'inner.sizes\[1\]': expected int, got str 'b'"):
        load_config(None, ["label=x", "inner.sizes=[1, b]"], schema=_Schema)
    with pytest.raises(ConfigError, match=r"unknown key 'extra.sise' \(did you mean 'extra.sizes'\?\)"):
        load_config(None, ["label=x", "extra.sise=[1]"], schema=_Schema)


def test_apply_override_leaves_the_original_unchanged():
    config = RunConfig()
    updated = apply_override(config, "optim.lr=0.5")
    assert updated.optim.lr == 0.5
    assert config.optim.lr == 0.1
    assert updated.optim.momentum == config.optim.momentum


def test_override_errors_name_the_override_even_with_a_file(tmp_path):
    path = _write(tmp_path / "run.yaml", "optim:\n  lr: 0.05\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, ["optim.momentum=fast"])
    assert str(error.value) == "override 'optim.momentum=fast': key 'optim.momentum': expected float, got str 'fast'"


def test_a_whole_section_cannot_be_set_by_one_override():
    with pytest.raises(ConfigError, match=r"'optim' is a section; set its keys one by one"):
        load_config(None, ["optim={lr: 1}"])


def test_later_overrides_win_over_earlier_ones_for_optional_sections():
    assert load_config(None, ["label=x", "extra.scale=0.5", "extra=null"], schema=_Schema).extra is None
    assert load_config(None, ["label=x", "extra=null", "extra.scale=0.5"], schema=_Schema).extra == _Inner(scale=0.5)


@dataclasses.dataclass
class _Window:
    low: int = 0
    high: int = 1

    def __post_init__(self) -> None:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")


def test_other_schema_validation_errors_name_the_source(tmp_path):
    path = _write(tmp_path / "window.yaml", "low: 5\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, schema=_Window)
    assert str(error.value) == f"{path}: invalid _Window: low (5) must be below high (1)"


def test_a_partial_transform_section_keeps_the_datasets_other_settings(tmp_path):
    # The SemanticKITTI scale range is 0.95-1.05, not RandomScale's own default 0.9-1.1: setting one bound
    # from a file or an override must keep the dataset's other.
    path = _write(tmp_path / "run.yaml", "data:\n  semantickitti:\n    scale:\n      low: 0.9\n")
    from_file = load_config(path)
    assert (from_file.data.semantickitti.scale.low, from_file.data.semantickitti.scale.high) == (0.9, 1.05)
    assert from_file.data.semantickitti.max_train_voxels == 80_000
    overridden = load_config(None, ["data.s3dis.flip.axis_p=0.25", "data.modelnet40.jitter.p=0.5"])
    assert (overridden.data.s3dis.flip.p, overridden.data.s3dis.flip.axis_p) == (0.95, 0.25)
    assert overridden.data.modelnet40.jitter.half_width == 0.0125 and overridden.data.modelnet40.jitter.p == 0.5
    assert overridden.data.s3dis.color_jitter == DataConfig().s3dis.color_jitter
    assert load_config(None, ["data.s3dis.flip.axis_p=0.25"]).data.modelnet40 == DataConfig().modelnet40


def test_transform_settings_round_trip_and_bad_values_name_their_key(tmp_path):
    config = load_config(None, ["data.s3dis.clip_bound=3.5", "data.modelnet40.point_sampling=random"])
    path = tmp_path / "config.yaml"
    save_config(config, path)
    assert load_config(path) == config
    with pytest.raises(ConfigError, match=re.escape("invalid data.s3dis.flip: p must be in [0, 1], got 1.5")):
        load_config(None, ["data.s3dis.flip.p=1.5"])
    with pytest.raises(ConfigError, match="data.modelnet40.point_sampling"):
        load_config(None, ["data.modelnet40.point_sampling=fps"])
    with pytest.raises(ConfigError, match="effective_batch_size must be at least 1 or null"):
        load_config(None, ["data.effective_batch_size=0"])
def test_enum_fields_take_their_values_and_write_them_back(tmp_path):
    from image2point.inflate.shortcuts import DEFAULT_STRIDED_SHORTCUT, StridedShortcut

    assert load_config(None).model.shortcut is DEFAULT_STRIDED_SHORTCUT
    config = load_config(None, ["model.shortcut=center"])
    assert config.model.shortcut is StridedShortcut.CENTER
    assert config_to_dict(config)["model"]["shortcut"] == "center"
    save_config(config, tmp_path / "saved.yaml")
    assert yaml.safe_load((tmp_path / "saved.yaml").read_text())["model"]["shortcut"] == "center"
    assert load_config(tmp_path / "saved.yaml") == config
    (tmp_path / "file.yaml").write_text("model:\n  shortcut: children_sum\n")
    assert load_config(tmp_path / "file.yaml").model.shortcut is StridedShortcut.CHILDREN_SUM


def test_bad_enum_value_names_the_key_and_lists_the_choices(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(
            "key 'model.shortcut': must be one of 'center', 'children_sum', 'children_mean', got 'children'")):
        load_config(None, ["model.shortcut=children"])
    (tmp_path / "bad.yaml").write_text("model:\n  shortcut: 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: key 'model\.shortcut': must be one of"):
        load_config(tmp_path / "bad.yaml")


def test_output_layer_widths_are_model_keys_with_the_listings_defaults():
    from image2point.models.heads import HEAD_HIDDEN_CHANNELS
    from image2point.models.networks import LINEAR_NETWORK_WIDTH

    model = load_config(None).model
    assert (model.head_hidden, model.linear_width) == (HEAD_HIDDEN_CHANNELS, LINEAR_NETWORK_WIDTH) == (1024, 512)
    model = load_config(None, ["model.head_hidden=96", "model.linear_width=32"]).model
    assert (model.head_hidden, model.linear_width) == (96, 32)
    for key in ("head_hidden", "linear_width"):
        with pytest.raises(ConfigError, match=f"{key} must be at least 1"):
            load_config(None, [f"model.{key}=0"])
