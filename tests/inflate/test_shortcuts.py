"""The strided-shortcut setting: parsed from names, applied by the converter to every 1×1 stride-2 conv
and option-A subsample (and nothing else), reported, and carried from a run config to the network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from image2point.inflate.converter import InflationSettings, convert_2d_to_3d
from image2point.inflate.shortcuts import DEFAULT_STRIDED_SHORTCUT, StridedShortcut
from image2point.models2d import create_model_2d
from image2point.sparse.functional import ChildrenReduce
from image2point.sparse.modules import SparseChildrenConv3d, SparseConv3d, SparseSubsampleShortcut

EXPECTED_REDUCE = {
    StridedShortcut.CENTER: None,
    StridedShortcut.CHILDREN_SUM: ChildrenReduce.SUM,
    StridedShortcut.CHILDREN_MEAN: ChildrenReduce.MEAN,
}


def test_settings_take_a_member_or_its_name_and_refuse_others():
    assert InflationSettings(shortcut="center").shortcut is StridedShortcut.CENTER
    assert InflationSettings(shortcut=StridedShortcut.CHILDREN_SUM).shortcut is StridedShortcut.CHILDREN_SUM
    assert InflationSettings().shortcut is DEFAULT_STRIDED_SHORTCUT
    with pytest.raises(ValueError, match="'center', 'children_sum', 'children_mean', got 'centre'"):
        InflationSettings(shortcut="centre")


@pytest.mark.parametrize("shortcut", list(StridedShortcut))
@pytest.mark.parametrize("architecture", ["resnet18", "resnet50"])
def test_only_strided_1x1_convs_read_children(architecture, shortcut):
    model_2d = create_model_2d(architecture)
    model_3d = convert_2d_to_3d(model_2d, shortcut=shortcut).model
    strided_1x1 = 0
    for name, conv_2d in model_2d.named_modules():
        if not isinstance(conv_2d, nn.Conv2d):
            continue
        conv_3d = model_3d.get_submodule(name)
        if conv_2d.kernel_size == (1, 1) and conv_2d.stride == (2, 2):
            strided_1x1 += 1
            if EXPECTED_REDUCE[shortcut] is None:
                assert type(conv_3d) is SparseConv3d, name
            else:
                assert type(conv_3d) is SparseChildrenConv3d and conv_3d.reduce is EXPECTED_REDUCE[shortcut], name
            torch.testing.assert_close(conv_3d.weight, conv_2d.weight[..., None])
        else:
            assert type(conv_3d) is SparseConv3d, name
    assert strided_1x1 == 3


@pytest.mark.parametrize("shortcut", list(StridedShortcut))
def test_option_a_shortcuts_follow_the_setting(shortcut):
    model_3d = convert_2d_to_3d(create_model_2d("cifar_resnet20"), shortcut=shortcut).model
    shortcuts = [m for m in model_3d.modules() if isinstance(m, SparseSubsampleShortcut)]
    assert len(shortcuts) == 2
    assert all(m.stride == 2 and m.reduce is EXPECTED_REDUCE[shortcut] for m in shortcuts)


@pytest.mark.parametrize("shortcut", list(StridedShortcut))
def test_report_and_summary_name_the_setting_and_the_transform(shortcut):
    report = convert_2d_to_3d(create_model_2d("cifar_resnet20"), "copy_z", shortcut=shortcut.value).report
    assert report.shortcut is shortcut
    assert f"T = copy_z, learnable T: none, strided shortcuts: {shortcut.value}" in report.summary()


@pytest.mark.parametrize("shortcut", ["center", "children_sum"])
def test_run_config_key_reaches_the_built_network(shortcut):
    from image2point.train.builders import build_model
    from image2point.train.config import load_config

    config = load_config(None, ["model.backbone=resnet18", f"model.shortcut={shortcut}"])
    built = build_model(config, in_features=3, num_classes=4, task="classification")
    conv = built.network.backbone.layer2[0].downsample[0]
    assert type(conv) is (SparseConv3d if shortcut == "center" else SparseChildrenConv3d)
    assert built.conversion.shortcut is StridedShortcut(shortcut)
