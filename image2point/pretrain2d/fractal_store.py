"""FractalDB rendered to disk, streaming: memory bounded by one shard, however large the database.

At the FractalDB paper's settings (1,000 instances of 362 x 362 per category) FractalDB-1k is 131 GB of
pixels and FractalDB-10k 1.3 TB, which :class:`~image2point.pretrain2d.fractaldb.FractalDB` would hold in
memory. :func:`render_to_disk` writes the same images (same config and seed: the same pixels) as files::

    root/settings.json           generator settings, seed, shard size (written first; a rerun must match)
    root/search.npz              the category search: IFS found so far and the generator state
    root/00000/shard-000.npy     uint8 [<= shard_instances, H, W(, 3)], one directory per category
    root/00000/category.json     the category's IFS, shard sizes and the sha256 of its pixels
    root/index.json              written last: settings, per-category hashes and the content hash

A category is rendered into ``<name>.partial`` and renamed when complete, and the search saves its state
every few categories, so a rerun after an interruption skips finished categories and continues the search
where it stopped, giving the same bytes as an uninterrupted run. :func:`check_store` refuses, before anything
is written, a directory that holds other files, a render of other settings (naming each difference) or a disk
without room for what remains. :class:`FractalDBFiles` reads a finished render one image per item.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from image2point.checkpoint import atomic_write
from image2point.errors import ConfigError, DataError
from image2point.pretrain2d.fractaldb import (
    IFS,
    RGB_CHANNELS,
    FractalDBConfig,
    category_seeds,
    iter_candidates,
    iter_category_instances,
)

FORMAT = "image2point-fractaldb-npy-1"
SETTINGS_FILE = "settings.json"
SEARCH_FILE = "search.npz"
INDEX_FILE = "index.json"
CATEGORY_FILE = "category.json"
PARTIAL_SUFFIX = ".partial"
# A shard of this many bytes bounds the renderer's memory (13 MB of 362 px images: 128 of them).
SHARD_BYTES = 16 * 2**20
# The search state is saved after this many new categories (and at the end).
SEARCH_SAVE_EVERY = 64
# Per file: filesystem block rounding and small metadata files, in the disk estimate.
FILE_ALLOWANCE_BYTES = 4096
# Bytes per map of the saved search state (six parameters and a probability, float64), with room to spare.
SEARCH_BYTES_PER_MAP = 64


@dataclass(frozen=True)
class StoreLayout:
    """How a FractalDB of ``config`` from ``seed`` lies on disk: images per shard, file sizes."""

    config: FractalDBConfig
    seed: int
    shard_instances: int

    @classmethod
    def for_config(cls, config: FractalDBConfig, seed: int, shard_bytes: int = SHARD_BYTES) -> StoreLayout:
        side = config.image_size
        image_bytes = side * side * (RGB_CHANNELS if config.color else 1)
        return cls(config, seed, max(1, min(config.instances_per_category, shard_bytes // image_bytes)))

    @property
    def image_shape(self) -> tuple[int, ...]:
        side = self.config.image_size
        return (side, side, RGB_CHANNELS) if self.config.color else (side, side)

    @property
    def image_bytes(self) -> int:
        return math.prod(self.image_shape)

    def shard_sizes(self) -> list[int]:
        """Images in each shard of a category."""
        full, rest = divmod(self.config.instances_per_category, self.shard_instances)
        return [self.shard_instances] * full + ([rest] if rest else [])

    def category_bytes(self) -> int:
        """Disk taken by one finished category: its shards (header and pixels) and its record."""
        shards = sum(_npy_header_bytes((count, *self.image_shape)) + count * self.image_bytes + FILE_ALLOWANCE_BYTES
                     for count in self.shard_sizes())
        return shards + FILE_ALLOWANCE_BYTES

    def disk_bytes(self) -> int:
        """Disk the finished render takes: every category, the search state and the index files."""
        search = self.config.num_categories * self.config.max_maps * SEARCH_BYTES_PER_MAP
        return self.config.num_categories * self.category_bytes() + search + 3 * FILE_ALLOWANCE_BYTES

    def settings_record(self) -> dict:
        return {"format": FORMAT, "seed": self.seed, "shard_instances": self.shard_instances,
                "config": dataclasses.asdict(self.config)}


def _npy_header_bytes(shape: tuple[int, ...]) -> int:
    import io

    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return stream.tell()


def category_name(index: int) -> str:
    return f"{index:05d}"


def finished_categories(root: Path, num_categories: int) -> int:
    """Categories of the render under ``root`` that are complete (renamed, with their record)."""
    return sum((root / category_name(index) / CATEGORY_FILE).is_file() for index in range(num_categories))


def free_disk_bytes(path: Path) -> int:
    """Free bytes on the filesystem that ``path`` (or its nearest existing parent) lies on."""
    existing = Path(path).absolute()
    while not existing.exists():
        existing = existing.parent
    return shutil.disk_usage(existing).free


def remaining_disk_bytes(layout: StoreLayout, root: Path) -> int:
    """Disk the render under ``root`` still needs (nothing once its index is written)."""
    if (root / INDEX_FILE).is_file():
        return 0
    finished = finished_categories(root, layout.config.num_categories) if root.is_dir() else 0
    return layout.disk_bytes() - finished * layout.category_bytes()


# -- the resumable category search -------------------------------------------------------------


def _save_search(path: Path, found: list[IFS], attempts: int, rng: np.random.Generator, max_maps: int) -> None:
    maps = np.zeros((len(found), max_maps, 2, 3))
    probs = np.zeros((len(found), max_maps))
    for row, ifs in enumerate(found):
        maps[row, : ifs.num_maps] = ifs.maps
        probs[row, : ifs.num_maps] = ifs.probs
    with atomic_write(path, "wb") as stream:
        np.savez(stream, maps=maps, probs=probs, num_maps=np.array([ifs.num_maps for ifs in found], dtype=np.int64),
                 attempts=np.int64(attempts), rng_state=np.array(json.dumps(rng.bit_generator.state)))


def _load_search(path: Path, rng: np.random.Generator) -> tuple[list[IFS], int]:
    """The categories found and the candidates tried so far; ``rng`` continues where the search stopped."""
    try:
        with np.load(path) as saved:
            found = [IFS(maps=maps[:count], probs=probs[:count])
                     for maps, probs, count in zip(saved["maps"], saved["probs"], saved["num_maps"], strict=True)]
            rng.bit_generator.state = json.loads(str(saved["rng_state"]))
            return found, int(saved["attempts"])
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"unreadable FractalDB search state ({error}); delete it to search again", path) from None


def search_categories_resumable(config: FractalDBConfig, rng: np.random.Generator, state_path: Path,
                                save_every: int = SEARCH_SAVE_EVERY, stop_after: int | None = None) -> list[IFS]:
    """:func:`~image2point.pretrain2d.fractaldb.search_categories`, saving its state to ``state_path`` every
    ``save_every`` categories and resuming from it: the same categories, interrupted or not. ``stop_after``
    ends the search (saved) at that many categories, as an interruption would."""
    found, attempts = _load_search(state_path, rng) if state_path.is_file() else ([], 0)
    wanted = config.num_categories if stop_after is None else min(stop_after, config.num_categories)
    max_attempts = config.max_attempts_per_category * config.num_categories
    candidates = iter_candidates(config, rng)
    while len(found) < wanted:
        if attempts >= max_attempts:
            raise ConfigError(
                f"found only {len(found)} of {config.num_categories} fractal categories with filling rate >= "
                f"{config.filling_rate_threshold} in {max_attempts} candidates; lower filling_rate_threshold "
                f"or search_size")
        candidate = next(candidates)
        attempts += 1
        if candidate.filling_rate >= config.filling_rate_threshold:
            found.append(candidate.ifs)
            if len(found) % save_every == 0 or len(found) == wanted:
                _save_search(state_path, found, attempts, rng, config.max_maps)
    return found


# -- rendering ---------------------------------------------------------------------------------


def _write_shard(path: Path, images: np.ndarray, digest: hashlib._Hash) -> None:
    with open(path, "wb") as stream:
        np.lib.format.write_array(stream, images, allow_pickle=False)
    digest.update(images.data)


def write_category(root: Path, index: int, category: IFS, layout: StoreLayout,
                   rng: np.random.Generator) -> None:
    """Render category ``index`` shard by shard into ``<name>.partial``, then rename it: only one shard
    of images is held at a time."""
    final = root / category_name(index)
    partial = root / f"{final.name}{PARTIAL_SUFFIX}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    shard = np.empty((layout.shard_instances, *layout.image_shape), dtype=np.uint8)
    digest = hashlib.sha256()
    sizes = layout.shard_sizes()
    instances = iter_category_instances(category, layout.config, rng)
    for shard_index, count in enumerate(sizes):
        for row in range(count):
            shard[row] = next(instances)
        _write_shard(partial / f"shard-{shard_index:03d}.npy", shard[:count], digest)
    record = {"index": index, "maps": category.maps.tolist(), "probs": category.probs.tolist(),
              "shards": sizes, "sha256": digest.hexdigest()}
    with atomic_write(partial / CATEGORY_FILE, "w") as stream:
        json.dump(record, stream)
    os.replace(partial, final)


@dataclass(frozen=True)
class SettingDifference:
    """One setting in which a render on disk differs from the one asked for: a ``FractalDBConfig`` field,
    ``seed``, ``shard_instances`` or ``format`` (None: absent on that side)."""

    key: str
    stored: object
    wanted: object

    def describe(self, names: Mapping[str, str]) -> str:
        label = f"{names[self.key]} ({self.key})" if self.key in names else self.key
        return f"{label}: {self.stored} there, {self.wanted} asked"


def _flat_settings(record: dict) -> dict:
    return {**{key: value for key, value in record.items() if key != "config"}, **record.get("config", {})}


def settings_differences(root: Path, layout: StoreLayout) -> list[SettingDifference]:
    """How the render under ``root`` differs from ``layout``'s settings; empty when it has none yet."""
    path = Path(root) / SETTINGS_FILE
    if not path.is_file():
        return []
    try:
        stored = _flat_settings(json.loads(path.read_text()))
    except (OSError, ValueError, AttributeError, TypeError) as error:
        raise DataError(f"unreadable FractalDB render settings ({error})", path) from None
    wanted = _flat_settings(json.loads(json.dumps(layout.settings_record())))
    return [SettingDifference(key, stored.get(key), wanted.get(key))
            for key in dict.fromkeys([*wanted, *stored]) if stored.get(key) != wanted.get(key)]


