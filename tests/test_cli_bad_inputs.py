"""Bad input through the command line: every case ends with exit 2, one line naming the file (or the
option) and the problem, no traceback, and nothing written anywhere.

Each case writes its inputs into a fresh directory, which is then listed with a hash of every file;
after the command the listing must be the same, so no output, partial file or staging file was
left behind and no existing file was touched. Inputs that are unusual but valid (coordinates near
1e7, a LAS file with an odd scale and offset) must succeed instead; they are tested at the end.
The model is test_predict's tiny scene segmenter, trained once for this module on its scenes.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_predict import SCENE_POINTS, SCENE_RUN, small_scene, train

from image2point.checkpoint import load_checkpoint, save_checkpoint
from image2point.cli import EXIT_BAD_INPUT, main
from image2point.inference.export import export_checkpoint
from image2point.io import write_ply
from image2point.models2d import create_model_2d
from image2point.train.builders import build_model
from image2point.train.config import load_config

SCENE_FEATURES = 6  # x, y, z and the scene's colours
SCENE_CLASSES = 5
KITTI_RECORD_BYTES = 16
TRUNCATED_TAIL_BYTES = 7
GEOREFERENCED_SHIFT = np.array([9_999_000.0, 9_999_500.0, 50.0])
ODD_LAS_SCALES = np.array([0.0025, 0.5, 1e-5])
ODD_LAS_OFFSETS = np.array([-123_456.789, 7_654_321.0, -0.125])
MARKER = "marker"


@dataclass(frozen=True)
class Expected:
    """A command line and what its one line of error must say: who is at fault and what is wrong."""

    argv: list[str]
    offender: str  # a path, option or key, given verbatim
    problem: str  # a regular expression


@dataclass(frozen=True)
class Inputs:
    """Where a case writes its files, and the trained checkpoint it may start from."""

    root: Path
    checkpoint: Path

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def out_dir(self) -> Path:
        return self.root / "out"

    def predict(self, *inputs: str | Path, extra: tuple[str, ...] = (), checkpoint: Path | None = None) -> list[str]:
        return ["predict", str(checkpoint or self.checkpoint), *map(str, inputs), "--out-dir", str(self.out_dir),
                *extra]

    def scene_ply(self, name: str = "scene.ply", **fields: np.ndarray) -> Path:
        points, colours, _ = small_scene()
        path = self.path(name)
        write_ply(path, points, {"rgb": colours, **fields})
        return path


Case = Callable[[Inputs], Expected]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    """Registers a case under ``name``, its test id."""

    def register(function: Case) -> Case:
        if name in CASES:
            raise ValueError(f"two cases are named {name!r}")
        CASES[name] = function
        return function

    return register


class _RunsShellCommand:
    """Pickles to a call of os.system: unpickling it without weights_only would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------------------------------------------
# Files that cannot be read.


def _empty_file(suffix: str) -> Case:
    def make(inputs: Inputs) -> Expected:
        path = inputs.path(f"empty{suffix}")
        path.write_bytes(b"")
        return Expected(inputs.predict(path), str(path), r"empty file \(0 bytes\)")

    return make


for _suffix in (".ply", ".las", ".pcd", ".bin", ".npy", ".txt", ".h5"):
    case(f"predict-empty{_suffix}")(_empty_file(_suffix))


@case("predict-truncated-kitti-bin")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("000000.bin")
    path.write_bytes(np.ones((10, 4), "<f4").tobytes() + bytes(TRUNCATED_TAIL_BYTES))
    size = 10 * KITTI_RECORD_BYTES + TRUNCATED_TAIL_BYTES
    return Expected(inputs.predict(path), str(path), f"size {size} bytes is not a multiple of the 16-byte record")


@case("predict-txt-ragged-columns")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("ragged.txt")
    path.write_text("0 0 0 10 20 30\n1 1 1 10 20 30\n2 2 2 10 20\n")
    return Expected(inputs.predict(path), str(path), "line 3: wrong column count: 5 values where line 1 has 6")


@case("predict-txt-two-columns")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("flat.txt")
    path.write_text("0 0\n1 1\n2 2\n")
    return Expected(inputs.predict(path), str(path), "wrong column count: 2 columns; at least 3")


