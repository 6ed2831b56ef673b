"""Shared blocks of the torchvision-layout families: rounding, conv-norm-activation, SE, stochastic depth."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torch import nn

from image2point.models2d.blocks import (
    ConvNormActivation,
    Permute,
    SqueezeExcitation,
    StochasticDepth,
    make_divisible,
)


@pytest.mark.parametrize(
    "value, divisor, min_value, expected",
    [(32 * 0.75, 8, None, 24), (20, 8, None, 24), (10, 8, None, 16), (3, 8, None, 8), (96, 8, None, 96),
     (1280 * 1.1, 8, None, 1408), (44, 16, None, 48), (5, 8, 4, 8), (1, 8, 1, 1)],
)
def test_make_divisible_matches_the_tensorflow_rule(value, divisor, min_value, expected):
    assert make_divisible(value, divisor, min_value) == expected


def test_conv_norm_activation_layout():
    block = ConvNormActivation(4, 8, kernel_size=5, stride=2, dilation=2, groups=4)
    conv, norm, act = block
    assert conv.padding == (4, 4) and conv.bias is None and conv.groups == 4
    assert isinstance(norm, nn.BatchNorm2d) and isinstance(act, nn.ReLU) and act.inplace
    assert list(block.state_dict())[:2] == ["0.weight", "1.weight"]
    bare = ConvNormActivation(4, 8, kernel_size=1, norm_layer=None, activation_layer=None)
    assert len(bare) == 1 and bare[0].bias is not None
    assert block(torch.randn(2, 4, 9, 9)).shape == (2, 8, 5, 5)


def test_squeeze_excitation_gates_channels():
    se = SqueezeExcitation(6, 2)
    x = torch.randn(2, 6, 4, 4)
    gate = torch.sigmoid(se.fc2(torch.relu(se.fc1(x.mean((2, 3), keepdim=True)))))
    torch.testing.assert_close(se(x), gate * x)
    assert sorted(se.state_dict()) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]


def test_stochastic_depth_is_identity_in_eval_and_drops_whole_samples_in_training():
    layer = StochasticDepth(0.5)
    x = torch.randn(2000, 3, 2, 2) + 5
    layer.eval()
    assert layer(x) is x
    layer.train()
    torch.manual_seed(0)
    out = layer(x)
    kept = (out != 0).flatten(1).all(1)
    dropped = (out == 0).flatten(1).all(1)
    assert torch.all(kept | dropped)
    torch.testing.assert_close(out[kept], x[kept] * 2)
    assert 0.45 < kept.float().mean() < 0.55
    assert torch.equal(StochasticDepth(1.0).train()(x), torch.zeros_like(x))
    zero = StochasticDepth(0.0).train()
    assert zero(x) is x
    with pytest.raises(ValueError, match="drop probability"):
        StochasticDepth(1.5)


def test_stochastic_depth_can_stay_a_leaf_under_fx():
    class Leafy(torch.fx.Tracer):
        def is_leaf_module(self, module: nn.Module, name: str) -> bool:
            return isinstance(module, StochasticDepth) or super().is_leaf_module(module, name)

    model = nn.Sequential(nn.Conv2d(2, 2, 1), StochasticDepth(0.3))
    graph = Leafy().trace(model)
    assert [n.target for n in graph.nodes if n.op == "call_module"] == ["0", "1"]
    # The default tracer inlines it with the mode the model is in (identity in eval mode).
    traced = torch.fx.symbolic_trace(model.eval())
    assert [n.target for n in traced.graph.nodes if n.op == "call_module"] == ["0"]


def test_permute():
    assert Permute([0, 2, 3, 1])(torch.zeros(1, 2, 3, 4)).shape == (1, 3, 4, 2)
