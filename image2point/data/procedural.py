"""Procedural datasets that need no files: shapes for classification, scenes for segmentation.

Every sample is generated from (seed, split, index) alone, so a dataset is reproducible, train and
test never share a generator stream, and nothing is stored. They stand in for ModelNet40 and
S3DIS in demos and tests and return the same sample types, with ModelNet40's transforms (shapes)
and S3DIS's augmentation with only its colour normalisation (scenes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from image2point.data.pipelines import DatasetPipeline, PipelineSettings
from image2point.data.registry import COLOURS, DatasetRequest, register_dataset
from image2point.data.sample import (
    IGNORE_INDEX,
    PointCloudDataset,
    SceneSample,
    ShapeSample,
    Transform,
    normalize_to_unit_sphere,
)
from image2point.data.surfaces import (
    Surface,
    box,
    cone_side,
    cylinder_side,
    disc,
    hemisphere,
    rectangle,
    rotation_about_axis,
    rotation_about_z,
    sample_surfaces,
    sphere,
    torus,
    triangle,
    unit_vectors,
)
from image2point.tasks import Task
from image2point.viz import modelnet40_palette

SPLIT_STREAMS = {"train": 1, "test": 2}
# Tags that keep shape and scene generation apart from each other and from augmentation streams.
SHAPE_STREAM = 0x5AE
SCENE_STREAM = 0x5CE

SHAPE_CLASS_NAMES = (
    "sphere",
    "cube",
    "cylinder",
    "cone",
    "torus",
    "pyramid",
    "capsule",
    "table",
    "chair",
    "lamp",
    "dumbbell",
    "l_bracket",
)
DEFAULT_SHAPE_POINTS = 1024
SHAPE_AXIS_SCALE_RANGE = (0.75, 1.33)  # anisotropic, per axis
SHAPE_MAX_TILT_RADIANS = math.radians(20.0)  # away from upright, after a free rotation about z
SHAPE_NOISE_SIGMA_RANGE = (0.0, 0.02)
# Points are drawn from OVERSAMPLING x num_points uniform surface samples with weights
# exp(bias * <p, direction>), so some samples are denser on one side, like a partial scan.
OVERSAMPLING = 2
DENSITY_BIAS_RANGE = (0.0, 2.0)

SCENE_CLASS_NAMES = ("ground", "wall", "box", "pole", "blob")
GROUND, WALL, BOX, POLE, BLOB = range(len(SCENE_CLASS_NAMES))
SCENE_POINTS_RANGE = (20_000, 50_000)
SCENE_SIDE_RANGE_M = (4.0, 8.0)
WALL_COUNT_RANGE = (1, 3)
WALL_HEIGHT_RANGE_M = (2.0, 3.0)
BOX_COUNT_RANGE = (2, 6)
BOX_SIDE_RANGE_M = (0.3, 1.2)
POLE_COUNT_RANGE = (1, 4)
POLE_RADIUS_RANGE_M = (0.04, 0.15)
POLE_HEIGHT_RANGE_M = (1.5, 3.0)
BLOB_COUNT_RANGE = (1, 4)
BLOB_RADIUS_RANGE_M = (0.2, 0.6)
GROUND_BUMP_AMPLITUDE_M = 0.05
SCENE_NOISE_SIGMA_M = 0.01
COLOR_NOISE_SIGMA = 0.03
# A small share of stray points without a class, like unlabelled returns in real scans.
OUTLIER_FRACTION = 0.005
OUTLIER_MAX_HEIGHT_M = 3.0

# Shape classes: each builds its surfaces, with its own proportions drawn from rng. Dimensions are
# in the shape's own units (about 1 across) and only matter relative to each other, since every
# shape is rescaled into the unit sphere afterwards. -------------------------------------------

Z_TO_X = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # turns the z axis onto x


def _sphere_shape(rng: np.random.Generator) -> list[Surface]:
    return [sphere(1.0)]


def _cube_shape(rng: np.random.Generator) -> list[Surface]:
    return [box((1.0, 1.0, 1.0))]


def _cylinder_shape(rng: np.random.Generator) -> list[Surface]:
    radius, half_height = 0.5, rng.uniform(0.5, 1.0)
    return [cylinder_side(radius, -half_height, half_height), disc(radius, -half_height), disc(radius, half_height)]


def _cone_shape(rng: np.random.Generator) -> list[Surface]:
    radius, height = rng.uniform(0.5, 0.8), rng.uniform(1.2, 2.0)
    return [cone_side(radius, 0.0, height), disc(radius, 0.0)]


def _torus_shape(rng: np.random.Generator) -> list[Surface]:
    return [torus(1.0, rng.uniform(0.2, 0.4))]


def _pyramid_shape(rng: np.random.Generator) -> list[Surface]:
    half, height = 0.8, rng.uniform(1.0, 1.6)
    corners = [(-half, -half, 0.0), (half, -half, 0.0), (half, half, 0.0), (-half, half, 0.0)]
    apex = (0.0, 0.0, height)
    sides = [triangle(corners[i], corners[(i + 1) % 4], apex) for i in range(4)]
    return [*sides, triangle(corners[0], corners[1], corners[2]), triangle(corners[0], corners[2], corners[3])]


def _capsule_shape(rng: np.random.Generator) -> list[Surface]:
    radius, half_length = 0.4, rng.uniform(0.5, 0.8)
    return [
        cylinder_side(radius, -half_length, half_length),
        hemisphere(radius, 1.0, (0.0, 0.0, half_length)),
        hemisphere(radius, -1.0, (0.0, 0.0, -half_length)),
    ]


def _legs(rng: np.random.Generator, half_width: float, half_depth: float, height: float) -> list[Surface]:
    thickness = rng.uniform(0.06, 0.12)
    inset_x, inset_y = half_width - thickness, half_depth - thickness
    corners = [(-inset_x, -inset_y), (inset_x, -inset_y), (inset_x, inset_y), (-inset_x, inset_y)]
    return [box((thickness, thickness, height), (x, y, height / 2)) for x, y in corners]


def _table_shape(rng: np.random.Generator) -> list[Surface]:
    half_width, half_depth = 1.0, rng.uniform(0.5, 0.8)
    height, top_thickness = rng.uniform(0.8, 1.1), rng.uniform(0.06, 0.12)
    top = box((2 * half_width, 2 * half_depth, top_thickness), (0.0, 0.0, height + top_thickness / 2))
    return [top, *_legs(rng, half_width, half_depth, height)]


def _chair_shape(rng: np.random.Generator) -> list[Surface]:
    half_side, seat_height, seat_thickness = 0.5, rng.uniform(0.5, 0.65), 0.08
    back_height = rng.uniform(0.7, 1.0)
    seat = box((2 * half_side, 2 * half_side, seat_thickness), (0.0, 0.0, seat_height + seat_thickness / 2))
    back_center = (0.0, half_side - seat_thickness / 2, seat_height + seat_thickness + back_height / 2)
    back = box((2 * half_side, seat_thickness, back_height), back_center)
    return [seat, back, *_legs(rng, half_side, half_side, seat_height)]


def _lamp_shape(rng: np.random.Generator) -> list[Surface]:
    base_radius, base_height = rng.uniform(0.3, 0.45), 0.06
    pole_radius, pole_top = 0.04, rng.uniform(1.2, 1.6)
    shade_radius, shade_height = rng.uniform(0.35, 0.5), rng.uniform(0.3, 0.5)
    return [
        cylinder_side(base_radius, 0.0, base_height),
        disc(base_radius, 0.0),
        disc(base_radius, base_height),
        cylinder_side(pole_radius, base_height, pole_top),
        cone_side(shade_radius, pole_top - shade_height / 2, pole_top + shade_height / 2),
    ]


def _dumbbell_shape(rng: np.random.Generator) -> list[Surface]:
    bell_radius, half_bar = rng.uniform(0.35, 0.5), rng.uniform(0.8, 1.1)
    bar = cylinder_side(0.08, -half_bar, half_bar).moved(Z_TO_X, (0.0, 0.0, 0.0))
    return [bar, sphere(bell_radius, (-half_bar, 0.0, 0.0)), sphere(bell_radius, (half_bar, 0.0, 0.0))]


def _l_bracket_shape(rng: np.random.Generator) -> list[Surface]:
    length, width, thickness = rng.uniform(1.2, 1.8), rng.uniform(0.5, 0.9), rng.uniform(0.12, 0.25)
    horizontal = box((length, width, thickness), (length / 2, 0.0, thickness / 2))
    vertical = box((thickness, width, length), (thickness / 2, 0.0, length / 2))
    return [horizontal, vertical]


SHAPE_BUILDERS: tuple[Callable[[np.random.Generator], list[Surface]], ...] = (
    _sphere_shape,
    _cube_shape,
    _cylinder_shape,
    _cone_shape,
    _torus_shape,
    _pyramid_shape,
    _capsule_shape,
    _table_shape,
    _chair_shape,
    _lamp_shape,
    _dumbbell_shape,
    _l_bracket_shape,
)


def generate_shape(rng: np.random.Generator, label: int, num_points: int) -> np.ndarray:
    """float32 [num_points, 3] of one shape of class label, posed, scaled, noisy, in the unit sphere."""
    candidates, _ = sample_surfaces(rng, SHAPE_BUILDERS[label](rng), OVERSAMPLING * num_points)
    points = _pick_with_density_bias(rng, candidates, num_points)
    points = points[rng.permutation(num_points)]  # no part order that would give the class away
    points = points * rng.uniform(*SHAPE_AXIS_SCALE_RANGE, size=3)
    points = points @ _random_pose(rng).T
    points = points + rng.normal(0.0, rng.uniform(*SHAPE_NOISE_SIGMA_RANGE), points.shape)
    return normalize_to_unit_sphere(points, source="generated shape")


def _pick_with_density_bias(rng: np.random.Generator, candidates: np.ndarray, count: int) -> np.ndarray:
    # Weighted sampling without replacement by the Gumbel top-k trick.
    projection = (candidates - candidates.mean(axis=0)) @ unit_vectors(rng, 1)[0]
    log_weights = rng.uniform(*DENSITY_BIAS_RANGE) * projection / np.abs(projection).max()
    keys = log_weights + rng.gumbel(size=len(candidates))
    return candidates[np.argpartition(-keys, count - 1)[:count]]


def _random_pose(rng: np.random.Generator) -> np.ndarray:
    heading = rng.uniform(0.0, 2.0 * math.pi)
    tilt_axis = np.array([math.cos(heading), math.sin(heading), 0.0])
    tilt = rotation_about_axis(tilt_axis, rng.uniform(0.0, SHAPE_MAX_TILT_RADIANS))
    return tilt @ rotation_about_z(rng.uniform(0.0, 2.0 * math.pi))


class ProceduralShapes(PointCloudDataset[ShapeSample]):
    """num_samples generated shapes of 12 classes, balanced (label = index mod 12), xyz only."""

    def __init__(
        self,
        num_samples: int,
        split: str = "train",
        seed: int = 0,
        num_points: int = DEFAULT_SHAPE_POINTS,
        transform: Transform | None = None,
    ) -> None:
        _check_split(split)
        if num_samples < 1 or num_points < 1:
            raise ValueError(f"num_samples and num_points must be >= 1, got {num_samples} and {num_points}")
        super().__init__(split, SHAPE_CLASS_NAMES, transform, seed)
        self.num_samples = num_samples
        self.num_points = num_points
        self.labels = np.arange(num_samples, dtype=np.int64) % len(SHAPE_CLASS_NAMES)

    def __len__(self) -> int:
        return self.num_samples

    def load(self, index: int) -> ShapeSample:
        rng = np.random.default_rng([SHAPE_STREAM, self.seed, SPLIT_STREAMS[self.split], index])
        label = int(self.labels[index])
        return ShapeSample(
            points=generate_shape(rng, label, self.num_points),
            features=None,
            label=label,
            source=f"procedural-shapes/{self.split}/seed-{self.seed}/{index}",
        )


# Scenes. -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneObject:
    """A surface of a scene and its class."""

    surface: Surface
    label: int


def generate_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 points [N, 3] in metres, float32 colours [N, 3] in [0, 1] and int64 labels [N]."""
    side = rng.uniform(*SCENE_SIDE_RANGE_M)
    objects = [_ground(rng, side), *_walls(rng, side), *_boxes(rng, side), *_poles(rng, side), *_blobs(rng, side)]
    total = int(rng.integers(*SCENE_POINTS_RANGE, endpoint=True))
    num_outliers = round(OUTLIER_FRACTION * total)
    points, owners = sample_surfaces(rng, [scene_object.surface for scene_object in objects], total - num_outliers)
    points = points + rng.normal(0.0, SCENE_NOISE_SIGMA_M, points.shape)
    object_colors = rng.random((len(objects), 3))
    colors = np.clip(object_colors[owners] + rng.normal(0.0, COLOR_NOISE_SIGMA, points.shape), 0.0, 1.0)
    labels = np.array([scene_object.label for scene_object in objects], dtype=np.int64)[owners]
    outliers = rng.random((num_outliers, 3)) * (side, side, OUTLIER_MAX_HEIGHT_M)
    return (
        np.concatenate([points, outliers]).astype(np.float32),
        np.concatenate([colors, rng.random((num_outliers, 3))]).astype(np.float32),
        np.concatenate([labels, np.full(num_outliers, IGNORE_INDEX, dtype=np.int64)]),
    )