@case("predict-nan-coordinates")
def _(inputs: Inputs) -> Expected:
    points, colours, _ = small_scene()
    points[[5, 9], 1] = np.nan
    path = inputs.path("nan.npy")
    np.save(path, np.concatenate([points, colours], axis=1))
    return Expected(inputs.predict(path, extra=("--fields", "x,y,z,red,green,blue")), str(path),
                    r"non-finite coordinates: 2 NaN and 0 Inf values in 2 points \(first at point 5\)")


@case("predict-inf-coordinates")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("inf.txt")
    path.write_text("0 0 0 1 2 3\n1 inf 1 1 2 3\n2 2 -inf 1 2 3\n")
    return Expected(inputs.predict(path), str(path), "non-finite coordinates: 0 NaN and 2 Inf")


@case("predict-identical-points")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("same.ply")
    write_ply(path, np.full((50, 3), 2.5), {"rgb": np.full((50, 3), 100, np.uint8)})
    return Expected(inputs.predict(path), str(path), "degenerate cloud: all 50 points are identical")


@case("predict-ply-without-x")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("no_x.ply")
    path.write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float y\nproperty float z\nend_header\n"
                    "1 2\n3 4\n")
    return Expected(inputs.predict(path), str(path), "no 'x' vertex property; the file has y, z")


@case("predict-ply-list-properties-only")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("lists.ply")
    path.write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty list uchar float position\nend_header\n"
                    "3 0 0 0\n3 1 1 1\n")
    return Expected(inputs.predict(path), str(path), "vertex property 'position' is a list")


@case("predict-npy-wrong-ndim")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("batch.npy")
    np.save(path, np.zeros((2, 100, 6)))
    return Expected(inputs.predict(path), str(path), "wrong rank: .*looks like a batch of several clouds")


@case("predict-npy-object-pickle")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("pickled.npy")
    payload = np.empty(1, dtype=object)
    payload[0] = _RunsShellCommand(inputs.path(MARKER))
    np.save(path, payload, allow_pickle=True)
    return Expected(inputs.predict(path), str(path), "not a readable .npy file")


@case("predict-pcd-unsupported-data")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("compressed.pcd")
    path.write_text("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\n"
                    "POINTS 2\nDATA binary_compressed\n")
    return Expected(inputs.predict(path), str(path), "DATA binary_compressed .*not supported")


@case("predict-pcd-header-disagrees-with-data")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("short.pcd")
    header = ("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 5\nHEIGHT 1\n"
              "POINTS 5\nDATA binary\n")
    path.write_bytes(header.encode() + np.ones((3, 3), "<f4").tobytes())
    return Expected(inputs.predict(path), str(path), "data size mismatch: the header declares 5 points")


@case("predict-h5-without-point-dataset")
def _(inputs: Inputs) -> Expected:
    h5py = pytest.importorskip("h5py")
    path = inputs.path("normals.h5")
    with h5py.File(path, "w") as file:
        file["normals"] = np.zeros((10, 3))
    return Expected(inputs.predict(path), str(path), "no point dataset: expected one of points, xyz, data")


# ---------------------------------------------------------------------------------------------------
# Inputs that do not fit each other or the model.


@case("predict-label-count-mismatch")
def _(inputs: Inputs) -> Expected:
    scene = inputs.scene_ply()
    labels = inputs.path("truth.txt")
    labels.write_text("0\n" * (SCENE_POINTS - 1))
    return Expected(inputs.predict(scene, extra=("--labels", str(labels))), str(labels),
                    f"label count mismatch: {SCENE_POINTS - 1} labels for the {SCENE_POINTS} points of")


@case("predict-unknown-class-id")
def _(inputs: Inputs) -> Expected:
    labels = np.zeros(SCENE_POINTS, dtype=np.int32)
    labels[7] = SCENE_CLASSES + 4
    scene = inputs.scene_ply(labels=labels)
    return Expected(inputs.predict(scene), str(scene), f"label {SCENE_CLASSES + 4} is not a class of this model")


