"""Transferred 3D networks (input layer, inflated backbone, heads), PointNet++ and the range-image
segmenter, and the finetuning schemes."""

from image2point.models.base import TransferredNetwork
from image2point.models.finetune import SCHEMES, FinetunePlan, apply_finetune_scheme, optimizer_parameters, reinitialise
from image2point.models.decoder import SEGMENTATION_HEADS, EncoderLevel, LinearDecoder, UNetDecoder
from image2point.models.heads import CLASSIFICATION_HEADS, ClassificationHead
from image2point.models.layers import InputLayer
from image2point.models.pointnet2 import (
    PointNet2Classifier,
    PointNet2Config,
    PointNet2Segmenter,
    transfer_pointnet2_weights,
)
from image2point.models.range_segmenter import RangeImageSegmenter
from image2point.models.networks import (
    BACKBONE_SPECS,
    BackboneSpec,
    BuiltNetwork,
    InflatedBackbone,
    NetworkConfig,
    SparseClassifier,
    SparseNetwork,
    SparseSegmenter,
    backbone_spec,
    build_network,
    encoder_levels,
    inflate_backbone,
    register_backbone_spec,
)

__all__ = [
    "PointNet2Classifier",
    "PointNet2Config",
    "PointNet2Segmenter",
    "RangeImageSegmenter",
    "transfer_pointnet2_weights",
    "BACKBONE_SPECS",
    "CLASSIFICATION_HEADS",
    "SCHEMES",
    "SEGMENTATION_HEADS",
    "BackboneSpec",
    "BuiltNetwork",
    "ClassificationHead",
    "EncoderLevel",
    "FinetunePlan",
    "InflatedBackbone",
    "InputLayer",
    "LinearDecoder",
    "NetworkConfig",
    "SparseClassifier",
    "SparseNetwork",
    "SparseSegmenter",
    "TransferredNetwork",
    "UNetDecoder",
    "apply_finetune_scheme",
    "backbone_spec",
    "build_network",
    "encoder_levels",
    "inflate_backbone",
    "optimizer_parameters",
    "register_backbone_spec",
    "reinitialise",
]
