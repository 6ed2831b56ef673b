"""Range-image segmenter on HRNet and ESPNet-C: shapes, official backbone keys, finetuning schemes and per-point
prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from image2point.data.range_image import (
    RangeProjectionConfig,
    back_project_labels,
    knn_refine,
    project_to_range_image,
)
from image2point.errors import ConfigError, DataError
from image2point.models import SCHEMES, FinetunePlan, apply_finetune_scheme, optimizer_parameters
from image2point.models.range_segmenter import RangeImageSegmenter, predict_points
from image2point.models2d import create_model_2d
from image2point.models2d.hrnet import hrnet_w18
from image2point.train.determinism import deterministic_algorithms

NUM_CLASSES = 7
HEIGHT, WIDTH = 32, 128
RANGE_CHANNELS = 5
W18_FEATURES = 270
INPUT_LAYER = RANGE_CHANNELS * 3 * 3 * 3 + 2 * 3  # conv3x3 5->3 without bias, BatchNorm(3)
HEAD = W18_FEATURES * NUM_CLASSES + NUM_CLASSES
APPLICABLE_SCHEMES = ("io", "io_stats", "io_bn", "all", "scratch")


def segmenter() -> RangeImageSegmenter:
    torch.manual_seed(0)
    return RangeImageSegmenter("hrnet_w18", num_classes=NUM_CLASSES)


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(2, RANGE_CHANNELS, HEIGHT, WIDTH, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (2, HEIGHT, WIDTH), generator=generator)
    return images, labels


def backbone_bn_buffers(model: RangeImageSegmenter) -> dict[str, torch.Tensor]:
    return {name: buffer.clone() for name, buffer in model.backbone.named_buffers() if "running" in name}


def expected_trainable(model: RangeImageSegmenter, scheme: str, head: int) -> int:
    """Parameters a scheme hands the optimizer: input layer and head, plus the backbone's BatchNorm
    affines (io_bn) or the whole backbone (all, scratch)."""
    backbone_bn_affine = sum(p.numel() for name, p in model.backbone.named_parameters()
                             if isinstance(model.backbone.get_submodule(name.rsplit(".", 1)[0]),
                                           torch.nn.BatchNorm2d))
    backbone_all = sum(p.numel() for p in model.backbone.parameters())
    trained = {"io": INPUT_LAYER + head, "io_stats": INPUT_LAYER + head,
               "io_bn": INPUT_LAYER + head + backbone_bn_affine}
    return trained.get(scheme, INPUT_LAYER + head + backbone_all)


def one_step_keeps_frozen_parameters(model: RangeImageSegmenter, plan: FinetunePlan) -> tuple[set[str], set[str]]:
    """One SGD step on a batch leaves the plan's frozen parameters as they were; returns the names of
    the parameters that changed and of the backbone BatchNorm buffers that moved."""
    parameters = {name: p.detach().clone() for name, p in model.named_parameters()}
    statistics = backbone_bn_buffers(model)
    optimizer = torch.optim.SGD(optimizer_parameters(model), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    images, labels = batch()
    F.cross_entropy(model(images), labels).backward()
    optimizer.step()
    for name, parameter in model.named_parameters():
        if name in plan.frozen:
            assert torch.equal(parameter, parameters[name]), name
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, parameters[name])}
    assert {"input_layer.conv.weight", "head.classifier.weight"} <= changed
    moved = {name for name, value in backbone_bn_buffers(model).items() if not torch.equal(value, statistics[name])}
    return changed, moved


def test_output_is_one_logit_per_class_and_pixel(device):
    model = segmenter().eval().to(device)
    images = batch()[0].to(device)
    with torch.no_grad():
        logits = model(images)
        features = model.forward_features(images)
    assert logits.shape == (2, NUM_CLASSES, HEIGHT, WIDTH)
    assert features.shape == (2, W18_FEATURES, HEIGHT // 4, WIDTH // 4)
    expected = F.interpolate(model.head.classifier(features), size=(HEIGHT, WIDTH), mode="bilinear",
                             align_corners=False)
    torch.testing.assert_close(logits, expected)


def test_deterministic_mode_resizes_by_matmuls_to_the_same_logits_and_gradients(device):
    """Under torch's deterministic mode every bilinear resize (branch fusion, feature concatenation, head)
    is two matmuls (models2d/resize.py), whose backward CUDA runs deterministically; in float64 they
    give F.interpolate's logits and gradients."""
    model = segmenter().double().to(device)
    images = batch()[0][..., :HEIGHT // 2, :WIDTH // 2].double().to(device)
    results = []
    for deterministic in (False, True):
        model.zero_grad(set_to_none=True)
        with deterministic_algorithms(deterministic):
            logits = model(images)
            logits.square().mean().backward()
        results.append((logits.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])))
    (default, default_grads), (matmuls, matmul_grads) = results
    torch.testing.assert_close(matmuls, default, rtol=0, atol=1e-10)
    # Train-mode BatchNorm gradients sum terms that nearly cancel (some are zero but for rounding):
    # compared relative to the largest gradient (another order of sums: 2e-13 of it; a wrong tap: O(1)).
    torch.testing.assert_close(matmul_grads, default_grads, rtol=0, atol=1e-10 * default_grads.abs().max().item())


