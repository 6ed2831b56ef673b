"""``SparseTensor.to``: the same tensor when it is already there, else a copy whose coordinate cache
starts empty (the cached maps hold tensors of the old device), on the same level."""

import torch

from image2point.sparse import SparseTensor
from image2point.sparse import functional as SF

BATCH = 2
GRID = (6, 7, 8)
CHANNELS = 3


def random_tensor(seed: int = 0) -> SparseTensor:
    generator = torch.Generator().manual_seed(seed)
    coords = (torch.rand((BATCH, *GRID), generator=generator) < 0.4).nonzero()
    return SparseTensor(torch.randn(coords.shape[0], CHANNELS, generator=generator), coords, BATCH)


def test_to_its_own_device_returns_the_tensor_with_its_cache():
    x = random_tensor()
    SF.conv3d(x, torch.randn(4, CHANNELS, 3, 3, 3), stride=2)
    cached = dict(x.cache.kernel_maps)
    assert cached
    for device in ("cpu", torch.device("cpu"), x.device):
        assert x.to(device) is x
    assert x.cache.kernel_maps == cached


def test_to_another_device_copies_everything_but_the_cache():
    x = random_tensor()
    coarse = SF.conv3d(x, torch.randn(4, CHANNELS, 3, 3, 3), stride=2, stride_mode="window")
    keys_before = set(x.cache.kernel_maps)
    moved = coarse.to("meta")
    assert moved is not coarse
    assert moved.device == torch.device("meta") and moved.coords.device == torch.device("meta")
    assert moved.features.shape == coarse.features.shape and moved.coords.dtype == torch.int64
    assert (moved.batch_size, moved.backend, moved.level, moved.stride) == (BATCH, "torch", ("window",), 2)
    assert moved.cache is not coarse.cache and not moved.cache.kernel_maps
    # The original keeps its cache, so its own hierarchy is unaffected.
    assert set(x.cache.kernel_maps) == keys_before


def test_a_moved_tensor_computes_what_the_original_computes(device):
    """On a GPU: maps cached on the CPU are not reused; the moved tensor builds its own, same results."""
    x = random_tensor(1)
    weight = torch.randn(5, CHANNELS, 3, 3, 3)
    expected = SF.conv3d(x, weight, stride=2)
    moved = x.to(device)
    out = SF.conv3d(moved, weight.to(device), stride=2)
    assert out.device.type == device.type
    assert all(value.device.type == device.type for value in _tensors_in(moved.cache.kernel_maps.values()))
    torch.testing.assert_close(out.coords.cpu(), expected.coords)
    torch.testing.assert_close(out.features.cpu(), expected.features, atol=1e-5, rtol=1e-5)
    assert moved.to(device) is moved


def _tensors_in(values) -> list[torch.Tensor]:
    found = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif hasattr(value, "__dict__"):
            found += _tensors_in(vars(value).values())
        elif hasattr(value, "__dataclass_fields__"):
            found += _tensors_in(getattr(value, name) for name in value.__dataclass_fields__)
    return found
