"""Every shipped recipe loads into the typed config and equals what configs/make_recipes.py writes."""

import importlib.util
from pathlib import Path

import pytest

from image2point.train.config import load_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def _generator():
    spec = importlib.util.spec_from_file_location("make_recipes", CONFIG_DIR / "make_recipes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()
RECIPES = sorted(GENERATOR.all_recipes())


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_file_is_current_and_loads(name):
    path = CONFIG_DIR / f"{name}.yaml"
    assert path.read_text() == GENERATOR.render(name, GENERATOR.all_recipes()[name]), \
        f"{path} is stale: run python configs/make_recipes.py"
    config = load_config(path)
    for section, values in GENERATOR.all_recipes()[name].items():
        for key, value in values.items():
            assert getattr(getattr(config, section), key) == value, f"{name}: {section}.{key}"


def test_paper_recipes_follow_the_paper():
    modelnet = load_config(CONFIG_DIR / "modelnet40" / "resnet18_io.yaml")
    assert (modelnet.optim.lr, modelnet.data.batch_size, modelnet.train.epochs, modelnet.schedule.name) == (
        0.1, 32, 300, "cosine")
    s3dis = load_config(CONFIG_DIR / "s3dis" / "resnet50_all.yaml")
    assert (s3dis.schedule.name, s3dis.data.batch_size, s3dis.train.epochs, s3dis.data.test_area) == ("poly", 3, 400, 5)
    kitti = load_config(CONFIG_DIR / "semantickitti" / "resnet152_io_bn.yaml")
    assert (kitti.optim.lr, kitti.schedule.name, kitti.data.batch_size, kitti.train.epochs) == (
        0.24, "warmup_cosine", 2, 15)
    assert kitti.finetune.scheme == "io_bn" and kitti.model.backbone == "resnet152"
