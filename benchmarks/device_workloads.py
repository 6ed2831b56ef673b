"""The device check's two end-to-end workloads: a timed training run and a full-scan inference.

- ``train_epochs``: ``image2point train`` (``run_training``, the loop itself) on the ModelNet40 sample
  with the demo recipe (``configs/demo/modelnet40_sample.yaml``, random initial weights), once per AMP
  mode (``none``, ``bf16``, ``fp16`` with loss scaling): one epoch from scratch (the cold one: CUDA
  start-up, allocator, first kernels), then ``--resume`` for further epochs in the same process (warm),
  each timed with a device synchronisation, with the peak allocated GPU memory.
- ``scan_inference``: the SemanticKITTI recipe (``configs/semantickitti/resnet18_all.yaml``: voxel
  ResNet-18 + U-Net, voxel 0.05) on one whole scan, built through the training builders and collate:
  inference in fp32 and under bf16 autocast (median of repetitions after a warm-up), one training step
  (forward, backward, SGD), each with its peak allocated GPU memory; the scan is scored against its
  labels through the training metrics (random weights: the numbers only show that the path runs).

``small=True`` shrinks both to what two CPU cores do in seconds (fewer points, a CIFAR ResNet-20, coarse
voxels): the device check's CPU mode. Results are plain dicts, written as JSON by ``device_check.py``.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELNET_RECIPE = REPO_ROOT / "configs" / "demo" / "modelnet40_sample.yaml"
KITTI_RECIPE = REPO_ROOT / "configs" / "semantickitti" / "resnet18_all.yaml"
MODELNET_SUBDIR = "modelnet40_normal_resampled"
KITTI_SUBDIR = "semantickitti"
KITTI_SCAN = "00/000000"
AMP_MODES = ("none", "bf16", "fp16")
WARM_EPOCHS = {False: 2, True: 1}  # by small
INFERENCE_REPETITIONS = {False: 3, True: 1}
# small: what two CPU cores train and predict in seconds.
# One thread: on a machine shared with other jobs, torch's thread pool mostly waits (10× slower here).
SMALL_TRAIN_OVERRIDES = ["data.num_points=512", "data.batch_size=8", "model.backbone=cifar_resnet20",
                         "train.max_steps_per_epoch=2", "train.threads=1"]
SMALL_SCAN_OVERRIDES = ["data.voxel_size=0.4", "model.backbone=cifar_resnet20"]
MIB = 2**20


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured(device: torch.device, function: Callable[[], Any]) -> tuple[Any, float, int | None]:
    """``function()``, its wall seconds (synchronised) and, on CUDA, its peak allocated bytes."""
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    value = function()
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return value, seconds, peak


# ---------------------------------------------------------------------------------------------------
# Training on the ModelNet40 sample.


def train_epochs(data_dir: Path, device: torch.device, out_dir: Path, small: bool, workers: int) -> dict:
    """Cold and warm epochs of ``run_training`` for each AMP mode; see the module docstring."""
    from image2point.train.config import load_config
    from image2point.train.loop import run_training

    runs = []
    for amp in AMP_MODES:
        run_dir = out_dir / f"modelnet40_{amp}"
        overrides = [f"data.root={data_dir / MODELNET_SUBDIR}", "model.pretrained=null", f"train.amp={amp}",
                     f"train.device={device}", f"train.run_dir={run_dir}", f"data.num_workers={workers}",
                     "train.epochs=1"] + (SMALL_TRAIN_OVERRIDES if small else [])
        config = load_config(MODELNET_RECIPE, overrides)
        cold, cold_s, cold_peak = measured(device, lambda: run_training(config, quiet=True))
        warm_epochs = WARM_EPOCHS[small]
        config = load_config(MODELNET_RECIPE, overrides + [f"train.epochs={1 + warm_epochs}"])
        warm, warm_s, warm_peak = measured(device, lambda: run_training(config, resume=True, quiet=True))
        train_samples = _training_samples(config)
        runs.append({
            "amp": amp,
            "train_samples": train_samples,
            "batch_size": config.data.batch_size,
            "backbone": config.model.backbone,
            "cold_epoch_s": cold_s,
            # A resumed run of warm_epochs epochs in the same process, its setup included, per epoch.
            "warm_epochs": warm_epochs,
            "warm_epoch_s": warm_s / warm_epochs,
            "warm_samples_per_s": train_samples * warm_epochs / warm_s,
            "peak_allocated_mib": None if warm_peak is None else max(cold_peak, warm_peak) / MIB,
            "epoch_losses": warm.epoch_losses,
            "overall_accuracy": warm.final.overall_accuracy,
            "loss_finite": all(math.isfinite(loss) for loss in warm.epoch_losses),
        })
    return {"recipe": str(MODELNET_RECIPE.relative_to(REPO_ROOT)), "device": str(device), "small": small,
            "workers": workers, "note": "An epoch here = training steps + evaluation on the test list + "
                                        "checkpoint writing (run_training as the CLI runs it)", "runs": runs}


def _training_samples(config) -> int:
    from image2point.train.builders import build_train_dataset

    samples = len(build_train_dataset(config.data))
    steps = config.train.max_steps_per_epoch
    return samples if steps is None else min(samples, steps * config.data.batch_size)


# ---------------------------------------------------------------------------------------------------
# One whole SemanticKITTI scan.


def _scan_setup(data_dir: Path, device: torch.device, small: bool):
    from image2point.models import optimizer_parameters
    from image2point.sparse.backends import default_backend
    from image2point.train.builders import (
        build_collate,
        build_dataset,
        build_model,
        class_names_of,
        network_in_features,
        task_of,
    )
    from image2point.train.config import load_config

    overrides = [f"data.root={data_dir / KITTI_SUBDIR}", f"data.train_scans=[{KITTI_SCAN}]",
                 f"data.eval_scans=[{KITTI_SCAN}]", "model.pretrained=null", f"train.device={device}"]
    config = load_config(KITTI_RECIPE, overrides + (SMALL_SCAN_OVERRIDES if small else []))
    task = task_of(config.data)
    dataset = build_dataset(config.data, config.data.eval_split, train=False)
    class_names = class_names_of(dataset)
    network = build_model(config, network_in_features(config), len(class_names), task).network.to(device)
    backend = config.model.backend or default_backend(device)
    batch = build_collate(config, task, len(class_names), backend)([dataset[0]]).to(device)
    optimizer = torch.optim.SGD(optimizer_parameters(network), lr=1e-3, momentum=0.9)
    return config, network, batch, optimizer, class_names, backend


def scan_inference(data_dir: Path, device: torch.device, small: bool) -> dict:
    """Whole-scan inference (fp32, bf16) and one training step; see the module docstring."""
    from image2point.data.sample import IGNORE_INDEX
    from image2point.train.loop import loss_and_logits
    from image2point.train.metrics import ConfusionMatrix

    if small:
        torch.set_num_threads(1)
    config, network, batch, optimizer, class_names, backend = _scan_setup(data_dir, device, small)
    repetitions = INFERENCE_REPETITIONS[small]
    rows, logits = [], None
    for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        def infer():
            network.eval()
            amp = contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
            with torch.no_grad(), amp:
                return network(*batch.network_inputs())

        infer()  # warm-up: first kernels, allocator
        timings = [measured(device, infer) for _ in range(repetitions)]
        if dtype is None:
            logits = timings[-1][0]
        seconds = sorted(t[1] for t in timings)[len(timings) // 2]
        rows.append(_scan_row(f"inference {precision}", seconds, [t[2] for t in timings]))

    def train_step():
        network.train()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = loss_and_logits(network, batch)
        loss.backward()
        optimizer.step()
        return loss.item()

    train_step()  # warm-up
    loss, seconds, peak = measured(device, train_step)
    rows.append(_scan_row("training step fp32", seconds, [peak]) | {"loss": loss})
    confusion = ConfusionMatrix(len(class_names), IGNORE_INDEX, class_names)
    confusion.update(*batch.scored(logits))
    metrics = confusion.compute()
    voxels = batch.voxels.tensor
    return {"recipe": str(KITTI_RECIPE.relative_to(REPO_ROOT)), "device": str(device), "small": small,
            "scan": KITTI_SCAN, "points": int(batch.point_labels.shape[0]), "voxels": int(voxels.num_sites),
            "voxel_size": config.data.voxel_size, "backbone": config.model.backbone, "backend": backend,
            "repetitions": repetitions, "rows": rows,
            "random_weight_scores": {"overall_accuracy": metrics.overall_accuracy, "miou": metrics.miou}}


def _scan_row(what: str, seconds: float, peaks: list[int | None]) -> dict:
    known = [peak for peak in peaks if peak is not None]
    return {"what": what, "seconds": seconds, "peak_allocated_mib": max(known) / MIB if known else None}