@case("predict-directory-without-clouds")
def _(inputs: Inputs) -> Expected:
    folder = inputs.path("notes")
    folder.mkdir()
    (folder / "readme.md").write_text("no clouds here")
    return Expected(inputs.predict(folder), str(folder), "no point cloud file in this directory")


@case("predict-glob-matching-nothing")
def _(inputs: Inputs) -> Expected:
    pattern = str(inputs.path("scans") / "*.bin")
    return Expected(inputs.predict(pattern), pattern, "glob pattern matches nothing")


@case("predict-nonexistent-input")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("absent.ply")
    return Expected(inputs.predict(path), str(path), "no such file or directory")


@case("predict-fields-names-a-missing-field")
def _(inputs: Inputs) -> Expected:
    scene = inputs.scene_ply()
    return Expected(inputs.predict(scene, extra=("--fields", "x,y,z,rgb,reflectance")), str(scene),
                    "no field 'reflectance'; available: x, y, z, rgb")


@case("predict-fields-wrong-count")
def _(inputs: Inputs) -> Expected:
    points, colours, _ = small_scene()
    path = inputs.path("plain.npy")
    np.save(path, np.concatenate([points, colours], axis=1))
    return Expected(inputs.predict(path, extra=("--fields", "x,y,z,red")), str(path),
                    r"wrong column count: 6 columns but fields names 4 \(x, y, z, red\)")


@case("predict-features-the-model-lacks")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("xyz_only.ply")
    points, _, _ = small_scene()
    write_ply(path, points)
    return Expected(inputs.predict(path), str(path), "the model reads 3 feature channel.* but the cloud has no 'rgb'")


def _bad_option(flag: str, value: str, offender: str, problem: str) -> Case:
    def make(inputs: Inputs) -> Expected:
        return Expected(inputs.predict(inputs.scene_ply(), extra=(flag, value)), offender, problem)

    return make


# (case, option, value, who the error names, what it says) for a good scene with one bad option.
_BAD_PREDICT_OPTIONS = (
    ("predict-voxel-size-zero", "--voxel-size", "0", "--voxel-size", "must be positive, got 0"),
    ("predict-voxel-size-negative", "--voxel-size", "-0.5", "--voxel-size", "must be positive, got -0.5"),
    ("predict-chunk-points-zero", "--chunk-points", "0", "--chunk-points", "must be positive, got 0"),
    ("predict-overlap-negative", "--overlap-voxels", "-1", "--overlap-voxels", "must be at least 0, got -1"),
    ("predict-voxel-size-nan", "--voxel-size", "nan", "voxel_size", "must be a positive finite number, got nan"),
    ("predict-unknown-device", "--device", "bogus", "'bogus'", "not a torch device"),
)
for _name, *_option in _BAD_PREDICT_OPTIONS:
    case(_name)(_bad_option(*_option))


@case("predict-onto-existing-outputs")
def _(inputs: Inputs) -> Expected:
    scene = inputs.scene_ply()
    inputs.out_dir.mkdir()
    existing = inputs.out_dir / "scene.labels.npy"
    existing.write_bytes(b"an earlier prediction")
    return Expected(inputs.predict(scene), str(existing), "exists; pass --force to replace it")


@case("predict-fields-repeated")
def _(inputs: Inputs) -> Expected:
    scene = inputs.scene_ply()
    return Expected(inputs.predict(scene, extra=("--fields", "x,y,z,rgb,rgb")), str(scene),
                    "fields names rgb more than once")


@case("predict-labels-of-unknown-format")
def _(inputs: Inputs) -> Expected:
    labels = inputs.path("truth.csv")
    labels.write_text("0\n" * SCENE_POINTS)
    return Expected(inputs.predict(inputs.scene_ply(), extra=("--labels", str(labels))), str(labels),
                    r"unsupported label extension '\.csv'")


@case("predict-out-dir-is-a-file")
def _(inputs: Inputs) -> Expected:
    scene = inputs.scene_ply()
    inputs.out_dir.write_text("a file where the output directory should go")
    return Expected(inputs.predict(scene), str(inputs.out_dir), "is a file")


