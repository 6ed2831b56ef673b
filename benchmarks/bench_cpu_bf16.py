"""bf16 on the CPU: sparse convolutions under ``torch.autocast("cpu", torch.bfloat16)`` against float32.

Run: ``.venv/bin/python benchmarks/bench_cpu_bf16.py [--quick] [--epochs N] [--json out.json]``.

The torch backend computes sparse convolutions in bf16 under CPU autocast only when
``torch_backend.CPU_BF16_SPARSE_CONV`` is set and the processor has bf16 dot products (AVX512-BF16 or
AMX); the sums over kernel offsets stay float32 either way. This script sets it for the bf16 rows and
measures, one torch thread:

- speed: the default network (``sparse_default_network.py``) on 32 ModelNet40 shapes (8 with
  ``--quick``) at voxel 0.05: eval forward and one training step (cross-entropy, SGD), float32 against
  bf16 autocast, interleaved in one process, kernel maps built inside the timed region;
- accuracy: the relative difference of the default network's logits in bf16 against float32, and a
  short training run, ``configs/demo/modelnet40_sample.yaml`` (the pretrained CIFAR ResNet-56 on the
  127-shape ModelNet40 sample) for ``--epochs`` epochs with ``train.amp`` none and bf16 from the same
  seed: the training loss per epoch and the final test accuracy of each.
"""

from __future__ import annotations

import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
    import bench_sparse  # type: ignore[import-not-found]
    import common  # type: ignore[import-not-found]
    import sparse_default_network as default_network  # type: ignore[import-not-found]
else:
    from benchmarks import bench_sparse, common
    from benchmarks import sparse_default_network as default_network

from image2point.sparse.backends import torch_backend

SHAPES, QUICK_SHAPES = 32, 8
REPETITIONS, QUICK_REPETITIONS = 3, 1
EPOCHS, QUICK_EPOCHS = 6, 2
TRAINING_CONFIG = common.REPO_ROOT / "configs" / "demo" / "modelnet40_sample.yaml"
PRECISIONS = ("fp32", "bf16")


@dataclass
class SpeedResult:
    what: str
    precision: str
    reps: int
    median_s: float
    speedup_over_fp32: float


@dataclass
class LogitsResult:
    mean_relative_difference: float
    argmax_agreement: float


@dataclass
class TrainingResult:
    precision: str
    epochs: int
    epoch_losses: list[float]
    test_accuracy: float
    seconds: float


@contextmanager
def precision(name: str) -> Iterator[None]:
    """float32, or bf16 autocast reaching the sparse convolutions."""
    if name == "fp32":
        yield
        return
    previous = torch_backend.CPU_BF16_SPARSE_CONV
    torch_backend.CPU_BF16_SPARSE_CONV = True
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    finally:
        torch_backend.CPU_BF16_SPARSE_CONV = previous


def measure_speed(shapes: int, repetitions: int) -> tuple[list[Any], LogitsResult]:
    workload = bench_sparse.modelnet_workload(shapes)
    network = default_network.default_network(workload.features.shape[1])
    optimizer = torch.optim.SGD(network.parameters(), lr=default_network.LEARNING_RATE,
                                momentum=default_network.MOMENTUM)
    labels = torch.randint(0, default_network.NUM_CLASSES, (workload.batch_size,),
                           generator=torch.Generator().manual_seed(0))

    def forward(name: str) -> torch.Tensor:
        with torch.no_grad(), precision(name):
            network.eval()
            return network(workload.tensor("torch"))

    def step(name: str) -> None:
        network.train()
        optimizer.zero_grad(set_to_none=True)
        with precision(name):
            loss = torch.nn.functional.cross_entropy(network(workload.tensor("torch")).float(), labels)
        loss.backward()
        optimizer.step()

    reference, candidate = forward("fp32").float(), forward("bf16").float()
    logits = LogitsResult(float((candidate - reference).abs().mean() / reference.abs().mean()),
                          float((candidate.argmax(1) == reference.argmax(1)).float().mean()))
    calls = {(what, name): (lambda name=name, function=function: function(name))
             for what, function in (("eval forward", forward), ("training step", step)) for name in PRECISIONS}
    times = common.time_interleaved(calls, repetitions)
    results = []
    for (what, name), seconds in times.items():
        fp32 = common.median(times[(what, "fp32")])
        results.append(SpeedResult(f"{what}, {shapes} shapes", name, repetitions, common.median(seconds),
                                   fp32 / common.median(seconds)))
    return results, logits


def short_training(epochs: int) -> list[TrainingResult]:
    import time

    from image2point.train.config import load_config
    from image2point.train.loop import run_training

    results = []
    for name in PRECISIONS:
        with tempfile.TemporaryDirectory() as run_dir:
            config = load_config(TRAINING_CONFIG, [f"train.epochs={epochs}", f"train.run_dir={run_dir}",
                                                   f"train.amp={'none' if name == 'fp32' else 'bf16'}",
                                                   "train.threads=1", f"train.eval_every={epochs}"])
            previous = torch_backend.CPU_BF16_SPARSE_CONV
            torch_backend.CPU_BF16_SPARSE_CONV = name == "bf16"
            start = time.perf_counter()
            try:
                result = run_training(config, quiet=True)
            finally:
                torch_backend.CPU_BF16_SPARSE_CONV = previous
            results.append(TrainingResult(name, epochs, [round(loss, 4) for loss in result.epoch_losses],
                                          float(result.final.overall_accuracy), time.perf_counter() - start))
    return results


def report(speed: list[SpeedResult], logits: LogitsResult, training: list[TrainingResult]) -> str:
    native = torch_backend.cpu_has_native_bf16()
    sections = [f"bf16 on the CPU: torch {torch.__version__}, 1 thread, native bf16 dot products: {native}"]
    sections.append(common.format_table(
        "Default network, ModelNet40 at voxel 0.05 (median s; speed-up = t(fp32) / t)",
        ["what", "precision", "reps", "median s", "speed-up"],
        [[s.what, s.precision, s.reps, s.median_s, f"{s.speedup_over_fp32:.2f}"] for s in speed]))
    sections.append(f"Logits, bf16 against fp32 (eval): mean |difference| / mean |fp32| = "
                    f"{logits.mean_relative_difference:.4f}, same argmax for {logits.argmax_agreement:.1%} of shapes")
    sections.append(common.format_table(
        f"Short training run: {TRAINING_CONFIG.relative_to(common.REPO_ROOT)}, same seed",
        ["precision", "epochs", "train loss per epoch", "test accuracy", "seconds"],
        [[t.precision, t.epochs, " ".join(f"{loss:.3f}" for loss in t.epoch_losses), f"{t.test_accuracy:.3f}",
          t.seconds] for t in training]))
    return "\n\n".join(sections)


def main(argv=None) -> int:
    parser = common.standard_arguments(__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {EPOCHS}, quick {QUICK_EPOCHS})")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        speed, logits = measure_speed(QUICK_SHAPES if args.quick else SHAPES,
                                      QUICK_REPETITIONS if args.quick else REPETITIONS)
        training = short_training(args.epochs or (QUICK_EPOCHS if args.quick else EPOCHS))
    except common.BenchmarkSkipped as skipped:
        print(f"bench_cpu_bf16: skipped: {skipped}")
        return 0
    print(report(speed, logits, training))
    if args.json:
        common.write_json(args.json, "bench_cpu_bf16", speed + [logits] + training,
                          {"native_bf16": torch_backend.cpu_has_native_bf16(), "quick": args.quick})
    return 0


if __name__ == "__main__":
    sys.exit(main())
