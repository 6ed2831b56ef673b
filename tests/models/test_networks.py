"""Transferred networks: shapes per task and variant, pretrained weights reach the backbone, reports."""

import pytest
import torch
from random_clouds import random_sparse_batch

from image2point.inflate.converter import InflationSettings
from image2point.inflate.transforms import filter_transform, inflate_weight
from image2point.models import NetworkConfig, SparseClassifier, SparseSegmenter, build_network
from image2point.models2d import create_model_2d

NUM_CLASSES = 5


def random_batch(in_features: int = 3, seed: int = 0, batch_size: int = 2, grid: int = 20, points: int = 200,
                 device: torch.device | str = "cpu"):
    return random_sparse_batch(in_features, batch_size, grid, points, seed, device)


@pytest.mark.parametrize("backbone", ["cifar_resnet20", "resnet18", "vgg_small", "none"])
@pytest.mark.parametrize("input_layer,head", [("conv3", "mlp"), ("linear", "linear")])
def test_classifier_outputs_one_row_per_sample(backbone, input_layer, head, device):
    config = NetworkConfig(backbone=backbone, num_classes=NUM_CLASSES, input_layer=input_layer, head=head)
    network = build_network(config).network.to(device)
    assert isinstance(network, SparseClassifier)
    network.eval()
    logits = network(random_batch(device=device))
    assert logits.shape == (2, NUM_CLASSES) and logits.device == device
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("backbone", ["cifar_resnet20", "resnet18", "none"])
@pytest.mark.parametrize("input_layer,head", [("conv3", "unet"), ("linear", "linear"), ("conv3", "linear")])
@pytest.mark.parametrize("stride_mode", ["floor", "window"])
def test_segmenter_outputs_one_row_per_voxel(backbone, input_layer, head, stride_mode, device):
    config = NetworkConfig(task="segmentation", backbone=backbone, in_features=4, num_classes=NUM_CLASSES,
                           input_layer=input_layer, head=head, inflation=InflationSettings(stride_mode=stride_mode))
    network = build_network(config).network.to(device)
    assert isinstance(network, SparseSegmenter)
    x = random_batch(in_features=4, device=device)
    logits = network(x)
    assert logits.shape == (x.num_sites, NUM_CLASSES) and logits.device == device
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in network.parameters() if p.requires_grad)


def test_segmentation_on_a_multi_downsampling_stage_is_refused():
    with pytest.raises(ValueError, match="one resolution level per stage"):
        build_network(NetworkConfig(task="segmentation", backbone="vgg_small", head="unet"))


def test_pretrained_2d_weights_reach_the_backbone_inflated():
    model_2d = create_model_2d("cifar_resnet20")
    built = build_network(NetworkConfig(backbone="cifar_resnet20"), model_2d=model_2d)
    transform = filter_transform("default", 3)
    expected = inflate_weight(model_2d.layer2[0].conv1.weight.detach(), transform)
    assert torch.equal(built.network.backbone.layer2[0].conv1.weight.detach(), expected)
    torch.testing.assert_close(built.network.backbone.layer3[2].bn2.running_var,
                               model_2d.layer3[2].bn2.running_var)


def test_report_accounts_for_stem_classifier_and_new_layers():
    model_2d = create_model_2d("resnet18")
    report = build_network(NetworkConfig(backbone="resnet18"), model_2d=model_2d).report
    assert report.accounted_2d_keys() == set(model_2d.state_dict())
    assert {"conv1.weight", "bn1.running_mean", "fc.weight"} <= set(report.dropped)
    assert any(name.startswith("input_layer.") for name in report.initialised)
    assert any(name.startswith("head.") for name in report.initialised)
    assert len(report.inflated) == 19  # ResNet-18: 20 convs less the 7×7 stem


def test_forward_features_and_head_compose_to_forward():
    network = build_network(NetworkConfig(backbone="cifar_resnet20", num_classes=NUM_CLASSES)).network.eval()
    x = random_batch()
    torch.testing.assert_close(network.forward_head(network.forward_features(x)), network(x))
