"""Finetuning schemes: trainable sets equal hand counts, frozen weights and statistics never move."""

import pytest
import torch
from random_clouds import random_sparse_batch

from image2point.inflate.converter import InflationSettings
from image2point.models import NetworkConfig, SCHEMES, apply_finetune_scheme, build_network, optimizer_parameters
from image2point.sparse import SparseTensor

KERNEL_VOLUME = 27  # 3×3×3
IN_FEATURES = 3
NUM_CLASSES = 10
HIDDEN = 1024  # Listing 3
STEM = 16  # CIFAR ResNet: the input layer produces the 16 channels layer1 expects

# Hand counts for NetworkConfig(backbone="cifar_resnet20", num_classes=10) with the conv3 input layer.
INPUT_LAYER = (STEM * IN_FEATURES * KERNEL_VOLUME + 2 * STEM) + 2 * (STEM * STEM * KERNEL_VOLUME + 2 * STEM)
HEAD = 64 * HIDDEN + 2 * HIDDEN + HIDDEN * NUM_CLASSES + NUM_CLASSES
BACKBONE_CONVS = KERNEL_VOLUME * (
    6 * 16 * 16  # layer1: three blocks of two 16→16 convs
    + 32 * 16 + 5 * 32 * 32  # layer2
    + 64 * 32 + 5 * 64 * 64  # layer3
)
BACKBONE_BN_AFFINE = 2 * 6 * (16 + 32 + 64)
EXPECTED_TRAINABLE = {
    "io": INPUT_LAYER + HEAD,
    "io_stats": INPUT_LAYER + HEAD,
    "io_bn": INPUT_LAYER + HEAD + BACKBONE_BN_AFFINE,
    "all": INPUT_LAYER + HEAD + BACKBONE_BN_AFFINE + BACKBONE_CONVS,
    "scratch": INPUT_LAYER + HEAD + BACKBONE_BN_AFFINE + BACKBONE_CONVS,
}


def cifar_network(**inflation):
    config = NetworkConfig(backbone="cifar_resnet20", in_features=IN_FEATURES, num_classes=NUM_CLASSES,
                           inflation=InflationSettings(**inflation))
    return build_network(config).network


def random_batch(seed: int = 0, batch_size: int = 2, grid: int = 24, points: int = 300,
                 device: torch.device | str = "cpu") -> SparseTensor:
    return random_sparse_batch(IN_FEATURES, batch_size, grid, points, seed, device)


def count(parameters) -> int:
    return sum(p.numel() for p in parameters)


@pytest.mark.parametrize("scheme", sorted(EXPECTED_TRAINABLE))
def test_trainable_parameter_counts_equal_hand_counts(scheme):
    network = cifar_network()
    apply_finetune_scheme(network, scheme)
    assert count(optimizer_parameters(network)) == EXPECTED_TRAINABLE[scheme]


def test_learnable_t_scheme_trains_io_and_the_shared_transforms():
    network = cifar_network(learnable_t="shared")
    plan = apply_finetune_scheme(network, "t")
    one_shared_t_for_3x3 = 9 * 27
    assert count(optimizer_parameters(network)) == INPUT_LAYER + HEAD + one_shared_t_for_3x3
    assert not plan.backbone_bn_stats_frozen


def test_scheme_t_needs_a_learnable_transform():
    with pytest.raises(ValueError, match="learnable T"):
        apply_finetune_scheme(cifar_network(), "t")


def test_unknown_scheme_is_rejected():
    with pytest.raises(ValueError, match="unknown finetuning scheme"):
        apply_finetune_scheme(cifar_network(), "bn_only")


def _train_steps(network, steps: int = 2, device: torch.device | str = "cpu") -> None:
    optimizer = torch.optim.SGD(optimizer_parameters(network), lr=0.1, momentum=0.9, weight_decay=1e-4)
    network.train()
    for step in range(steps):
        logits = network(random_batch(seed=step, device=device))
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 3], device=device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("scheme", ["io", "io_stats", "io_bn"])
def test_frozen_weights_are_bit_identical_after_optimizer_steps(scheme, device):
    network = cifar_network().to(device)
    plan = apply_finetune_scheme(network, scheme)
    before = {name: tensor.clone() for name, tensor in network.state_dict().items()}
    _train_steps(network, device=device)
    after = network.state_dict()
    frozen = set(plan.frozen)
    assert frozen, "a scheme that freezes nothing cannot show anything"
    for name in frozen:
        assert torch.equal(before[name], after[name]), name
    moved = [name for name in plan.trainable if not torch.equal(before[name], after[name])]
    assert len(moved) == len(plan.trainable)


def _backbone_bn_statistics(network) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in network.state_dict().items()
            if name.startswith("backbone.") and ("running_" in name or "num_batches_tracked" in name)}


def test_bn_statistics_unchanged_under_io_and_updated_under_io_stats(device):
    frozen_stats = cifar_network().to(device)
    apply_finetune_scheme(frozen_stats, "io")
    before = _backbone_bn_statistics(frozen_stats)
    _train_steps(frozen_stats, device=device)
    assert all(torch.equal(before[k], v) for k, v in _backbone_bn_statistics(frozen_stats).items())
    assert not any(m.training for m in frozen_stats.backbone.modules() if isinstance(m, torch.nn.BatchNorm1d))
    assert frozen_stats.input_layer.training and frozen_stats.head.training

    moving_stats = cifar_network().to(device)
    apply_finetune_scheme(moving_stats, "io_stats")
    before = _backbone_bn_statistics(moving_stats)
    _train_steps(moving_stats, device=device)
    after = _backbone_bn_statistics(moving_stats)
    assert any(not torch.equal(before[k], after[k]) for k in before if "running_mean" in k)


def test_learnable_t_receives_gradients_and_2d_weights_do_not(device):
    network = cifar_network(learnable_t="per_conv").to(device)
    apply_finetune_scheme(network, "t")
    logits = network(random_batch(device=device))
    logits.sum().backward()
    transforms = [p for name, p in network.named_parameters() if name.endswith("transform.transform")]
    assert transforms and all(p.grad is not None and p.grad.abs().sum() > 0 for p in transforms)
    weights_2d = [b for name, b in network.named_buffers() if name.endswith("weight_2d")]
    assert weights_2d and all(not b.requires_grad and b.grad is None for b in weights_2d)


def test_scratch_reinitialises_the_backbone():
    network = cifar_network()
    before = {k: v.clone() for k, v in network.backbone.state_dict().items() if k.endswith("conv1.weight")}
    apply_finetune_scheme(network, "scratch")
    after = network.backbone.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)


def test_every_scheme_is_listed():
    assert set(SCHEMES) == set(EXPECTED_TRAINABLE) | {"t"}
