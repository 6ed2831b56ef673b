"""Each pixel a point: coordinates and features against per-pixel loops, the dataset wrapper, and the
image-model wrapper that image training loops drive."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from image2point.errors import DataError
from image2point.pretrain2d.pixels_as_points import (
    PIXEL_DEPTH,
    PixelPointCloudDataset,
    PixelsAsPoints,
    image_to_points,
    pixel_coordinates,
)
from image2point.pretrain2d.train2d import Train2DConfig, train_2d

HEIGHT, WIDTH = 5, 7  # not square, so rows and columns cannot be confused
CHANNELS = 3


def random_images(seed: int, batch: int = 2, channels: int = CHANNELS, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(batch, channels, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_every_pixel_becomes_the_point_at_its_column_row_and_depth():
    image = random_images(0)[0]
    xyz, features = image_to_points(image)
    assert xyz.shape == (1, HEIGHT * WIDTH, 3) and features.shape == (1, HEIGHT * WIDTH, CHANNELS)
    for r in range(HEIGHT):
        for c in range(WIDTH):
            point = r * WIDTH + c
            assert xyz[0, point].tolist() == [c, r, PIXEL_DEPTH]
            assert torch.equal(features[0, point], image[:, r, c])


def test_points_round_trip_back_to_the_image():
    images = random_images(1, batch=3)
    xyz, features = image_to_points(images)
    rebuilt = torch.zeros_like(images)
    for b in range(3):
        for point in range(HEIGHT * WIDTH):
            c, r, _ = xyz[b, point].long().tolist()
            rebuilt[b, :, r, c] = features[b, point]
    assert torch.equal(rebuilt, images)


def test_a_batch_converts_like_its_images_one_by_one():
    images = random_images(2, batch=4)
    xyz, features = image_to_points(images)
    for b in range(4):
        single_xyz, single_features = image_to_points(images[b])
        assert torch.equal(xyz[b], single_xyz[0]) and torch.equal(features[b], single_features[0])


def test_dtype_channels_and_gradients_follow_the_image():
    gray = random_images(3, channels=1, dtype=torch.float64).requires_grad_()
    xyz, features = image_to_points(gray)
    assert xyz.dtype == features.dtype == torch.float64
    assert features.shape == (2, HEIGHT * WIDTH, 1)
    features.sum().backward()
    assert torch.equal(gray.grad, torch.ones_like(gray))


def test_pixel_coordinates_are_row_major():
    coords = pixel_coordinates(2, 3)
    assert coords.tolist() == [[0, 0, 1], [1, 0, 1], [2, 0, 1], [0, 1, 1], [1, 1, 1], [2, 1, 1]]


@pytest.mark.parametrize("bad", [torch.rand(4, 4), torch.rand(1, 1, 3, 4, 4), torch.zeros(3, 4, 4, dtype=torch.uint8)])
def test_bad_images_are_rejected(bad):
    with pytest.raises(DataError):
        image_to_points(bad)


def test_dataset_wraps_image_label_pairs_and_collates_to_point_batches():
    images = random_images(4, batch=5)
    labels = torch.tensor([0, 1, 2, 1, 0])
    dataset = PixelPointCloudDataset(TensorDataset(images, labels))
    assert len(dataset) == 5
    xyz, features, label = dataset[3]
    assert xyz.shape == (HEIGHT * WIDTH, 3) and int(label) == 1
    assert torch.equal(features, images[3].reshape(CHANNELS, -1).T)
    batch_xyz, batch_features, batch_labels = next(iter(DataLoader(dataset, batch_size=5)))
    expected_xyz, expected_features = image_to_points(images)
    assert torch.equal(batch_xyz, expected_xyz) and torch.equal(batch_features, expected_features)
    assert torch.equal(batch_labels, labels)


class MeanPointModel(nn.Module):
    """A minimal point classifier: per-point linear map of (xyz, features), then mean over points."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(3 + channels, num_classes)
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, xyz: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        self.calls.append((xyz, features))
        return self.linear(torch.cat([xyz / WIDTH, features], dim=-1)).mean(dim=1)


def test_wrapper_hands_the_converted_images_to_the_point_model():
    point_model = MeanPointModel(CHANNELS, 2)
    wrapper = PixelsAsPoints(point_model)
    images = random_images(5)
    logits = wrapper(images)
    xyz, features = image_to_points(images)
    assert torch.equal(point_model.calls[0][0], xyz) and torch.equal(point_model.calls[0][1], features)
    assert torch.equal(logits, point_model.linear(torch.cat([xyz / WIDTH, features], -1)).mean(1))
    assert all(key.startswith(PixelsAsPoints.STATE_PREFIX) for key in wrapper.state_dict())


def test_image_training_loop_trains_the_wrapped_point_model():
    labels = torch.arange(16) % 2
    images = torch.rand(16, CHANNELS, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(6)) * 0.5
    images += 0.5 * labels[:, None, None, None]
    torch.manual_seed(0)
    point_model = MeanPointModel(CHANNELS, 2)
    before = point_model.linear.weight.clone()
    config = Train2DConfig(epochs=10, batch_size=4, learning_rate=0.5, crop_padding=1)
    result = train_2d(PixelsAsPoints(point_model), TensorDataset(images, labels), TensorDataset(images, labels),
                      config)
    assert not torch.equal(point_model.linear.weight, before)
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.top1 == 1.0
