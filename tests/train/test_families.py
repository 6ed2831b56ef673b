"""PointNet++ and the range-image HRNet / ESPNet-C through configs, the training loop and the CLI, like the voxel
models."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from image2point import cli
from image2point.checkpoint import load_checkpoint, save_checkpoint
from image2point.errors import CheckpointError, ConfigError
from image2point.models.pointnet2 import pixel_pretraining_network
from image2point.models2d import create_model_2d, read_state_dict
from image2point.pretrain2d.pixels_as_points import PixelsAsPoints
from image2point.train import loop
from image2point.train.builders import build_model
from image2point.train.config import load_config

POINTNET2_SHAPES = ["data.name=procedural_shapes", "data.train_samples=8", "data.eval_samples=4",
                    "data.num_points=1024", "data.batch_size=4", "data.num_workers=0", "model.family=pointnet2",
                    "model.backbone=pointnet2_ssg", "optim.name=adam", "optim.lr=0.001", "train.epochs=1"]
RANGE_SCENES = ["data.name=procedural_scenes", "data.train_samples=4", "data.eval_samples=2", "data.batch_size=2",
                "data.num_workers=0", "data.range_image.height=16", "data.range_image.width=128",
                "model.family=range", "model.backbone=hrnet_w18", "optim.lr=0.01", "train.epochs=1"]


def backbone_tensors(state: dict) -> dict[str, torch.Tensor]:
    return {key: value for key, value in state.items() if key.startswith("backbone.")}


@pytest.fixture(scope="module")
def pixel_pretrained_checkpoint(tmp_path_factory):
    """What `pretrain2d --arch pointnet2_ssg` writes: a PointNet++ image classifier under 'state_dict'."""
    torch.manual_seed(0)
    network = pixel_pretraining_network(num_classes=7)
    # Non-trivial BN statistics, so that a frozen copy is told apart from a fresh one.
    with torch.no_grad():
        network(torch.rand(2, 3, 8, 8))
    path = tmp_path_factory.mktemp("pixels") / "model.pt"
    save_checkpoint(path, {"state_dict": network.state_dict(), "architecture": "pointnet2_ssg", "num_classes": 7})
    return path


def test_pointnet2_trains_from_an_image_pretrained_backbone_with_the_backbone_frozen(tmp_path,
                                                                                       pixel_pretrained_checkpoint):
    run_dir = tmp_path / "run"
    config = load_config(None, [*POINTNET2_SHAPES, f"model.pretrained={pixel_pretrained_checkpoint}",
                                "finetune.scheme=io", f"train.run_dir={run_dir}"])
    result = loop.run_training(config, quiet=True)
    assert 0.0 <= result.final.overall_accuracy <= 1.0
    pretrained = load_checkpoint(pixel_pretrained_checkpoint)["state_dict"]
    prefix = PixelsAsPoints.STATE_PREFIX
    expected = {key.removeprefix(prefix): value for key, value in pretrained.items()
                if key.startswith(prefix + "backbone.")}
    trained = backbone_tensors(load_checkpoint(run_dir / "last.pt")["model"])
    assert trained.keys() == expected.keys()
    # Scheme io: weights and BN statistics of the backbone are exactly the pretrained ones.
    assert all(torch.equal(trained[key], expected[key]) for key in expected)
    conversion = (run_dir / "conversion.txt").read_text()
    assert "PointNet++ weight transfer" in conversion and "input layer re-initialised" in conversion
    assert json.loads((run_dir / "metrics.json").read_text())["family"] == "pointnet2"


def test_pointnet2_segments_scenes_on_drawn_points(tmp_path):
    config = load_config(None, ["data.name=procedural_scenes", "data.train_samples=4", "data.eval_samples=2",
                                "data.num_points=2048", "data.batch_size=2", "data.num_workers=0",
                                "model.family=pointnet2", "model.backbone=pointnet2_ssg", "train.epochs=1",
                                f"train.run_dir={tmp_path / 'run'}"])
    result = loop.run_training(config, quiet=True)
    assert result.task == "segmentation" and 0.0 <= result.final.miou <= 1.0


@pytest.mark.parametrize("scheme", ["io", "io_bn"])
def test_range_hrnet_trains_from_2d_weights_and_keeps_frozen_ones(tmp_path, scheme):
    torch.manual_seed(1)
    hrnet = create_model_2d("hrnet_w18")
    weights = tmp_path / "hrnet.pt"
    save_checkpoint(weights, hrnet.state_dict())
    run_dir = tmp_path / "run"
    config = load_config(None, [*RANGE_SCENES, f"model.pretrained={weights}", f"finetune.scheme={scheme}",
                                "model.knn_refine=true", f"train.run_dir={run_dir}"])
    result = loop.run_training(config, quiet=True)
    assert result.task == "segmentation" and 0.0 <= result.final.miou <= 1.0
    trained = backbone_tensors(load_checkpoint(run_dir / "last.pt")["model"])
    source = {f"backbone.{key}": value for key, value in hrnet.state_dict().items() if not key.startswith("last_layer.3")}
    assert trained.keys() == source.keys()
    convs = [key for key in source if key.endswith("conv1.weight")]
    bn_weights = [key for key in source if key.endswith("bn1.weight")]
    bn_means = [key for key in source if key.endswith("bn1.running_mean")]
    assert convs and bn_weights and bn_means
    assert all(torch.equal(trained[key], source[key]) for key in convs)
    if scheme == "io":
        assert all(torch.equal(trained[key], source[key]) for key in bn_weights + bn_means)
    else:
        assert not all(torch.equal(trained[key], source[key]) for key in bn_weights)
        assert not all(torch.equal(trained[key], source[key]) for key in bn_means)


SHARED_WEIGHTS = Path(__file__).resolve().parents[2].parent / "shared" / "weights"
ESPNET_CHECKPOINT = SHARED_WEIGHTS / "espnet_p2_q8_cityscapes_encoder.pth"


@pytest.mark.skipif(not ESPNET_CHECKPOINT.is_file(), reason=f"../shared lacks {ESPNET_CHECKPOINT.name}")
def test_range_espnet_uses_every_backbone_tensor_of_the_cityscapes_checkpoint():
    config = load_config(None, [*RANGE_SCENES, "model.backbone=espnet_c", f"model.pretrained={ESPNET_CHECKPOINT}"])
    built = build_model(config, 3, 5, "segmentation")
    report, backbone = built.pretrained, built.network.backbone.state_dict()
    # The file predates BatchNorm's batch counters: those keep their value; every other backbone key is loaded.
    assert sorted(report.loaded + report.defaulted) == sorted(backbone)
    assert all(key.endswith("num_batches_tracked") for key in report.defaulted)
    assert report.unexpected == ["classifier.conv.weight"] and not report.missing and not report.shape_mismatched
    assert "ignored, not in model (1): classifier.conv.weight" in report.summary()
    checkpoint = read_state_dict(ESPNET_CHECKPOINT)
    assert all(torch.equal(backbone[key], checkpoint[key]) for key in report.loaded)


def test_range_hrnet_reports_the_checkpoint_classifier_as_not_used(tmp_path):
    weights = tmp_path / "hrnet.pt"
    save_checkpoint(weights, create_model_2d("hrnet_w18").state_dict())
    config = load_config(None, [*RANGE_SCENES, f"model.pretrained={weights}"])
    report = build_model(config, 3, 5, "segmentation").pretrained
    assert report.unexpected == ["last_layer.3.weight", "last_layer.3.bias"] and not report.missing


FAMILY_RUNS = {"pointnet2": POINTNET2_SHAPES, "range": RANGE_SCENES}


# float32 on CUDA: tests/test_cuda_parity.py compares both families' forward and backward with the CPU's.
@pytest.mark.cuda
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
@pytest.mark.parametrize("family", sorted(FAMILY_RUNS))
def test_family_trains_on_cuda_in_mixed_precision(tmp_path, family, amp):
    run_dir = tmp_path / "run"
    config = load_config(None, [*FAMILY_RUNS[family], "train.device=cuda", f"train.amp={amp}",
                                f"train.run_dir={run_dir}"])
    result = loop.run_training(config, quiet=True)
    assert all(np.isfinite(result.epoch_losses))
    score = result.final.overall_accuracy if result.task == "classification" else result.final.miou
    assert 0.0 <= score <= 1.0
    state = load_checkpoint(run_dir / "last.pt")["model"]
    assert all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point())


@pytest.mark.parametrize("overrides, message", [
    (["model.family=range", "model.backbone=hrnet_w18"], "classification dataset"),
    (["data.name=procedural_scenes", "model.family=range", "model.backbone=resnet18"], "hrnet_w18"),
    (["model.family=pointnet2", "model.backbone=resnet18"], "pointnet2_ssg"),
    (["model.family=pointnet2", "model.backbone=pointnet2_ssg", "data.num_points=256"], "raise data.num_points"),
    (["model.family=pointnet2", "model.backbone=pointnet2_ssg", "finetune.scheme=t", "finetune.learnable_t=shared"],
     "scheme=t"),
])
def test_family_misconfigurations_are_refused_with_the_reason(overrides, message):
    config = load_config(None, overrides)
    task = "classification" if config.data.name == "procedural_shapes" else "segmentation"
    with pytest.raises(ConfigError, match=message):
        build_model(config, 3, 5, task)


def test_a_pointnet2_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    save_checkpoint(path, {"state_dict": {"backbone.levels.0.mlp.0.conv.weight": torch.zeros(3, 3)}})
    config = load_config(None, ["model.family=pointnet2", "model.backbone=pointnet2_ssg", f"model.pretrained={path}"])
    with pytest.raises(CheckpointError, match="other.pt"):
        build_model(config, 3, 5, "classification")


def write_image_folder(root, classes=3, per_class=6, size=8):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(classes):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            pixels[..., label] = 255
            Image.fromarray(pixels).save(folder / f"{index}.png")


def test_cli_pretrains_pointnet2_on_images_and_finetunes_it_on_shapes(tmp_path, capsys):
    write_image_folder(tmp_path / "images")
    pretrain_dir = tmp_path / "pretrain"
    assert cli.main(["pretrain2d", "--dataset", "imagefolder", "--root", str(tmp_path / "images"), "--arch",
                     "pointnet2_ssg", "--epochs", "1", "--batch-size", "6", "--lr", "0.01", "--image-size", "8",
                     "--run-dir", str(pretrain_dir)]) == 0
    assert "pointnet2_ssg on imagefolder" in capsys.readouterr().out
    checkpoint = load_checkpoint(pretrain_dir / "model.pt")
    assert checkpoint["architecture"] == "pointnet2_ssg"
    run_dir = tmp_path / "finetune"
    assert cli.main(["train", *POINTNET2_SHAPES, f"model.pretrained={pretrain_dir / 'model.pt'}",
                     "finetune.scheme=io_bn", f"train.run_dir={run_dir}", "--quiet"]) == 0
    assert (run_dir / "metrics.json").is_file()
    capsys.readouterr()
    assert cli.main(["eval", str(run_dir / "config.yaml"), str(run_dir / "last.pt"), "--out-dir",
                     str(tmp_path / "eval")]) == 0
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())["final"]["overall_accuracy"]
    assert evaluated == pytest.approx(json.loads((run_dir / "metrics.json").read_text())["final"]["overall_accuracy"])
    capsys.readouterr()
    assert cli.main(["predict", str(run_dir / "last.pt"), str(tmp_path / "images"), "--out-dir",
                     str(tmp_path / "predictions")]) == 2
    assert "predict runs voxel models" in capsys.readouterr().err
    assert not (tmp_path / "predictions").exists()


@pytest.mark.slow
def test_step_time_benchmark_times_every_family_against_the_voxel_baseline():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_families.py"
    spec = importlib.util.spec_from_file_location("bench_families", path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses resolve their module through sys.modules
    try:
        spec.loader.exec_module(bench)
        results = bench.run(quick=True)
    finally:
        del sys.modules[spec.name]
    assert {(r.task, r.model) for r in results} == {
        ("classification", name) for name in bench.CLASSIFICATION_MODELS} | {
        ("segmentation", name) for name in bench.SEGMENTATION_MODELS}
    for result in results:
        assert result.seconds_per_step > 0 and result.parameters > 0
        if result.model == bench.BASELINES[result.task]:
            assert result.ratio_to_voxel == 1.0
