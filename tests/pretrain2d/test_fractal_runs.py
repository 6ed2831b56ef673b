"""``image2point pretrain2d --dataset fractaldb``: in memory, or through a store on disk that is rendered once,
resumed after a kill, reused, refused when made with other settings or when the disk is too small."""

import json

import pytest
import torch
import yaml

from image2point.cli import main
from image2point.cli_contract import EXIT_BAD_INPUT, EXIT_INTERRUPTED
from image2point.pretrain2d import fractal_store, train2d
from image2point.pretrain2d.fractal_files import FractalDBFiles
from image2point.pretrain2d.fractal_runs import generator_config
from image2point.pretrain2d.fractal_store import INDEX_FILE, read_index, render_to_disk

# Three categories of six 16 px images, searched at 64 px: a store made in about a second.
GENERATOR = ["--categories", "3", "--instances", "6", "--image-size", "16", "--search-size", "64"]
TRAINING = ["--epochs", "1", "--batch-size", "8", "--arch", "cifar_resnet20"]


def pretrain(run_dir, *options):
    return main(["pretrain2d", *GENERATOR, *TRAINING, "--run-dir", str(run_dir), *options])


@pytest.fixture
def renders(monkeypatch):
    """The categories the store writer renders, in order, counted across command invocations."""
    rendered = []
    write_category = fractal_store.write_category

    def counting(root, index, *args):
        rendered.append(index)
        write_category(root, index, *args)

    monkeypatch.setattr(fractal_store, "write_category", counting)
    return rendered


def files_and_times(root):
    return {path: path.stat().st_mtime_ns for path in root.rglob("*")}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_store_is_rendered_once_then_reused(tmp_path, renders, capsys):
    store = tmp_path / "store"
    assert pretrain(tmp_path / "first", "--store", str(store)) == 0
    assert renders == [0, 1, 2]
    sha256 = read_index(store)["content_sha256"]
    assert sha256 in capsys.readouterr().out
    config = yaml.safe_load((tmp_path / "first" / "config.yaml").read_text())
    assert config["store"] == str(store) and config["val_fraction"] == 0.2
    assert config["fractaldb_store"] == {"path": str(store.resolve()), "content_sha256": sha256, "num_images": 18,
                                         "shard_instances": 6, "format": fractal_store.FORMAT}
    assert config["fractaldb"]["num_categories"] == 3 and config["fractaldb"]["search_size"] == 64
    before = files_and_times(store)
    assert pretrain(tmp_path / "second", "--store", str(store)) == 0
    assert renders == [0, 1, 2], "a finished store is read, not rendered again"
    assert files_and_times(store) == before
    metrics = json.loads((tmp_path / "second" / "metrics.json").read_text())
    assert metrics["fractaldb_store"]["content_sha256"] == sha256 and metrics["num_classes"] == 3


def test_a_killed_render_resumes_where_it_stopped(tmp_path, renders, monkeypatch, capsys):
    store = tmp_path / "store"
    write_category = fractal_store.write_category

    def killed_at_the_second_category(root, index, *args):
        if index == 1:
            raise KeyboardInterrupt
        write_category(root, index, *args)

    monkeypatch.setattr(fractal_store, "write_category", killed_at_the_second_category)
    assert pretrain(tmp_path / "run", "--store", str(store)) == EXIT_INTERRUPTED
    assert "interrupted" in capsys.readouterr().err
    assert (store / "00000").is_dir() and not (store / INDEX_FILE).exists()
    assert not (tmp_path / "run").exists(), "the run directory is made once the store is complete"
    monkeypatch.setattr(fractal_store, "write_category", write_category)
    first_category = files_and_times(store / "00000")
    renders.clear()
    assert pretrain(tmp_path / "run", "--store", str(store)) == 0
    assert renders == [1, 2]
    assert files_and_times(store / "00000") == first_category
    uninterrupted = render_to_disk(generator_config(3, 6, 16, 64), 0, tmp_path / "uninterrupted")
    assert read_index(store)["content_sha256"] == uninterrupted["content_sha256"]


def test_a_store_of_other_settings_is_refused_and_nothing_written(tmp_path, capsys):
    store = tmp_path / "store"
    render_to_disk(generator_config(3, 6, 16, 64), 0, store)
    before = files_and_times(tmp_path)
    assert main(["pretrain2d", "--categories", "4", "--instances", "6", "--image-size", "16", "--search-size", "64",
                 "--seed", "1", "--run-dir", str(tmp_path / "run"), "--store", str(store)]) == EXIT_BAD_INPUT
    error = one_line_error(capsys)
    assert f"--store {store}: holds a FractalDB render with other settings or seed" in error
    assert "--seed (seed): 0 there, 1 asked" in error and "--categories (num_categories): 3 there, 4 asked" in error
    assert files_and_times(tmp_path) == before


def test_too_little_disk_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fractal_store, "free_disk_bytes", lambda path: 1000)
    store = tmp_path / "store"
    assert pretrain(tmp_path / "run", "--store", str(store)) == EXIT_BAD_INPUT
    assert f"--store {store}: the FractalDB render needs 0.0 GB more disk, 0.0 GB free there" in one_line_error(capsys)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("store,extra,expected", [
    ("run/store", [], "must lie apart from --run-dir"),
    ("run", [], "must lie apart from --run-dir"),
    ("other", [], "holds files but no FractalDB render (settings.json missing)"),
    ("store", ["--dataset", "mnist", "--root", "mnist"], "--store: only --dataset fractaldb renders a store"),
])
def test_a_store_that_cannot_be_is_refused(tmp_path, store, extra, expected, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a render")
    before = files_and_times(tmp_path)
    assert pretrain("run", "--store", store, *extra) == EXIT_BAD_INPUT
    assert expected in one_line_error(capsys)
    assert files_and_times(tmp_path) == before


def test_pretraining_reads_the_store_per_image(tmp_path, monkeypatch):
    reads = []
    read_image = FractalDBFiles.read_image

    def counting(self, index):
        reads.append(index)
        return read_image(self, index)

    def no_images_in_memory(*args, **kwargs):
        raise AssertionError("the in-memory FractalDB was built")

    monkeypatch.setattr(FractalDBFiles, "read_image", counting)
    monkeypatch.setattr(train2d, "FractalDB", no_images_in_memory)
    assert pretrain(tmp_path / "run", "--store", str(tmp_path / "store")) == 0
    assert reads and set(reads) <= set(range(18))
    checkpoint = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert checkpoint["num_classes"] == 3 and checkpoint["architecture"] == "cifar_resnet20"


def test_without_a_store_the_images_stay_in_memory(tmp_path, renders):
    assert pretrain(tmp_path / "run") == 0
    assert renders == [] and sorted(path.name for path in tmp_path.iterdir()) == ["run"]
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["fractaldb_store"] is None
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["num_classes"] == 3
