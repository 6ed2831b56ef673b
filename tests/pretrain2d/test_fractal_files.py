"""A FractalDB on disk read one image per item, its per-category split, and pretraining on it."""

import pickle

import numpy as np
import pytest
import torch

from image2point.errors import ConfigError, DataError
from image2point.pretrain2d.fractal_files import FractalDBFiles, category_split
from image2point.pretrain2d.fractal_store import render_to_disk
from image2point.pretrain2d.fractaldb import FractalDB, FractalDBConfig
from image2point.pretrain2d.train2d import Train2DConfig, pretrain_on_fractaldb_files

TINY = FractalDBConfig(num_categories=3, instances_per_category=8, image_size=32, search_size=128)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fractaldb")
    render_to_disk(TINY, 0, root, shard_bytes=3 * 32 * 32)
    return root


def test_items_are_the_in_memory_fractaldb_items(tiny_root):
    files = FractalDBFiles(tiny_root)
    in_memory = FractalDB(TINY, seed=0)
    assert len(files) == len(in_memory) == 24 and files.num_classes == 3
    for index in (0, 5, 8, 23):
        image, label = files[index]
        expected_image, expected_label = in_memory[index]
        assert label == expected_label and image.dtype == torch.float32 and image.shape == (3, 32, 32)
        torch.testing.assert_close(image, expected_image, rtol=0, atol=0)
    with pytest.raises(IndexError):
        files.read_image(24)


def test_the_dataset_holds_no_images(tiny_root, tmp_path):
    """What a DataLoader worker receives does not grow with the database."""
    larger = FractalDBConfig(num_categories=3, instances_per_category=24, image_size=32, search_size=128)
    render_to_disk(larger, 0, tmp_path)
    small_size = len(pickle.dumps(FractalDBFiles(tiny_root)))
    assert len(pickle.dumps(FractalDBFiles(tmp_path))) < small_size + 200 < 3 * 24 * 32 * 32


def test_unfinished_or_damaged_renders_are_reported(tiny_root, tmp_path):
    with pytest.raises(DataError, match="index.json: no FractalDB render index"):
        FractalDBFiles(tmp_path)
    damaged = tmp_path / "damaged"
    render_to_disk(TINY, 0, damaged, shard_bytes=3 * 32 * 32)
    shard = damaged / "00001" / "shard-001.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    FractalDBFiles(tiny_root).verify()
    with pytest.raises(DataError, match="00001: pixels differ"):
        FractalDBFiles(damaged).verify()
    shard.write_bytes(bytes(data[:-10]))
    with pytest.raises(DataError, match="truncated"):
        FractalDBFiles(damaged).read_image(8 + 5)


def test_category_split_holds_out_a_fraction_of_every_category():
    train, val = category_split(4, 10, 0.2, seed=3)
    assert train.dtype == val.dtype == np.int64 and len(train) == 32 and len(val) == 8
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(40))
    assert np.bincount(val // 10).tolist() == [2, 2, 2, 2]
    again, _ = category_split(4, 10, 0.2, seed=3)
    other, _ = category_split(4, 10, 0.2, seed=4)
    assert np.array_equal(train, again) and not np.array_equal(train, other)
    with pytest.raises(ConfigError, match="val_fraction"):
        category_split(4, 10, 1.0, seed=0)
    with pytest.raises(DataError, match="too few"):
        category_split(4, 2, 0.1, seed=0)


def test_pretraining_on_files_trains_and_checkpoints(tiny_root, tmp_path):
    def tiny_model(num_classes: int) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=4), torch.nn.ReLU(),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, num_classes))

    config = Train2DConfig(epochs=2, batch_size=6, seed=0)
    result = pretrain_on_fractaldb_files(tiny_root, tiny_model, config, 0.25, checkpoint_path=tmp_path / "m.pt",
                                         architecture="tiny")
    assert result.num_classes == 3 and len(result.history) == 2 and 0 <= result.top1 <= 1
    assert torch.load(tmp_path / "m.pt", weights_only=False)["architecture"] == "tiny"
