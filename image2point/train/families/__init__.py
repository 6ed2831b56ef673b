"""The model families ``model.family`` names, each registered once (see :mod:`.registry`).

Importing this package registers the built-in families; a new family is one module here plus its
import below.
"""

# Registration order is the order configs and errors list the families in.
from image2point.train.families import voxel  # noqa: F401,I001  (registers the built-in families)
from image2point.train.families import pointnet2  # noqa: F401
from image2point.train.families import range_images  # noqa: F401
from image2point.train.families.registry import (
    MODEL_FAMILIES,
    BatchSettings,
    BuiltModel,
    ModelFamily,
    PretrainedReport,
    family_names,
    get_family,
    register_family,
)

__all__ = [
    "MODEL_FAMILIES",
    "BatchSettings",
    "BuiltModel",
    "ModelFamily",
    "PretrainedReport",
    "family_names",
    "get_family",
    "register_family",
]
