import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from image2point.checkpoint import load_checkpoint
from image2point.errors import ConfigError, DataError
from image2point.models2d import create_model_2d, load_pretrained_2d
from image2point.pretrain2d.real_images import load_image_splits, pretrain_on_images
from image2point.pretrain2d.train2d import evaluate_top1

ARCH = "cifar_resnet20"
IMAGE_SIDE = 8
NUM_CLASSES = 3
IMAGES_PER_CLASS = 6
EPOCHS = 2
BATCH_SIZE = 4
LEARNING_RATE = 0.05
SEED = 0
# Each class has its own base colour; per-image noise keeps the images distinct.
BASE_COLOURS = ((200, 40, 40), (40, 200, 40), (40, 40, 200))
NOISE_LEVELS = 20
WNIDS = ("n0300", "n0100", "n0200")
VAL_PER_CLASS = 2
MNIST_COUNT = 20


def noisy_image(label: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(-NOISE_LEVELS, NOISE_LEVELS + 1, (IMAGE_SIDE, IMAGE_SIDE, 3))
    return np.clip(np.array(BASE_COLOURS[label]) + noise, 0, 255).astype(np.uint8)


def save_image(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def write_image_folder(root: Path) -> Path:
    for label in range(NUM_CLASSES):
        for index in range(IMAGES_PER_CLASS):
            save_image(root / f"class_{label}" / f"{index}.png", noisy_image(label, label * 100 + index))
    return root


def write_tiny_imagenet(root: Path) -> Path:
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    lines = []
    for label, wnid in enumerate(WNIDS):
        for index in range(IMAGES_PER_CLASS):
            save_image(root / "train" / wnid / "images" / f"{wnid}_{index}.JPEG", noisy_image(label, index))
        for index in range(VAL_PER_CLASS):
            name = f"val_{label * VAL_PER_CLASS + index}.JPEG"
            save_image(root / "val" / "images" / name, noisy_image(label, 50 + index))
            lines.append(f"{name}\t{wnid}\t0\t0\t7\t7")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def write_mnist(root: Path) -> Path:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (MNIST_COUNT, 28, 28), dtype=np.uint8)
    labels = np.arange(MNIST_COUNT, dtype=np.uint8) % 10
    root.mkdir(parents=True)
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(struct.pack(">IIII", 2051, MNIST_COUNT, 28, 28) + images.tobytes())
    )
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(struct.pack(">II", 2049, MNIST_COUNT) + labels.tobytes())
    )
    return root


def pretrain(dataset_name: str, root: Path, run_dir: Path, **kwargs):
    return pretrain_on_images(dataset_name, root, ARCH, EPOCHS, BATCH_SIZE, LEARNING_RATE, SEED, run_dir, **kwargs)


def test_image_folder_run_directory_loads_into_the_converters_loader(tmp_path):
    root = write_image_folder(tmp_path / "folder")
    run_dir = tmp_path / "run"
    result = pretrain("imagefolder", root, run_dir, val_fraction=0.5)
    assert sorted(path.name for path in run_dir.iterdir()) == ["config.yaml", "metrics.json", "model.pt"]

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["val_top1"] == result.top1 and 0 <= result.top1 <= 1
    assert [epoch["epoch"] for epoch in metrics["history"]] == list(range(1, EPOCHS + 1))
    assert metrics["num_classes"] == NUM_CLASSES
    assert metrics["num_train"] + metrics["num_val"] == NUM_CLASSES * IMAGES_PER_CLASS
    assert metrics["num_val"] == NUM_CLASSES * IMAGES_PER_CLASS // 2

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["class_names"] == [f"class_{label}" for label in range(NUM_CLASSES)]
    assert config["image_shape"] == [IMAGE_SIDE, IMAGE_SIDE]
    assert config["train2d"]["epochs"] == EPOCHS and config["train2d"]["learning_rate"] == LEARNING_RATE

    model = create_model_2d(ARCH, num_classes=NUM_CLASSES)
    report = load_pretrained_2d(model, run_dir / "model.pt")
    assert not report.missing and not report.unexpected and not report.shape_mismatched
    checkpoint = load_checkpoint(run_dir / "model.pt")
    assert checkpoint["architecture"] == ARCH and checkpoint["epoch"] == EPOCHS
    for key, value in model.state_dict().items():
        assert torch.equal(value, checkpoint["state_dict"][key])
    # The loaded weights are the final ones: they reproduce the reported validation top-1.
    splits = load_image_splits("imagefolder", root, SEED, val_fraction=0.5)
    loader = DataLoader(splits.val, batch_size=len(splits.val))
    assert evaluate_top1(model, loader, torch.device("cpu")) == pytest.approx(result.top1)