def test_backbone_keeps_the_official_names_without_the_cityscapes_classifier():
    pretrained = hrnet_w18()
    stem = pretrained.conv1.weight.clone()
    model = RangeImageSegmenter(num_classes=NUM_CLASSES, backbone=pretrained)
    keys = set(model.state_dict())
    assert {"backbone.conv1.weight", "backbone.stage4.2.fuse_layers.3.0.0.0.weight",
            "backbone.last_layer.0.weight", "backbone.last_layer.1.running_var"} <= keys
    assert not any(key.startswith("backbone.last_layer.3") for key in keys)
    assert torch.equal(model.backbone.conv1.weight, stem) and model.backbone.conv1.in_channels == 3
    assert {key.split(".", 1)[0] for key in keys} == {"input_layer", "backbone", "head"}


def test_only_dense_backbones_and_range_image_batches_are_accepted():
    with pytest.raises(ConfigError, match="dense head"):
        RangeImageSegmenter(backbone=create_model_2d("cifar_resnet20"))
    with pytest.raises(ConfigError):
        RangeImageSegmenter("no_such_model")
    with pytest.raises(DataError, match=r"\[B, 5, H, W\]"):
        segmenter()(torch.zeros(1, 4, HEIGHT, WIDTH))


@pytest.mark.parametrize("scheme", APPLICABLE_SCHEMES)
def test_finetuning_scheme_freezes_what_it_should(scheme):
    model = segmenter()
    backbone_before = {name: p.detach().clone() for name, p in model.backbone.named_parameters()}
    plan = apply_finetune_scheme(model, scheme)
    if scheme == "scratch":
        assert not torch.equal(model.backbone.conv1.weight, backbone_before["conv1.weight"])
    assert sum(p.numel() for p in optimizer_parameters(model)) == expected_trainable(model, scheme, HEAD)
    assert plan.backbone_bn_stats_frozen == (scheme == "io")
    changed, moved = one_step_keeps_frozen_parameters(model, plan)
    if scheme in ("io_bn", "all", "scratch"):
        assert "backbone.bn1.weight" in changed
    if scheme == "all":
        assert "backbone.conv1.weight" in changed
    assert (not moved) if scheme == "io" else ("bn1.running_mean" in moved)


