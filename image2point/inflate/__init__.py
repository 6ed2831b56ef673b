"""Inflation of 2D image filters into 3D filters: fixed and learnable filter transforms T."""

from image2point.inflate.learnable import LEARNABLE_INITS, FilterTransform, random_transform
from image2point.inflate.transforms import (
    AUTHORS_TRANSFORMS,
    COPY_LAYOUTS,
    RETIRED_NAMES,
    TRANSFORM_NAMES,
    CopyLayout,
    copy_layout,
    filter_transform,
    inflate_weight,
    unknown_transform_message,
)

__all__ = [
    "AUTHORS_TRANSFORMS",
    "COPY_LAYOUTS",
    "LEARNABLE_INITS",
    "RETIRED_NAMES",
    "TRANSFORM_NAMES",
    "CopyLayout",
    "FilterTransform",
    "copy_layout",
    "filter_transform",
    "inflate_weight",
    "random_transform",
    "unknown_transform_message",
]
