"""Export to safetensors + config.yaml: round trip, tied weights, refusal of corrupt or mismatching files."""

import json
import struct

import numpy as np
import pytest
import torch
import yaml

from image2point.checkpoint import save_checkpoint
from image2point.cli import EXIT_BAD_INPUT, main
from image2point.data.procedural import ProceduralScenes
from image2point.errors import CheckpointError, ConfigError, DataError
from image2point.checkpoint.exported import export_paths, untie
from image2point.inference.export import export_checkpoint
from image2point.io import PointCloud, write_ply
from image2point.inference.model import load_exported, load_model, load_trained
from image2point.inference.predict import predict_cloud
from image2point.train.builders import build_model
from image2point.train.config import config_to_dict, load_config
from image2point.train.loop import run_training

SCENE_RUN = ["data.name=procedural_scenes", "data.voxel_size=0.25", "model.head=unet", "model.backbone=none",
             "data.num_workers=0", "data.train_samples=2", "data.eval_samples=1", "data.batch_size=2",
             "train.epochs=1", "train.threads=1", "model.linear_width=64"]
# A shared learnable T: one tensor under the name of every inflated conv.
TIED_MODEL = ["data.name=procedural_shapes", "model.backbone=cifar_resnet20", "finetune.learnable_t=shared",
              "finetune.scheme=t"]
SHARED_T = "backbone.layer1.0.conv1.transform.transform"
SHAPE_CLASSES = 12
SCENE_POINTS = 2000
SAFETENSORS_HEADER_BYTES = 8


