"""Prediction on a large scene: throughput and peak memory of ``predict_cloud`` against ``chunk_points``.

Run: ``.venv/bin/python benchmarks/bench_predict.py [--quick] [--points N] [--threads N] [--json out.json]``.

Scene: a generated outdoor scene of 10 million points (1 million with ``--quick``) over 200 m x 200 m,
float32 x, y, z, intensity as a KITTI ``.bin`` file: an undulating ground, buildings and cars (boxes:
tops and walls) and poles (cylinders), seeded. Model: a SemanticKITTI segmentation network (19
classes, xyz + intensity, voxel 0.1 m) with the input layer and U-Net decoder of the paper's networks
and no inflated backbone, built from its config with its initial weights and saved as a training
checkpoint; the weights do not change the work, only the labels.

Every chunk setting runs in a fresh process (one at a time), which loads the checkpoint and the
scene as ``image2point predict`` does, then times one ``predict_cloud`` call and reads its peak
resident memory (``VmHWM``, see ``common.peak_rss_bytes``); "before" is the peak after loading, so
"predict" is what prediction itself added. The baseline is the whole scene as one tile
(``chunk_points`` = the scene's points). Tiles keep the default overlap of 32 voxels, more than the
network's receptive field, so every setting should give the baseline's labels; the agreement is
reported. What chunking cannot bound: the whole scene is read, prepared and voxelized at once.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):
    # Run as a script: make the repository and this folder importable.
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
    import common  # type: ignore[import-not-found]
else:
    from benchmarks import common

SCENE_POINTS = 10_000_000
QUICK_SCENE_POINTS = 250_000
CHUNK_SETTINGS = (250_000, 500_000, 1_000_000, 4_000_000)  # 500_000 is predict's default
QUICK_CHUNK_SETTINGS = (50_000,)
DEFAULT_THREADS = 1
SEED = 0
PROBE_TIMEOUT_S = 3600
SCENE_FILE = "scene.bin"
CHECKPOINT_FILE = "model.pt"
LABELS_FILE = "labels_{chunk}.npy"
WHOLE_SCENE = "whole scene"

# The model: SemanticKITTI's classes and input, the input layer and U-Net head without a backbone.
VOXEL_SIZE = 0.2
MODEL_OVERRIDES = ("data.name=semantickitti", f"data.voxel_size={VOXEL_SIZE}", "model.backbone=none",
                   "model.linear_width=64", "model.head=unet")
KITTI_IN_FEATURES = 4  # x, y, z, intensity

# The scene, in metres. Shares of the points on each kind of surface.
SCENE_HALF_WIDTH = 100.0
GROUND_SHARE, BUILDING_SHARE, CAR_SHARE = 0.55, 0.25, 0.1  # poles take the rest
GROUND_WAVE_HEIGHT = 0.5
GROUND_WAVELENGTHS = (20.0, 25.0)
GROUND_NOISE = 0.02
BUILDINGS, BUILDING_FOOTPRINT, BUILDING_HEIGHT = 40, (8.0, 30.0), (4.0, 15.0)
CARS, CAR_SIZE = 300, (4.5, 1.8, 1.5)
POLES, POLE_RADIUS, POLE_HEIGHT = 400, (0.1, 0.4), (3.0, 8.0)
# Intensity (0..1) of each kind of surface: ground, building, car, pole, and its spread.
INTENSITY_MEANS = (0.3, 0.5, 0.8, 0.6)
INTENSITY_SPREAD = 0.1
# Faces of a box that a sensor sees: top, then the walls at x = 0, x = 1, y = 0, y = 1 (box coordinates).
BOX_FACES = ((2, 1.0), (0, 0.0), (0, 1.0), (1, 0.0), (1, 1.0))


@dataclasses.dataclass(frozen=True)
class PredictResult:
    """One chunk setting: its time and memory, and how its labels compare with the whole scene's."""

    chunk_points: int
    setting: str
    points: int
    voxels: int
    tiles: int
    seconds: float
    peak_bytes: int
    before_bytes: int
    agreement: float

    @property
    def points_per_s(self) -> float:
        return self.points / self.seconds

    @property
    def predict_bytes(self) -> int:
        return self.peak_bytes - self.before_bytes


# ---------------------------------------------------------------------------------------------------
# The scene.


def ground_height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return GROUND_WAVE_HEIGHT * np.sin(x / GROUND_WAVELENGTHS[0]) * np.cos(y / GROUND_WAVELENGTHS[1])