def _ground(rng: np.random.Generator, side: float) -> SceneObject:
    plane = rectangle(np.zeros(3), np.array([side, 0.0, 0.0]), np.array([0.0, side, 0.0]))
    wavelength = rng.uniform(1.0, 3.0)

    def bumpy(sample_rng: np.random.Generator, n: int) -> np.ndarray:
        points = plane.sample(sample_rng, n)
        points[:, 2] = GROUND_BUMP_AMPLITUDE_M * np.sin(points[:, 0] / wavelength) * np.cos(points[:, 1] / wavelength)
        return points

    return SceneObject(Surface(plane.area, bumpy), GROUND)


def _walls(rng: np.random.Generator, side: float) -> list[SceneObject]:
    # Walls stand on distinct edges of the square floor.
    count = int(rng.integers(*WALL_COUNT_RANGE, endpoint=True))
    edges = rng.permutation(4)[:count]
    walls = []
    for edge in edges:
        height = np.array([0.0, 0.0, rng.uniform(*WALL_HEIGHT_RANGE_M)])
        along_x = edge < 2
        origin = np.array([0.0, side * (edge % 2), 0.0]) if along_x else np.array([side * (edge % 2), 0.0, 0.0])
        edge_vector = np.array([side, 0.0, 0.0]) if along_x else np.array([0.0, side, 0.0])
        walls.append(SceneObject(rectangle(origin, edge_vector, height), WALL))
    return walls