@pytest.fixture(scope="module")
def scene_checkpoint(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("export_run") / "run"
    run_training(load_config(None, [*SCENE_RUN, f"train.run_dir={run_dir}"]), quiet=True)
    return run_dir / "last.pt"


@pytest.fixture
def tied_checkpoint(tmp_path):
    config = load_config(None, TIED_MODEL)
    network = build_model(config, 3, SHAPE_CLASSES, "classification").network
    with torch.no_grad():
        network.state_dict(keep_vars=True)[SHARED_T].add_(0.25)
    path = tmp_path / "tied.pt"
    save_checkpoint(path, {"model": network.state_dict(), "config": config_to_dict(config)})
    return path


def scene_cloud():
    sample = ProceduralScenes(1, "test", seed=4)[0]
    return PointCloud(sample.points[:SCENE_POINTS], {"rgb": sample.features[:SCENE_POINTS]})


def test_exported_model_predicts_exactly_as_the_checkpoint(scene_checkpoint, tmp_path):
    files = export_checkpoint(scene_checkpoint, tmp_path / "model")
    assert (files.weights.name, files.config.name) == ("model.safetensors", "model.config.yaml")
    original, exported = load_trained(scene_checkpoint), load_exported(files.weights)
    assert exported.class_names == original.class_names and exported.in_features == original.in_features
    assert load_config(files.config) == original.config
    cloud = scene_cloud()
    expected = predict_cloud(original, cloud, probabilities=True)
    actual = predict_cloud(exported, cloud, probabilities=True)
    np.testing.assert_array_equal(actual.labels, expected.labels)
    np.testing.assert_array_equal(actual.probabilities, expected.probabilities)
    assert load_model(tmp_path / "model.safetensors").source == files.weights
    assert load_model(scene_checkpoint).source == scene_checkpoint


def test_tied_tensors_are_stored_once_and_restored_under_every_name(tied_checkpoint, tmp_path):
    original = load_trained(tied_checkpoint)
    files = export_checkpoint(tied_checkpoint, tmp_path / "tied.safetensors")
    assert files.weights == tmp_path / "tied.safetensors"
    assert len(files.tied) == 17 and all(stored == files.tied[0][1] for _, stored in files.tied)
    state = original.network.state_dict()
    assert files.num_tensors == len(state) - len(files.tied)
    restored = load_exported(tmp_path / "tied").network.state_dict()
    for key, tensor in state.items():
        assert torch.equal(restored[key], tensor), key
    assert restored[files.tied[0][0]].sum() == pytest.approx(restored[files.tied[0][1]].sum())


def test_untie_keeps_views_of_different_parts_apart():
    weight = torch.arange(6.0)
    stored, tied = untie({"a": weight, "b": weight, "first": weight[:3], "last": weight[3:]})
    assert tied == (("b", "a"),)
    assert sorted(stored) == ["a", "first", "last"]
    assert torch.equal(stored["last"], torch.tensor([3.0, 4.0, 5.0]))
    assert stored["first"].untyped_storage().data_ptr() != weight.untyped_storage().data_ptr()


def test_export_paths_accept_the_name_with_or_without_suffix(tmp_path):
    assert export_paths(tmp_path / "m") == export_paths(tmp_path / "m.safetensors")
    assert export_paths("dir/m.v2")[1].name == "m.v2.config.yaml"


def _write_header(path, metadata, tensors):
    """A safetensors file by hand: 8-byte header length, JSON header, raw data."""
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name, tensor in tensors.items():
        data = tensor.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


@pytest.mark.parametrize("damage,expected", [
    ("truncate", "truncated or corrupt"),
    ("foreign", "not an image2point export"),
    ("no_config", "model.config.yaml: missing"),
    ("other_architecture", "weights do not fit"),
    ("bad_tied", "is not stored"),
])
def test_damaged_exports_are_refused(damage, expected, scene_checkpoint, tmp_path):
    files = export_checkpoint(scene_checkpoint, tmp_path / "model")
    if damage == "truncate":
        files.weights.write_bytes(files.weights.read_bytes()[:-100])
    elif damage == "foreign":
        _write_header(files.weights, {"producer": "someone else"}, {"w": torch.zeros(2)})
    elif damage == "no_config":
        files.config.unlink()
    elif damage == "other_architecture":
        config = yaml.safe_load(files.config.read_text())
        config["model"]["input_layer"] = "linear"
        files.config.write_text(yaml.safe_dump(config))
    else:
        from safetensors import safe_open
        from safetensors.torch import save_file

        with safe_open(str(files.weights), framework="pt") as handle:
            metadata = dict(handle.metadata())
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        metadata["tied"] = json.dumps({"alias": "nowhere"})
        save_file(tensors, str(files.weights), metadata=metadata)
    with pytest.raises(CheckpointError, match=expected):
        load_exported(files.weights)


def test_an_invalid_export_config_names_the_file(scene_checkpoint, tmp_path):
    files = export_checkpoint(scene_checkpoint, tmp_path / "model")
    files.config.write_text("model: {head: bogus}\n")
    with pytest.raises(ConfigError, match="model.config.yaml"):
        load_exported(files.weights)


def test_export_writes_nothing_for_a_bad_checkpoint_and_keeps_existing_files(scene_checkpoint, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        export_checkpoint(corrupt, tmp_path / "out" / "model")
    assert not (tmp_path / "out").exists()
    files = export_checkpoint(scene_checkpoint, tmp_path / "model")
    before = files.weights.read_bytes()
    with pytest.raises(DataError, match="pass --force"):
        export_checkpoint(scene_checkpoint, tmp_path / "model")
    assert files.weights.read_bytes() == before
    export_checkpoint(scene_checkpoint, tmp_path / "model", force=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["corrupt.pt", "model.config.yaml",
                                                                "model.safetensors"]


def test_cli_export_then_predict_with_the_export(scene_checkpoint, tmp_path, capsys):
    assert main(["export", str(scene_checkpoint), "--out", str(tmp_path / "model")]) == 0
    assert "model.safetensors" in capsys.readouterr().out
    cloud = scene_cloud()
    write_ply(tmp_path / "scene.ply", cloud.points, {"rgb": np.round(cloud.fields["rgb"] * 255).astype(np.uint8)})
    argv = ["predict", str(tmp_path / "model.safetensors"), str(tmp_path / "scene.ply"), "--out-dir",
            str(tmp_path / "out")]
    assert main(argv) == 0
    labels = np.load(tmp_path / "out" / "scene.labels.npy")
    assert labels.shape == (SCENE_POINTS,)
    assert main(["export", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.pt" in err
    assert not list(tmp_path.glob("x*"))


def test_export_made_before_the_shortcut_setting_loads_with_center_shortcuts(tied_checkpoint, tmp_path):
    from image2point.inflate.shortcuts import DEFAULT_STRIDED_SHORTCUT, StridedShortcut
    from image2point.sparse.modules import SparseSubsampleShortcut

    files = export_checkpoint(tied_checkpoint, tmp_path / "model")
    stored = yaml.safe_load(files.config.read_text())
    assert stored["model"]["shortcut"] == DEFAULT_STRIDED_SHORTCUT.value
    del stored["model"]["shortcut"]
    files.config.write_text(yaml.safe_dump(stored, sort_keys=False))
    model = load_exported(files.weights)
    assert model.config.model.shortcut is StridedShortcut.CENTER
    shortcuts = [m for m in model.network.modules() if isinstance(m, SparseSubsampleShortcut) and m.stride == 2]
    assert shortcuts and all(m.reduce is None for m in shortcuts)