@case("predict-out-dir-below-a-file")
def _(inputs: Inputs) -> Expected:
    scene = inputs.scene_ply()
    blocker = inputs.path("results")
    blocker.write_text("a file where a directory should go")
    argv = ["predict", str(inputs.checkpoint), str(scene), "--out-dir", str(blocker / "run1")]
    return Expected(argv, str(blocker), "is a file, so the output directory .*run1 cannot be created")


@case("predict-force-onto-a-directory")
def _(inputs: Inputs) -> Expected:
    first, second = inputs.scene_ply("first.ply"), inputs.scene_ply("second.ply")
    in_the_way = inputs.out_dir / "second.png"
    in_the_way.mkdir(parents=True)
    return Expected(inputs.predict(first, second, extra=("--force",)), str(in_the_way),
                    "cannot write: it is a directory")


# ---------------------------------------------------------------------------------------------------
# Checkpoints.


def _checkpoint_variant(inputs: Inputs, name: str, change: Callable[[dict], dict]) -> Path:
    path = inputs.path(name)
    save_checkpoint(path, change(load_checkpoint(inputs.checkpoint)))
    return path


def _other_backbone(state: dict) -> dict:
    config = load_config(None, [*SCENE_RUN, "model.backbone=cifar_resnet20"])
    state["model"] = build_model(config, SCENE_FEATURES, SCENE_CLASSES, "segmentation").network.state_dict()
    return state


def _fewer_classes(state: dict) -> dict:
    for key in ("head.classifier.weight", "head.classifier.bias"):
        state["model"][key] = state["model"][key][:SCENE_CLASSES - 2]
    return state


@case("predict-checkpoint-of-another-backbone")
def _(inputs: Inputs) -> Expected:
    path = _checkpoint_variant(inputs, "resnet20.pt", _other_backbone)
    return Expected(inputs.predict(inputs.scene_ply(), checkpoint=path), str(path),
                    "weights do not fit the network its config builds")


@case("predict-checkpoint-with-other-class-count")
def _(inputs: Inputs) -> Expected:
    path = _checkpoint_variant(inputs, "three_classes.pt", _fewer_classes)
    return Expected(inputs.predict(inputs.scene_ply(), checkpoint=path), str(path),
                    r"'head.classifier.weight' has shape \[3, 64\] in the file but \[5, 64\] in the network")


@case("predict-checkpoint-random-bytes")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("random.pt")
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return Expected(inputs.predict(inputs.scene_ply(), checkpoint=path), str(path), "unreadable .truncated or corrupt")


@case("predict-checkpoint-truncated")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("half.pt")
    data = inputs.checkpoint.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return Expected(inputs.predict(inputs.scene_ply(), checkpoint=path), str(path), "unreadable .truncated or corrupt")


@case("predict-checkpoint-that-runs-code")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("evil.pt")
    torch.save({"model": _RunsShellCommand(inputs.path(MARKER)), "config": {}}, path)
    return Expected(inputs.predict(inputs.scene_ply(), checkpoint=path), str(path),
                    "refused to load: it holds objects other than tensors")


@case("predict-checkpoint-without-config")
def _(inputs: Inputs) -> Expected:
    path = _checkpoint_variant(inputs, "no_config.pt", lambda state: {"model": state["model"]})
    return Expected(inputs.predict(inputs.scene_ply(), checkpoint=path), str(path),
                    "not a training checkpoint .no 'config' entry")


# ---------------------------------------------------------------------------------------------------
# visualize, export, eval, train, inflate.


def _visualize(inputs: Inputs, cloud: Path, *extra: str) -> list[str]:
    return ["visualize", str(cloud), "--out", str(inputs.path("picture.png")), *extra]


@case("visualize-pred-of-another-length")
def _(inputs: Inputs) -> Expected:
    scene = inputs.scene_ply()
    pred = inputs.path("pred.npy")
    np.save(pred, np.zeros(SCENE_POINTS + 3, dtype=np.int64))
    return Expected(_visualize(inputs, scene, "--pred", str(pred)), "--pred",
                    f"{SCENE_POINTS + 3} labels for the {SCENE_POINTS} points of {re.escape(str(scene))}")


