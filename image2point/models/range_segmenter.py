"""Projection-based LiDAR segmentation with an image-pretrained 2D network (paper Section 4.2, Table 2).

The scan is projected to a 5-channel range image (x, y, z, intensity, range), an *input layer* maps
those channels to the channels the pretrained stem expects, the 2D backbone computes a dense feature map,
and the *output layer* classifies it with a 1x1 conv and upsamples the logits bilinearly to the image size.
Points are labelled by back-projection and optionally RangeNet++'s kNN refinement.

The backbone is any 2D model of the registry with a dense head
(:class:`~image2point.models2d.registry.DenseFeatures2D`): its classifier is removed and its ``forward``
gives the features. The paper's HRNet keeps its pretrained fusion ``last_layer.0-2`` and gives the fused
1/4-resolution branches; ESPNet-C (Cityscapes, the released network of ../shared/weights) gives its ``b3``
map at 1/8.

The network is a :class:`~image2point.models.base.TransferredNetwork` (``input_layer``, ``backbone``,
``head``, ``freeze_backbone_bn_stats``), so :func:`image2point.models.finetune.apply_finetune_scheme`
applies to it as to the sparse networks: io, io_stats, io_bn, all and scratch (scheme ``t`` needs
inflated filters and does not apply to a 2D backbone).
"""

from __future__ import annotations

import torch
from torch import nn

from image2point.data.range_image import (
    KNN_CUTOFF,
    KNN_NEIGHBOURS,
    KNN_SEARCH,
    KNN_SIGMA,
    NUM_CHANNELS,
    RangeImage,
    back_project_labels,
    knn_refine,
)
from image2point.errors import ConfigError, DataError
from image2point.models.base import TransferredNetwork
from image2point.models2d.registry import DenseFeatures2D, create_model_2d
from image2point.models2d.resize import bilinear_resize

SEMANTICKITTI_NUM_CLASSES = 19
DEFAULT_BACKBONE = "hrnet_w18"
INPUT_KERNEL = 3
IMAGE_DIMS = 4  # [B, C, H, W]


class RangeInputLayer(nn.Module):
    """conv3x3 + BatchNorm from the range-image channels to the stem's input channels, no ReLU.

    The pretrained stem was trained on mean/std-normalised RGB, which is roughly zero-mean and
    unit-variance per channel and negative half of the time; BatchNorm produces inputs of that kind
    from raw metres and intensities, and a ReLU would discard the negative half.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = INPUT_KERNEL):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class RangeSegmentationHead(nn.Module):
    """1x1 conv classifier on the backbone features, logits upsampled bilinearly to the input size."""

    def __init__(self, in_channels: int, num_classes: int, align_corners: bool = False):
        super().__init__()
        self.classifier = nn.Conv2d(in_channels, num_classes, kernel_size=1)
        self.align_corners = align_corners

    def forward(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        logits = self.classifier(features)
        return bilinear_resize(logits, size, self.align_corners)


class RangeImageSegmenter(TransferredNetwork):
    """Range image ``[B, in_channels, H, W]`` to logits ``[B, num_classes, H, W]``.

    ``backbone`` is a 2D model with a dense head to use (e.g. one with Cityscapes weights loaded by
    ``load_pretrained_2d``); without it, ``backbone_name`` is built from the 2D registry with fresh
    weights. The segmenter takes ownership of the given model: its classifier is removed
    (``reset_classifier(0)``: HRNet's ``last_layer.3``, ESPNet-C's ``classifier``), every other key keeps
    its official name under ``backbone.``.
    """

    def __init__(
        self,
        backbone_name: str = DEFAULT_BACKBONE,
        in_channels: int = NUM_CHANNELS,
        num_classes: int = SEMANTICKITTI_NUM_CLASSES,
        backbone: nn.Module | None = None,
    ):
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ConfigError(f"in_channels and num_classes must be positive, got {in_channels}, {num_classes}")
        model = backbone if backbone is not None else create_model_2d(backbone_name)
        if not isinstance(model, DenseFeatures2D):
            raise ConfigError(
                f"the range-image segmenter needs a 2D backbone with a dense head (DenseFeatures2D: a "
                f"segmentation network such as HRNet or ESPNet-C), got {type(model).__name__}"
            )
        model.reset_classifier(0)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.input_layer = RangeInputLayer(in_channels, model.in_channels)
        self.backbone = model
        self.head = RangeSegmentationHead(model.num_features, num_classes, model.align_corners)

    def forward_features(self, range_images: torch.Tensor) -> torch.Tensor:
        """Backbone features ``[B, num_features, ceil(H/s), ceil(W/s)]``, s its ``output_stride``."""
        if range_images.ndim != IMAGE_DIMS or range_images.shape[1] != self.in_channels:
            raise DataError(
                f"range images must have shape [B, {self.in_channels}, H, W], got {list(range_images.shape)}"
            )
        return self.backbone(self.input_layer(range_images))

    def forward(self, range_images: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(range_images), tuple(range_images.shape[-2:]))


@torch.no_grad()
def predict_points(
    model: RangeImageSegmenter,
    range_image: RangeImage,
    knn: bool = False,
    k: int = KNN_NEIGHBOURS,
    search: int = KNN_SEARCH,
    cutoff: float | None = KNN_CUTOFF,
    sigma: float = KNN_SIGMA,
) -> torch.Tensor:
    """Per-point labels int64 ``[N]`` of one projected scan, in eval mode (the mode is restored).

    Each point takes the predicted label of its pixel, or with ``knn`` the RangeNet++ kNN vote
    (:func:`image2point.data.range_image.knn_refine`, whose parameters follow).
    """
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        logits = model(range_image.image[None].to(device))[0].cpu()
    finally:
        model.train(was_training)
    if knn:
        return knn_refine(range_image, logits, k=k, search=search, cutoff=cutoff, sigma=sigma)
    return back_project_labels(logits.argmax(dim=0), range_image)
