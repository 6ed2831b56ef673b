"""Strided shortcuts on a real shape: under the default setting every coarse site of every strided block
gets a shortcut; under "center" (read the child at 2q, as 2D does) many get an all-zero one.

A real ModelNet40 chair from ../shared at voxel 0.05, through build_network (input layer, inflated
backbone, head), for ResNet-18 (1×1 projection shortcuts) and CIFAR ResNet-56 (option-A subsamples).
Each strided shortcut is probed with its own forward on all-ones features over the sites it receives:
a coarse site whose probe row is zero is a site where the shortcut reads no child.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from image2point.inflate.converter import InflationSettings
from image2point.inflate.shortcuts import DEFAULT_STRIDED_SHORTCUT, StridedShortcut
from image2point.models import NetworkConfig, build_network
from image2point.sparse.modules import SparseConv3d, SparseSubsampleShortcut
from image2point.sparse.tensor import SparseTensor

SHARED_MODELNET40 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "modelnet40_normal_resampled"
VOXEL_SIZE = 0.05
SHAPE_CLASS = "chair"
ARCHITECTURES = ["resnet18", "cifar_resnet56"]
# Measured on this chair with "center": 43 % of layer2's and 22 % of layer3's coarse sites read no child.
CENTER_WORST_EMPTY_AT_LEAST = 0.3


@functools.cache
def chair_voxels() -> SparseTensor:
    from image2point.data.collate import VoxelCollator
    from image2point.data.modelnet40 import open_modelnet40
    from image2point.data.registry import default_transforms

    if not SHARED_MODELNET40.is_dir():
        pytest.skip(f"ModelNet40 sample not found at {SHARED_MODELNET40.resolve()}")
    dataset = open_modelnet40(SHARED_MODELNET40, "test", None, default_transforms("modelnet40", False))
    index = next(i for i in range(len(dataset)) if dataset.class_names[dataset[i].label] == SHAPE_CLASS)
    return VoxelCollator(VOXEL_SIZE, len(dataset.class_names)).shapes([dataset[index]]).voxels.tensor


def is_strided_shortcut(module: torch.nn.Module) -> bool:
    if isinstance(module, SparseSubsampleShortcut):
        return module.stride == 2
    return isinstance(module, SparseConv3d) and module.kernel_size == 1 and module.stride == 2


def empty_shortcut_fractions(architecture: str, shortcut: StridedShortcut) -> dict[str, float]:
    """Per strided shortcut of the network: the fraction of its coarse sites that read no child."""
    network = build_network(NetworkConfig(backbone=architecture, inflation=InflationSettings(shortcut=shortcut)))
    network = network.network.eval()
    fractions: dict[str, float] = {}

    def probe(name: str):
        def hook(module, inputs):
            (x,) = inputs
            out = module.forward(x.replace_features(torch.ones_like(x.features)))
            fractions[name] = float((out.features.abs().sum(1) == 0).float().mean())
        return hook

    for name, module in network.named_modules():
        if is_strided_shortcut(module):
            module.register_forward_pre_hook(probe(name))
    with torch.no_grad():
        network(chair_voxels())
    assert fractions, f"{architecture} has no strided shortcut"
    return fractions


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_default_setting_gives_every_coarse_site_of_every_strided_block_a_shortcut(architecture):
    fractions = empty_shortcut_fractions(architecture, DEFAULT_STRIDED_SHORTCUT)
    assert all(fraction == 0 for fraction in fractions.values()), fractions


@pytest.mark.parametrize("shortcut", [StridedShortcut.CHILDREN_SUM, StridedShortcut.CHILDREN_MEAN])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_children_settings_give_every_coarse_site_a_shortcut(architecture, shortcut):
    fractions = empty_shortcut_fractions(architecture, shortcut)
    assert all(fraction == 0 for fraction in fractions.values()), fractions


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_center_leaves_many_coarse_sites_with_an_all_zero_shortcut(architecture):
    fractions = empty_shortcut_fractions(architecture, StridedShortcut.CENTER)
    assert max(fractions.values()) >= CENTER_WORST_EMPTY_AT_LEAST, fractions