@case("visualize-empty-file")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("empty.ply")
    path.write_bytes(b"")
    return Expected(_visualize(inputs, path), str(path), r"empty file \(0 bytes\)")


@case("visualize-missing-pred")
def _(inputs: Inputs) -> Expected:
    pred = inputs.path("absent.npy")
    return Expected(_visualize(inputs, inputs.scene_ply(), "--pred", str(pred)), str(pred), "file not found")


@case("visualize-pred-of-floats")
def _(inputs: Inputs) -> Expected:
    pred = inputs.path("scores.npy")
    np.save(pred, np.full(SCENE_POINTS, 0.5))
    return Expected(_visualize(inputs, inputs.scene_ply(), "--pred", str(pred)), str(pred),
                    "labels of dtype float64; integers expected")


@case("visualize-onto-existing-picture")
def _(inputs: Inputs) -> Expected:
    picture = inputs.path("picture.png")
    picture.write_bytes(b"an earlier picture")
    return Expected(_visualize(inputs, inputs.scene_ply()), str(picture), "exists; pass --force to replace it")


@case("visualize-out-below-a-file")
def _(inputs: Inputs) -> Expected:
    blocker = inputs.path("pictures")
    blocker.write_text("a file where a directory should go")
    argv = ["visualize", str(inputs.scene_ply()), "--out", str(blocker / "scene.png")]
    return Expected(argv, str(blocker), "File exists")


@case("export-out-below-a-file")
def _(inputs: Inputs) -> Expected:
    blocker = inputs.path("exports")
    blocker.write_text("a file where a directory should go")
    return Expected(["export", str(inputs.checkpoint), "--out", str(blocker / "model")], str(blocker), "is a file")


@case("export-onto-existing-file")
def _(inputs: Inputs) -> Expected:
    weights = inputs.path("model.safetensors")
    weights.write_bytes(b"an earlier export")
    return Expected(["export", str(inputs.checkpoint), "--out", str(inputs.path("model"))], str(weights),
                    "exists; pass --force to replace it")


@case("export-force-onto-a-directory")
def _(inputs: Inputs) -> Expected:
    in_the_way = inputs.path("model.config.yaml")
    in_the_way.mkdir()
    return Expected(["export", str(inputs.checkpoint), "--out", str(inputs.path("model")), "--force"],
                    str(in_the_way), "cannot write: it is a directory")


def _export(inputs: Inputs) -> tuple[Path, Path]:
    """An export of the checkpoint: (NAME.safetensors, NAME.config.yaml)."""
    files = export_checkpoint(inputs.checkpoint, inputs.path("exported"))
    return files.weights, files.config


@case("predict-export-without-its-config")
def _(inputs: Inputs) -> Expected:
    weights, config = _export(inputs)
    config.unlink()
    return Expected(inputs.predict(inputs.scene_ply(), checkpoint=weights), str(config),
                    "missing; an export is NAME.safetensors plus NAME.config.yaml")


@case("predict-export-truncated")
def _(inputs: Inputs) -> Expected:
    weights, _ = _export(inputs)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return Expected(inputs.predict(inputs.scene_ply(), checkpoint=weights), str(weights),
                    "unreadable .truncated or corrupt safetensors")


@case("export-checkpoint-without-config")
def _(inputs: Inputs) -> Expected:
    path = _checkpoint_variant(inputs, "no_config.pt", lambda state: {"model": state["model"]})
    return Expected(["export", str(path), "--out", str(inputs.path("model"))], str(path),
                    "not a training checkpoint .no 'config' entry")


@case("export-truncated-checkpoint")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("half.pt")
    data = inputs.checkpoint.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return Expected(["export", str(path), "--out", str(inputs.path("model"))], str(path),
                    "unreadable .truncated or corrupt")


def _config_file(inputs: Inputs, text: str) -> Path:
    path = inputs.path("config.yaml")
    path.write_text(text)
    return path


def _eval(inputs: Inputs, config: Path | str, checkpoint: Path | str, *overrides: str) -> list[str]:
    return ["eval", str(config), str(checkpoint), *SCENE_RUN, *overrides, "--out-dir", str(inputs.path("eval"))]


