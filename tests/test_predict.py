"""Prediction on files: tiny networks trained by the real training loop, then run on generated files."""

import dataclasses
import json
import os

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from image2point.checkpoint import load_checkpoint, save_checkpoint
from image2point.cli import EXIT_BAD_INPUT, main
from image2point.data.procedural import SCENE_CLASS_NAMES, SHAPE_CLASS_NAMES, ProceduralScenes, ProceduralShapes
from image2point.errors import CheckpointError, DataError
from image2point.io import (
    PointCloud,
    read_labels,
    read_point_cloud,
    write_kitti_bin,
    write_kitti_label,
    write_npy,
    write_ply,
)
from image2point.inference.files import predict_files
from image2point.inference.labels import label_classes
from image2point.inference.model import load_trained
from image2point.inference.predict import predict_cloud
from image2point.inference.prepare import model_input
from image2point.inference.tiling import Tile, plan_tiles, tile_owners
from image2point.train.config import apply_override, load_config
from image2point.train.loop import run_training

SCENE_POINTS = 3000
QUICK = ["data.num_workers=0", "data.train_samples=2", "data.eval_samples=1", "data.batch_size=2", "train.epochs=1",
         "train.threads=1", "model.backbone=none", "model.linear_width=64"]
SCENE_RUN = ["data.name=procedural_scenes", "data.voxel_size=0.25", "model.head=unet", *QUICK]
SHAPE_RUN = ["data.name=procedural_shapes", "data.num_points=128", "data.voxel_size=0.2", "model.head=linear",
             *QUICK]
# The tiny U-Net (input convs, one strided level, one decoder level) sees 6 voxels to each side.
RECEPTIVE_FIELD_VOXELS = 6
KITTI_CONFIG = {
    "labels": {0: "unlabeled", 10: "car", 40: "road", 50: "building"},
    "learning_map": {0: 0, 10: 1, 40: 2, 50: 3},
    "learning_map_inv": {0: 0, 1: 10, 2: 40, 3: 50},
    "color_map": {0: [0, 0, 0], 10: [245, 150, 100], 40: [255, 0, 255], 50: [0, 200, 255]},
}
KITTI_SCANS = ("000000", "000001")
KITTI_POINTS = 80
KITTI_RAW_IDS = (0, 10, 40, 50)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_PICTURE_PIXELS = 400


def train(run_dir, overrides):
    run_training(load_config(None, [*overrides, f"train.run_dir={run_dir}"]), quiet=True)
    return run_dir / "last.pt"


@pytest.fixture(scope="module")
def scene_checkpoint(tmp_path_factory):
    return train(tmp_path_factory.mktemp("scene_run") / "run", SCENE_RUN)


@pytest.fixture(scope="module")
def shape_checkpoint(tmp_path_factory):
    return train(tmp_path_factory.mktemp("shape_run") / "run", SHAPE_RUN)


@pytest.fixture(scope="module")
def kitti_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitti")
    (root / "semantic-kitti.yaml").write_text(yaml.safe_dump(KITTI_CONFIG))
    rng = np.random.default_rng(0)
    for scan in KITTI_SCANS:
        scan_points = rng.uniform(-10.0, 10.0, (KITTI_POINTS, 3))
        write_kitti_bin(root / "sequences" / "00" / "velodyne" / f"{scan}.bin", scan_points,
                        rng.uniform(0.0, 1.0, KITTI_POINTS))
        write_kitti_label(root / "sequences" / "00" / "labels" / f"{scan}.label",
                          rng.choice(KITTI_RAW_IDS, KITTI_POINTS).astype(np.uint32))
    overrides = ["data.name=semantickitti", f"data.root={root}", "data.voxel_size=2.0", "model.head=unet",
                 "data.train_scans=[00/000000]", "data.eval_scans=[00/000001]", *QUICK]
    return train(root / "run", overrides)


