"""Any 2D family as the paper's network's backbone, through its traced forward: the stages compute the 2D
stages on a plane, the networks of both tasks run and train, the report and the finetuning schemes see the
stem-free backbone and its image adapter, and configs build them with real checkpoints."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from random_clouds import random_sparse_batch

from image2point.inflate.converter import InflationSettings, UnsupportedLayerError
from image2point.models import NetworkConfig, SparseClassifier, SparseSegmenter, build_network
from image2point.models.finetune import apply_finetune_scheme, optimizer_parameters
from image2point.models.graph_backbone import (
    EncoderTaps,
    GraphBackbone,
    encoder_taps,
    inflate_graph_backbone,
)
from image2point.models2d import create_model_2d
from image2point.sparse import SparseTensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inflate"))
from plane_checks import (  # noqa: E402
    SHARED_WEIGHTS,
    assert_same_output,
    image_on_plane,
    plane_as_image,
    randomize_batchnorm,
    real_images,
)

NUM_CLASSES = 5
SEED = 0
CENTER = InflationSettings(shortcut="center")


def seeded(arch: str):
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        return randomize_batchnorm(create_model_2d(arch), SEED).eval()


def random_batch(in_features: int = 4, batch_size: int = 2, grid: int = 16, points: int = 150) -> SparseTensor:
    return random_sparse_batch(in_features, batch_size, grid, points, SEED)


def test_taps_come_from_the_backbone_layout_or_the_registry():
    assert encoder_taps(create_model_2d("mobilenet_v1_x0_25")) == EncoderTaps(
        "stage1.0", ("stage1.1", "stage1.2", "stage1.3", "stage1.4", "stage1.5", "stage2.0", "stage2.1",
                     "stage2.2", "stage2.3", "stage2.4", "stage2.5", "stage3.0", "stage3.1"))
    assert encoder_taps(create_model_2d("espnet_c")) == EncoderTaps(None, ("b1", "b2", "b3"))
    with pytest.raises(UnsupportedLayerError, match="neither backbone_layout"):
        encoder_taps(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1)))


def test_stem_free_stages_equal_the_2d_stages_on_a_plane():
    """MobileNetV2: the 2D stem's output on a plane, fed where the input layer's output goes, gives every
    2D stage output."""
    model_2d = seeded("mobilenet_v2")
    backbone, report = inflate_graph_backbone(model_2d, CENTER)
    assert backbone.in_channels == 32 and backbone.adapter is None
    assert [stage.num_downsamples for stage in backbone.stages] == [0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    # The stem and the classifier are not part of the backbone.
    assert {key.split(".")[0] + "." + key.split(".")[1] for key in report.dropped} == {"features.0", "classifier.1"}
    assert report.initialised == [] and report.classifier == []
    images = real_images("mnist", 2)
    with torch.no_grad():
        x = model_2d.features[0](images)
        outs = backbone.eval().forward_stages(image_on_plane(x))
        for index, out in enumerate(outs, start=1):
            x = model_2d.features[index](x)
            assert_same_output(plane_as_image(out, *x.shape[2:]), x)


def test_image_reading_family_gets_an_adapter_and_its_stages_equal_2d_when_it_passes_the_image():
    """ESPNet-C reads the image at every level: the whole forward is kept behind a 1×1×1 adapter; with the
    adapter passing three input channels through, the stages are the 2D b1, b2, b3."""
    path = SHARED_WEIGHTS / "espnet_p2_q8_cityscapes_encoder.pth"
    if not path.is_file():
        pytest.skip(f"shared ESPNet checkpoint {path} is not available")
    from image2point.models2d import build_pretrained_2d

    model_2d = build_pretrained_2d("espnet_c_p2_q8_cityscapes")[0].eval()
    backbone, report = inflate_graph_backbone(model_2d, CENTER)
    assert backbone.adapter is not None and backbone.in_channels == 32
    assert [(s.name, s.out_channels, s.num_downsamples) for s in backbone.stages] == [
        ("b1", 19, 1), ("b2", 131, 1), ("b3", 256, 1)]
    assert report.dropped == ["classifier.conv.weight"]
    assert report.initialised == ["adapter.weight", "adapter.bias"]
    with torch.no_grad():
        backbone.adapter.weight.zero_()
        backbone.adapter.bias.zero_()
        for channel in range(3):
            backbone.adapter.weight[channel, channel] = 1.0
    from image2point.models2d.espnet import cityscapes_input

    images = cityscapes_input(real_images("tiny_imagenet", 2, None, normalize=False) * 255.0)
    padded = F.pad(images, (0, 0, 0, 0, 0, backbone.in_channels - 3))
    from image2point.inflate.graph_convert import trace_2d

    with torch.no_grad():
        references = trace_2d(model_2d, outputs=["b1", "b2", "b3"])(images)
        outs = backbone.eval().forward_stages(image_on_plane(padded))
    assert len(outs) == len(references) == 3
    for out, reference in zip(outs, references):
        assert_same_output(plane_as_image(out, *reference.shape[2:]), reference)


def test_an_entry_the_forward_reads_past_is_refused():
    with pytest.raises(UnsupportedLayerError, match=r"^level1: the forward reads the image after this entry"):
        inflate_graph_backbone(create_model_2d("espnet_c"), taps=EncoderTaps("level1", ("b1", "b2")))


@pytest.mark.parametrize("arch, input_layer", [("mobilenet_v1_x0_25", "conv3"), ("espnet_c", "linear"),
                                               ("mobilenet_v3_small", "conv3")])
@pytest.mark.parametrize("task, head", [("classification", "mlp"), ("segmentation", "unet"),
                                        ("segmentation", "linear")])
def test_networks_of_both_tasks_run_and_reach_every_trainable_parameter(arch, input_layer, task, head):
    config = NetworkConfig(task=task, backbone=arch, in_features=4, num_classes=NUM_CLASSES,
                           input_layer=input_layer, head=head)
    network = build_network(config).network.train()
    assert isinstance(network.backbone, GraphBackbone)
    assert isinstance(network, SparseClassifier if task == "classification" else SparseSegmenter)
    x = random_batch()
    logits = network(x)
    assert logits.shape == ((2 if task == "classification" else x.num_sites), NUM_CLASSES)
    logits.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in network.parameters() if p.requires_grad)


def test_window_stride_convention_segments_too():
    config = NetworkConfig(task="segmentation", backbone="mobilenet_v1_x0_25", in_features=4,
                           num_classes=NUM_CLASSES, head="unet", inflation=InflationSettings(stride_mode="window"))
    network = build_network(config).network
    x = random_batch()
    assert network(x).shape == (x.num_sites, NUM_CLASSES)


def test_scheme_io_trains_input_layer_adapter_and_head_and_freezes_backbone_statistics():
    network = build_network(NetworkConfig(backbone="espnet_c", in_features=4, num_classes=NUM_CLASSES,
                                          input_layer="linear")).network
    plan = apply_finetune_scheme(network, "io")
    assert "backbone.adapter.weight" in plan.trainable and "backbone.adapter.bias" in plan.trainable
    assert all(not name.startswith("backbone.encoder.") for name in plan.trainable)
    assert plan.backbone_bn_stats_frozen
    bn = network.backbone.encoder.level2_0.bn
    before = (bn.running_mean.clone(), bn.weight.clone())
    optimizer = torch.optim.SGD(optimizer_parameters(network), lr=0.1)
    network.train()
    F.cross_entropy(network(random_batch()), torch.tensor([0, 3])).backward()
    optimizer.step()
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.weight, before[1])


def test_report_of_a_built_network_names_backbone_tensors_with_their_prefix():
    report = build_network(NetworkConfig(backbone="espnet_c", in_features=4, num_classes=NUM_CLASSES,
                                         input_layer="linear")).report
    assert "backbone.adapter.weight" in report.initialised
    assert any(name.startswith("input_layer.") for name in report.initialised)
    assert not any(name.startswith("backbone.encoder.") for name in report.initialised)


def test_scheme_t_trains_the_shared_transforms_of_depthwise_and_pointwise_free_convs():
    config = NetworkConfig(backbone="mobilenet_v1_x0_25", in_features=4, num_classes=NUM_CLASSES,
                           inflation=InflationSettings(learnable_t="shared"))
    network = build_network(config).network
    plan = apply_finetune_scheme(network, "t")
    backbone_trainable = [name for name in plan.trainable if name.startswith("backbone.")]
    # One shared T for the 3×3 kernels (depthwise ones included); 1×1 convs have none.
    assert len(backbone_trainable) == 1 and backbone_trainable[0].endswith(".transform.transform")
    network(random_batch()).sum().backward()
    transform = network.get_parameter(backbone_trainable[0])
    assert transform.grad is not None and transform.grad.abs().sum() > 0
