"""FractalDB streamed to disk: the same pixels as the in-memory FractalDB, resumable, bounded memory."""

import dataclasses
import hashlib
import json
import shutil
import tracemalloc

import numpy as np
import pytest

from image2point.errors import ConfigError, DataError
from image2point.pretrain2d import fractal_store
from image2point.pretrain2d.fractal_files import FractalDBFiles
from image2point.pretrain2d.fractal_store import (
    INDEX_FILE,
    SEARCH_FILE,
    StoreLayout,
    category_name,
    read_index,
    remaining_disk_bytes,
    render_to_disk,
    search_categories_resumable,
)
from image2point.pretrain2d.fractaldb import FractalDB, FractalDBConfig, search_categories

TINY = FractalDBConfig(num_categories=3, instances_per_category=6, image_size=32, search_size=128)
# Two 32 px images per shard: three shards per category, the last one shorter (6 = 2 + 2 + 2 is too even).
TINY_SHARD_BYTES = 2 * 32 * 32
SEVEN = FractalDBConfig(num_categories=3, instances_per_category=7, image_size=32, search_size=128)
# The small tables' and make demo's FractalDB (10 x 48 at 32 px, searched at 128), seed 0: the sha256 of its
# pixels as the in-memory renderer gave them before the streaming renderer shared its instance generator.
SMALL_SETUP_FRACTALS = FractalDBConfig(num_categories=10, instances_per_category=48, image_size=32, search_size=128)
SMALL_SETUP_SHA256 = "554a1420efd760de1bab8291d745d0c2c129bf516684f51561fde6ed8d9c3736"


def all_images(root) -> np.ndarray:
    files = FractalDBFiles(root)
    return np.stack([files.read_image(index) for index in range(len(files))])


def test_streamed_render_has_the_pixels_of_the_in_memory_fractaldb(tmp_path):
    index = render_to_disk(SEVEN, 0, tmp_path, shard_bytes=TINY_SHARD_BYTES)
    np.testing.assert_array_equal(all_images(tmp_path), FractalDB(SEVEN, seed=0).images)
    assert index["shard_instances"] == 2 and index["num_categories"] == 3 and index["image_shape"] == [32, 32]
    record = json.loads((tmp_path / category_name(2) / "category.json").read_text())
    assert record["shards"] == [2, 2, 2, 1]
    assert sorted(path.name for path in (tmp_path / "00002").iterdir()) == [
        "category.json", "shard-000.npy", "shard-001.npy", "shard-002.npy", "shard-003.npy"]
    assert index == read_index(tmp_path)
    assert index["content_sha256"] == hashlib.sha256("".join(index["category_sha256"]).encode()).hexdigest()
    # The disk estimate is what the render takes, give or take the allowance for block rounding.
    written = sum(path.stat().st_size for path in tmp_path.rglob("*") if path.is_file())
    layout = StoreLayout.for_config(SEVEN, 0, TINY_SHARD_BYTES)
    assert written <= layout.disk_bytes() < written + 40 * fractal_store.FILE_ALLOWANCE_BYTES
    assert remaining_disk_bytes(layout, tmp_path) == 0


def test_the_small_setup_fractaldb_keeps_its_pixels(tmp_path):
    in_memory = FractalDB(SMALL_SETUP_FRACTALS, seed=0).images
    assert hashlib.sha256(in_memory.tobytes()).hexdigest() == SMALL_SETUP_SHA256
    render_to_disk(SMALL_SETUP_FRACTALS, 0, tmp_path)
    assert hashlib.sha256(all_images(tmp_path).tobytes()).hexdigest() == SMALL_SETUP_SHA256


def test_other_seed_other_pixels(tmp_path):
    first = render_to_disk(TINY, 0, tmp_path / "a")
    assert render_to_disk(TINY, 1, tmp_path / "b")["content_sha256"] != first["content_sha256"]