def test_same_seed_gives_the_same_run(tmp_path):
    root = write_image_folder(tmp_path / "folder")
    first = pretrain("imagefolder", root, tmp_path / "first")
    second = pretrain("imagefolder", root, tmp_path / "second")
    assert first.history == second.history
    assert first.history[-1].train_loss > 0


def test_tiny_imagenet_uses_its_own_validation_images(tmp_path):
    root = write_tiny_imagenet(tmp_path / "tiny")
    result = pretrain("tiny-imagenet", root, tmp_path / "run", image_size=4)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert metrics["num_train"] == NUM_CLASSES * IMAGES_PER_CLASS
    assert metrics["num_val"] == NUM_CLASSES * VAL_PER_CLASS
    assert config["val_fraction"] is None and config["image_shape"] == [4, 4]
    assert config["class_names"] == list(WNIDS)
    assert result.num_classes == NUM_CLASSES


def test_mnist_is_split_and_resized(tmp_path):
    root = write_mnist(tmp_path / "mnist")
    result = pretrain("mnist", root, tmp_path / "run", image_size=12, val_fraction=0.5)
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["image_shape"] == [12, 12] and config["mnist_split"] == "test"
    assert config["num_val"] == MNIST_COUNT // 2
    assert result.num_classes == 10
    model = create_model_2d(ARCH, num_classes=10)
    load_pretrained_2d(model, tmp_path / "run" / "model.pt")


def test_non_empty_run_directory_is_refused(tmp_path):
    root = write_image_folder(tmp_path / "folder")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "keep.txt").write_text("earlier results")
    with pytest.raises(ConfigError, match="not empty"):
        pretrain("imagefolder", root, run_dir)
    assert [path.name for path in run_dir.iterdir()] == ["keep.txt"]


def test_empty_run_directory_is_used(tmp_path):
    root = write_image_folder(tmp_path / "folder")
    (tmp_path / "run").mkdir()
    pretrain("imagefolder", root, tmp_path / "run")
    assert (tmp_path / "run" / "model.pt").is_file()


@pytest.mark.parametrize(
    ("dataset_name", "kwargs", "message"),
    [
        ("cifar10", {}, "unknown image dataset 'cifar10'"),
        ("tiny-imagenet", {"val_fraction": 0.2}, "val_fraction does not apply"),
        ("imagefolder", {"val_fraction": 1.5}, "val_fraction must be in"),
        ("imagefolder", {"image_size": -3}, "image_size must be >= 1"),
    ],
)
def test_bad_settings_are_refused_before_the_run_directory_exists(tmp_path, dataset_name, kwargs, message):
    root = write_image_folder(tmp_path / "folder")
    with pytest.raises(ConfigError, match=message):
        pretrain(dataset_name, root, tmp_path / "run", **kwargs)
    assert not (tmp_path / "run").exists()


def test_unknown_architecture_and_bad_hyperparameters_are_refused(tmp_path):
    root = write_image_folder(tmp_path / "folder")
    with pytest.raises(ConfigError, match="unknown 2D model 'lenet'"):
        pretrain_on_images("imagefolder", root, "lenet", EPOCHS, BATCH_SIZE, LEARNING_RATE, SEED, tmp_path / "run")
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        pretrain_on_images("imagefolder", root, ARCH, 0, BATCH_SIZE, LEARNING_RATE, SEED, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_bad_image_is_named_and_no_run_directory_is_made(tmp_path):
    root = write_image_folder(tmp_path / "folder")
    corrupt = root / "class_1" / "3.png"
    corrupt.write_bytes(b"not a PNG at all")
    with pytest.raises(DataError, match="cannot decode image") as error:
        pretrain("imagefolder", root, tmp_path / "run")
    assert error.value.path == corrupt
    assert not (tmp_path / "run").exists()
