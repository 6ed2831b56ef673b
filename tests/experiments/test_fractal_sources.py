"""The FractalDB sources: rendered to disk at paper scale, the disk check before anything runs, pretraining
from a render on disk."""

import json

import pytest

from image2point.cli import main
from image2point.errors import ConfigError
from image2point.experiments.fractal_sources import check_fractaldb_disk, fractaldb_disk_needed
from image2point.experiments.sources import (
    PretrainSettings,
    Pretraining,
    SourceContext,
    resolve_source,
    run_pretraining,
)
from image2point.pretrain2d import fractal_store
from image2point.pretrain2d.fractal_files import FractalDBFiles
from image2point.pretrain2d.fractal_runs import generator_config


def _paper_pretraining(shared, out, name, arch):
    context = SourceContext("paper", "resnet50", out, {}, {}, shared)
    return resolve_source(name, arch, context).pretraining


def test_one_render_per_source_however_many_architectures(fake_shared, tmp_path, monkeypatch):
    out = tmp_path / "out"
    pretrainings = [_paper_pretraining(fake_shared, out, "fractaldb-1k", arch) for arch in ("resnet50", "resnet18")]
    needed = fractaldb_disk_needed(pretrainings)
    assert list(needed) == [out / "fractaldb" / "fractaldb-1k-seed0"]
    assert needed[out / "fractaldb" / "fractaldb-1k-seed0"] == pretrainings[0].settings.fractal_bytes()
    monkeypatch.setattr(fractal_store, "free_disk_bytes", lambda path: 200 * 10**9)
    check_fractaldb_disk(pretrainings, out)
    ten_k = _paper_pretraining(fake_shared, out, "fractaldb-10k", "resnet50")
    with pytest.raises(ConfigError, match=rf"^--out-dir {out}: the FractalDB renders \(fractaldb-1k-seed0, "
                                          r"fractaldb-10k-seed0\) need 1441.9 GB of disk, 200.0 GB free there$"):
        check_fractaldb_disk([*pretrainings, ten_k], out)


def test_the_experiment_refuses_an_out_dir_too_small_before_running(fake_shared, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fractal_store, "free_disk_bytes", lambda path: 10**9)
    out = tmp_path / "experiments"
    assert main(["experiment", "table4", "--scale", "paper", "--out-dir", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and f"--out-dir {out}: the FractalDB renders (fractaldb-1k-seed0" in lines[0]
    assert "1.0 GB free there" in lines[0] and "Traceback" not in captured.err
    assert not out.exists()
    # The dry run says what the renders take on disk.
    assert main(["experiment", "table4", "--scale", "paper", "--out-dir", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"131.1 GB of disk in {out / 'fractaldb' / 'fractaldb-1k-seed0'} (1.0 GB free there)" in printed
    assert "1310.8 GB of disk" in printed and "in memory" not in printed


def test_pretraining_from_a_render_on_disk(tmp_path):
    settings = PretrainSettings(epochs=1, batch_size=8, image_size=16, fractal_categories=2, fractal_instances=10,
                                fractal_search_size=64, fractal_on_disk=True)
    pretraining = Pretraining("fractaldb", "cifar_resnet20", tmp_path / "pretrained" / "fractaldb-cifar_resnet20",
                              None, settings)
    top1 = run_pretraining(pretraining)
    assert 0 <= top1 <= 1 and pretraining.finished
    assert json.loads((pretraining.run_dir / "metrics.json").read_text())["num_classes"] == 2
    render = FractalDBFiles(tmp_path / "fractaldb" / "fractaldb-seed0")
    assert len(render) == 20 and render.config == settings.fractal_config()


def test_the_command_line_reuses_the_experiments_fractaldb_1k_render(fake_shared, tmp_path, monkeypatch, capsys):
    """``image2point pretrain2d`` at the paper's generator settings asks for the settings of the experiment's
    fractaldb-1k render, so --store pointed at it reuses it; a single setting off is refused, by its option."""
    pretraining = _paper_pretraining(fake_shared, tmp_path / "out", "fractaldb-1k", "resnet50")
    experiment = fractal_store.StoreLayout.for_config(pretraining.settings.fractal_config(), pretraining.settings.seed)
    render_dir = pretraining.render_dir
    # What the experiment's render_to_disk writes first: the settings, which a rerun must match.
    render_dir.mkdir(parents=True)
    (render_dir / fractal_store.SETTINGS_FILE).write_text(json.dumps(experiment.settings_record()))
    command = fractal_store.StoreLayout.for_config(generator_config(1000, 1000, 362, 512, 3, 200_000), 0)
    assert fractal_store.settings_differences(render_dir, command) == []
    monkeypatch.setattr(fractal_store, "free_disk_bytes", lambda path: 10**9)
    assert main(["pretrain2d", "--categories", "1000", "--instances", "1000", "--image-size", "362",
                 "--search-size", "512", "--patch-size", "3", "--points", "100000", "--store", str(render_dir),
                 "--run-dir", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "--points (points_per_pixel): 1.526" in error and "there, 0.763" in error and "asked" in error
    assert not (tmp_path / "run").exists()
