"""Training-step time of the three model families on the same data: voxels, points, range images.

One training step (forward + backward + SGD) of each family, built through the same config and
collate code as ``image2point train``, interleaved in one process:

- classification, one batch of ModelNet40 shapes (the shared sample, xyz only): the inflated
  ResNet-18 on voxels vs PointNet++ SSG on the same points;
- segmentation, one SemanticKITTI scan (the shared sample, xyz + intensity): the inflated ResNet-18
  with its U-Net decoder on voxels vs HRNet-W18 on the scan's 64 x 2048 range image vs the PointNet++
  SSG segmenter on points drawn from the scan.

Ratios are step times over the voxel ResNet-18 of the same task. Without the shared samples the
procedural shapes and scenes stand in (and the table says so).

    python benchmarks/bench_families.py [--quick] [--json out.json]
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    MODELNET_DIR,
    SHARED_DATA,
    format_table,
    median,
    standard_arguments,
    time_interleaved,
    write_json,
)

KITTI_ROOT = SHARED_DATA / "semantickitti"
KITTI_SCAN = "00/000000"
SHAPES_PER_BATCH = 8
POINTS_PER_SHAPE = 1024
SHAPE_VOXEL = 0.05
# The paper voxelizes SemanticKITTI at 0.05 m; 0.1 m keeps a CPU step of ResNet-18 + U-Net in seconds.
SCENE_VOXEL = 0.1
SCENE_POINTS_FOR_POINTNET2 = 16384
QUICK_RANGE_WIDTH = 512
LEARNING_RATE = 0.01

CLASSIFICATION_MODELS = {
    "voxel ResNet-18": ["model.family=voxel", "model.backbone=resnet18"],
    "PointNet++ SSG": ["model.family=pointnet2", "model.backbone=pointnet2_ssg"],
}
SEGMENTATION_MODELS = {
    "voxel ResNet-18 + U-Net": ["model.family=voxel", "model.backbone=resnet18"],
    "range HRNet-W18": ["model.family=range", "model.backbone=hrnet_w18"],
    "PointNet++ SSG": ["model.family=pointnet2", "model.backbone=pointnet2_ssg",
                       f"data.num_points={SCENE_POINTS_FOR_POINTNET2}"],
}
BASELINES = {"classification": "voxel ResNet-18", "segmentation": "voxel ResNet-18 + U-Net"}


@dataclasses.dataclass(frozen=True)
class StepResult:
    task: str
    data: str
    model: str
    parameters: int
    seconds_per_step: float
    ratio_to_voxel: float


def _samples() -> tuple[list, str, list, str]:
    """Shapes and one scene, with the overrides that describe their dataset."""
    from image2point.data.modelnet40 import ModelNet40
    from image2point.data.procedural import ProceduralScenes, ProceduralShapes
    from image2point.data.semantickitti import SemanticKITTI

    if MODELNET_DIR.exists():
        shapes_set = ModelNet40(MODELNET_DIR, "train", POINTS_PER_SHAPE)
        shapes_name = "modelnet40"
    else:
        shapes_set = ProceduralShapes(SHAPES_PER_BATCH, "train", 0, POINTS_PER_SHAPE)
        shapes_name = "procedural_shapes"
    shapes = [shapes_set[index] for index in range(SHAPES_PER_BATCH)]
    if KITTI_ROOT.exists():
        scene = SemanticKITTI(KITTI_ROOT, "train", scans=[KITTI_SCAN])[0]
        scene_name = "semantickitti"
    else:
        scene = ProceduralScenes(1, "train", 0)[0]
        scene_name = "procedural_scenes"
    return shapes, shapes_name, [scene], scene_name


def _step_function(overrides: list[str], samples: list, task: str, num_classes: int):
    """A closure running one training step of the model ``overrides`` build, and its parameter count."""
    from image2point.data.collate import input_channels
    from image2point.data.sample import IGNORE_INDEX
    from image2point.models import apply_finetune_scheme, optimizer_parameters
    from image2point.train.builders import build_collate, build_model
    from image2point.train.config import load_config
    from image2point.train.families import get_family

    config = load_config(None, overrides)
    # Per point (xyz included), or the family's own input width (a range image's channels).
    in_features = get_family(config.model.family).network_in_features(lambda: input_channels(samples[0]))
    network = build_model(config, in_features, num_classes, task).network
    apply_finetune_scheme(network, "all")
    network.train()
    batch = build_collate(config, task, num_classes, "torch")(samples)
    optimizer = torch.optim.SGD(optimizer_parameters(network), lr=LEARNING_RATE, momentum=0.9)

    def step() -> None:
        logits = network(*batch.network_inputs())
        loss = torch.nn.functional.cross_entropy(logits, batch.loss_targets, ignore_index=IGNORE_INDEX)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step, sum(parameter.numel() for parameter in network.parameters())


def run(quick: bool = False) -> list[StepResult]:
    shapes, shapes_name, scenes, scene_name = _samples()
    repetitions = 1 if quick else 3
    range_width = [f"data.range_image.width={QUICK_RANGE_WIDTH}"] if quick else []
    plans = [
        ("classification", shapes_name, shapes, 40 if shapes_name == "modelnet40" else 12, CLASSIFICATION_MODELS,
         [f"data.name={shapes_name}", f"data.voxel_size={SHAPE_VOXEL}", f"data.num_points={POINTS_PER_SHAPE}"]),
        ("segmentation", scene_name, scenes, 19 if scene_name == "semantickitti" else 5, SEGMENTATION_MODELS,
         [f"data.name={scene_name}", f"data.voxel_size={SCENE_VOXEL}", *range_width]),
    ]
    results = []
    for task, data_name, samples, num_classes, models, data_overrides in plans:
        steps, sizes = {}, {}
        for name, model_overrides in models.items():
            steps[name], sizes[name] = _step_function([*data_overrides, *model_overrides], samples, task, num_classes)
        times = {name: median(seconds) for name, seconds in time_interleaved(steps, repetitions).items()}
        baseline = times[BASELINES[task]]
        results += [StepResult(task, data_name, name, sizes[name], seconds, seconds / baseline)
                    for name, seconds in times.items()]
    return results


def main() -> None:
    args = standard_arguments(__doc__).parse_args()
    print(f"{torch.get_num_threads()} torch threads; {SHAPES_PER_BATCH} shapes x {POINTS_PER_SHAPE} points at voxel "
          f"{SHAPE_VOXEL}; one scan at voxel {SCENE_VOXEL}")
    results = run(args.quick)
    rows = [(r.task, r.data, r.model, r.parameters, r.seconds_per_step * 1e3, r.ratio_to_voxel) for r in results]
    print(format_table("training step (forward + backward + SGD)",
                       ("task", "data", "model", "parameters", "ms/step", "x voxel ResNet-18"), rows))
    if args.json:
        write_json(args.json, "families", results, {"quick": args.quick})


if __name__ == "__main__":
    main()