def test_io_scheme_keeps_backbone_batchnorm_in_eval_mode_through_train_calls():
    model = segmenter()
    apply_finetune_scheme(model, "io")
    model.eval().train()
    assert model.input_layer.bn.training and model.backbone.conv1.training
    assert not any(m.training for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_learnable_transform_scheme_does_not_apply_to_a_2d_backbone():
    assert "t" in SCHEMES
    with pytest.raises(ValueError, match="learnable T"):
        apply_finetune_scheme(segmenter(), "t")


def test_predict_points_back_projects_the_pixel_predictions():
    rng = np.random.default_rng(0)
    points = rng.uniform(-20.0, 20.0, (1500, 3))
    points[:, 2] = rng.uniform(-2.0, 0.5, 1500)
    config = RangeProjectionConfig(height=HEIGHT, width=WIDTH)
    image = project_to_range_image(points, rng.uniform(0, 1, 1500), config)
    model = segmenter().train()
    labels = predict_points(model, image)
    assert model.training  # the mode is restored
    assert labels.shape == (1500,) and labels.dtype == torch.int64
    assert labels.min() >= 0 and labels.max() < NUM_CLASSES
    with torch.no_grad():
        logits = model.eval()(image.image[None])[0]
    assert torch.equal(labels, back_project_labels(logits.argmax(0), image))
    assert torch.equal(predict_points(model, image, knn=True), knn_refine(image, logits))


# ESPNet-C (the released Cityscapes encoder of ../shared/weights) in the same segmenter.
ESPNET_FEATURES = 256
ESPNET_HEAD = ESPNET_FEATURES * NUM_CLASSES + NUM_CLASSES
ODD_HEIGHT, ODD_WIDTH = 29, 93


def espnet_segmenter() -> RangeImageSegmenter:
    torch.manual_seed(0)
    return RangeImageSegmenter("espnet_c", num_classes=NUM_CLASSES)


@pytest.mark.parametrize("name, width, stride", [("hrnet_w18", W18_FEATURES, 4), ("espnet_c", ESPNET_FEATURES, 8)])
def test_odd_sized_range_images_give_logits_of_their_own_size(name, width, stride):
    torch.manual_seed(0)
    model = RangeImageSegmenter(name, num_classes=NUM_CLASSES).eval()
    images = torch.randn(2, RANGE_CHANNELS, ODD_HEIGHT, ODD_WIDTH)
    with torch.no_grad():
        features = model.forward_features(images)
        logits = model(images)
    assert features.shape == (2, width, -(-ODD_HEIGHT // stride), -(-ODD_WIDTH // stride))
    assert logits.shape == (2, NUM_CLASSES, ODD_HEIGHT, ODD_WIDTH) and torch.isfinite(logits).all()


def test_espnet_backbone_keeps_its_official_names_without_the_classifier():
    pretrained = create_model_2d("espnet_c")
    official = {key for key in pretrained.state_dict() if not key.startswith("classifier.")}
    level1 = pretrained.level1.conv.weight.clone()
    model = RangeImageSegmenter(num_classes=NUM_CLASSES, backbone=pretrained)
    keys = set(model.state_dict())
    assert {key.removeprefix("backbone.") for key in keys if key.startswith("backbone.")} == official
    assert torch.equal(model.backbone.level1.conv.weight, level1)
    assert model.input_layer.conv.out_channels == 3 and model.head.classifier.in_channels == ESPNET_FEATURES


def test_gradients_reach_the_input_layer_and_the_range_image_through_espnet():
    model = espnet_segmenter().train()
    images, labels = batch()
    images.requires_grad_(True)
    F.cross_entropy(model(images), labels).backward()
    for parameter in (model.input_layer.conv.weight, model.backbone.level1.conv.weight, model.head.classifier.weight):
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0
    assert images.grad.abs().sum() > 0


@pytest.mark.parametrize("scheme", APPLICABLE_SCHEMES)
def test_finetuning_scheme_freezes_what_it_should_on_espnet(scheme):
    model = espnet_segmenter()
    plan = apply_finetune_scheme(model, scheme)
    assert sum(p.numel() for p in optimizer_parameters(model)) == expected_trainable(model, scheme, ESPNET_HEAD)
    assert plan.backbone_bn_stats_frozen == (scheme == "io")
    changed, moved = one_step_keeps_frozen_parameters(model, plan)
    # PReLU slopes are not BatchNorm: they train only when the whole backbone does.
    assert ("backbone.level1.bn.weight" in changed) == (scheme in ("io_bn", "all", "scratch"))
    assert ("backbone.level1.act.weight" in changed) == (scheme in ("all", "scratch"))
    assert (not moved) if scheme == "io" else ("level1.bn.running_mean" in moved)
