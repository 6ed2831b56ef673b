"""Training-step time of inflated backbones beyond ResNets, against ResNet-18, on the same ModelNet40 batch.

One training step (forward + backward + SGD) of the paper's classification network (conv3 input layer,
inflated stages, mlp head), built through the same config and collate code as ``image2point train``, for
each backbone, interleaved in one process: ResNet-18 (the baseline, converted by module position), and
MobileNetV1 ×0.25 (the shared ImageNet checkpoint's width), MobileNetV1 ×1.0 and ConvNeXt-T (converted
through their traced forward: depthwise convs, LayerNorm, a channels-last MLP). Each is timed with the
whole network training (scheme ``all``) and with the backbone frozen (scheme ``io``: no weight gradients
in the backbone, BatchNorm statistics fixed). Ratios are step times over ResNet-18's under the same scheme.
Without the shared sample, procedural shapes stand in (and the table says so).

    python benchmarks/bench_backbones.py [--quick] [--json out.json]
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MODELNET_DIR, format_table, median, standard_arguments, time_interleaved, write_json  # noqa: E402

SHAPES_PER_BATCH = 16
QUICK_SHAPES = 4
POINTS_PER_SHAPE = 2048
VOXEL_SIZE = 0.05
LEARNING_RATE = 0.01
REPETITIONS = 3
QUICK_REPETITIONS = 1
BASELINE = "resnet18"
BACKBONES = ("resnet18", "mobilenet_v1_x0_25", "mobilenet_v1", "convnext_tiny")
SCHEMES = ("all", "io")


@dataclasses.dataclass(frozen=True)
class StepResult:
    backbone: str
    scheme: str
    parameters: int
    trainable: int
    seconds_per_step: float
    ratio_to_resnet18: float


def load_shapes(count: int) -> tuple[list, str, int]:
    """``count`` ModelNet40 training shapes (procedural ones without the shared sample), their dataset, classes."""
    from image2point.data.modelnet40 import ModelNet40
    from image2point.data.procedural import SHAPE_CLASS_NAMES, ProceduralShapes

    if MODELNET_DIR.exists():
        dataset, name, classes = ModelNet40(MODELNET_DIR, "train", POINTS_PER_SHAPE), "modelnet40", 40
    else:
        dataset = ProceduralShapes(count, "train", 0, POINTS_PER_SHAPE)
        name, classes = "procedural_shapes", len(SHAPE_CLASS_NAMES)
    return [dataset[index] for index in range(count)], name, classes


def step_function(backbone: str, scheme: str, samples: list, data_name: str, num_classes: int):
    """A closure running one training step of the classification network on ``backbone`` under ``scheme``,
    and its (all, trainable) parameter counts."""
    from image2point.data.collate import input_channels
    from image2point.models import apply_finetune_scheme, optimizer_parameters
    from image2point.train.builders import build_collate, build_model
    from image2point.train.config import load_config

    config = load_config(None, [f"data.name={data_name}", f"data.voxel_size={VOXEL_SIZE}",
                                f"data.num_points={POINTS_PER_SHAPE}", f"model.backbone={backbone}"])
    network = build_model(config, input_channels(samples[0]), num_classes, "classification").network
    apply_finetune_scheme(network, scheme)
    network.train()
    batch = build_collate(config, "classification", num_classes, "torch")(samples)
    parameters = optimizer_parameters(network)
    optimizer = torch.optim.SGD(parameters, lr=LEARNING_RATE, momentum=0.9)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(network(*batch.network_inputs()), batch.loss_targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    counts = (sum(p.numel() for p in network.parameters()), sum(p.numel() for p in parameters))
    return step, counts


def run(quick: bool = False, backbones=BACKBONES) -> tuple[list[StepResult], str]:
    samples, data_name, num_classes = load_shapes(QUICK_SHAPES if quick else SHAPES_PER_BATCH)
    repetitions = QUICK_REPETITIONS if quick else REPETITIONS
    results = []
    for scheme in SCHEMES:
        steps, counts = {}, {}
        for backbone in backbones:
            steps[backbone], counts[backbone] = step_function(backbone, scheme, samples, data_name, num_classes)
        times = {name: median(seconds) for name, seconds in time_interleaved(steps, repetitions).items()}
        baseline = times.get(BASELINE, next(iter(times.values())))
        results += [StepResult(name, scheme, *counts[name], seconds, seconds / baseline)
                    for name, seconds in times.items()]
    return results, f"{data_name}, {len(samples)} shapes x {POINTS_PER_SHAPE} points at voxel {VOXEL_SIZE}"


def main() -> None:
    args = standard_arguments(__doc__).parse_args()
    results, workload = run(args.quick)
    print(f"{torch.get_num_threads()} torch threads; {workload}")
    rows = [(r.backbone, r.scheme, r.parameters, r.trainable, r.seconds_per_step * 1e3, r.ratio_to_resnet18)
            for r in results]
    print(format_table("classification training step (forward + backward + SGD)",
                       ("backbone", "scheme", "parameters", "trainable", "ms/step", "x ResNet-18"), rows))
    if args.json:
        write_json(args.json, "backbones", results, {"quick": args.quick, "workload": workload})


if __name__ == "__main__":
    main()
