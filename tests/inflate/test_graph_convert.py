"""The whole-forward converter's contract: refusals name the module path and the node, partial graphs
(``outputs``) stop at named values, the converted model keeps the 2D names, learnable T and training work
through the graph."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from plane_checks import assert_same_output, image_on_plane, plane_as_image, randomize_batchnorm, real_images
from torch import nn

from image2point.inflate.converter import InflatedSparseConv3d, UnsupportedLayerError, convert_2d_to_3d
from image2point.inflate.graph_convert import trace_2d
from image2point.inflate.mirror import ConvertedContainer
from image2point.models2d import create_model_2d
from image2point.sparse import SparseTensor
from image2point.sparse.modules import SparseConv3d

SEED = 0
SHORTCUT = "center"


def seeded(build):
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        return randomize_batchnorm(build(), SEED).eval()


class Body(nn.Module):
    def __init__(self, tail):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.tail = tail

    def forward(self, x):
        return self.tail(self.conv(x))


def net_around(tail) -> nn.Module:
    """``stem`` then ``body`` (a conv, then ``tail(x)`` inside ``body``'s forward)."""
    return nn.Sequential(OrderedDict([("stem", nn.Conv2d(3, 8, 3, padding=1)), ("body", Body(tail))]))


# ---------------------------------------------------------------------------------------------------
# Refusals.


@pytest.mark.parametrize("tail, operation", [
    (lambda x: x.flatten(1), ".flatten()"),
    (lambda x: F.interpolate(x, scale_factor=2.0), "interpolate"),
    (lambda x: x[:, :, 1:], "getitem"),
    (lambda x: F.pad(x, (1, 1, 1, 1)), "pad"),
    (lambda x: x.sum(1, keepdim=True), ".sum()"),
])
def test_an_operation_on_a_spatial_map_without_sparse_counterpart_is_refused_naming_path_and_node(tail, operation):
    with pytest.raises(UnsupportedLayerError) as error:
        convert_2d_to_3d(net_around(tail))
    message = str(error.value)
    assert message.startswith("body:"), message
    assert "node '" in message and operation in message, message


def test_a_module_without_sparse_counterpart_is_refused_naming_its_path():
    model = net_around(nn.Upsample(scale_factor=2))
    with pytest.raises(UnsupportedLayerError, match=r"^body\.tail: Upsample has no sparse counterpart"):
        convert_2d_to_3d(model)


def test_a_per_pixel_layer_on_a_channels_first_map_is_refused():
    """``nn.Linear`` on [B, C, H, W] acts on the width: it carries over only after a permute to channels last."""
    with pytest.raises(UnsupportedLayerError, match=r"^body\.tail: Linear on a channels_first map"):
        convert_2d_to_3d(net_around(nn.Linear(8, 8)))


def test_a_forward_torch_fx_cannot_trace_is_refused():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else x

    with pytest.raises(UnsupportedLayerError, match=r"^model: torch\.fx cannot trace the forward of DataDependent"):
        convert_2d_to_3d(DataDependent())


def test_a_global_pool_other_than_1x1_is_refused():
    with pytest.raises(UnsupportedLayerError, match=r"^body\.tail: only a global average pool"):
        convert_2d_to_3d(net_around(nn.AdaptiveAvgPool2d(2)))


def test_an_unknown_output_name_is_refused_naming_it():
    with pytest.raises(UnsupportedLayerError, match=r"^features\.99: not a node"):
        convert_2d_to_3d(create_model_2d("mobilenet_v2"), outputs="features.99")


# ---------------------------------------------------------------------------------------------------
# Partial graphs, names, the report.


@pytest.fixture(scope="module")
def mobilenet_v2():
    return seeded(lambda: create_model_2d("mobilenet_v2", num_classes=10))


def test_a_graph_cut_at_a_module_path_returns_that_module_s_sparse_output(mobilenet_v2):
    converted = convert_2d_to_3d(mobilenet_v2, shortcut=SHORTCUT, outputs="features.6")
    images = real_images("mnist", 2)
    with torch.no_grad():
        expected = mobilenet_v2.features[:7](images)
        out = converted.model(image_on_plane(images))
    assert isinstance(out, SparseTensor) and out.stride == 8
    assert_same_output(plane_as_image(out, *expected.shape[2:]), expected)
    # Only what the cut graph needs is built; the classifier is not reported, its keys are dropped.
    assert converted.report.classifier == []
    assert "classifier.1.weight" in converted.report.dropped and "features.7.conv.0.0.weight" in converted.report.dropped
    assert converted.report.accounted_2d_keys() == set(mobilenet_v2.state_dict())


def test_several_outputs_return_a_list_like_the_2d_graph_cut_at_the_same_names(mobilenet_v2):
    names = ["features.1", "features.3", "features.6", "features.13"]
    model_3d = convert_2d_to_3d(mobilenet_v2, shortcut=SHORTCUT, outputs=names).model
    traced_2d = trace_2d(mobilenet_v2, outputs=names)
    images = real_images("mnist", 2)
    with torch.no_grad():
        expected = traced_2d(images)
        outs = model_3d(image_on_plane(images))
    assert [out.stride for out in outs] == [2, 4, 8, 16]
    for out, reference in zip(outs, expected):
        assert_same_output(plane_as_image(out, *reference.shape[2:]), reference)


def test_a_graph_cut_at_a_node_name(mobilenet_v2):
    node = next(n.name for n in trace_2d(mobilenet_v2).graph.nodes if n.op == "call_function")
    model_3d = convert_2d_to_3d(mobilenet_v2, shortcut=SHORTCUT, outputs=node).model
    images = real_images("mnist", 2)
    with torch.no_grad():
        expected = trace_2d(mobilenet_v2, outputs=node)(images)
        out = model_3d(image_on_plane(images))
    assert_same_output(plane_as_image(out, *expected.shape[2:]), expected)


def test_converted_model_keeps_the_2d_names_and_its_chains_run_on_their_own(mobilenet_v2):
    model_3d = convert_2d_to_3d(mobilenet_v2, shortcut=SHORTCUT).model.eval()
    assert set(model_3d.state_dict()) == set(mobilenet_v2.state_dict())
    assert isinstance(model_3d.features[0][0], SparseConv3d)
    assert model_3d.features[2].conv[1][0].groups == model_3d.features[2].conv[1][0].in_channels
    # The classifier stays a 2D Linear; the inverted residual blocks (own forward) become containers.
    assert type(model_3d.classifier[1]) is nn.Linear
    assert isinstance(model_3d.features[2], ConvertedContainer)
    with pytest.raises(NotImplementedError, match="only holds its children"):
        model_3d.features[2](image_on_plane(real_images("mnist", 1)))
    images = real_images("mnist", 2)
    with torch.no_grad():
        expected = mobilenet_v2.features[0](images)
        out = model_3d.features[0](image_on_plane(images))
    assert_same_output(plane_as_image(out, *expected.shape[2:]), expected)


def test_summary_names_the_classifier(mobilenet_v2):
    report = convert_2d_to_3d(mobilenet_v2).report
    assert sorted(report.classifier) == ["classifier.1.bias", "classifier.1.weight"]
    assert "classifier (kept 2D)  : 2 (classifier.1.weight, classifier.1.bias)" in report.summary()


# ---------------------------------------------------------------------------------------------------
# Learnable T and training through the graph.


def test_learnable_t_through_the_graph_starts_at_the_fixed_conversion_and_trains_t(mobilenet_v2):
    images = real_images("mnist", 2)
    fixed = convert_2d_to_3d(mobilenet_v2, shortcut=SHORTCUT).model.eval()
    learned = convert_2d_to_3d(mobilenet_v2, shortcut=SHORTCUT, learnable_t="shared").model.eval()
    depthwise = learned.features[2].conv[1][0]
    assert isinstance(depthwise, InflatedSparseConv3d) and depthwise.groups == depthwise.in_channels
    with torch.no_grad():
        torch.testing.assert_close(learned(image_on_plane(images)), fixed(image_on_plane(images)))
    learned(image_on_plane(images)).square().mean().backward()
    transform = depthwise.transform.transform
    assert transform.grad is not None and transform.grad.abs().sum() > 0
    assert depthwise.weight_2d.grad is None


def test_converted_network_trains_batchnorm_statistics_and_reaches_every_parameter():
    model_2d = seeded(lambda: create_model_2d("efficientnet_b0", num_classes=5))
    model_3d = convert_2d_to_3d(model_2d).model.train()
    before = model_3d.features[1][0].block[0][1].running_mean.clone()
    logits = model_3d(image_on_plane(real_images("mnist", 2)))
    F.cross_entropy(logits, torch.tensor([1, 3])).backward()
    assert not torch.equal(model_3d.features[1][0].block[0][1].running_mean, before)
    missing = [name for name, parameter in model_3d.named_parameters() if parameter.grad is None]
    assert missing == []
