"""What the networks of every model family share: the parts the finetuning schemes act on.

A transferred network is an ``input_layer`` (reads the data's channels; trained), a ``backbone`` (the
pretrained part; None when there is none) and a ``head`` (the task's output layer; trained).
:func:`image2point.models.finetune.apply_finetune_scheme` sets which of their parameters train, and
``freeze_backbone_bn_stats`` keeps the backbone's BatchNorm statistics fixed (eval mode) while the rest
trains. Each family's networks say what ``forward_features`` returns, one type for classifiers and
segmenters: the sparse networks and PointNet++ their encoder levels, the range segmenter its feature map.
"""

from __future__ import annotations

from torch import nn


class TransferredNetwork(nn.Module):
    """Base class of every family's networks: ``input_layer``, ``backbone``, ``head`` and the BN mode."""

    input_layer: nn.Module
    backbone: nn.Module | None
    head: nn.Module
    freeze_backbone_bn_stats: bool = False

    def train(self, mode: bool = True) -> TransferredNetwork:
        """As ``nn.Module.train``, but the backbone's BatchNorm stays in eval mode while frozen."""
        super().train(mode)
        if mode and self.freeze_backbone_bn_stats and self.backbone is not None:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self