def small_scene(seed=0, count=SCENE_POINTS):
    """A procedural scene cut to ``count`` points: xyz, 8-bit colours, labels."""
    sample = ProceduralScenes(1, "test", seed=seed)[0]
    keep = np.random.default_rng(seed).choice(sample.num_points, count, replace=False)
    colours = np.round(sample.features[keep] * 255).astype(np.uint8)
    return sample.points[keep].astype(np.float64), colours, sample.labels[keep]


def files_in(directory):
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


def assert_png(path, rows):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
    assert width >= MIN_PICTURE_PIXELS and height >= rows * MIN_PICTURE_PIXELS


def test_load_trained_rebuilds_the_network_in_eval_mode(scene_checkpoint):
    model = load_trained(scene_checkpoint)
    assert model.task == "segmentation" and model.class_names == SCENE_CLASS_NAMES
    assert model.in_features == 6 and not model.network.training
    stored = load_checkpoint(scene_checkpoint)["model"]
    for key, tensor in model.network.state_dict().items():
        assert torch.equal(tensor, stored[key]), key


def test_predict_files_writes_every_output_for_ply_and_npy(scene_checkpoint, tmp_path, capsys):
    points, colours, labels = small_scene()
    write_ply(tmp_path / "room.ply", points, {"rgb": colours, "labels": labels})
    write_npy(tmp_path / "hall.npy", points, {"rgb": colours})
    out = tmp_path / "out"
    run = predict_files(scene_checkpoint, [tmp_path / "room.ply", tmp_path / "hall.npy"], out,
                        save_probabilities=True)

    for stem in ("room", "hall"):
        for suffix in (".labels.npy", ".probs.npy", ".pred.ply", ".png"):
            assert (out / f"{stem}{suffix}").is_file(), stem + suffix
    room = np.load(out / "room.labels.npy")
    assert room.shape == (SCENE_POINTS,) and room.dtype == np.int64
    assert room.min() >= 0 and room.max() < len(SCENE_CLASS_NAMES)
    np.testing.assert_array_equal(np.load(out / "hall.labels.npy"), room)
    probabilities = np.load(out / "room.probs.npy")
    assert probabilities.shape == (SCENE_POINTS, len(SCENE_CLASS_NAMES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), room)
    coloured = read_point_cloud(out / "room.pred.ply")
    np.testing.assert_allclose(coloured.points, points)
    np.testing.assert_array_equal(coloured.field("label"), room)
    model = load_trained(scene_checkpoint)
    np.testing.assert_array_equal(coloured.field("rgb"), model.labels.palette[room])
    assert_png(out / "room.png", rows=3)
    assert_png(out / "hall.png", rows=1)

    room_result, hall_result = run.files
    assert room_result.metrics is not None and hall_result.metrics is None
    scored = labels >= 0
    assert (~scored).any(), "the scene's stray points carry no class"
    assert room_result.metrics.overall_accuracy == pytest.approx(float((room[scored] == labels[scored]).mean()))
    assert run.metrics.overall_accuracy == pytest.approx(room_result.metrics.overall_accuracy)
    assert not [name for name in files_in(out) if name.startswith(".")], "no staging files may remain"


def test_fields_name_the_columns_of_a_plain_array(scene_checkpoint, tmp_path):
    points, colours, _ = small_scene()
    np.save(tmp_path / "plain.npy", np.concatenate([points, colours.astype(np.float64)], axis=1))
    write_ply(tmp_path / "named.ply", points, {"rgb": colours})
    run = predict_files(scene_checkpoint, [tmp_path / "plain.npy"], tmp_path / "a",
                        fields=["x", "y", "z", "red", "green", "blue"])
    predict_files(scene_checkpoint, [tmp_path / "named.ply"], tmp_path / "b")
    assert run.files[0].num_points == SCENE_POINTS
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "plain.labels.npy"),
                                  np.load(tmp_path / "b" / "named.labels.npy"))


