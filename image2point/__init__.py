"""image2point: 2D image-pretrained ConvNets as 3D sparse ConvNets for point clouds.

The core API at the top level; everything else lives in the subpackages (``sparse``, ``inflate``,
``models2d``, ``models``, ``data``, ``train``, ``io``).
"""

from image2point.inflate.converter import convert_2d_to_3d
from image2point.inflate.transforms import filter_transform, inflate_weight
from image2point.sparse.tensor import SparseTensor
from image2point.voxelize import collate_voxels, voxelize

__version__ = "0.1.0"

__all__ = [
    "SparseTensor",
    "collate_voxels",
    "convert_2d_to_3d",
    "filter_transform",
    "inflate_weight",
    "voxelize",
]
