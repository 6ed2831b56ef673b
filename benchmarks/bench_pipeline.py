"""Input pipeline vs training step: is the loader or the network the bottleneck?

Measures, in one process on the real ModelNet40 sample (or the procedural shapes when it is absent):

- the input pipeline alone (read the file, augment, voxelize, collate) in samples/s, with 0 and with 2
  DataLoader workers;
- one training step (forward + backward + SGD) of the inflated CIFAR ResNet-56 network on a
  pre-collated batch, in samples/s.

If the pipeline with 2 workers delivers more samples/s than the step consumes, the step is the
bottleneck and more workers would not speed training up.

    python benchmarks/bench_pipeline.py [--quick] [--json out.json]
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    MODELNET_DIR,
    format_table,
    median,
    standard_arguments,
    write_json,
)

BATCH_SIZE = 16
NUM_POINTS = 4096
VOXEL_SIZE = 0.05
WORKER_COUNTS = (0, 2)
BACKBONE = "cifar_resnet56"


@dataclasses.dataclass(frozen=True)
class PipelineResult:
    stage: str
    workers: int | None
    samples_per_s: float
    seconds_per_batch: float


def _dataset():
    from image2point.data.modelnet40 import ModelNet40
    from image2point.data.procedural import ProceduralShapes
    from image2point.data.registry import default_transforms

    if MODELNET_DIR.exists():
        return ModelNet40(MODELNET_DIR, "train", NUM_POINTS, default_transforms("modelnet40", True)), "ModelNet40 sample"
    return ProceduralShapes(256, "train", 0, NUM_POINTS, default_transforms("procedural_shapes", True)), "procedural"


def time_pipeline(dataset, workers: int, batches: int) -> float:
    """Seconds per batch of read + augment + voxelize + collate, after the workers have started."""
    from image2point.data.collate import VoxelCollator

    collator = VoxelCollator(VOXEL_SIZE, len(dataset.class_names))
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, collate_fn=collator.shapes,
                        num_workers=workers, persistent_workers=workers > 0, drop_last=True)
    stream = itertools.cycle(loader) if workers == 0 else _endless(loader)
    next(stream)
    started = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return (time.perf_counter() - started) / batches


def _endless(loader):
    while True:
        yield from loader


def time_train_step(dataset, repetitions: int) -> float:
    from image2point.data.collate import VoxelCollator
    from image2point.models import NetworkConfig, apply_finetune_scheme, build_network, optimizer_parameters

    collator = VoxelCollator(VOXEL_SIZE, len(dataset.class_names))
    batch = collator.shapes([dataset[i] for i in range(BATCH_SIZE)])
    network = build_network(NetworkConfig(backbone=BACKBONE, num_classes=len(dataset.class_names))).network
    apply_finetune_scheme(network, "all")
    optimizer = torch.optim.SGD(optimizer_parameters(network), lr=0.01, momentum=0.9)
    network.train()
    times = []
    for _ in range(repetitions + 1):
        started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(network(batch.voxels.tensor), batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return median(times[1:])


def run(quick: bool = False) -> list[PipelineResult]:
    dataset, name = _dataset()
    batches = 4 if quick else 12
    print(f"data: {name}, batch {BATCH_SIZE}, {NUM_POINTS} points per shape, voxel {VOXEL_SIZE}, "
          f"{torch.get_num_threads()} torch threads")
    results = []
    for workers in WORKER_COUNTS:
        seconds = time_pipeline(dataset, workers, batches)
        results.append(PipelineResult("load+augment+voxelize+collate", workers, BATCH_SIZE / seconds, seconds))
    seconds = time_train_step(dataset, 3 if quick else 8)
    results.append(PipelineResult(f"train step ({BACKBONE}, fwd+bwd+SGD)", None, BATCH_SIZE / seconds, seconds))
    return results


def main() -> None:
    args = standard_arguments(__doc__).parse_args()
    results = run(args.quick)
    rows = [(r.stage, "-" if r.workers is None else r.workers, r.samples_per_s, r.seconds_per_batch * 1e3)
            for r in results]
    print(format_table("input pipeline vs training step", ("stage", "workers", "samples/s", "ms/batch"), rows))
    loader_2 = next(r for r in results if r.workers == 2)
    step = results[-1]
    bottleneck = "the training step" if loader_2.samples_per_s > step.samples_per_s else "the input pipeline"
    print(f"with 2 workers the loader delivers {loader_2.samples_per_s:.0f} samples/s, the step consumes "
          f"{step.samples_per_s:.0f} samples/s: the bottleneck is {bottleneck} "
          f"(ratio {loader_2.samples_per_s / step.samples_per_s:.1f}x)")
    if args.json:
        write_json(args.json, "pipeline", results, {"quick": args.quick})


if __name__ == "__main__":
    main()
