"""Checks shared by the tests of the 2D families: key digests, torch.fx tracing, backbone layouts."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

SHARED_DIR = Path(__file__).resolve().parents[2] / ".." / "shared"
SHARED_WEIGHTS = SHARED_DIR / "weights"
TINY_IMAGENET = SHARED_DIR / "data" / "tiny-imagenet-200"


def num_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def key_shape_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of the lines "<key> [<shape>]" in state-dict order: equal digests mean equal key lists,
    order and shapes. The expected digests in the tests were computed with this function on the
    ``state_dict()`` of torchvision 0.28.0's models (built with their default arguments)."""
    text = "\n".join(f"{key} {list(value.shape)}" for key, value in state.items())
    return hashlib.sha256(text.encode()).hexdigest()


def assert_sample_keys(model: nn.Module, expected: Mapping[str, list[int]]) -> None:
    state = model.state_dict()
    for key, shape in expected.items():
        assert key in state, key
        assert list(state[key].shape) == shape, key


def assert_fx_traces(model: nn.Module, x: torch.Tensor) -> torch.fx.GraphModule:
    """``symbolic_trace`` succeeds and the traced graph computes what the model computes (eval mode)."""
    model.eval()
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)
    return traced


def assert_layout_is_a_chain(model: nn.Module, x: torch.Tensor) -> None:
    """``backbone_layout()`` names real modules; stem then stages reproduce ``forward_features``;
    no stage halves the resolution twice; stem, stages and head hold every parameter."""
    layout = model.backbone_layout()
    model.eval()
    with torch.no_grad():
        out = x
        for path in layout.stem:
            out = model.get_submodule(path)(out)
        for path in layout.stages:
            before = out.shape[-1]
            out = model.get_submodule(path)(out)
            assert out.shape[-1] * 2 >= before, f"{path} downsamples more than once"
        torch.testing.assert_close(out, model.forward_features(x), rtol=0, atol=0)
    prefixes = layout.stem + layout.stages + layout.head
    for key, _ in model.named_parameters():
        assert any(key == p or key.startswith(p + ".") for p in prefixes), f"{key} is in no part of the layout"


def assert_matches_torchvision(model: nn.Module, expected: tuple[int, int, str]) -> None:
    """Parameter count, number of state-dict tensors and key/shape digest equal torchvision's
    ``expected`` (params, tensors, digest); a model on the meta device checks the same."""
    params, tensors, digest = expected
    state = model.state_dict()
    assert num_parameters(model) == params
    assert len(state) == tensors
    assert key_shape_digest(state) == digest


def assert_forward_fx_and_layout(
    model: nn.Module, features_shape: tuple[int, ...], num_classes: int = 1000
) -> torch.Tensor:
    """On a [2, 3, 64, 64] batch the features and logits have the expected shapes; the model traces
    with torch.fx and its layout is a chain. Returns the features for family-specific checks."""
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == features_shape
        assert model(x).shape == (2, num_classes)
    assert_fx_traces(model, x[:1])
    assert_layout_is_a_chain(model, x[:1])
    return features


def state_batch_norm(state: Mapping[str, torch.Tensor], prefix: str, t: torch.Tensor) -> torch.Tensor:
    """Eval-mode BatchNorm of ``t`` with the ``prefix.*`` tensors of a state dict (eps 1e-5), for the
    functional reference forwards."""
    return F.batch_norm(
        t,
        state[f"{prefix}.running_mean"],
        state[f"{prefix}.running_var"],
        state[f"{prefix}.weight"],
        state[f"{prefix}.bias"],
        training=False,
        eps=1e-5,
    )