def _boxes(rng: np.random.Generator, side: float) -> list[SceneObject]:
    boxes = []
    for _ in range(int(rng.integers(*BOX_COUNT_RANGE, endpoint=True))):
        size = rng.uniform(*BOX_SIDE_RANGE_M, size=3)
        position = (*rng.uniform(size.max(), side - size.max(), size=2), size[2] / 2)
        surface = box(tuple(size)).moved(rotation_about_z(rng.uniform(0.0, math.pi)), position)
        boxes.append(SceneObject(surface, BOX))
    return boxes


def _poles(rng: np.random.Generator, side: float) -> list[SceneObject]:
    poles = []
    for _ in range(int(rng.integers(*POLE_COUNT_RANGE, endpoint=True))):
        radius, height = rng.uniform(*POLE_RADIUS_RANGE_M), rng.uniform(*POLE_HEIGHT_RANGE_M)
        position = (*rng.uniform(radius, side - radius, size=2), 0.0)
        poles.append(SceneObject(cylinder_side(radius, 0.0, height).moved(np.eye(3), position), POLE))
    return poles


def _blobs(rng: np.random.Generator, side: float) -> list[SceneObject]:
    blobs = []
    for _ in range(int(rng.integers(*BLOB_COUNT_RANGE, endpoint=True))):
        radii = rng.uniform(*BLOB_RADIUS_RANGE_M, size=3)
        position = (*rng.uniform(radii.max(), side - radii.max(), size=2), radii[2])
        ellipsoid = _ellipsoid(radii)
        blobs.append(SceneObject(ellipsoid.moved(rotation_about_z(rng.uniform(0.0, math.pi)), position), BLOB))
    return blobs


