"""Inflation of 2D image filters into 3D filters: fixed and learnable filter transforms T."""

from image2point.inflate.learnable import LEARNABLE_INITS, FilterTransform, random_transform
from image2point.inflate.transforms import (
    COPY_LAYOUTS,
    TRANSFORM_NAMES,
    CopyLayout,
    copy_layout,
    filter_transform,
    inflate_weight,
)

__all__ = [
    "COPY_LAYOUTS",
    "LEARNABLE_INITS",
    "TRANSFORM_NAMES",
    "CopyLayout",
    "FilterTransform",
    "copy_layout",
    "filter_transform",
    "inflate_weight",
    "random_transform",
]
