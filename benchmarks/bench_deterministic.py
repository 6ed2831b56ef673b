"""What ``train.deterministic`` costs: a training step with torch's deterministic algorithms against the
default, side by side in one process.

Run: ``.venv/bin/python benchmarks/bench_deterministic.py [--quick] [--device cpu|cuda] [--threads N]
[--json out.json]``.

One training step (forward, cross-entropy, backward, SGD; kernel maps built inside the timed region) of
two networks on the same batch of ModelNet40 shapes at voxel 0.05: the CIFAR ResNet-20 classifier and
the CIFAR ResNet-20 + U-Net segmenter (per-site labels), each timed with
``image2point.train.determinism.deterministic_algorithms`` off and on, interleaved, median of the
repetitions, one torch thread by default. On the CPU the mode changes no kernel of the sparse path
(its scatters are deterministic already) but fills every uninitialised allocation
(``torch.utils.deterministic.fill_uninitialized_memory``); on CUDA it also turns ``index_add_`` into a
sort-based accumulation.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
    import common  # type: ignore[import-not-found]
else:
    from benchmarks import common

from image2point.models import NetworkConfig, build_network, optimizer_parameters
from image2point.train.determinism import deterministic_algorithms
from image2point.voxelize import collate_voxels, voxelize

SHAPES, QUICK_SHAPES = 16, 4
REPETITIONS, QUICK_REPETITIONS = 7, 2
VOXEL_SIZE = 0.05
NUM_CLASSES = 10
NETWORKS = {
    "resnet20 classifier": NetworkConfig(backbone="cifar_resnet20", num_classes=NUM_CLASSES),
    "resnet20 + U-Net": NetworkConfig(task="segmentation", backbone="cifar_resnet20", num_classes=NUM_CLASSES,
                                      head="unet"),
}
MODES = ("default", "deterministic")


@dataclass
class StepResult:
    network: str
    device: str
    sites: int
    reps: int
    default_ms: float
    deterministic_ms: float
    ratio: float


def _batch(count: int, device: torch.device):
    shapes = common.load_modelnet_shapes(count)
    voxels = [voxelize(torch.from_numpy(points).to(torch.float64), VOXEL_SIZE) for points in shapes]
    batch = collate_voxels(voxels).tensor
    return batch.features.to(device), batch.coords.to(device), batch.batch_size


def step_function(config: NetworkConfig, batch, device: torch.device, deterministic: bool):
    """(one training step of its own copy of the network on ``batch``, that network)."""
    from image2point.sparse import SparseTensor

    torch.manual_seed(0)
    network = build_network(config).network.to(device).train()
    optimizer = torch.optim.SGD(optimizer_parameters(network), lr=0.01, momentum=0.9)
    features, coords, batch_size = batch
    classify = config.task != "segmentation"
    targets = torch.arange(batch_size if classify else coords.shape[0], device=device) % NUM_CLASSES

    def step() -> None:
        with deterministic_algorithms(deterministic):
            logits = network(SparseTensor(features, coords, batch_size))
            loss = torch.nn.functional.cross_entropy(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)

    return step, network


def run(quick: bool, device: torch.device) -> list[StepResult]:
    batch = _batch(QUICK_SHAPES if quick else SHAPES, device)
    reps = QUICK_REPETITIONS if quick else REPETITIONS
    results = []
    for name, config in NETWORKS.items():
        candidates = {mode: step_function(config, batch, device, mode == "deterministic")[0] for mode in MODES}
        times = common.time_interleaved(candidates, reps)
        default, deterministic = (common.median(times[mode]) for mode in MODES)
        results.append(StepResult(name, str(device), int(batch[1].shape[0]), reps, default * 1e3,
                                  deterministic * 1e3, deterministic / default))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = common.device_arguments(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        results = run(args.quick, torch.device(args.device))
    except common.BenchmarkSkipped as skipped:
        print(f"skipped: {skipped}")
        return 0
    rows = [(r.network, r.device, r.sites, r.reps, r.default_ms, r.deterministic_ms, f"{r.ratio:.2f}x")
            for r in results]
    print(common.format_table(f"training step, deterministic algorithms against the default ({args.threads} thread(s))",
                              ["network", "device", "sites", "reps", "default ms", "deterministic ms", "ratio"], rows))
    if args.json:
        common.write_json(args.json, "bench_deterministic", results, vars(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
