"""Point cloud files: read PLY, PCD, LAS/LAZ, KITTI .bin, .npy, text tables and HDF5 into a
:class:`PointCloud`, and write them back atomically.

plyfile (PLY reading), laspy (LAS/LAZ) and h5py (HDF5) are optional: they are imported when a file
of that kind is read or written, with an install hint when missing (pip install "image2point[io]").
"""

from image2point.io.cloud import (
    COORDINATE_NAMES,
    FLOAT32_COORDINATE_TOLERANCE,
    PointCloud,
    float32_rounding_error,
    needs_recentring,
    recentre,
    validate_point_cloud,
)
from image2point.io.las import read_las, write_las
from image2point.io.pcd import read_pcd, write_pcd
from image2point.io.ply import read_ply, write_ply
from image2point.io.readers import (
    SUPPORTED_EXTENSIONS,
    iter_input_paths,
    read_h5,
    read_kitti_bin,
    read_labels,
    read_npy,
    read_point_cloud,
    with_labels,
)
from image2point.io.text import read_text
from image2point.io.writers import WRITERS, write_kitti_bin, write_kitti_label, write_npy, write_point_cloud

__all__ = [
    "COORDINATE_NAMES",
    "FLOAT32_COORDINATE_TOLERANCE",
    "SUPPORTED_EXTENSIONS",
    "WRITERS",
    "PointCloud",
    "float32_rounding_error",
    "iter_input_paths",
    "needs_recentring",
    "read_h5",
    "read_kitti_bin",
    "read_labels",
    "read_las",
    "read_npy",
    "read_pcd",
    "read_ply",
    "read_point_cloud",
    "read_text",
    "recentre",
    "validate_point_cloud",
    "with_labels",
    "write_kitti_bin",
    "write_kitti_label",
    "write_las",
    "write_npy",
    "write_pcd",
    "write_ply",
    "write_point_cloud",
]
