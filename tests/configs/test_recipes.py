"""Every shipped recipe loads into the typed config, equals what configs/make_recipes.py writes, and says
where each of its numbers comes from."""

import dataclasses
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import yaml

from image2point.train.config import load_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
RECIPE_DIRS = ("demo", "modelnet40", "s3dis", "semantickitti")


def _generator():
    spec = importlib.util.spec_from_file_location("make_recipes", CONFIG_DIR / "make_recipes.py")
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up while being defined.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()
RECIPES = sorted(GENERATOR.all_recipes())


def uncited(value, key: str = "") -> list[str]:
    """Dotted keys of the numbers and switches in ``value`` that carry no source."""
    if isinstance(value, GENERATOR.Cited):
        return [] if value.source in GENERATOR.SOURCES else [f"{key} (unknown source {value.source!r})"]
    if isinstance(value, dict):
        return [found for name, item in value.items() for found in uncited(item, f"{key}.{name}".lstrip("."))]
    if isinstance(value, (list, tuple)):
        return [found for index, item in enumerate(value) for found in uncited(item, f"{key}[{index}]")]
    # Names and paths (str) and null need no source; numbers and booleans do.
    return [key] if isinstance(value, (bool, int, float)) else []


def assert_config_holds(actual, expected, key: str) -> None:
    if isinstance(expected, dict):
        assert dataclasses.is_dataclass(actual), key
        for name, item in expected.items():
            assert_config_holds(getattr(actual, name), item, f"{key}.{name}")
    elif isinstance(expected, list) and isinstance(actual, tuple):
        assert list(actual) == expected, key
    else:
        assert actual == expected, key


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_file_is_current_and_loads(name):
    path = CONFIG_DIR / f"{name}.yaml"
    recipe = GENERATOR.all_recipes()[name]
    assert path.read_text() == GENERATOR.render(name, recipe), f"{path} is stale: run python configs/make_recipes.py"
    assert yaml.safe_load(path.read_text()) == GENERATOR.plain(recipe), f"{path}: YAML reads back differently"
    config = load_config(path)
    for section, values in GENERATOR.plain(recipe).items():
        assert_config_holds(getattr(config, section), values, f"{name}: {section}")


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_number_has_a_source(name):
    assert uncited(GENERATOR.all_recipes()[name]) == [], f"{name}: values without a source (use cite())"


@pytest.mark.parametrize("name", RECIPES)
def test_every_cited_value_shows_its_source_in_the_file(name):
    text = (CONFIG_DIR / f"{name}.yaml").read_text()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    for line in lines:
        value = yaml.safe_load(line.split(":", 1)[1].split("  # ")[0])
        if uncited(value):  # a number or a switch
            assert "  # " in line, f"{name}: {line!r} has no source comment"
    used = {line.split("  # ", 1)[1].split(":")[0] for line in lines if "  # " in line}
    for label in used:
        assert f"#   {label}: {GENERATOR.SOURCES[label]}" in text, f"{name}: source {label!r} not in the header"


def test_uncited_numbers_are_found():
    cite, paper = GENERATOR.cite, GENERATOR.PAPER
    recipe = {"optim": {"lr": 0.1, "momentum": cite(0.9, paper), "name": "sgd"},
              "data": {"s3dis": {"flip": {"axes": [0, cite(1, paper)], "p": True}}, "root": None}}
    assert uncited(recipe) == ["optim.lr", "data.s3dis.flip.axes[0]", "data.s3dis.flip.p"]
    with pytest.raises(ValueError, match="unknown source 'my guess'"):
        cite(3, "my guess")


def test_no_recipe_file_without_a_generator_entry():
    shipped = {str(path.relative_to(CONFIG_DIR).with_suffix("")) for folder in RECIPE_DIRS
               for path in (CONFIG_DIR / folder).glob("*.yaml")}
    assert shipped == set(RECIPES)


def test_paper_recipes_follow_the_paper():
    modelnet = load_config(CONFIG_DIR / "modelnet40" / "resnet18_io.yaml")
    assert (modelnet.optim.lr, modelnet.data.batch_size, modelnet.train.epochs, modelnet.schedule.name) == (
        0.1, 32, 300, "cosine")
    assert (modelnet.data.num_points, modelnet.data.effective_batch_size, modelnet.optim.nesterov) == (2048, 32, False)
    augmentation = modelnet.data.modelnet40
    assert (augmentation.scale.low, augmentation.scale.high, augmentation.scale.p) == (0.9, 1.1, 0.9)
    assert (augmentation.translation.max_shift, augmentation.translation.p) == (0.2, 0.9)
    assert (augmentation.jitter.half_width, augmentation.jitter.p) == (0.0125, 0.7)
    s3dis = load_config(CONFIG_DIR / "s3dis" / "resnet50_all.yaml")
    assert (s3dis.schedule.name, s3dis.data.batch_size, s3dis.train.epochs, s3dis.data.test_area) == ("poly", 3, 400, 5)
    assert (s3dis.data.effective_batch_size, s3dis.optim.nesterov, s3dis.data.s3dis.clip_bound) == (6, True, 4.0)
    assert (s3dis.data.s3dis.color_jitter.std, s3dis.data.s3dis.color_translation.ratio) == (0.005, 0.05)
    kitti = load_config(CONFIG_DIR / "semantickitti" / "resnet152_io_bn.yaml")
    assert (kitti.optim.lr, kitti.schedule.name, kitti.data.batch_size, kitti.train.epochs) == (
        0.24, "warmup_cosine", 2, 15)
    assert (kitti.data.effective_batch_size, kitti.schedule.warmup_iters, kitti.optim.nesterov) == (8, 250, True)
    assert kitti.data.semantickitti.max_train_voxels == 80_000
    assert kitti.data.semantickitti.rotation.max_angle == pytest.approx(math.pi)
    assert kitti.finetune.scheme == "io_bn" and kitti.model.backbone == "resnet152"


@pytest.mark.parametrize("dataset, processes", [("modelnet40", 1), ("s3dis", 2), ("semantickitti", 4)])
def test_paper_recipes_state_world_size_times_batch(dataset, processes):
    text = (CONFIG_DIR / dataset / "resnet18_io.yaml").read_text()
    config = load_config(CONFIG_DIR / dataset / "resnet18_io.yaml")
    effective = config.data.effective_batch_size
    assert effective == processes * config.data.batch_size
    assert (f"# Effective batch {effective} = world size {processes} x data.batch_size {config.data.batch_size}"
            in text)
