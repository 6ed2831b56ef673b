"""Classification output layers against the paper's Listings 1, 3 and 5."""

import pytest
from random_clouds import random_sparse_batch
from torch import nn

from image2point.models import ClassificationHead, NetworkConfig, build_network
from image2point.models.heads import HEAD_HIDDEN_CHANNELS
from image2point.models.networks import LINEAR_NETWORK_WIDTH

NUM_CLASSES = 11


def layer_types(sequential):
    return [type(layer) for layer in sequential]


def random_shapes(in_features=3, batch_size=4, grid=12, points=150, seed=0):
    return random_sparse_batch(in_features, batch_size, grid, points, seed)


def test_mlp_head_is_listing3_fc1024_bn_relu_fc():
    assert HEAD_HIDDEN_CHANNELS == 1024
    head = build_network(NetworkConfig(backbone="resnet18", num_classes=NUM_CLASSES)).network.head
    first, bn, relu, last = head.classifier
    assert layer_types(head.classifier) == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert (first.in_features, first.out_features) == (512, 1024)
    assert bn.num_features == 1024
    assert (last.in_features, last.out_features) == (1024, NUM_CLASSES)


def test_mlp_head_width_is_configurable():
    head = build_network(NetworkConfig(backbone="cifar_resnet20", num_classes=NUM_CLASSES, head_hidden=96)).network.head
    assert head.classifier[0].out_features == head.classifier[1].num_features == head.classifier[3].in_features == 96


def test_linear_head_is_listing5_fc_then_bn1d():
    network = build_network(NetworkConfig(backbone="resnet18", num_classes=NUM_CLASSES, input_layer="linear",
                                          head="linear")).network
    fc, bn = network.head.classifier
    assert layer_types(network.head.classifier) == [nn.Linear, nn.BatchNorm1d]
    assert (fc.in_features, fc.out_features, bn.num_features) == (512, NUM_CLASSES, NUM_CLASSES)
    # Listing 5's input layer: one 3×3×3 conv to layer1's input width, then BN; no ReLU, no stride.
    conv, input_bn = network.input_layer.full_resolution
    assert tuple(conv.weight.shape) == (64, 3, 3, 3, 3) and input_bn.num_features == 64
    assert network.input_layer.downsample is None


def test_backbone_free_linear_network_is_listing1_at_resnet18_width():
    assert LINEAR_NETWORK_WIDTH == 512  # ResNet-18's layer4_Odim
    network = build_network(NetworkConfig(backbone="none", num_classes=NUM_CLASSES, input_layer="linear",
                                          head="linear")).network
    conv, bn = network.input_layer.full_resolution
    assert tuple(conv.weight.shape) == (512, 3, 3, 3, 3) and bn.num_features == 512
    assert network.backbone is None
    fc, out_bn = network.head.classifier
    assert (fc.in_features, fc.out_features, out_bn.num_features) == (512, NUM_CLASSES, NUM_CLASSES)
    assert network.eval()(random_shapes()).shape == (4, NUM_CLASSES)


def test_backbone_free_width_is_configurable():
    network = build_network(NetworkConfig(backbone="none", num_classes=NUM_CLASSES, input_layer="linear",
                                          head="linear", linear_width=32)).network
    assert network.input_layer.full_resolution[0].out_channels == 32
    assert network.head.classifier[0].in_features == 32


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_heads_train_on_a_batch(kind):
    head = ClassificationHead(16, NUM_CLASSES, kind, hidden_channels=32).train()
    x = random_shapes(in_features=16)
    logits = head(x)
    assert logits.shape == (4, NUM_CLASSES)
    logits.square().mean().backward()
    assert all(p.grad is not None for p in head.parameters())


def test_unknown_head_and_bad_width_are_refused():
    with pytest.raises(ValueError, match="unknown classification head 'unet'"):
        ClassificationHead(8, 2, "unet")
    with pytest.raises(ValueError, match="hidden_channels must be at least 1"):
        ClassificationHead(8, 2, "mlp", hidden_channels=0)
