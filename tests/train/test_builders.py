"""Run configs reach the voxel networks: the output-layer widths of ``model.*``."""

from image2point.train.builders import build_model
from image2point.train.config import load_config

NUM_CLASSES = 5


def test_head_hidden_reaches_the_mlp_head():
    config = load_config(None, ["model.backbone=cifar_resnet20", "model.head_hidden=48"])
    head = build_model(config, 3, NUM_CLASSES, "classification").network.head
    assert head.classifier[0].out_features == head.classifier[3].in_features == 48


def test_linear_width_reaches_the_backbone_free_network():
    config = load_config(None, ["model.backbone=none", "model.input_layer=linear", "model.head=linear",
                                "model.linear_width=24"])
    network = build_model(config, 4, NUM_CLASSES, "segmentation").network
    assert network.input_layer.full_resolution[0].out_channels == 24
    assert network.head.classifier.in_features == 24