@case("eval-unreadable-config")
def _(inputs: Inputs) -> Expected:
    config = _config_file(inputs, "data: {name: procedural_scenes\nmodel: [\n")
    return Expected(_eval(inputs, config, inputs.checkpoint), str(config), "invalid YAML")


@case("eval-unknown-config-key")
def _(inputs: Inputs) -> Expected:
    config = _config_file(inputs, yaml.safe_dump({"data": {"name": "procedural_scenes"}}))
    return Expected(_eval(inputs, config, inputs.checkpoint, "model.haed=unet"), "model.haed",
                    "did you mean 'model.head'")


@case("eval-corrupt-checkpoint")
def _(inputs: Inputs) -> Expected:
    config = _config_file(inputs, yaml.safe_dump({"data": {"name": "procedural_scenes"}}))
    path = inputs.path("random.pt")
    path.write_bytes(bytes(range(256)) * 8)
    return Expected(_eval(inputs, config, path), str(path), "unreadable .truncated or corrupt")


@case("eval-checkpoint-of-another-backbone")
def _(inputs: Inputs) -> Expected:
    config = _config_file(inputs, yaml.safe_dump({"data": {"name": "procedural_scenes"}}))
    path = _checkpoint_variant(inputs, "resnet20.pt", _other_backbone)
    return Expected(_eval(inputs, config, path), str(path),
                    r"does not fit this config's network \((Missing|Unexpected) key\(s\)|size mismatch")


@case("eval-out-dir-is-a-file")
def _(inputs: Inputs) -> Expected:
    config = _config_file(inputs, yaml.safe_dump({"data": {"name": "procedural_scenes"}}))
    blocker = inputs.path("eval")
    blocker.write_text("a file where the output directory should go")
    return Expected(_eval(inputs, config, inputs.checkpoint), str(blocker), "File exists")


def _train(inputs: Inputs, *words: str) -> list[str]:
    return ["train", *words, *SCENE_RUN, f"train.run_dir={inputs.path('run')}"]


@case("train-unreadable-config")
def _(inputs: Inputs) -> Expected:
    config = _config_file(inputs, "optim:\n  lr: 0.1\n lr: 0.2\n\t- x\n")
    return Expected(_train(inputs, str(config)), str(config), "invalid YAML")


@case("train-config-not-a-mapping")
def _(inputs: Inputs) -> Expected:
    config = _config_file(inputs, "- data\n- model\n")
    return Expected(_train(inputs, str(config)), str(config), "expected a mapping of keys at the top level")


@case("train-unknown-config-key")
def _(inputs: Inputs) -> Expected:
    return Expected(_train(inputs, "optim.lrr=0.1"), "optim.lrr", "did you mean 'optim.lr'")


@case("train-config-value-out-of-range")
def _(inputs: Inputs) -> Expected:
    config = _config_file(inputs, yaml.safe_dump({"optim": {"lr": -1.0}}))
    return Expected(_train(inputs, str(config)), str(config), "lr must be positive")


@case("train-retired-transform-name")
def _(inputs: Inputs) -> Expected:
    config = _config_file(inputs, yaml.safe_dump({"model": {"transform": "t3"}}))
    return Expected(_train(inputs, str(config)), str(config),
                    r"model.transform: 't3' is a retired filter transform name: it meant copy_z .*use one of default, "
                    r"copy_x, copy_y, copy_z, copy_x_transposed, copy_y_transposed, copy_z_transposed")


@case("train-run-dir-is-a-file")
def _(inputs: Inputs) -> Expected:
    blocker = inputs.path("run")
    blocker.write_text("a file where the run directory should go")
    return Expected(_train(inputs), str(blocker), "Not a directory|File exists")


def _inflate(inputs: Inputs, checkpoint: Path, *extra: str) -> list[str]:
    return ["inflate", "--arch", "cifar_resnet20", "--checkpoint", str(checkpoint),
            "--out", str(inputs.path("r20_3d.pt")), *extra]


@case("inflate-3d-training-checkpoint")
def _(inputs: Inputs) -> Expected:
    return Expected(_inflate(inputs, inputs.checkpoint), str(inputs.checkpoint),
                    "no checkpoint key matches the model")


