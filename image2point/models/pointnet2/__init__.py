"""PointNet++ with single-scale grouping (SSG), and image pretraining with each pixel a point.

Paper Section 4.2 / Table 2 asks whether image pretraining helps a point-based network. PointNet++ has no
kernels to inflate, so it is pretrained on images turned into point clouds
(:mod:`image2point.pretrain2d.pixels_as_points`) with :meth:`PointNet2Config.image_pretraining`, and its
backbone is then moved into a 3D network with :func:`transfer_pointnet2_weights`.

Layout of every network (the attributes the finetuning schemes act on):

* ``input_layer``: the first layer of the first set abstraction's shared MLP (1×1 conv + BN + ReLU). It is
  the only layer that reads the raw inputs (relative xyz and the input point features), so it is the one
  whose shape depends on the input modality.
* ``backbone``: the rest of the set abstraction levels, the pretrained and transferable part.
* ``head``: FC-BN-ReLU-Dropout layers and a classifier (classification), or the feature propagation
  levels and a per-point classifier (segmentation).

Tensor layouts: point coordinates ``xyz [B, N, 3]``; inputs ``features [B, N, C]`` (point-major, like
``xyz``); internally features are channel-first ``[B, C, N]``, as the 1×1 convolutions want them.

Modules: :mod:`~image2point.models.pointnet2.ops` (sampling, grouping, interpolation),
:mod:`~image2point.models.pointnet2.config` (levels and settings), :mod:`~image2point.models.pointnet2.network`
(layers and networks), :mod:`~image2point.models.pointnet2.transfer` (pretrained weights).
"""

from image2point.models.pointnet2.config import (
    SSG_CLASSIFICATION_LEVELS,
    SSG_SEGMENTATION_LEVELS,
    PointNet2Config,
    SetAbstractionSpec,
)
from image2point.models.pointnet2.network import (
    IMAGE_CHANNELS,
    PIXEL_PRETRAINING_ARCH,
    FeaturePropagation,
    PointLevel,
    PointNet2ClassificationHead,
    PointNet2Classifier,
    PointNet2Encoder,
    PointNet2Network,
    PointNet2SegmentationHead,
    PointNet2Segmenter,
    PointwiseLayer,
    SetAbstraction,
    pixel_pretraining_network,
    shared_mlp,
)
from image2point.models.pointnet2.ops import (
    INTERPOLATION_EPSILON,
    INTERPOLATION_NEIGHBOURS,
    PAIRWISE_CHUNK_ELEMENTS,
    XYZ_DIMENSIONS,
    ball_query,
    farthest_point_sample,
    gather_points,
    group,
    three_nn_interpolate,
)
from image2point.models.pointnet2.transfer import PointNet2TransferReport, transfer_pointnet2_weights

__all__ = [
    "IMAGE_CHANNELS",
    "INTERPOLATION_EPSILON",
    "INTERPOLATION_NEIGHBOURS",
    "PAIRWISE_CHUNK_ELEMENTS",
    "PIXEL_PRETRAINING_ARCH",
    "SSG_CLASSIFICATION_LEVELS",
    "SSG_SEGMENTATION_LEVELS",
    "XYZ_DIMENSIONS",
    "FeaturePropagation",
    "PointLevel",
    "PointNet2ClassificationHead",
    "PointNet2Classifier",
    "PointNet2Config",
    "PointNet2Encoder",
    "PointNet2Network",
    "PointNet2SegmentationHead",
    "PointNet2Segmenter",
    "PointNet2TransferReport",
    "PointwiseLayer",
    "SetAbstraction",
    "SetAbstractionSpec",
    "ball_query",
    "farthest_point_sample",
    "gather_points",
    "group",
    "pixel_pretraining_network",
    "shared_mlp",
    "three_nn_interpolate",
    "transfer_pointnet2_weights",
]