def _ellipsoid(radii: np.ndarray) -> Surface:
    # Scaled sphere samples: not exactly uniform on the surface, which is fine for a blob.
    unit = sphere(1.0)
    mean_radius = float(np.cbrt(np.prod(radii)))
    return Surface(4.0 * math.pi * mean_radius**2, lambda rng, n: unit.sample(rng, n) * radii)


class ProceduralScenes(PointCloudDataset[SceneSample]):
    """num_samples generated scenes a few metres across, 20k-50k points, colour features, 5 classes.

    About 0.5% of the points are stray outliers labelled IGNORE_INDEX.
    """

    def __init__(
        self,
        num_samples: int,
        split: str = "train",
        seed: int = 0,
        transform: Transform | None = None,
    ) -> None:
        _check_split(split)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        super().__init__(split, SCENE_CLASS_NAMES, transform, seed)
        self.num_samples = num_samples

    def __len__(self) -> int:
        return self.num_samples

    def load(self, index: int) -> SceneSample:
        rng = np.random.default_rng([SCENE_STREAM, self.seed, SPLIT_STREAMS[self.split], index])
        points, colors, labels = generate_scene(rng)
        return SceneSample(
            points=points,
            features=colors,
            labels=labels,
            source=f"procedural-scenes/{self.split}/seed-{self.seed}/{index}",
        )


def _check_split(split: str) -> None:
    if split not in SPLIT_STREAMS:
        raise ValueError(f"procedural split must be one of {tuple(SPLIT_STREAMS)}, got {split!r}")


# Registration. ------------------------------------------------------------------------------


def _shape_pipeline(settings: PipelineSettings) -> DatasetPipeline:
    return settings.modelnet40


def _scene_pipeline(settings: PipelineSettings) -> DatasetPipeline:
    return settings.s3dis.colour_only()


@register_dataset("procedural_shapes", Task.CLASSIFICATION, SHAPE_CLASS_NAMES, pipeline=_shape_pipeline,
                  palette=modelnet40_palette())
def open_procedural_shapes(request: DatasetRequest) -> ProceduralShapes:
    data = request.data
    return ProceduralShapes(request.num_samples, request.split, data.dataset_seed,
                            data.num_points or DEFAULT_SHAPE_POINTS, request.transform)


@register_dataset("procedural_scenes", Task.SEGMENTATION, SCENE_CLASS_NAMES, inputs=COLOURS, pipeline=_scene_pipeline)
def open_procedural_scenes(request: DatasetRequest) -> ProceduralScenes:
    return ProceduralScenes(request.num_samples, request.split, request.data.dataset_seed, request.transform)