def outdoor_scene(num_points: int, seed: int = SEED) -> np.ndarray:
    """float32 [num_points, 4]: x, y, z, intensity of a street-like scene over 200 m x 200 m."""
    rng = np.random.default_rng(seed)
    counts = np.floor(np.array([GROUND_SHARE, BUILDING_SHARE, CAR_SHARE]) * num_points).astype(int)
    counts = [*counts, num_points - counts.sum()]
    ground = rng.uniform(-SCENE_HALF_WIDTH, SCENE_HALF_WIDTH, (counts[0], 3))
    ground[:, 2] = ground_height(ground[:, 0], ground[:, 1]) + rng.normal(0.0, GROUND_NOISE, counts[0])
    footprints = rng.uniform(*BUILDING_FOOTPRINT, (BUILDINGS, 2))
    building_sizes = np.column_stack([footprints, rng.uniform(*BUILDING_HEIGHT, BUILDINGS)])
    car_sizes = np.tile(CAR_SIZE, (CARS, 1))
    parts = [
        ground,
        box_surfaces(rng, building_sizes, counts[1]),
        box_surfaces(rng, car_sizes, counts[2]),
        pole_surfaces(rng, counts[3]),
    ]
    intensity = [np.clip(rng.normal(mean, INTENSITY_SPREAD, count), 0.0, 1.0)
                 for mean, count in zip(INTENSITY_MEANS, counts, strict=True)]
    scene = np.empty((num_points, 4), dtype=np.float32)
    scene[:, :3] = np.concatenate(parts)
    scene[:, 3] = np.concatenate(intensity)
    return scene


def box_surfaces(rng: np.random.Generator, sizes: np.ndarray, count: int) -> np.ndarray:
    """Points on the tops and walls of boxes standing on the ground, boxes and faces drawn by area."""
    corners = rng.uniform(-SCENE_HALF_WIDTH, SCENE_HALF_WIDTH - sizes[:, :2].max(), (len(sizes), 2))
    dx, dy, dz = sizes.T
    face_areas = np.column_stack([dx * dy, dy * dz, dy * dz, dx * dz, dx * dz])
    box_areas = face_areas.sum(axis=1)
    box = rng.choice(len(sizes), count, p=box_areas / box_areas.sum())
    draw = rng.random(count) * box_areas[box]
    face = (draw[:, None] > np.cumsum(face_areas[box], axis=1)).sum(axis=1)
    local = rng.random((count, 3))
    for index, (axis, side) in enumerate(BOX_FACES):
        local[face == index, axis] = side
    points = local * sizes[box]
    points[:, :2] += corners[box]
    centres = corners + sizes[:, :2] / 2
    points[:, 2] += ground_height(centres[box, 0], centres[box, 1])
    return points


def pole_surfaces(rng: np.random.Generator, count: int) -> np.ndarray:
    """Points on the mantles of upright cylinders, poles drawn by mantle area."""
    centres = rng.uniform(-SCENE_HALF_WIDTH, SCENE_HALF_WIDTH, (POLES, 2))
    radii = rng.uniform(*POLE_RADIUS, POLES)
    heights = rng.uniform(*POLE_HEIGHT, POLES)
    areas = radii * heights
    pole = rng.choice(POLES, count, p=areas / areas.sum())
    angle = rng.uniform(0.0, 2.0 * np.pi, count)
    points = np.empty((count, 3))
    points[:, 0] = centres[pole, 0] + radii[pole] * np.cos(angle)
    points[:, 1] = centres[pole, 1] + radii[pole] * np.sin(angle)
    points[:, 2] = ground_height(centres[pole, 0], centres[pole, 1]) + rng.random(count) * heights[pole]
    return points


# ---------------------------------------------------------------------------------------------------
# The model and one measurement.


def write_checkpoint(path: Path) -> None:
    """A training checkpoint of the benchmark's model with its initial weights."""
    from image2point.checkpoint import save_checkpoint
    from image2point.inference.labels import label_scheme
    from image2point.train.builders import build_model, task_of
    from image2point.train.config import config_to_dict, load_config

    config = load_config(None, list(MODEL_OVERRIDES))
    torch.manual_seed(SEED)
    num_classes = label_scheme(config.data).num_classes
    network = build_model(config, KITTI_IN_FEATURES, num_classes, task_of(config.data)).network
    save_checkpoint(path, {"model": network.state_dict(), "config": config_to_dict(config)})


def probe(work_dir: Path, chunk_points: int, threads: int) -> dict[str, int | float]:
    """In this (fresh) process: load the model and the scene, predict once, save the labels."""
    from image2point.inference.model import load_model
    from image2point.io import read_point_cloud
    from image2point.inference.predict import predict_cloud
    from image2point.inference.prepare import model_input
    from image2point.voxelize import voxelize

    torch.set_num_threads(threads)
    model = load_model(work_dir / CHECKPOINT_FILE)
    cloud = read_point_cloud(work_dir / SCENE_FILE)
    before = common.peak_rss_bytes()
    started = time.perf_counter()
    prediction = predict_cloud(model, cloud, chunk_points=chunk_points)
    seconds = time.perf_counter() - started
    peak = common.peak_rss_bytes()
    np.save(work_dir / LABELS_FILE.format(chunk=chunk_points), prediction.labels)
    voxels = voxelize(model_input(model, cloud).points, model.config.data.voxel_size).num_voxels
    return {"seconds": seconds, "peak_bytes": peak, "before_bytes": before, "tiles": prediction.num_tiles,
            "points": cloud.num_points, "voxels": voxels}


