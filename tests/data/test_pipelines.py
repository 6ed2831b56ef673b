import math

import numpy as np
import pytest

from image2point.data.pipelines import (
    ModelNet40Pipeline,
    PipelineSettings,
    S3DISPipeline,
    SemanticKITTIPipeline,
    compose_pipeline,
)
from image2point.data.registry import default_transforms, pipeline_for
from image2point.data.transforms import (
    CenterPoints,
    ChromaticAutoContrast,
    ChromaticJitter,
    ChromaticTranslation,
    NormalizeColor,
    RandomHorizontalFlip,
    RandomJitter,
    RandomScale,
    RandomTranslate,
    RandomVoxelSubset,
    RandomZRotation,
)
from image2point.data.sample import SceneSample
from image2point.errors import ConfigError
from image2point.voxelize import voxelize


def test_modelnet40_defaults_are_the_authors_coordinate_transformation():
    # core/datasets/modelnet.py: CoordinateTransformation(scale_range=(0.9, 1.1), trans=0.2, jitter=0.025,
    # clip=0.05) with p 0.9, 0.9 and 0.7; the jitter 0.025 * (u - 0.5) lies in [-0.0125, 0.0125].
    steps = ModelNet40Pipeline().augmentation()
    assert steps == (RandomScale(0.9, 1.1, p=0.9, per_axis=True), RandomTranslate(0.2, p=0.9),
                     RandomJitter(0.0125, 0.05, p=0.7))
    assert ModelNet40Pipeline().point_sampling == "first"


def test_s3dis_defaults_are_the_authors_and_colour_steps_run_in_their_order():
    # core/datasets/s3dis.py with configs/s3dis/*.yaml: clip_bound 4, color_std 0.005, color_trans_ratio 0.05.
    pipeline = S3DISPipeline()
    assert pipeline.augmentation() == (
        RandomHorizontalFlip(p=0.95, axis_p=0.5, axes=(0, 1)),
        ChromaticJitter(0.005, p=0.95),
        ChromaticTranslation(0.05, p=0.95),
        ChromaticAutoContrast(p=0.2, blend=0.5),
    )
    assert pipeline.clip_bound == 4.0 and pipeline.center and pipeline.xyz_in_voxels
    assert pipeline.preprocessing() == (NormalizeColor(), CenterPoints())
    assert pipeline.xyz_feature_scale(0.05) == pytest.approx(20.0)


def test_semantickitti_defaults_are_the_authors_and_training_caps_voxels():
    # core/datasets/semantic_kitti.py: theta in [0, 2 pi), one scale in [0.95, 1.05]; num_points 80000.
    pipeline = SemanticKITTIPipeline()
    assert pipeline.augmentation() == (RandomZRotation(math.pi, p=1.0), RandomScale(0.95, 1.05, p=1.0))
    assert pipeline.training_only(0.05) == (RandomVoxelSubset(0.05, 80_000),)
    assert SemanticKITTIPipeline(max_train_voxels=None).training_only(0.05) == ()


def test_compose_orders_augmentation_preprocessing_then_training_only_steps():
    pipeline = SemanticKITTIPipeline()
    assert compose_pipeline(pipeline, train=True).transforms == (*pipeline.augmentation(),
                                                                 RandomVoxelSubset(0.05, 80_000))
    # Without augmentation the training split still caps its voxels; evaluation never does.
    assert compose_pipeline(pipeline, train=True, augment=False, voxel_size=0.1).transforms == (
        RandomVoxelSubset(0.1, 80_000),)
    assert compose_pipeline(pipeline, train=False).transforms == ()
    s3dis = compose_pipeline(S3DISPipeline(), train=True).transforms
    assert s3dis[-2:] == (NormalizeColor(), CenterPoints())
    assert compose_pipeline(S3DISPipeline(), train=False).transforms == (NormalizeColor(), CenterPoints())
    assert default_transforms("modelnet40", train=False).transforms == ()


def test_procedural_datasets_borrow_the_paper_datasets_settings():
    settings = PipelineSettings(modelnet40=ModelNet40Pipeline(jitter=RandomJitter(0.02, p=0.5)))
    assert pipeline_for("procedural_shapes", settings) is settings.modelnet40
    scenes = pipeline_for("procedural_scenes", settings)
    assert scenes.augmentation() == settings.s3dis.augmentation()
    # Procedural scenes keep metres and their generated placement; only the colours are normalised.
    assert scenes.preprocessing() == (NormalizeColor(),) and scenes.xyz_feature_scale(0.05) == 1.0


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(ConfigError, match="known"):
        pipeline_for("shapenet")


@pytest.mark.parametrize("make,message", [
    (lambda: S3DISPipeline(clip_bound=0.0), "clip_bound must be positive"),
    (lambda: SemanticKITTIPipeline(max_train_voxels=0), "max_train_voxels must be at least 1"),
])
def test_invalid_pipeline_settings_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_kitti_training_transform_caps_a_scan_at_the_voxel_limit():
    rng = np.random.default_rng(0)
    points = rng.uniform(-20.0, 20.0, (4000, 3)).astype(np.float32)
    scan = SceneSample(points, rng.uniform(0, 1, (4000, 1)).astype(np.float32), np.zeros(4000, np.int64), "scan")
    transform = compose_pipeline(SemanticKITTIPipeline(max_train_voxels=500), train=True, voxel_size=0.5)
    capped = transform(scan, np.random.default_rng(1))
    assert voxelize(capped.points, 0.5).num_voxels == 500
