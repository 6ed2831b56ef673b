"""Datasets in their standard layouts, procedural datasets, augmentations and subsets.

Every dataset returns numpy samples (ShapeSample for classification, SceneSample for
segmentation); voxelization and conversion to torch happen at collation. Each dataset module
registers its dataset (:mod:`image2point.data.registry`); importing it here registers the built-in ones.
"""

from image2point.data.modelnet40 import ModelNet40, ModelNet40H5, open_modelnet40
from image2point.data.procedural import SCENE_CLASS_NAMES, SHAPE_CLASS_NAMES, ProceduralScenes, ProceduralShapes
from image2point.data.registry import DATASETS, DatasetEntry, dataset_entry, dataset_names, default_transforms
from image2point.data.s3dis import S3DIS, S3DIS_CLASS_NAMES
from image2point.data.sample import (
    IGNORE_INDEX,
    PointCloudDataset,
    SceneSample,
    ShapeSample,
    Transform,
    normalize_to_unit_sphere,
)
from image2point.data.semantickitti import LabelMap, ScanId, SemanticKITTI, read_velodyne_scan
from image2point.data.subsets import DatasetSubset, subset_indices
from image2point.data.transforms import Compose

__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "S3DIS",
    "S3DIS_CLASS_NAMES",
    "SCENE_CLASS_NAMES",
    "SHAPE_CLASS_NAMES",
    "Compose",
    "DatasetEntry",
    "DatasetSubset",
    "LabelMap",
    "ModelNet40",
    "ModelNet40H5",
    "PointCloudDataset",
    "ProceduralScenes",
    "ProceduralShapes",
    "ScanId",
    "SceneSample",
    "SemanticKITTI",
    "ShapeSample",
    "Transform",
    "dataset_entry",
    "dataset_names",
    "default_transforms",
    "normalize_to_unit_sphere",
    "open_modelnet40",
    "read_velodyne_scan",
    "subset_indices",
]
