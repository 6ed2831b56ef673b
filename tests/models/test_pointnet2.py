"""PointNet++ SSG: sampling, grouping and interpolation against brute force; networks; image pretraining
with each pixel a point; weight transfer; finetuning schemes."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from image2point.checkpoint import load_checkpoint
from image2point.errors import CheckpointError, ConfigError
from image2point.models import pointnet2
from image2point.models.finetune import apply_finetune_scheme, optimizer_parameters
from image2point.models.pointnet2 import (
    FeaturePropagation,
    PointNet2Classifier,
    PointNet2Config,
    PointNet2Segmenter,
    SetAbstraction,
    SetAbstractionSpec,
    ball_query,
    farthest_point_sample,
    group,
    three_nn_interpolate,
    transfer_pointnet2_weights,
)
from image2point.pretrain2d.pixels_as_points import PixelsAsPoints
from image2point.pretrain2d.train2d import Train2DConfig, train_2d

EPSILON = pointnet2.INTERPOLATION_EPSILON
IMAGE_CHANNELS = 3
BATCH = 2
POINTS = 64
NUM_CLASSES = 5
# A small network with the SSG layout: widths 8/16/32, one hidden head layer, no dropout (deterministic).
TINY_MLPS = ((8, 8), (16,), (32,))
TINY_HIDDEN = 16
TINY_SEGMENTER_HIDDEN = 8
TINY_PROPAGATION = ((16,), (16,), (8,))
TINY = PointNet2Config(
    levels=(
        SetAbstractionSpec(TINY_MLPS[0], num_centres=16, radius=0.6, max_neighbours=8),
        SetAbstractionSpec(TINY_MLPS[1], num_centres=4, radius=1.2, max_neighbours=8),
        SetAbstractionSpec(TINY_MLPS[2], group_all=True),
    ),
    propagation=TINY_PROPAGATION,
    classifier_hidden=(TINY_HIDDEN,),
    segmenter_hidden=(TINY_SEGMENTER_HIDDEN,),
    dropout=0.0,
)
# The same MLPs for images in pixel units, sampled as the image preset does.
TINY_IMAGE = PointNet2Config(
    levels=(
        SetAbstractionSpec(TINY_MLPS[0], fraction=0.25, radius=3.0, max_neighbours=16),
        SetAbstractionSpec(TINY_MLPS[1], fraction=0.25, radius=6.0, max_neighbours=16),
        SetAbstractionSpec(TINY_MLPS[2], group_all=True),
    ),
    propagation=TINY_PROPAGATION,
    classifier_hidden=(TINY_HIDDEN,),
    segmenter_hidden=(TINY_SEGMENTER_HIDDEN,),
    dropout=0.0,
)


def random_points(seed: int, batch: int = BATCH, num_points: int = POINTS, dtype=torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, num_points, 3, generator=generator, dtype=dtype) * 2 - 1


# ---------------------------------------------------------------------------------------------------
# Brute-force references, Python loops over numpy.


def squared_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(sum((a[axis] - b[axis]) ** 2 for axis in range(3)))


def reference_fps(points: np.ndarray, num_samples: int, start: int = 0) -> list[int]:
    chosen = [start]
    while len(chosen) < num_samples:
        best, best_distance = -1, -1.0
        for j in range(len(points)):
            if j in chosen:
                continue
            distance = min(squared_distance(points[j], points[c]) for c in chosen)
            if distance > best_distance:
                best, best_distance = j, distance
        chosen.append(best)
    return chosen


def reference_ball_query(points: np.ndarray, centres: np.ndarray, radius: float, k: int) -> list[list[int]]:
    rows = []
    for centre in centres:
        distances = [squared_distance(p, centre) for p in points]
        inside = [j for j, d in enumerate(distances) if d < radius * radius]
        if inside:
            row = inside[:k] + [inside[0]] * (k - min(k, len(inside)))
        else:
            row = [int(np.argmin(distances))] * k
        rows.append(row)
    return rows


def reference_interpolate(unknown: np.ndarray, known: np.ndarray, features: np.ndarray) -> np.ndarray:
    out = np.zeros((features.shape[0], len(unknown)))
    for i, point in enumerate(unknown):
        distances = sorted((math.sqrt(squared_distance(point, q)), j) for j, q in enumerate(known))[:3]
        weights = [1.0 / (d + EPSILON) for d, _ in distances]
        for weight, (_, j) in zip(weights, distances):
            out[:, i] += weight / sum(weights) * features[:, j]
    return out


# ---------------------------------------------------------------------------------------------------
# Farthest point sampling.


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_farthest_point_sampling_matches_the_brute_force_sequence(seed, device):
    points = random_points(seed, batch=3, num_points=40, dtype=torch.float64)
    idx = farthest_point_sample(points.to(device), 15).cpu()
    for b in range(3):
        assert idx[b].tolist() == reference_fps(points[b].numpy(), 15)


def test_each_sampled_point_is_distinct_and_maximises_the_distance_to_those_before_it():
    points = random_points(3, batch=2, num_points=200)
    idx = farthest_point_sample(points, 50)
    for b in range(2):
        chosen = idx[b]
        assert len(set(chosen.tolist())) == len(chosen)
        distances = torch.cdist(points[b], points[b])
        for step in range(1, len(chosen)):
            nearest_chosen = distances[:, chosen[:step]].min(dim=1).values
            assert nearest_chosen[chosen[step]] >= nearest_chosen.max() - 1e-6


def test_sampling_never_repeats_an_index_even_when_points_coincide():
    points = torch.zeros(1, 10, 3)
    points[0, 3] = 1.0
    idx = farthest_point_sample(points, 10)
    assert sorted(idx[0].tolist()) == list(range(10))
    assert idx[0, :2].tolist() == [0, 3]


def test_random_start_follows_the_generator():
    points = random_points(4, batch=3, num_points=30, dtype=torch.float64)
    first = farthest_point_sample(points, 5, "random", torch.Generator().manual_seed(7))
    again = farthest_point_sample(points, 5, "random", torch.Generator().manual_seed(7))
    starts = torch.randint(30, (3,), generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    assert first[:, 0].tolist() == starts.tolist()
    for b in range(3):
        assert first[b].tolist() == reference_fps(points[b].numpy(), 5, start=int(starts[b]))


def test_sampling_rejects_more_samples_than_points_and_unknown_starts():
    with pytest.raises(ValueError, match="cannot sample"):
        farthest_point_sample(random_points(0), POINTS + 1)
    with pytest.raises(ValueError, match="start"):
        farthest_point_sample(random_points(0), 4, "middle")


# ---------------------------------------------------------------------------------------------------
# Ball query and grouping.


@pytest.mark.parametrize("radius, k", [(0.5, 8), (0.25, 4), (0.05, 3), (3.0, 70)])
def test_ball_query_matches_brute_force(radius, k, device):
    points = random_points(5, dtype=torch.float64)
    centres = random_points(6, num_points=12, dtype=torch.float64)
    centres[:, :4] = points[:, 10:14]  # some centres are points: they must find themselves
    idx = ball_query(points.to(device), centres.to(device), radius, k).cpu()
    assert idx.shape == (BATCH, 12, k)
    for b in range(BATCH):
        assert idx[b].tolist() == reference_ball_query(points[b].numpy(), centres[b].numpy(), radius, k)
    assert all(10 + i in idx[b, i].tolist() for b in range(BATCH) for i in range(4))


def test_ball_query_excludes_points_exactly_on_the_sphere():
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    lattice = torch.stack([cols, rows, torch.ones_like(rows)], -1).reshape(1, 64, 3)
    centres = lattice[:, [0, 27, 63]]
    idx = ball_query(lattice, centres, 3.0, 40)
    assert idx[0].tolist() == reference_ball_query(lattice[0].numpy(), centres[0].numpy(), 3.0, 40)
    neighbours_of_27 = set(idx[0, 1].tolist())
    assert 27 + 3 not in neighbours_of_27 and 27 + 2 in neighbours_of_27  # distance 3 out, 2 in
    assert len(neighbours_of_27) == 25  # lattice points strictly within 3 of an interior pixel


def test_ball_query_without_neighbours_takes_the_nearest_point():
    points = torch.tensor([[[0.0, 0, 0], [5.0, 0, 0], [2.0, 0, 0]]])
    idx = ball_query(points, torch.tensor([[[2.9, 0, 0]]]), 0.5, 4)
    assert idx.tolist() == [[[2, 2, 2, 2]]]


def test_chunked_pairwise_computations_equal_unchunked(monkeypatch):
    points = random_points(7, num_points=50, dtype=torch.float64)
    centres = random_points(8, num_points=30, dtype=torch.float64)
    features = torch.randn(BATCH, 4, 30, dtype=torch.float64)
    whole_query = ball_query(points, centres, 0.6, 6)
    whole_interpolation = three_nn_interpolate(points, centres, features)
    monkeypatch.setattr(pointnet2.ops, "PAIRWISE_CHUNK_ELEMENTS", 7 * BATCH * 50)
    assert torch.equal(ball_query(points, centres, 0.6, 6), whole_query)
    assert torch.equal(three_nn_interpolate(points, centres, features), whole_interpolation)


def test_group_gathers_features_at_every_index():
    features = torch.randn(BATCH, 4, 10, requires_grad=True)
    idx = torch.randint(10, (BATCH, 6, 3), generator=torch.Generator().manual_seed(0))
    grouped = group(features, idx)
    assert grouped.shape == (BATCH, 4, 6, 3)
    for b in range(BATCH):
        for s in range(6):
            for k in range(3):
                assert torch.equal(grouped[b, :, s, k], features[b, :, idx[b, s, k]])
    grouped.sum().backward()
    counts = torch.stack([torch.bincount(idx[b].flatten(), minlength=10) for b in range(BATCH)])
    assert torch.equal(features.grad, counts[:, None, :].expand(BATCH, 4, 10).float())


# ---------------------------------------------------------------------------------------------------
# Three-NN interpolation.


@pytest.mark.parametrize("num_known", [1, 2, 3, 17])
def test_three_nn_interpolation_matches_brute_force(num_known, device):
    unknown = random_points(9, num_points=25, dtype=torch.float64)
    known = random_points(10, num_points=num_known, dtype=torch.float64)
    features = torch.randn(BATCH, 5, num_known, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = three_nn_interpolate(unknown.to(device), known.to(device), features.to(device)).cpu()
    assert out.shape == (BATCH, 5, 25)
    for b in range(BATCH):
        expected = reference_interpolate(unknown[b].numpy(), known[b].numpy(), features[b].numpy())
        np.testing.assert_allclose(out[b].numpy(), expected, rtol=1e-12, atol=1e-12)


def test_interpolation_copies_a_known_point_it_sits_on_and_passes_gradients_to_features():
    known = random_points(11, num_points=8)
    features = torch.randn(BATCH, 3, 8, requires_grad=True)
    out = three_nn_interpolate(known[:, 2:5], known, features)
    torch.testing.assert_close(out, features[:, :, 2:5], rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()


# ---------------------------------------------------------------------------------------------------
# Layers and networks.


def test_set_abstraction_pools_relative_xyz_then_features_over_each_ball():
    xyz = random_points(12, dtype=torch.float64)
    features = torch.randn(BATCH, 2, POINTS, dtype=torch.float64)
    spec = SetAbstractionSpec((), num_centres=6, radius=0.7, max_neighbours=5)
    level = SetAbstraction(3 + 2, spec).eval()
    centres, pooled = level(xyz, features)
    assert pooled.shape == (BATCH, 5, 6)
    for b in range(BATCH):
        centre_idx = reference_fps(xyz[b].numpy(), 6)
        assert torch.equal(centres[b], xyz[b, centre_idx])
        rows = reference_ball_query(xyz[b].numpy(), xyz[b, centre_idx].numpy(), 0.7, 5)
        for s, row in enumerate(rows):
            members = torch.cat([xyz[b, row] - xyz[b, centre_idx[s]], features[b, :, row].T], dim=1)
            assert torch.equal(pooled[b, :, s], members.max(dim=0).values)


def test_group_all_pools_absolute_xyz_and_features_of_every_point():
    xyz = random_points(13)
    features = torch.randn(BATCH, 2, POINTS)
    centres, pooled = SetAbstraction(5, SetAbstractionSpec((), group_all=True))(xyz, features)
    assert torch.equal(centres, torch.zeros(BATCH, 1, 3))
    assert torch.equal(pooled[..., 0], torch.cat([xyz.transpose(1, 2), features], 1).max(dim=2).values)


def test_random_fps_start_only_in_training():
    xyz = random_points(14)
    spec = SetAbstractionSpec((4,), num_centres=8, radius=0.5, max_neighbours=4)
    level = SetAbstraction(3, spec, fps_start="random")
    expected = pointnet2.gather_points(xyz, farthest_point_sample(xyz, 8))
    assert torch.equal(level.eval()(xyz, None).xyz, expected)
    torch.manual_seed(0)
    train_centres = [level.train()(xyz, None).xyz for _ in range(3)]
    assert any(not torch.equal(centres, expected) for centres in train_centres)


def test_feature_propagation_concatenates_interpolated_and_skip_features():
    fine, coarse = random_points(15), random_points(16, num_points=8)
    coarse_features, skip = torch.randn(BATCH, 6, 8), torch.randn(BATCH, 2, POINTS)
    stage = FeaturePropagation(8, (4,)).eval()
    out = stage(fine, coarse, skip, coarse_features)
    layer = stage.mlp[0]
    stacked = torch.cat([three_nn_interpolate(fine, coarse, coarse_features), skip], 1)
    expected = layer.relu(layer.bn(layer.conv(stacked.unsqueeze(-1)))).squeeze(-1)
    assert out.shape == (BATCH, 4, POINTS)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("in_features", [0, 3])
def test_classifier_and_segmenter_output_shapes(in_features, device):
    xyz = random_points(17).to(device)
    features = torch.randn(BATCH, POINTS, in_features).to(device) if in_features else None
    classifier = PointNet2Classifier(in_features, NUM_CLASSES, TINY).to(device)
    levels = classifier.encode(xyz, features)
    assert [tuple(level.xyz.shape) for level in levels] == [(BATCH, POINTS, 3), (BATCH, 16, 3), (BATCH, 4, 3),
                                                            (BATCH, 1, 3)]
    assert [level.features.shape[1] for level in levels[1:]] == [8, 16, 32]
    features_of_levels = classifier.forward_features(xyz, features)
    assert [level.xyz.shape for level in features_of_levels] == [level.xyz.shape for level in levels]
    assert classifier.global_feature(features_of_levels).shape == (BATCH, 32)
    assert classifier(xyz, features).shape == (BATCH, NUM_CLASSES)
    segmenter = PointNet2Segmenter(in_features, NUM_CLASSES, TINY).to(device)
    logits = segmenter(xyz, features)
    assert logits.shape == (BATCH, NUM_CLASSES, POINTS)
    F.cross_entropy(logits, torch.randint(NUM_CLASSES, (BATCH, POINTS)).to(device)).backward()
    assert segmenter.input_layer.conv.weight.grad is not None


def test_networks_check_their_inputs():
    with pytest.raises(ValueError, match="xyz only"):
        PointNet2Classifier(0, NUM_CLASSES, TINY)(random_points(0), torch.randn(BATCH, POINTS, 3))
    with pytest.raises(ValueError, match=r"\[B, N, in_features\]"):
        PointNet2Classifier(3, NUM_CLASSES, TINY)(random_points(0), torch.randn(BATCH, POINTS, 4))
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        PointNet2Classifier(0, NUM_CLASSES, TINY)(torch.randn(BATCH, POINTS, 2))
    with pytest.raises(ConfigError, match="one propagation MLP per set abstraction level"):
        PointNet2Segmenter(0, NUM_CLASSES, PointNet2Config(levels=TINY.levels, propagation=((4,),)))


@pytest.mark.parametrize("kwargs, message", [
    ({"mlp": (8,), "num_centres": 4, "fraction": 0.5, "radius": 1.0, "max_neighbours": 4}, "exactly one"),
    ({"mlp": (8,), "radius": 1.0, "max_neighbours": 4}, "exactly one"),
    ({"mlp": (8,), "fraction": 1.5, "radius": 1.0, "max_neighbours": 4}, "fraction"),
    ({"mlp": (8,), "num_centres": 4, "radius": 0.0, "max_neighbours": 4}, "radius"),
    ({"mlp": (8,), "num_centres": 4, "radius": 1.0}, "max_neighbours"),
    ({"mlp": (8,), "group_all": True, "radius": 1.0}, "group_all"),
    ({"mlp": (0,), "group_all": True}, "channels"),
])
def test_set_abstraction_spec_rejects_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SetAbstractionSpec(**kwargs)


def test_config_rejects_bad_layouts():
    group_all = SetAbstractionSpec((8,), group_all=True)
    with pytest.raises(ConfigError, match="only the last"):
        PointNet2Config(levels=(group_all, group_all))
    with pytest.raises(ConfigError, match="input layer"):
        PointNet2Config(levels=(SetAbstractionSpec((), group_all=True),))
    with pytest.raises(ConfigError, match="dropout"):
        PointNet2Config(dropout=1.0)
    with pytest.raises(ConfigError, match="fps_start"):
        PointNet2Config(fps_start="last")


def test_image_preset_keeps_a_quarter_per_level_and_doubles_the_radius():
    levels = PointNet2Config.image_pretraining().levels
    counts = [1024]
    for level in levels:
        counts.append(level.centres_for(counts[-1]))
    assert counts == [1024, 256, 64, 1]
    assert [level.radius for level in levels] == [3.0, 6.0, None]
    assert levels[-1].group_all


def test_image_preset_backbone_has_the_shapes_of_the_ssg_classifier():
    image = PointNet2Classifier(3, 10, PointNet2Config.image_pretraining()).state_dict()
    modelnet = PointNet2Classifier(0, 40, PointNet2Config.ssg_classification()).state_dict()
    backbone = [key for key in modelnet if key.startswith("backbone.")]
    assert backbone and all(image[key].shape == modelnet[key].shape for key in backbone)
    assert image["input_layer.conv.weight"].shape == (64, 6, 1, 1)
    assert modelnet["input_layer.conv.weight"].shape == (64, 3, 1, 1)


# ---------------------------------------------------------------------------------------------------
# Image pretraining and transfer.


def two_class_images(seed: int, count: int = 8, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images whose class is their brightness."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 2
    noise = torch.rand(count, IMAGE_CHANNELS, size, size, generator=generator)
    return 0.5 * noise + 0.5 * labels[:, None, None, None], labels


def test_image_pretraining_steps_reduce_the_loss():
    torch.manual_seed(0)
    images, labels = two_class_images(0)
    model = PixelsAsPoints(PointNet2Classifier(IMAGE_CHANNELS, 2, TINY_IMAGE)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_pretrained_backbone_transfers_to_an_xyz_only_classifier():
    torch.manual_seed(0)
    pretrained = PointNet2Classifier(IMAGE_CHANNELS, 2, TINY_IMAGE)
    with torch.no_grad():
        for parameter in pretrained.parameters():
            parameter.add_(1.0)  # distinct from any fresh initialisation
    modelnet = PointNet2Classifier(0, 40, TINY)
    fresh = {key: value.clone() for key, value in modelnet.state_dict().items()}
    report = transfer_pointnet2_weights(pretrained.state_dict(), modelnet)

    state, source = modelnet.state_dict(), pretrained.state_dict()
    backbone = [key for key in state if key.startswith("backbone.")]
    input_layer = [key for key in state if key.startswith("input_layer.")]
    head = [key for key in state if key.startswith("head.")]
    assert sorted(report.loaded) == sorted(backbone)
    assert all(torch.equal(state[key], source[key]) for key in backbone)
    assert report.input_layer_reinitialised
    assert sorted(report.initialised) == sorted(input_layer + head)
    assert all(torch.equal(state[key], fresh[key]) for key in input_layer + head)
    assert sorted(report.dropped) == sorted(key for key in source if not key.startswith("backbone."))
    assert "(8, 6, 1, 1)" in report.reasons["input_layer.conv.weight"]
    assert "input_layer.conv.weight" in report.summary()


def test_matching_input_layer_is_loaded_and_head_never_is():
    pretrained = PointNet2Classifier(IMAGE_CHANNELS, NUM_CLASSES, TINY_IMAGE)
    target = PointNet2Classifier(IMAGE_CHANNELS, NUM_CLASSES, TINY)
    report = transfer_pointnet2_weights(pretrained.state_dict(), target)
    assert not report.input_layer_reinitialised
    assert torch.equal(target.input_layer.conv.weight, pretrained.input_layer.conv.weight)
    assert all(key.startswith("head.") for key in report.initialised + report.dropped)
    assert not torch.equal(target.head.classifier[-1].weight, pretrained.head.classifier[-1].weight)


def test_backbone_transfers_into_a_segmenter():
    pretrained = PointNet2Classifier(IMAGE_CHANNELS, 2, TINY_IMAGE)
    segmenter = PointNet2Segmenter(0, NUM_CLASSES, TINY)
    report = transfer_pointnet2_weights(pretrained.state_dict(), segmenter)
    loaded = segmenter.backbone.levels[1].mlp[0].conv.weight
    assert torch.equal(loaded, pretrained.backbone.levels[1].mlp[0].conv.weight)
    assert any(key.startswith("head.propagation.") for key in report.initialised)


def test_backbone_mismatch_raises_and_loads_nothing():
    wider = PointNet2Config(levels=(TINY.levels[0], SetAbstractionSpec((24,), num_centres=4, radius=1.2,
                                                                       max_neighbours=8), TINY.levels[2]))
    target = PointNet2Classifier(0, NUM_CLASSES, TINY)
    before = {key: value.clone() for key, value in target.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"backbone.levels.1.mlp.0.conv.weight: checkpoint shape \(24, 11"):
        transfer_pointnet2_weights(PointNet2Classifier(0, NUM_CLASSES, wider).state_dict(), target)
    assert all(torch.equal(before[key], value) for key, value in target.state_dict().items())
    shallower = PointNet2Config(levels=TINY.levels[:2] + (SetAbstractionSpec((32,), group_all=True),))
    incomplete = {key: value for key, value in PointNet2Classifier(0, NUM_CLASSES, TINY).state_dict().items()
                  if not key.startswith("backbone.levels.2.")}
    with pytest.raises(CheckpointError, match="in the model, not in the checkpoint"):
        transfer_pointnet2_weights(incomplete, PointNet2Classifier(0, NUM_CLASSES, shallower))


def test_foreign_keys_raise_and_keys_outside_the_prefix_are_reported():
    state = PointNet2Classifier(IMAGE_CHANNELS, 2, TINY_IMAGE).state_dict()
    with pytest.raises(CheckpointError, match="not part of a PointNet"):
        transfer_pointnet2_weights({**state, "decoder.weight": torch.zeros(1)}, PointNet2Classifier(0, 2, TINY))
    prefixed = {f"{PixelsAsPoints.STATE_PREFIX}{key}": value for key, value in state.items()}
    prefixed["step"] = torch.tensor(3)
    report = transfer_pointnet2_weights(prefixed, PointNet2Classifier(0, 2, TINY), PixelsAsPoints.STATE_PREFIX)
    assert "step" in report.dropped and "prefix" in report.reasons["step"]
    assert report.loaded


def test_train_2d_pretrains_pixels_as_points_and_its_checkpoint_transfers(tmp_path):
    torch.manual_seed(0)
    images, labels = two_class_images(1, count=12)
    train_set = TensorDataset(images[:8], labels[:8])
    val_set = TensorDataset(images[8:], labels[8:])
    model = PixelsAsPoints(PointNet2Classifier(IMAGE_CHANNELS, 2, TINY_IMAGE))
    config = Train2DConfig(epochs=1, batch_size=4, learning_rate=0.01, crop_padding=2, eval_batch_size=4)
    result = train_2d(model, train_set, val_set, config, tmp_path / "pretrained.pt", "pointnet2_ssg")
    assert result.num_classes == 2 and math.isfinite(result.history[0].train_loss)
    checkpoint = load_checkpoint(tmp_path / "pretrained.pt")
    modelnet = PointNet2Classifier(0, 40, TINY)
    report = transfer_pointnet2_weights(checkpoint["state_dict"], modelnet, PixelsAsPoints.STATE_PREFIX)
    assert report.input_layer_reinitialised
    assert torch.equal(modelnet.backbone.levels[0].mlp[0].conv.weight,
                       model.point_model.backbone.levels[0].mlp[0].conv.weight)


@pytest.mark.slow
def test_full_size_presets_run_on_a_32_pixel_image_and_a_modelnet_cloud():
    image_model = PixelsAsPoints(PointNet2Classifier(IMAGE_CHANNELS, 10, PointNet2Config.image_pretraining()))
    assert image_model(torch.rand(BATCH, IMAGE_CHANNELS, 32, 32)).shape == (BATCH, 10)
    modelnet = PointNet2Classifier(0, 40)
    report = transfer_pointnet2_weights(image_model.state_dict(), modelnet, PixelsAsPoints.STATE_PREFIX)
    assert report.input_layer_reinitialised
    assert modelnet(random_points(0, num_points=1024)).shape == (BATCH, 40)
    segmenter = PointNet2Segmenter(3, 13)
    assert segmenter(random_points(1, num_points=2048), torch.rand(BATCH, 2048, 3)).shape == (BATCH, 13, 2048)


# ---------------------------------------------------------------------------------------------------
# Finetuning schemes.

# Trainable under "io": the input layer (conv (3 + 0) × 8, BN 2 × 8) and the head (FC 32 → 16 without
# bias, BN 2 × 16, FC 16 → 5 with bias), for the xyz-only TINY classifier.
IO_TRAINABLE = (3 * 8 + 2 * 8) + (32 * 16 + 2 * 16 + 16 * NUM_CLASSES + NUM_CLASSES)


def finetune_network(scheme: str) -> tuple[PointNet2Classifier, object]:
    torch.manual_seed(0)
    network = PointNet2Classifier(0, NUM_CLASSES, TINY)
    return network, apply_finetune_scheme(network, scheme)


def expected_frozen(network: PointNet2Classifier, scheme: str) -> set[str]:
    backbone = {name for name, _ in network.named_parameters() if name.startswith("backbone.")}
    if scheme in ("io", "io_stats"):
        return backbone
    if scheme == "io_bn":
        return {name for name in backbone if ".conv." in name}
    return set()


def train_steps(network: PointNet2Classifier, steps: int = 2) -> None:
    optimizer = torch.optim.SGD(optimizer_parameters(network), lr=0.1, momentum=0.9, weight_decay=1e-4)
    network.train()
    labels = torch.tensor([1, 3])
    for step in range(steps):
        loss = F.cross_entropy(network(random_points(100 + step)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_io_trains_exactly_the_input_layer_and_the_head():
    network, _ = finetune_network("io")
    assert sum(p.numel() for p in optimizer_parameters(network)) == IO_TRAINABLE


@pytest.mark.parametrize("scheme", ["io", "io_stats", "io_bn", "all", "scratch"])
def test_frozen_parameters_are_bit_identical_after_optimizer_steps(scheme):
    network, plan = finetune_network(scheme)
    assert set(plan.frozen) == expected_frozen(network, scheme)
    before = {name: tensor.clone() for name, tensor in network.named_parameters()}
    train_steps(network)
    after = dict(network.named_parameters())
    assert all(torch.equal(before[name], after[name]) for name in plan.frozen)
    assert all(not torch.equal(before[name], after[name]) for name in plan.trainable)


def backbone_bn_statistics(network) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in network.state_dict().items()
            if name.startswith("backbone.") and ("running_" in name or "num_batches_tracked" in name)}


def test_backbone_bn_statistics_frozen_under_io_and_updated_under_io_stats():
    frozen, _ = finetune_network("io")
    before = backbone_bn_statistics(frozen)
    input_mean = frozen.input_layer.bn.running_mean.clone()
    train_steps(frozen)
    assert before and all(torch.equal(before[key], value) for key, value in backbone_bn_statistics(frozen).items())
    assert not torch.equal(frozen.input_layer.bn.running_mean, input_mean)
    assert frozen.input_layer.training and frozen.head.training

    moving, _ = finetune_network("io_stats")
    before = backbone_bn_statistics(moving)
    train_steps(moving)
    after = backbone_bn_statistics(moving)
    assert all(not torch.equal(before[key], after[key]) for key in before if "running_mean" in key)


def test_scratch_reinitialises_the_backbone_and_t_is_refused():
    network = PointNet2Classifier(0, NUM_CLASSES, TINY)
    before = {key: value.clone() for key, value in network.backbone.state_dict().items() if "conv" in key}
    apply_finetune_scheme(network, "scratch")
    assert all(not torch.equal(before[key], value) for key, value in network.backbone.state_dict().items()
               if key in before)
    with pytest.raises(ValueError, match="learnable T"):
        apply_finetune_scheme(PointNet2Classifier(0, NUM_CLASSES, TINY), "t")
