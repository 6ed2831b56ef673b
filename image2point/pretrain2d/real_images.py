"""Pretrain a 2D ConvNet on a real image set (Tiny-ImageNet, an image folder, MNIST) into a run directory
whose checkpoint the 2D-to-3D converter loads.

A run directory holds:

* ``config.yaml``: the arguments, the dataset's size and classes, and the training hyperparameters;
* ``metrics.json``: validation top-1 of the final weights and the per-epoch history;
* ``model.pt``: ``{"state_dict", "architecture", "num_classes", "top1", "epoch", "config"}``, rewritten
  after every epoch, readable by :func:`image2point.models2d.load_pretrained_2d`.

Every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml
from torch import nn
from torch.utils.data import Dataset

from image2point.checkpoint import atomic_write, seed_everything
from image2point.errors import ConfigError, DataError
from image2point.io.output import check_new_run_directory, make_run_directory
from image2point.models2d import create_model_2d, list_models_2d
from image2point.pretrain2d.image_folders import MNIST, ImageFolder, TinyImageNet
from image2point.pretrain2d.train2d import Train2DConfig, Train2DResult, split_train_val, train_2d

logger = logging.getLogger(__name__)

DATASET_NAMES = ("tiny-imagenet", "imagefolder", "mnist")
# Held out for validation by the sets without a validation split of their own.
DEFAULT_VAL_FRACTION = 0.1
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "model.pt"


@dataclass(frozen=True)
class ImageSplits:
    """The training and validation sets of a run and what they hold."""

    train: Dataset
    val: Dataset
    class_names: tuple[str, ...]
    image_shape: tuple[int, int]
    # The validation fraction actually held out, or None for a set's own validation split.
    val_fraction: float | None


def load_image_splits(
    dataset_name: str,
    root: str | Path,
    seed: int,
    val_fraction: float | None = None,
    image_size: int | None = None,
    mnist_split: str = "test",
) -> ImageSplits:
    """Training and validation sets of ``dataset_name`` under ``root``, images decoded into memory.

    Tiny-ImageNet uses its own validation images (``val_fraction`` must then be None); an image
    folder and MNIST (the idx files of ``mnist_split``) hold out ``val_fraction`` of every class
    (default ``DEFAULT_VAL_FRACTION``), drawn with ``seed``. ``image_size`` resizes every image to a
    square of that side.
    """
    if dataset_name not in DATASET_NAMES:
        raise ConfigError(f"unknown image dataset {dataset_name!r}; available: {', '.join(DATASET_NAMES)}")
    if dataset_name == "tiny-imagenet":
        if val_fraction is not None:
            raise ConfigError("tiny-imagenet has its own validation images; val_fraction does not apply to it")
        train = TinyImageNet(root, "train", image_size=image_size, preload=True)
        val = TinyImageNet(root, "val", image_size=image_size, preload=True)
        if val.image_shape != train.image_shape:
            raise DataError(
                f"validation images are {val.image_shape[1]}x{val.image_shape[0]} pixels, training images "
                f"{train.image_shape[1]}x{train.image_shape[0]}; pass image_size to resize both",
                val.files[0].parent,
            )
        return ImageSplits(train, val, train.class_names, train.image_shape, None)
    fraction = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
    if dataset_name == "imagefolder":
        dataset: ImageFolder | MNIST = ImageFolder(root, image_size=image_size, preload=True)
    else:
        dataset = MNIST(root, mnist_split, image_size=image_size, mode="resize")
    train_subset, val_subset = split_train_val(dataset, fraction, seed, labels=dataset.labels)
    return ImageSplits(train_subset, val_subset, dataset.class_names, dataset.image_shape, fraction)


def pretrain_on_images(
    dataset_name: str,
    root: str | Path,
    arch: str,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    run_dir: str | Path,
    val_fraction: float | None = None,
    image_size: int | None = None,
    mnist_split: str = "test",
    model_factory: Callable[[int], nn.Module] | None = None,
) -> Train2DResult:
    """Train the 2D model ``arch`` (e.g. ``"cifar_resnet20"``, ``"resnet18"``), with one output per
    class, on ``dataset_name`` ("tiny-imagenet", "imagefolder" or "mnist") at ``root`` and write the
    run directory ``run_dir`` (see the module docstring).

    The sets are those of :func:`load_image_splits`; training is :func:`train_2d` (SGD with cosine
    learning rate ``lr``, random crop and flip) with python, numpy and torch seeded with ``seed``.
    ``model_factory`` (number of classes -> model) builds a model outside the 2D registry, e.g. a
    PointNet++ that sees each pixel as a point; ``arch`` then only names it in the checkpoint.
    A ``run_dir`` that exists and is not empty is refused, and it is only created once the data
    has been read. Returns the training result; its ``top1`` is the validation top-1 in [0, 1].
    """
    train_config = Train2DConfig(epochs=epochs, batch_size=batch_size, learning_rate=lr, seed=seed)
    if model_factory is None and arch not in list_models_2d():
        raise ConfigError(f"unknown 2D model {arch!r}; available: {', '.join(list_models_2d())}")
    run_dir = check_new_run_directory(run_dir, "run directory")
    splits = load_image_splits(dataset_name, root, seed, val_fraction, image_size, mnist_split)
    logger.info(
        "%s: %d classes, %d training and %d validation images of %dx%d",
        dataset_name,
        len(splits.class_names),
        len(splits.train),
        len(splits.val),
        splits.image_shape[1],
        splits.image_shape[0],
    )
    seed_everything(seed)
    num_classes = len(splits.class_names)
    model = create_model_2d(arch, num_classes=num_classes) if model_factory is None else model_factory(num_classes)
    make_run_directory(run_dir, "run directory")
    settings = {
        "dataset": dataset_name,
        "root": str(Path(root).resolve()),
        "arch": arch,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "val_fraction": splits.val_fraction,
        "image_size": image_size,
        "mnist_split": mnist_split if dataset_name == "mnist" else None,
        "image_shape": list(splits.image_shape),
        "num_train": len(splits.train),
        "num_val": len(splits.val),
        "num_classes": len(splits.class_names),
        "class_names": list(splits.class_names),
        "train2d": dataclasses.asdict(train_config),
    }
    with atomic_write(run_dir / CONFIG_FILE, "w") as stream:
        yaml.safe_dump(settings, stream, sort_keys=False)
    result = train_2d(
        model, splits.train, splits.val, train_config, checkpoint_path=run_dir / CHECKPOINT_FILE, architecture=arch
    )
    metrics: dict[str, Any] = {
        "dataset": dataset_name,
        "arch": arch,
        "num_classes": result.num_classes,
        "num_train": len(splits.train),
        "num_val": len(splits.val),
        "val_top1": result.top1,
        "history": [dataclasses.asdict(epoch) for epoch in result.history],
    }
    with atomic_write(run_dir / METRICS_FILE, "w") as stream:
        json.dump(metrics, stream, indent=2)
    return result