# ---------------------------------------------------------------------------------------------------
# The run.


def _progress(message: str) -> None:
    print(f"[bench_predict] {message}", file=sys.stderr, flush=True)


def run(num_points: int, chunk_settings: Sequence[int], threads: int = DEFAULT_THREADS,
        log: Callable[[str], None] = _progress) -> list[PredictResult]:
    """Every chunk setting, then the whole scene as one tile, each in a fresh process; in that order."""
    from image2point.io import write_kitti_bin

    settings = [chunk for chunk in sorted(chunk_settings) if chunk < num_points] + [num_points]
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as directory:
        work_dir = Path(directory)
        log(f"generating a {num_points:,}-point scene")
        scene = outdoor_scene(num_points)
        write_kitti_bin(work_dir / SCENE_FILE, scene[:, :3], scene[:, 3])
        del scene
        write_checkpoint(work_dir / CHECKPOINT_FILE)
        probes = {}
        for chunk in settings:
            log(f"chunk_points {chunk:,}: predicting in a fresh process")
            probes[chunk] = common.run_json_subprocess(
                [str(Path(__file__).resolve()), "--probe", str(work_dir), str(chunk), "--threads", str(threads)],
                PROBE_TIMEOUT_S)
        whole = np.load(work_dir / LABELS_FILE.format(chunk=num_points))
        results = []
        for chunk in settings:
            labels = np.load(work_dir / LABELS_FILE.format(chunk=chunk))
            measured = probes[chunk]
            results.append(PredictResult(
                chunk_points=chunk, setting=WHOLE_SCENE if chunk == num_points else f"{chunk:,}",
                points=measured["points"], voxels=measured["voxels"], tiles=measured["tiles"],
                seconds=measured["seconds"], peak_bytes=measured["peak_bytes"],
                before_bytes=measured["before_bytes"], agreement=float(np.mean(labels == whole))))
    return results


def report(results: Sequence[PredictResult], threads: int) -> str:
    """The table, with every setting's throughput and peak memory as ratios to the whole scene's."""
    baseline = next(result for result in results if result.setting == WHOLE_SCENE)
    mib = common.BYTES_PER_MIB
    title = (f"predict_cloud on a generated outdoor scene: {baseline.points:,} points, {baseline.voxels:,} voxels "
             f"at {VOXEL_SIZE} m; torch {torch.__version__}, {threads} thread(s); a fresh process per row")
    return common.format_table(
        title,
        ["chunk_points", "tiles", "seconds", "points/s", "peak MiB", "predict MiB", "speed vs whole",
         "peak vs whole", "labels as whole"],
        [[r.setting, r.tiles, r.seconds, r.points_per_s, r.peak_bytes / mib, r.predict_bytes / mib,
          f"{r.points_per_s / baseline.points_per_s:.2f}x", f"{r.peak_bytes / baseline.peak_bytes:.2f}x",
          f"{100 * r.agreement:.2f}%"] for r in results])


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.standard_arguments(__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, help=f"scene size (default {SCENE_POINTS:,}; --quick "
                                                    f"{QUICK_SCENE_POINTS:,})")
    parser.add_argument("--chunks", type=int, nargs="+",
                        help="chunk_points settings besides the whole scene (default: "
                             f"{', '.join(f'{chunk:,}' for chunk in CHUNK_SETTINGS)})")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch intra-op threads")
    parser.add_argument("--probe", nargs=2, metavar=("WORK_DIR", "CHUNK_POINTS"),
                        help="internal: one measurement in this process, printed as JSON")
    args = parser.parse_args(argv)
    if args.probe:
        work_dir, chunk = args.probe
        print(json.dumps(probe(Path(work_dir), int(chunk), args.threads)))
        return 0
    num_points = args.points or (QUICK_SCENE_POINTS if args.quick else SCENE_POINTS)
    chunks = args.chunks or (QUICK_CHUNK_SETTINGS if args.quick else CHUNK_SETTINGS)
    results = run(num_points, chunks, args.threads)
    print(report(results, args.threads))
    if args.json:
        common.write_json(args.json, "bench_predict", results,
                          {"points": num_points, "chunks": list(chunks), "threads": args.threads,
                           "model": list(MODEL_OVERRIDES)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