def test_rerun_skips_finished_categories_and_redoes_the_interrupted_one(tmp_path):
    index = render_to_disk(SEVEN, 0, tmp_path, shard_bytes=TINY_SHARD_BYTES)
    kept = {path: path.stat().st_mtime_ns for path in (tmp_path / "00000").iterdir()}
    # An interruption during category 1: its directory is still a partial one, with a stray shard.
    (tmp_path / INDEX_FILE).unlink()
    shutil.rmtree(tmp_path / "00001")
    (tmp_path / "00001.partial").mkdir()
    (tmp_path / "00001.partial" / "shard-000.npy").write_bytes(b"half written")
    layout = StoreLayout.for_config(SEVEN, 0, TINY_SHARD_BYTES)
    assert remaining_disk_bytes(layout, tmp_path) == layout.disk_bytes() - 2 * layout.category_bytes()
    assert render_to_disk(SEVEN, 0, tmp_path, shard_bytes=TINY_SHARD_BYTES) == index
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "00000").iterdir()} == kept
    assert not (tmp_path / "00001.partial").exists()
    FractalDBFiles(tmp_path).verify()


def test_interrupted_search_resumes_to_the_same_categories(tmp_path):
    config = FractalDBConfig(num_categories=4, instances_per_category=2, image_size=32, search_size=64)
    state = tmp_path / SEARCH_FILE
    first = search_categories_resumable(config, np.random.default_rng(5), state, save_every=1, stop_after=2)
    assert len(first) == 2 and state.is_file()
    # A new process: a fresh generator of the same seed, which the saved state moves on.
    resumed = search_categories_resumable(config, np.random.default_rng(5), state, save_every=1)
    uninterrupted = search_categories(config, np.random.default_rng(5))
    assert len(resumed) == 4
    for found, expected in zip(resumed, uninterrupted, strict=True):
        np.testing.assert_array_equal(found.maps, expected.maps)
        np.testing.assert_array_equal(found.probs, expected.probs)
    state.write_bytes(b"not an npz")
    with pytest.raises(DataError, match="search state"):
        search_categories_resumable(config, np.random.default_rng(5), state)


def test_a_render_with_other_settings_is_refused(tmp_path):
    render_to_disk(TINY, 0, tmp_path)
    with pytest.raises(ConfigError, match=rf"{tmp_path}: holds a FractalDB render with other settings or seed "
                                          r"\(seed: 0 there, 1 asked\)"):
        render_to_disk(TINY, 1, tmp_path)
    with pytest.raises(ConfigError, match=r"\(image_size: 32 there, 16 asked; search_size: 128 there, 64 asked\)"):
        render_to_disk(dataclasses.replace(TINY, image_size=16, search_size=64), 0, tmp_path)


def test_too_little_disk_is_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(fractal_store, "free_disk_bytes", lambda path: 1000)
    root = tmp_path / "render"
    with pytest.raises(ConfigError, match=f"{root}: the FractalDB render needs 0.0 GB more disk, 0.0 GB free"):
        render_to_disk(TINY, 0, root)
    assert not root.exists()


def test_render_memory_is_bounded_by_a_shard(tmp_path):
    """Peak traced memory of the streaming render stays near one shard, far below the database (which the
    in-memory FractalDB holds at once): the bound fails if the renderer keeps the images it wrote."""
    config = FractalDBConfig(num_categories=6, instances_per_category=96, image_size=64, search_size=64)
    shard_bytes = 8 * 64 * 64
    database_bytes = 6 * 96 * 64 * 64
    # One shard (32 kB), and the chaos game's arrays (256 chains x 27 steps x 6 float64 parameters, 330 kB),
    # which do not grow with the database.
    bound = 1_000_000
    # A first render imports what writing needs (zipfile, for the search state), which is not the render's.
    render_to_disk(TINY, 0, tmp_path / "warm-up")
    tracemalloc.start()
    try:
        render_to_disk(config, 0, tmp_path / "streamed", shard_bytes=shard_bytes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < bound < database_bytes / 2
    assert len(FractalDBFiles(tmp_path / "streamed")) == 6 * 96