def check_store(layout: StoreLayout, root: str | Path, option: str = "",
                names: Mapping[str, str] | None = None) -> None:
    """Before anything is written, :class:`ConfigError` when ``root`` cannot take (or continue) the render of
    ``layout``: it holds files but no render, a render of other settings (each difference named, with its
    label from ``names`` when there is one), or its disk lacks room for what remains. ``option``: the setting
    that names ``root`` (``--store``), put before it in the message."""
    root = Path(root)
    where = f"{option} {root}" if option else str(root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{where}: is not a directory")
    if root.is_dir() and not (root / SETTINGS_FILE).is_file() and any(root.iterdir()):
        raise ConfigError(f"{where}: holds files but no FractalDB render ({SETTINGS_FILE} missing); choose an "
                          f"empty or new directory")
    differences = settings_differences(root, layout)
    if differences:
        detail = "; ".join(difference.describe(names or {}) for difference in differences)
        raise ConfigError(f"{where}: holds a FractalDB render with other settings or seed ({detail}); "
                          f"delete it or choose another directory")
    check_disk_space(layout, root, where)


def _write_settings(root: Path, layout: StoreLayout) -> None:
    path = root / SETTINGS_FILE
    if not path.is_file():
        with atomic_write(path, "w") as stream:
            json.dump(json.loads(json.dumps(layout.settings_record())), stream, indent=2)


def check_disk_space(layout: StoreLayout, root: Path, where: str = "") -> None:
    """Raise :class:`ConfigError` naming ``root`` (or ``where``) when its filesystem cannot hold what the
    render still needs."""
    needed = remaining_disk_bytes(layout, root)
    free = free_disk_bytes(root)
    if needed > free:
        raise ConfigError(f"{where or root}: the FractalDB render needs {needed / 1e9:.1f} GB more disk, "
                          f"{free / 1e9:.1f} GB free there")


def render_to_disk(config: FractalDBConfig, seed: int, root: str | Path, shard_bytes: int = SHARD_BYTES,
                   search_save_every: int = SEARCH_SAVE_EVERY) -> dict:
    """Render the FractalDB of ``config`` and ``seed`` under ``root`` (see the module docstring), resuming
    a render that stopped; returns its index. The pixels are those of ``FractalDB(config, seed)``."""
    root = Path(root)
    index_path = root / INDEX_FILE
    layout = StoreLayout.for_config(config, seed, shard_bytes)
    check_store(layout, root)
    root.mkdir(parents=True, exist_ok=True)
    _write_settings(root, layout)
    if index_path.is_file():
        return read_index(root)
    search_seed, render_seeds = category_seeds(seed, config.num_categories)
    categories = search_categories_resumable(config, np.random.default_rng(search_seed), root / SEARCH_FILE,
                                             search_save_every)
    hashes = []
    for index, (category, render_seed) in enumerate(zip(categories, render_seeds, strict=True)):
        record_path = root / category_name(index) / CATEGORY_FILE
        if not record_path.is_file():
            write_category(root, index, category, layout, np.random.default_rng(render_seed))
        hashes.append(json.loads(record_path.read_text())["sha256"])
    index = {**layout.settings_record(), "num_categories": len(categories),
             "instances_per_category": config.instances_per_category, "image_shape": list(layout.image_shape),
             "category_sha256": hashes, "content_sha256": hashlib.sha256("".join(hashes).encode()).hexdigest()}
    with atomic_write(index_path, "w") as stream:
        json.dump(index, stream, indent=1)
    return read_index(root)


def read_index(root: str | Path) -> dict:
    """The index of a finished render; :class:`DataError` naming the file when it is missing or foreign."""
    path = Path(root) / INDEX_FILE
    if not path.is_file():
        raise DataError("no FractalDB render index: the render is missing or unfinished (render_to_disk resumes "
                        "it)", path)
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"unreadable FractalDB render index ({error})", path) from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(f"not a FractalDB render index of format {FORMAT}", path)
    return index


def config_from_record(record: dict) -> FractalDBConfig:
    """The generator settings of a settings record or index (JSON lists back to tuples)."""
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in record["config"].items()}
    return FractalDBConfig(**values)
