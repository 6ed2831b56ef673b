"""Segmentation decoders against the paper's Listings 4 (U-Net) and 6 (linear): levels, channels, skips."""

import pytest
import torch
from random_clouds import random_sparse_batch
from torch import nn

from image2point.inflate.converter import InflationSettings
from image2point.models import EncoderLevel, LinearDecoder, NetworkConfig, UNetDecoder, build_network, encoder_levels
from image2point.models.decoder import UNET_DROPOUT, UPSAMPLE_KERNEL, LinearDecoderLevel, ResidualDecoderLevel
from image2point.sparse.modules import SparseReLU

NUM_CLASSES = 7
# (C_deeper, C_skip, up-conv?) per decoder level, deepest first: Listing 4's decode1 … decode4 with the
# encoder channels of each backbone (x_i, x1, x2, …).
RESNET18_CONV3 = [(512, 256, True), (256, 128, True), (128, 64, True), (64, 64, True)]
RESNET18_LINEAR = [(512, 256, True), (256, 128, True), (128, 64, True), (64, 64, False)]
CIFAR56_CONV3 = [(64, 32, True), (32, 16, True), (16, 16, True)]
CIFAR56_LINEAR = [(64, 32, True), (32, 16, True), (16, 16, False)]
LEVELS = {("resnet18", "conv3"): RESNET18_CONV3, ("resnet18", "linear"): RESNET18_LINEAR,
          ("cifar_resnet56", "conv3"): CIFAR56_CONV3, ("cifar_resnet56", "linear"): CIFAR56_LINEAR}
STRIDES = {"conv3": [1, 2, 4, 8, 16], "linear": [1, 1, 2, 4, 8]}


def segmenter(backbone, input_layer, head, stride_mode="floor"):
    config = NetworkConfig(task="segmentation", backbone=backbone, in_features=4, num_classes=NUM_CLASSES,
                           input_layer=input_layer, head=head, inflation=InflationSettings(stride_mode=stride_mode))
    return build_network(config).network


def random_scene(seed=0, batch_size=2, grid=24, points=400, in_features=4):
    return random_sparse_batch(in_features, batch_size, grid, points, seed)


def conv_shape(conv):
    return tuple(conv.weight.shape)


def check_residual_level(level, deeper, skip, upsample):
    assert isinstance(level, ResidualDecoderLevel)
    if upsample:
        # up_i keeps its channel count (Listing 4: sparse_deconv(C, C, k=2, s=2)), then BN + ReLU.
        assert conv_shape(level.up) == (deeper, deeper, UPSAMPLE_KERNEL, UPSAMPLE_KERNEL, UPSAMPLE_KERNEL)
        assert level.up_bn.num_features == deeper
    else:
        assert level.up is None and level.up_bn is None
    first, second = level.blocks
    assert conv_shape(first.conv1) == (skip, deeper + skip, 3, 3, 3)
    assert conv_shape(first.conv2) == (skip, skip, 3, 3, 3)
    assert conv_shape(first.projection[0]) == (skip, deeper + skip, 1, 1, 1)
    assert conv_shape(second.conv1) == conv_shape(second.conv2) == (skip, skip, 3, 3, 3)
    assert second.projection is None


def check_linear_level(level, deeper, skip, upsample):
    assert isinstance(level, LinearDecoderLevel)
    if upsample:
        assert conv_shape(level.up) == (deeper, deeper, UPSAMPLE_KERNEL, UPSAMPLE_KERNEL, UPSAMPLE_KERNEL)
    else:
        assert level.up is None
    conv, bn = level.fuse
    assert conv_shape(conv) == (skip, deeper + skip, 3, 3, 3)
    assert bn.num_features == skip
    assert not any(isinstance(m, (SparseReLU, nn.ReLU)) for m in level.modules())


@pytest.mark.parametrize("backbone,input_layer", sorted(LEVELS))
def test_unet_levels_follow_listing4(backbone, input_layer):
    head = segmenter(backbone, input_layer, "unet").head
    assert isinstance(head, UNetDecoder)
    expected = LEVELS[(backbone, input_layer)]
    assert len(head.levels) == len(expected)
    for level, (deeper, skip, upsample) in zip(head.levels, expected):
        check_residual_level(level, deeper, skip, upsample)
    assert head.classifier.in_features == expected[-1][1] and head.classifier.out_features == NUM_CLASSES
    assert head.dropout.p == UNET_DROPOUT


@pytest.mark.parametrize("backbone,input_layer", sorted(LEVELS))
def test_linear_decoder_levels_follow_listing6(backbone, input_layer):
    head = segmenter(backbone, input_layer, "linear").head
    assert isinstance(head, LinearDecoder)
    expected = LEVELS[(backbone, input_layer)]
    assert len(head.levels) == len(expected)
    for level, (deeper, skip, upsample) in zip(head.levels, expected):
        check_linear_level(level, deeper, skip, upsample)
    assert head.dropout is None
    assert head.classifier.in_features == expected[-1][1]


def test_decoder_fuses_down_to_each_skip_width_where_x_i_is_narrower_than_x1():
    # A bottleneck backbone (ResNet-50: x_i 64, x1 256 channels): decode4 = res(256 + 64 → 64).
    levels = [EncoderLevel(8, 1), EncoderLevel(32, 2), EncoderLevel(64, 4)]
    head = UNetDecoder(levels, NUM_CLASSES)
    for level, (deeper, skip, upsample) in zip(head.levels, [(64, 32, True), (32, 8, True)], strict=True):
        check_residual_level(level, deeper, skip, upsample)
    assert head.classifier.in_features == 8


@pytest.mark.parametrize("input_layer", ["conv3", "linear"])
@pytest.mark.parametrize("stride_mode", ["floor", "window"])
def test_skips_start_with_the_full_resolution_input_layer_output(input_layer, stride_mode):
    network = segmenter("resnet18", input_layer, "linear", stride_mode).eval()
    x = random_scene()
    skips = network.encode(x)
    assert [skip.stride for skip in skips] == STRIDES[input_layer]
    torch.testing.assert_close(skips[0].features, network.input_layer.full_resolution(x).features)
    torch.testing.assert_close(skips[-1].features, network.backbone(network.input_layer(x)).features)
    levels = encoder_levels(network.input_layer, network.backbone, network.backbone.in_channels)
    assert levels == [EncoderLevel(skip.num_channels, skip.stride) for skip in skips]


@pytest.mark.parametrize("head", ["unet", "linear"])
@pytest.mark.parametrize("input_layer", ["conv3", "linear"])
def test_decoders_score_every_input_site_and_train_every_parameter(head, input_layer):
    network = segmenter("cifar_resnet20", input_layer, head).train()
    x = random_scene()
    logits = network(x)
    assert logits.shape == (x.num_sites, NUM_CLASSES)
    logits.square().mean().backward()
    untouched = [name for name, p in network.head.named_parameters() if p.grad is None or not p.grad.any()]
    assert untouched == []


def test_unet_drops_deepest_features_only_in_training():
    network = segmenter("cifar_resnet20", "conv3", "unet")
    x = random_scene()
    network.eval()
    torch.testing.assert_close(network(x), network(x))
    network.train()
    torch.manual_seed(0)
    first = network(x)
    torch.manual_seed(1)
    assert not torch.allclose(first, network(x))


def test_decoder_refuses_strides_that_skip_a_level():
    with pytest.raises(ValueError, match="do not halve one at a time"):
        UNetDecoder([EncoderLevel(8, 1), EncoderLevel(8, 4)], NUM_CLASSES)