def test_chunked_prediction_equals_the_whole_scene_when_the_overlap_covers_the_receptive_field(scene_checkpoint):
    model = load_trained(scene_checkpoint)
    points, colours, _ = small_scene(seed=1, count=20_000)
    cloud = PointCloud(points, {"rgb": colours})
    whole = predict_cloud(model, cloud, probabilities=True)
    tiled = predict_cloud(model, cloud, chunk_points=12_000, probabilities=True,
                          overlap_voxels=RECEPTIVE_FIELD_VOXELS + 1)
    assert whole.num_tiles == 1 and tiled.num_tiles > 2
    np.testing.assert_array_equal(tiled.labels, whole.labels)
    np.testing.assert_allclose(tiled.probabilities, whole.probabilities, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("tiled", [False, True])
def test_predictions_on_cuda_equal_those_on_the_cpu(scene_checkpoint, shape_checkpoint, cuda_device, tiled):
    points, colours, _ = small_scene(seed=2, count=20_000)
    cloud = PointCloud(points, {"rgb": colours})
    tiling = {"chunk_points": 12_000, "overlap_voxels": RECEPTIVE_FIELD_VOXELS + 1} if tiled else {}
    on_cpu = predict_cloud(load_trained(scene_checkpoint), cloud, probabilities=True, **tiling)
    on_cuda = predict_cloud(load_trained(scene_checkpoint, cuda_device), cloud, probabilities=True, **tiling)
    assert on_cuda.num_tiles == on_cpu.num_tiles
    np.testing.assert_allclose(on_cuda.probabilities, on_cpu.probabilities, atol=1e-5)
    # A point whose two best classes are within rounding of each other may go either way.
    assert np.mean(on_cuda.labels == on_cpu.labels) > 0.999
    shape = PointCloud(ProceduralShapes(1, "test", seed=3, num_points=2000)[0].points)
    shape_on_cpu = predict_cloud(load_trained(shape_checkpoint), shape)
    shape_on_cuda = predict_cloud(load_trained(shape_checkpoint, cuda_device), shape)
    np.testing.assert_allclose(shape_on_cuda.probabilities, shape_on_cpu.probabilities, atol=1e-5)


def test_without_enough_overlap_tile_borders_change_some_predictions(scene_checkpoint):
    model = load_trained(scene_checkpoint)
    points, colours, _ = small_scene(seed=1, count=20_000)
    cloud = PointCloud(points, {"rgb": colours})
    whole = predict_cloud(model, cloud, probabilities=True)
    tiled = predict_cloud(model, cloud, chunk_points=6_000, probabilities=True, overlap_voxels=0)
    assert not np.allclose(tiled.probabilities, whole.probabilities, atol=1e-5)


def test_each_voxel_is_predicted_by_the_tile_it_lies_deepest_in():
    rng = np.random.default_rng(3)
    xy = np.concatenate([rng.integers(0, 60, (3000, 2)), rng.integers(20, 26, (600, 2))])
    counts = rng.integers(1, 4, len(xy))
    budget, overlap = 2500, 3
    tiles = plan_tiles(xy, counts, budget, overlap)
    owners = tile_owners(xy, tiles)
    assert len(tiles) > 4
    for tile in tiles:
        assert counts[tile.contains(xy)].sum() <= budget
    depths = np.stack([tile.depth_inside(xy) for tile in tiles], axis=1)
    np.testing.assert_array_equal(depths[np.arange(len(xy)), owners], depths.max(axis=1))
    assert (depths[np.arange(len(xy)), owners] >= overlap).all()
    for index, tile in enumerate(tiles):
        others = np.flatnonzero(tile.contains(xy) & (owners != index))
        assert (depths[others, index] < overlap).all()


def test_tile_geometry():
    tile = Tile((10, 20), (14, 22), overlap=2)
    xy = np.array([[10, 20], [13, 21], [8, 18], [7, 20], [15, 23], [16, 23]])
    np.testing.assert_array_equal(tile.owns(xy), [True, True, False, False, False, False])
    np.testing.assert_array_equal(tile.contains(xy), [True, True, True, False, True, False])
    np.testing.assert_array_equal(tile.depth_inside(xy), [2, 2, 0, -1, 0, -1])


def test_a_budget_below_one_column_with_its_overlap_is_refused():
    xy = np.array([[0, 0], [1, 0], [2, 0]])
    with pytest.raises(DataError, match="chunk budget of 5"):
        plan_tiles(xy, np.array([4, 4, 4]), chunk_points=5, overlap=1)


def test_kitti_scans_get_label_files_with_the_original_ids(kitti_checkpoint, tmp_path):
    rng = np.random.default_rng(7)
    scan_points = rng.uniform(-10.0, 10.0, (KITTI_POINTS, 3))
    write_kitti_bin(tmp_path / "scans" / "000042.bin", scan_points, rng.uniform(0.0, 1.0, KITTI_POINTS))
    truth = rng.choice(KITTI_RAW_IDS, KITTI_POINTS).astype(np.uint32) | (np.uint32(3) << np.uint32(16))
    write_kitti_label(tmp_path / "truth" / "000042.label", truth)
    run = predict_files(kitti_checkpoint, [tmp_path / "scans"], tmp_path / "out", labels=tmp_path / "truth")

    classes = np.load(tmp_path / "out" / "000042.labels.npy")
    written = read_labels(tmp_path / "out" / "000042.label")
    assert written.dtype == np.uint32 and len(written) == KITTI_POINTS
    np.testing.assert_array_equal(written, np.array([10, 40, 50], dtype=np.uint32)[classes])
    expected_truth = np.array([-100, 0, 1, 2])[np.searchsorted(KITTI_RAW_IDS, truth & 0xFFFF)]
    scored = expected_truth != -100
    assert run.metrics.overall_accuracy == pytest.approx(float((classes[scored] == expected_truth[scored]).mean()))
    assert load_trained(kitti_checkpoint).class_names == ("car", "road", "building")


def test_kitti_label_ids_outside_the_learning_map_are_refused(kitti_checkpoint):
    scheme = load_trained(kitti_checkpoint).labels
    np.testing.assert_array_equal(label_classes(np.array([10, 0, 50 | (1 << 16)], dtype=np.uint32), scheme, "x"),
                                  [0, -100, 2])
    with pytest.raises(DataError, match=r"\[99\]"):
        label_classes(np.array([10, 99], dtype=np.uint32), scheme, "x")


def test_classification_writes_the_top_classes(shape_checkpoint, tmp_path):
    sample = ProceduralShapes(1, "test", seed=2, num_points=400)[0]
    write_ply(tmp_path / "thing.ply", sample.points, {"labels": np.full(400, sample.label)})
    run = predict_files(shape_checkpoint, [tmp_path / "thing.ply"], tmp_path / "out", save_probabilities=True)

    ranking = json.loads((tmp_path / "out" / "thing.topk.json").read_text())
    probabilities = [entry["probability"] for entry in ranking["top_k"]]
    assert len(ranking["top_k"]) == 5 and probabilities == sorted(probabilities, reverse=True)
    assert ranking["prediction"] == ranking["top_k"][0]["name"] in SHAPE_CLASS_NAMES
    shape_probabilities = np.load(tmp_path / "out" / "thing.probs.npy")
    assert shape_probabilities.shape == (len(SHAPE_CLASS_NAMES),)
    assert shape_probabilities.max() == pytest.approx(probabilities[0])
    assert_png(tmp_path / "out" / "thing.png", rows=3)
    assert files_in(tmp_path / "out") == ["thing.png", "thing.pred.ply", "thing.probs.npy", "thing.topk.json"]
    correct = ranking["top_k"][0]["class"] == sample.label
    assert run.metrics.overall_accuracy == (1.0 if correct else 0.0)


def test_large_coordinates_are_recentred_before_prediction(scene_checkpoint):
    model = load_trained(scene_checkpoint)
    points, colours, _ = small_scene()
    points -= np.floor(points.min(axis=0))
    shift = np.array([4.2e6, 5.1e5, 300.0])
    near = predict_cloud(model, PointCloud(points, {"rgb": colours}))
    far = predict_cloud(model, PointCloud(points + shift, {"rgb": colours}))
    np.testing.assert_array_equal(far.offset, shift)
    assert near.offset.tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_array_equal(far.labels, near.labels)


class _RunsShellCommand:
    """Pickles to a call of os.system: loading it without weights_only would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_checkpoint(kind, scene_checkpoint, tmp_path):
    path = tmp_path / f"{kind}.pt"
    state = load_checkpoint(scene_checkpoint)
    if kind == "corrupt":
        path.write_bytes(scene_checkpoint.read_bytes()[:500])
    elif kind == "runs_code":
        torch.save({"model": _RunsShellCommand(tmp_path / "marker"), "config": state["config"]}, path)
    elif kind == "no_config":
        save_checkpoint(path, {"model": state["model"]})
    elif kind == "other_head":
        state["config"]["model"]["head"] = "linear"
        save_checkpoint(path, state)
    elif kind == "other_classes":
        # A config for another dataset, and no stored class list to fall back on.
        state["config"]["data"]["name"] = "s3dis"
        state.pop("class_names", None)
        state.pop("in_features", None)
        save_checkpoint(path, state)
    elif kind == "bad_config":
        state["config"]["optim"]["lr"] = -1.0
        save_checkpoint(path, state)
    return path


@pytest.mark.parametrize("kind,expected", [
    ("corrupt", "truncated or corrupt"),
    ("runs_code", "refused to load"),
    ("no_config", "no 'config' entry"),
    ("other_head", "'head.levels.0.fuse.0.weight'"),
    ("other_classes", "'head.classifier.weight' has shape [5, 64] in the file but [13, 64]"),
    ("bad_config", "lr must be positive"),
])
def test_bad_checkpoints_are_refused_with_one_clear_error(kind, expected, scene_checkpoint, tmp_path):
    path = _bad_checkpoint(kind, scene_checkpoint, tmp_path)
    points, colours, _ = small_scene()
    write_ply(tmp_path / "in.ply", points, {"rgb": colours})
    with pytest.raises(CheckpointError) as error:
        predict_files(path, [tmp_path / "in.ply"], tmp_path / "out")
    assert expected in str(error.value) and str(path) in str(error.value)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "marker").exists()


@pytest.mark.parametrize("problem,expected", [
    ("missing_field", "no 'rgb'"),
    ("empty_file", "empty file"),
    ("wrong_label_count", "label count mismatch"),
    ("label_out_of_range", "label 9 is not a class"),
])
def test_bad_inputs_write_nothing(problem, expected, scene_checkpoint, tmp_path):
    points, colours, labels = small_scene()
    good = tmp_path / "good.ply"
    write_ply(good, points, {"rgb": colours})
    bad = tmp_path / "bad.ply"
    labels_path = None
    if problem == "missing_field":
        write_ply(bad, points, {"intensity": colours[:, 0]})
    elif problem == "empty_file":
        bad.write_bytes(b"")
    elif problem == "wrong_label_count":
        write_ply(bad, points, {"rgb": colours})
        labels_path = tmp_path / "labels"
        labels_path.mkdir()
        np.save(labels_path / "good.npy", labels)
        np.save(labels_path / "bad.npy", labels[:-1])
    else:
        write_ply(bad, points, {"rgb": colours, "labels": np.where(labels == 0, 9, labels)})
    with pytest.raises(DataError, match=expected):
        predict_files(scene_checkpoint, [good, bad], tmp_path / "out", labels=labels_path)
    assert not (tmp_path / "out").exists(), "a bad input must leave nothing behind, not even for good inputs"


def test_existing_outputs_are_replaced_only_with_force(scene_checkpoint, tmp_path):
    points, colours, _ = small_scene()
    write_ply(tmp_path / "in.ply", points, {"rgb": colours})
    out = tmp_path / "out"
    out.mkdir()
    (out / "in.png").write_bytes(b"mine")
    with pytest.raises(DataError, match="pass --force"):
        predict_files(scene_checkpoint, [tmp_path / "in.ply"], out)
    assert files_in(out) == ["in.png"] and (out / "in.png").read_bytes() == b"mine"
    predict_files(scene_checkpoint, [tmp_path / "in.ply"], out, force=True)
    assert files_in(out) == ["in.labels.npy", "in.png", "in.pred.ply"]
    assert (out / "in.png").read_bytes().startswith(PNG_SIGNATURE)


def test_inputs_with_the_same_name_are_refused(scene_checkpoint, tmp_path):
    points, colours, _ = small_scene()
    for folder in ("a", "b"):
        write_ply(tmp_path / folder / "scan.ply", points, {"rgb": colours})
    with pytest.raises(DataError, match="would write the same outputs"):
        predict_files(scene_checkpoint, [tmp_path / "a", tmp_path / "b"], tmp_path / "out")


def test_cli_predict_prints_one_line_per_file_and_the_scores(scene_checkpoint, tmp_path, capsys):
    points, colours, labels = small_scene()
    write_ply(tmp_path / "in" / "room.ply", points, {"rgb": colours, "labels": labels})
    argv = ["predict", str(scene_checkpoint), str(tmp_path / "in" / "*.ply"), "--out-dir", str(tmp_path / "out"),
            "--probabilities"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "room.ply: 3000 points" in out and "mIoU" in out and "room.probs.npy" in out
    assert main(argv) == EXIT_BAD_INPUT
    assert "pass --force" in capsys.readouterr().err


@pytest.mark.parametrize("extra,expected", [
    (["--fields", "x,,z"], "--fields"),
    (["--chunk-points", "0"], "--chunk-points must be positive"),
    (["--voxel-size", "-1"], "--voxel-size must be positive"),
])
def test_cli_predict_bad_options_give_one_line_and_exit_2(extra, expected, scene_checkpoint, tmp_path, capsys):
    points, colours, _ = small_scene()
    write_ply(tmp_path / "room.ply", points, {"rgb": colours})
    argv = ["predict", str(scene_checkpoint), str(tmp_path / "room.ply"), "--out-dir", str(tmp_path / "out"), *extra]
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert not (tmp_path / "out").exists()


def test_cli_visualize_draws_prediction_against_ground_truth(scene_checkpoint, tmp_path, capsys):
    points, colours, labels = small_scene()
    write_ply(tmp_path / "room.ply", points, {"rgb": colours, "labels": labels})
    np.save(tmp_path / "pred.npy", np.where(labels == 1, 0, labels))
    argv = ["visualize", str(tmp_path / "room.ply"), "--pred", str(tmp_path / "pred.npy"), "--palette",
            "procedural_scenes", "--out", str(tmp_path / "room.png")]
    assert main(argv) == 0
    assert_png(tmp_path / "room.png", rows=3)
    assert main(["visualize", str(tmp_path / "room.ply"), "--pred", str(tmp_path / "missing.npy"),
                 "--out", str(tmp_path / "other.png")]) == EXIT_BAD_INPUT
    assert "missing.npy" in capsys.readouterr().err
    assert not (tmp_path / "other.png").exists()


def test_an_s3dis_model_reads_centred_points_in_voxels_and_never_drops_any(scene_checkpoint):
    """The S3DIS preprocessing at prediction: centring on the mean, xyz features in training voxels, and no
    crop (every point gets a label, however wide the cloud)."""
    trained = load_trained(scene_checkpoint)
    config = apply_override(trained.config, "data.name=s3dis")
    model = dataclasses.replace(trained, config=config)
    points, colours, _ = small_scene()
    points[:, 0] *= 10.0  # far wider than the training crop of 2 x 4 m
    cloud = PointCloud(points + 100.0, {"rgb": colours})
    prepared = model_input(model, cloud)
    np.testing.assert_allclose(prepared.points.mean(axis=0), 0.0, atol=1e-3)
    assert len(prepared.points) == len(points)
    prediction = predict_cloud(model, cloud)
    assert prediction.labels.shape == (len(points),)
    # The same cloud anywhere gives the same labels: the network sees centred coordinates.
    np.testing.assert_array_equal(predict_cloud(model, PointCloud(points - 40.0, {"rgb": colours})).labels,
                                  prediction.labels)
