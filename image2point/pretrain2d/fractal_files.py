"""A FractalDB rendered to disk (:mod:`image2point.pretrain2d.fractal_store`) as a dataset read one image
per item, so training memory does not grow with the number of images, and its per-category split."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from image2point.errors import ConfigError, DataError
from image2point.pretrain2d.fractal_store import CATEGORY_FILE, category_name, config_from_record, read_index
from image2point.pretrain2d.fractaldb import image_to_tensor
from image2point.pretrain2d.ifs import RGB_CHANNELS

# Bytes read at a time when a shard's hash is checked.
VERIFY_CHUNK_BYTES = 2**22


def _read_npy_header(stream) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy file open in ``stream``, left at its first data byte."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    return np.lib.format.read_array_header_2_0(stream)


class FractalDBFiles(Dataset):
    """The images of a finished render under ``root``: items are (image float32 ``[3, H, W]`` normalised
    with the render's mean and std, label), exactly as :class:`~image2point.pretrain2d.fractaldb.FractalDB`
    gives them for the same config and seed. Each item opens its shard and reads one image."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.index = read_index(self.root)
        self.config = config_from_record(self.index)
        self.num_classes = int(self.index["num_categories"])
        self.instances_per_category = int(self.index["instances_per_category"])
        self.shard_instances = int(self.index["shard_instances"])
        self.image_shape = tuple(self.index["image_shape"])
        self.image_bytes = int(np.prod(self.image_shape))
        self._mean = torch.tensor(self.config.normalize_mean, dtype=torch.float32).view(RGB_CHANNELS, 1, 1)
        self._std = torch.tensor(self.config.normalize_std, dtype=torch.float32).view(RGB_CHANNELS, 1, 1)

    def __len__(self) -> int:
        return self.num_classes * self.instances_per_category

    def label(self, index: int) -> int:
        return int(index) // self.instances_per_category

    def shard_path(self, category: int, shard: int) -> Path:
        return self.root / category_name(category) / f"shard-{shard:03d}.npy"

    def read_image(self, index: int) -> np.ndarray:
        """The uint8 image ``index`` (category-major), read from its shard alone."""
        if not 0 <= index < len(self):
            raise IndexError(f"image {index} out of range [0, {len(self)})")
        category, instance = divmod(int(index), self.instances_per_category)
        shard, row = divmod(instance, self.shard_instances)
        path = self.shard_path(category, shard)
        with open(path, "rb") as stream:
            shape, _, dtype = _read_npy_header(stream)
            if dtype != np.uint8 or tuple(shape[1:]) != self.image_shape or row >= shape[0]:
                raise DataError(f"shard holds {shape} {dtype}, expected uint8 images {self.image_shape}", path)
            stream.seek(row * self.image_bytes, 1)
            data = stream.read(self.image_bytes)
        if len(data) != self.image_bytes:
            raise DataError("shard is truncated", path)
        return np.frombuffer(data, dtype=np.uint8).reshape(self.image_shape)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        # frombuffer arrays are read-only; torch wants a writable one.
        image = self.read_image(index).copy()
        return image_to_tensor(image, self._mean, self._std), self.label(index)

    def verify(self) -> None:
        """Recompute every category's sha256 from its shards, a chunk at a time; :class:`DataError` naming
        the first category that differs from the index."""
        for category, expected in enumerate(self.index["category_sha256"]):
            record_path = self.root / category_name(category) / CATEGORY_FILE
            shards = json.loads(record_path.read_text())["shards"]
            digest = hashlib.sha256()
            for shard in range(len(shards)):
                with open(self.shard_path(category, shard), "rb") as stream:
                    _read_npy_header(stream)
                    while chunk := stream.read(VERIFY_CHUNK_BYTES):
                        digest.update(chunk)
            if digest.hexdigest() != expected:
                raise DataError("pixels differ from the render index's sha256", record_path.parent)


def category_split(num_categories: int, instances_per_category: int, val_fraction: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (int64, category-major) of a (train, validation) split holding out ``val_fraction`` of every
    category, drawn with ``seed``: eight bytes per image, where a label-stratified split of a generic
    dataset compares every label with every class."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    num_val = round(instances_per_category * val_fraction)
    if not 0 < num_val < instances_per_category:
        raise DataError(f"{instances_per_category} images per category are too few to hold out a fraction "
                        f"{val_fraction}")
    rng = np.random.default_rng(seed)
    order = rng.permuted(np.tile(np.arange(instances_per_category), (num_categories, 1)), axis=1)
    order += (np.arange(num_categories) * instances_per_category)[:, None]
    return np.sort(order[:, num_val:], axis=None), np.sort(order[:, :num_val], axis=None)
