"""Weight sources: shared CIFAR-10 files by glob, pretraining once, user-given weights, missing ones."""

import dataclasses
import json
from pathlib import Path

import pytest

from image2point.errors import ConfigError, DataError
from image2point.experiments.protocol import describe_pretraining
from image2point.experiments.sources import (
    SHARED_ENV,
    SOURCES,
    SourceContext,
    resolve_source,
    run_pretraining,
    shared_root,
)


def _context(shared: Path, out: Path, scale="small", weights=None) -> SourceContext:
    backbone = "cifar_resnet20" if scale == "small" else "resnet18"
    return SourceContext(scale, backbone, out, weights or {}, {}, shared)


def test_shared_root_rule(monkeypatch, tmp_path):
    monkeypatch.delenv(SHARED_ENV, raising=False)
    assert shared_root() == Path(__file__).resolve().parents[2].parent / "shared"
    monkeypatch.setenv(SHARED_ENV, str(tmp_path))
    assert shared_root() == tmp_path


def test_cifar10_weights_found_by_glob(fake_shared, tmp_path):
    context = _context(fake_shared, tmp_path / "out")
    found = resolve_source("cifar10", "cifar_resnet32", context).checkpoint
    assert found == fake_shared / "weights" / "resnet32-d509ac18.th"
    missing = resolve_source("cifar10", "resnet18", context)
    assert missing.checkpoint is None and "resnet18" in missing.missing


def test_missing_shared_weights_directory_names_the_path(tmp_path):
    context = _context(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(DataError, match="nowhere"):
        resolve_source("cifar10", "cifar_resnet20", context)


def test_user_sources_are_missing_unless_given(fake_shared, tmp_path):
    context = _context(fake_shared, tmp_path / "out")
    assert resolve_source("imagenet", "cifar_resnet20", context).missing == \
        "no imagenet weights given (--weights imagenet=PATH)"
    assert "--weights imagenet:hrnet_w18=PATH" in resolve_source("imagenet", "hrnet_w18", context).missing
    given = tmp_path / "r18.pth"
    weights = {"imagenet": given, "imagenet:resnet50": tmp_path / "r50"}
    context = _context(fake_shared, tmp_path / "out", "paper", weights)
    assert resolve_source("imagenet", "resnet18", context).checkpoint == given
    assert resolve_source("imagenet", "resnet50", context).checkpoint == tmp_path / "r50"
    assert resolve_source("imagenet", "resnet152", context).missing is not None


def test_random_has_no_checkpoint(fake_shared, tmp_path):
    resolution = resolve_source("random", "cifar_resnet20", _context(fake_shared, tmp_path / "out"))
    assert resolution.checkpoint is None and resolution.missing is None and resolution.pretraining is None


def test_pretrained_sources_pretrain_into_the_out_dir(fake_shared, tmp_path):
    context = _context(fake_shared, tmp_path / "out")
    resolution = resolve_source("tiny-imagenet", "cifar_resnet20", context)
    assert resolution.checkpoint == tmp_path / "out" / "pretrained" / "tiny-imagenet-cifar_resnet20" / "model.pt"
    assert resolution.pretraining.root == fake_shared / "data" / "tiny-imagenet-200"
    assert resolution.pretraining.settings.epochs == 30
    pixels = resolve_source("fractaldb", "pointnet2_ssg", context).pretraining
    assert pixels.settings.image_size == 16 and pixels.root is None
    context = _context(fake_shared, tmp_path, weights={"fractaldb": tmp_path})
    given = resolve_source("fractaldb", "cifar_resnet20", context)
    assert given.pretraining is None and given.checkpoint == tmp_path


def test_pretraining_runs_once_and_restarts_when_interrupted(fake_shared, tmp_path, monkeypatch):
    calls = []

    def fake_pretrain(pretraining):
        calls.append(pretraining.run_dir)
        pretraining.run_dir.mkdir(parents=True)
        pretraining.checkpoint.write_bytes(b"weights")
        (pretraining.run_dir / "metrics.json").write_text(json.dumps({"val_top1": 0.25}))
        return 0.25

    monkeypatch.setitem(SOURCES, "mnist", dataclasses.replace(SOURCES["mnist"], pretrain=fake_pretrain))
    pretraining = resolve_source("mnist", "cifar_resnet20", _context(fake_shared, tmp_path / "out")).pretraining
    pretraining.run_dir.mkdir(parents=True)
    (pretraining.run_dir / "model.pt").write_bytes(b"half written")
    assert run_pretraining(pretraining) == 0.25
    assert run_pretraining(pretraining) == 0.25
    assert calls == [pretraining.run_dir]


def test_unknown_source():
    with pytest.raises(ConfigError, match="known"):
        resolve_source("laion", "resnet18", SourceContext("small", "cifar_resnet20", Path("."), {}, {}, Path(".")))


def test_paper_scale_pretraining_needs_the_full_dataset(fake_shared, tmp_path):
    context = _context(fake_shared, tmp_path / "out", scale="paper")
    # The shared Tiny-ImageNet is a sample: at paper scale it never stands in for the full set.
    missing = resolve_source("tiny-imagenet", "resnet50", context)
    assert missing.pretraining is None and "--data-root tiny-imagenet=PATH" in missing.missing
    full = dataclasses.replace(context, data_roots={"tiny-imagenet": tmp_path})
    made = resolve_source("tiny-imagenet", "pointnet2_ssg", full)
    assert made.pretraining is not None and made.pretraining.root == tmp_path
    assert made.pretraining.settings.batch_size == 64 and made.pretraining.settings.epochs == 90
    assert "pretrained here on" in describe_pretraining(made.pretraining)


def test_paper_fractaldb_sources_at_the_generator_settings(fake_shared, tmp_path):
    context = _context(fake_shared, tmp_path / "out", scale="paper")
    for name, categories in (("fractaldb-1k", 1000), ("fractaldb-10k", 10000)):
        pretraining = resolve_source(name, "resnet50", context).pretraining
        settings = pretraining.settings
        assert (settings.fractal_categories, settings.fractal_instances, settings.image_size) == (categories, 1000, 362)
        assert (settings.fractal_search_size, settings.fractal_patch_size, settings.fractal_points) == (512, 3, 200_000)
        assert pretraining.run_dir == tmp_path / "out" / "pretrained" / f"{name}-resnet50"
        # Rendered to disk: the pixels, the .npy headers and block rounding of the shards (under 0.1 %).
        pixels = categories * 1000 * 362 * 362
        assert settings.fractal_on_disk and pixels < settings.fractal_bytes() < pixels * 1.001
        assert pretraining.render_dir == tmp_path / "out" / "fractaldb" / f"{name}-seed0"
    described = describe_pretraining(resolve_source("fractaldb-1k", "resnet50", context).pretraining)
    assert f"131.1 GB of disk in {tmp_path / 'out' / 'fractaldb' / 'fractaldb-1k-seed0'} (" in described
    assert "in memory" not in described
    # Small scale has no FractalDB-1k: it says so instead of shrinking it.
    small = resolve_source("fractaldb-1k", "cifar_resnet20", _context(fake_shared, tmp_path / "out"))
    assert "does not pretrain cifar_resnet20 at small scale" in small.missing
    for name in ("imagenet21k", "ade20k"):
        assert f"--weights {name}:resnet50=PATH" in resolve_source(name, "resnet50", context).missing
