import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from image2point.errors import ConfigError, DataError
from image2point.pretrain2d.fractaldb import FractalDB, FractalDBConfig
from image2point.pretrain2d.train2d import (
    Train2DConfig,
    random_crop,
    random_horizontal_flip,
    split_train_val,
    train_2d,
    train_step_2d,
)

NUM_CLASSES = 4
IMAGE_SIZE = 32
FRACTALS = FractalDBConfig(
    num_categories=NUM_CLASSES, instances_per_category=16, image_size=IMAGE_SIZE, search_size=128
)
FAST_TRAINING = Train2DConfig(epochs=20, batch_size=8, learning_rate=0.1, seed=0)


def tiny_cnn(num_classes: int = NUM_CLASSES) -> nn.Sequential:
    width = 16
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )



@pytest.fixture(scope="module")
def fractal_split():
    db = FractalDB(FRACTALS, seed=0)
    return split_train_val(db, val_fraction=0.25, seed=0, labels=db.labels)


def random_images(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(seed))


def test_random_crop_shifts_each_image_within_the_padding():
    padding = 3
    images = torch.zeros(32, 1, 9, 9)
    images[:, :, 4, 4] = 1.0
    cropped = random_crop(images, padding, torch.Generator().manual_seed(0))
    assert cropped.shape == images.shape
    for image in cropped:
        ((row, col),) = torch.nonzero(image[0]).tolist()
        assert abs(row - 4) <= padding and abs(col - 4) <= padding
    shifts = {tuple(torch.nonzero(image[0])[0].tolist()) for image in cropped}
    assert len(shifts) > 1
    assert torch.equal(random_crop(images, 0, torch.Generator()), images)


def test_random_horizontal_flip_flips_some_images_and_keeps_the_others():
    images = random_images(64)
    flipped = random_horizontal_flip(images, torch.Generator().manual_seed(0))
    was_flipped = [torch.equal(out, image.flip(-1)) for out, image in zip(flipped, images, strict=True)]
    kept = [torch.equal(out, image) for out, image in zip(flipped, images, strict=True)]
    assert all(f or k for f, k in zip(was_flipped, kept, strict=True))
    assert 0 < sum(was_flipped) < len(images)


def test_train_step_lowers_the_loss_and_advances_the_schedule():
    torch.manual_seed(0)
    model = tiny_cnn()
    images, labels = random_images(8), torch.arange(8) % NUM_CLASSES
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    losses = [train_step_2d(model, images, labels, optimizer, scheduler) for _ in range(10)]
    assert losses[-1] < losses[0]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_split_train_val_is_disjoint_complete_and_stratified():
    labels = torch.arange(40) % 4
    dataset = TensorDataset(torch.zeros(40, 1), labels)
    train, val = split_train_val(dataset, val_fraction=0.3, seed=3, labels=labels)
    assert sorted(train.indices + val.indices) == list(range(40))
    assert torch.bincount(labels[val.indices]).tolist() == [3, 3, 3, 3]
    train_again, _ = split_train_val(dataset, val_fraction=0.3, seed=3, labels=labels)
    assert train_again.indices == train.indices
    with pytest.raises(ConfigError):
        split_train_val(dataset, val_fraction=1.0, seed=0)


def test_train_2d_learns_fractal_categories_and_writes_a_loadable_checkpoint(fractal_split, tmp_path):
    train_set, val_set = fractal_split
    torch.manual_seed(0)
    model = tiny_cnn()
    path = tmp_path / "pretrained.pt"
    result = train_2d(model, train_set, val_set, FAST_TRAINING, checkpoint_path=path, architecture="tiny_cnn")
    chance = 1 / NUM_CLASSES
    assert result.top1 >= 2 * chance
    assert result.num_classes == NUM_CLASSES
    assert len(result.history) == FAST_TRAINING.epochs
    assert result.history[-1].train_loss < result.history[0].train_loss
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert checkpoint["architecture"] == "tiny_cnn"
    assert checkpoint["num_classes"] == NUM_CLASSES
    assert checkpoint["epoch"] == FAST_TRAINING.epochs
    assert checkpoint["top1"] == result.top1
    assert checkpoint["config"]["learning_rate"] == FAST_TRAINING.learning_rate
    reloaded = tiny_cnn()
    reloaded.load_state_dict(checkpoint["state_dict"])
    for name, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor)


def test_train_2d_is_reproducible(fractal_split):
    train_set, val_set = fractal_split
    config = Train2DConfig(epochs=2, batch_size=8, seed=5)
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = tiny_cnn()
        train_2d(model, train_set, val_set, config)
        weights.append(model.state_dict())
    for name, tensor in weights[0].items():
        assert torch.equal(weights[1][name], tensor)


def test_train_2d_rejects_labels_the_model_cannot_predict(fractal_split):
    train_set, val_set = fractal_split
    with pytest.raises(DataError, match="labels"):
        train_2d(tiny_cnn(num_classes=2), train_set, val_set, Train2DConfig(epochs=1, batch_size=8))


def test_train_2d_rejects_empty_sets(fractal_split):
    train_set, _ = fractal_split
    empty = TensorDataset(torch.zeros(0, 3, IMAGE_SIZE, IMAGE_SIZE), torch.zeros(0, dtype=torch.long))
    with pytest.raises(DataError, match="non-empty"):
        train_2d(tiny_cnn(), train_set, empty, Train2DConfig(epochs=1))


@pytest.mark.parametrize(
    "overrides",
    [{"epochs": 0}, {"batch_size": 0}, {"learning_rate": 0.0}, {"momentum": 1.0}, {"crop_padding": -1}],
)
def test_config_rejects_invalid_values(overrides):
    with pytest.raises(ConfigError):
        Train2DConfig(**overrides)