@case("inflate-random-bytes")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("random.th")
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    return Expected(_inflate(inputs, path), str(path), r"unreadable \(truncated or corrupt\)")


@case("inflate-wrong-class-count")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("r20_2d.pt")
    torch.save(create_model_2d("cifar_resnet20").state_dict(), path)
    return Expected(_inflate(inputs, path, "--num-classes", "100"), str(path),
                    r"2 shape mismatches \(linear.weight: checkpoint \[10, 64\] vs model \[100, 64\]")


@case("inflate-onto-existing-file")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("r20_2d.pt")
    torch.save(create_model_2d("cifar_resnet20").state_dict(), path)
    existing = inputs.path("r20_3d.pt")
    existing.write_bytes(b"an earlier inflation")
    return Expected(_inflate(inputs, path), str(existing), "exists; pass --force to replace it")


@case("inflate-out-below-a-file")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("r20_2d.pt")
    torch.save(create_model_2d("cifar_resnet20").state_dict(), path)
    blocker = inputs.path("converted")
    blocker.write_text("a file where a directory should go")
    argv = ["inflate", "--arch", "cifar_resnet20", "--checkpoint", str(path), "--out", str(blocker / "r20_3d.pt")]
    return Expected(argv, str(blocker), "File exists")


# ---------------------------------------------------------------------------------------------------
# The tests.


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("scene_run") / "run", SCENE_RUN)


def listing(root: Path) -> dict[str, str]:
    """Every path under root, with a hash of each file's bytes."""
    return {str(path.relative_to(root)): "directory" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*"))}


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("make", CASES.values(), ids=CASES.keys())
def test_bad_input_gives_one_line_exit_2_and_writes_nothing(make, checkpoint, tmp_path, capsys, monkeypatch):
    inputs_dir = tmp_path / "inputs"
    inputs_dir.mkdir()
    expected = make(Inputs(inputs_dir, checkpoint))
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    capsys.readouterr()

    assert main(expected.argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"image2point {expected.argv[0]}: error: "), lines[0]
    assert expected.offender in lines[0], lines[0]
    assert re.search(expected.problem, lines[0]), f"{expected.problem!r} not in {lines[0]!r}"
    assert listing(tmp_path) == before, "a refused command must write nothing and change nothing"
    assert not (inputs_dir / MARKER).exists()


def test_coordinates_near_1e7_are_recentred_not_refused(checkpoint, tmp_path, capsys):
    points, colours, _ = small_scene()
    points -= np.floor(points.min(axis=0))  # recentring subtracts the floored minimum: the same voxel grid
    path = tmp_path / "survey.ply"
    write_ply(path, points + GEOREFERENCED_SHIFT, {"rgb": colours})
    assert main(["predict", str(checkpoint), str(path), "--out-dir", str(tmp_path / "out")]) == 0
    near = tmp_path / "near.ply"
    write_ply(near, points, {"rgb": colours})
    assert main(["predict", str(checkpoint), str(near), "--out-dir", str(tmp_path / "out")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "survey.labels.npy"),
                                  np.load(tmp_path / "out" / "near.labels.npy"))


def test_las_with_odd_scale_and_offset_is_read_not_refused(checkpoint, tmp_path):
    laspy = pytest.importorskip("laspy")
    points, colours, _ = small_scene()
    header = laspy.LasHeader(point_format=2, version="1.2")
    header.scales = ODD_LAS_SCALES
    header.offsets = ODD_LAS_OFFSETS
    las = laspy.LasData(header)
    placed = points + ODD_LAS_OFFSETS
    las.x, las.y, las.z = placed[:, 0], placed[:, 1], placed[:, 2]
    las.red, las.green, las.blue = colours[:, 0], colours[:, 1], colours[:, 2]
    path = tmp_path / "odd.las"
    las.write(str(path))
    assert main(["predict", str(checkpoint), str(path), "--out-dir", str(tmp_path / "out")]) == 0
    assert np.load(tmp_path / "out" / "odd.labels.npy").shape == (SCENE_POINTS,)

