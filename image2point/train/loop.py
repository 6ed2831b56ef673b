"""Training and evaluation of a transferred network: one explicit step, an epoch loop, checkpoints.

A run directory holds ``config.yaml`` (the resolved config), ``train.log``, ``metrics.jsonl`` (one line
per epoch), ``metrics.json`` (final numbers), ``conversion.txt`` (where the pretrained weights went),
``last.pt`` and ``best.pt`` (atomic; ``--resume`` continues from ``last.pt`` with model, optimizer,
scheduler, scaler, epoch and RNG state), and TensorBoard events when tensorboard is installed.
Under ``torchrun`` every rank trains on its shard; metrics are summed across ranks and rank 0 logs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from image2point.checkpoint import (
    atomic_write,
    load_training_checkpoint,
    save_training_checkpoint,
    seed_everything,
)
from image2point.data.batch import Batch, Collate
from image2point.data.sample import IGNORE_INDEX
from image2point.checkpoint.integrity import require_finite_weights
from image2point.errors import CheckpointError, Image2PointWarning
from image2point.io import json_out
from image2point.models import FinetunePlan, apply_finetune_scheme, optimizer_parameters
from image2point.sparse.backends import default_backend
from image2point.tasks import Task
from image2point.train.builders import (
    BuiltModel,
    build_collate,
    build_dataset,
    build_model,
    build_optimizer,
    build_train_dataset,
    class_names_of,
    network_in_features,
    step_batch_warning,
    task_of,
)
from image2point.train.config import RunConfig, save_config
from image2point.train.determinism import check_deterministic_training, deterministic_algorithms, training_backend
from image2point.train.distributed import (
    DistributedContext,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    init_distributed,
    resolve_device,
)
from image2point.train.loaders import epoch_loader, make_loader, progress
from image2point.train.losses import cross_entropy_loss
from image2point.train.metrics import ConfusionMatrix, Metrics
from image2point.train.outcomes import OutcomeRecorder, write_outcomes
from image2point.train.run_log import METRICS_HISTORY, RunLog, conversion_text  # noqa: F401  (METRICS_HISTORY: the loop's file)
from image2point.train.resume import ResumePoint, read_resume_point, record_changes
from image2point.train.run_lock import claimed_run_directory
from image2point.train.run_state import RunState, check_compatible
from image2point.train.schedules import build_scheduler
from image2point.train.stored import TRAINED_MODEL_KEYS, check_weights, is_legacy_config, stored_run_config

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Longest key listing quoted from a failed state-dict load.
MAX_DETAIL_CHARS = 300


def loss_and_logits(network: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    logits = network(*batch.network_inputs())
    return cross_entropy_loss(logits.float(), batch.loss_targets, IGNORE_INDEX), logits


def train_step(network, batch: Batch, optimizer, scheduler, scaler: torch.amp.GradScaler, amp_dtype) -> float:
    """One optimisation step; returns the loss."""
    with torch.autocast(batch.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss, _ = loss_and_logits(network, batch)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {loss.item()}; lower optim.lr or check the data")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return loss.item()


@torch.no_grad()
def evaluate(network, loader: Iterable, num_classes: int, class_names: list[str], device: torch.device,
             amp_dtype=None, recorder: OutcomeRecorder | None = None) -> Metrics:
    """Accuracy / IoU of the loader (segmentation scored on points); ``recorder`` keeps per-sample outcomes."""
    network.eval()
    confusion = ConfusionMatrix(num_classes, IGNORE_INDEX, class_names)
    for batch in loader:
        batch = batch.to(device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = network(*batch.network_inputs())
        predictions, targets = batch.scored(logits)
        confusion.update(predictions, targets)
        if recorder is not None:
            recorder.update(batch, predictions, targets)
    confusion.all_reduce()
    return confusion.compute()


def headline(metrics: Metrics, task: Task) -> float:
    """The number a run is judged by: overall accuracy (classification) or mIoU (segmentation)."""
    return metrics.overall_accuracy if task == Task.CLASSIFICATION else metrics.miou


@dataclass
class RunResult:
    run_dir: Path
    task: Task
    final: Metrics
    best_epoch: int
    best_score: float
    epoch_losses: list[float]


def run_training(config: RunConfig, resume: bool = False, quiet: bool | None = None,
                 resume_with_changes: bool = False) -> RunResult:
    """Train and evaluate as ``config`` says; writes the run directory (see the module docstring).

    Data, pretrained weights and network are built before the run directory is created, so a run that
    fails on bad input leaves nothing behind. The run holds the directory's lock (train/run_lock.py) while
    it writes. resume_with_changes: resume even where the config differs from the run's (train/resume.py).
    """
    check_deterministic_training(config)
    context = init_distributed(config.train.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(training_threads(config, context.world_size))
    try:
        # Before the network reaches the device: cuBLAS reads its workspace setting on its first call.
        with deterministic_algorithms(config.train.deterministic):
            seed_everything(config.train.seed)
            setup = _build_run(config, context)
            run_dir = Path(config.train.run_dir)
            with claimed_run_directory(run_dir, resume) if context.is_main else contextlib.nullcontext():
                # Checked before the log opens, so a refused resume writes nothing.
                point = _resume_point(config, run_dir, resume, resume_with_changes, context.device,
                                      setup.built.network)
                log = RunLog(run_dir, context.is_main)
                try:
                    return _Training(config, context, setup, run_dir, log).run(point, quiet)
                finally:
                    log.close()
    finally:
        torch.set_num_threads(threads)


def training_threads(config: RunConfig, world_size: int) -> int:
    """``train.threads``, or the cores per process left after the data-loader workers."""
    if config.train.threads is not None:
        return config.train.threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // world_size - config.data.num_workers)


@dataclass
class _RunSetup:
    task: Task
    train_set: Dataset
    eval_set: Dataset
    class_names: list[str]
    built: BuiltModel
    plan: FinetunePlan
    backend: str
    collate: Collate
    in_features: int


def _build_run(config: RunConfig, context: DistributedContext) -> _RunSetup:
    task = task_of(config.data)
    train_set = build_train_dataset(config.data)
    eval_set = build_dataset(config.data, config.data.eval_split, train=False)
    class_names = class_names_of(eval_set)
    in_features = network_in_features(config)
    built = build_model(config, in_features, len(class_names), task)
    network = built.network.to(context.device)
    plan = apply_finetune_scheme(network, config.finetune.scheme)
    backend = training_backend(config.model.backend, config.train.deterministic, context.device)
    collate = build_collate(config, task, len(class_names), backend)
    return _RunSetup(task, train_set, eval_set, class_names, built, plan, backend, collate, in_features)


class _Training:
    """One run's epochs: loaders, the :class:`RunState` they advance, and its checkpoints."""

    def __init__(self, config: RunConfig, context: DistributedContext, setup: _RunSetup, run_dir: Path,
                 log: RunLog):
        self.config, self.context, self.setup, self.run_dir, self.log = config, context, setup, run_dir, log
        data, seed = config.data, config.train.seed
        self.train_loader, self.train_sampler = make_loader(setup.train_set, data.batch_size, setup.collate, True,
                                                            seed, context, data.num_workers)
        self.eval_loader, _ = make_loader(setup.eval_set, data.eval_batch_size or data.batch_size, setup.collate,
                                          False, seed, context, data.num_workers)
        self.steps_per_epoch = len(self.train_loader)
        if config.train.max_steps_per_epoch is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, config.train.max_steps_per_epoch)
        network = setup.built.network
        optimizer = build_optimizer(config, optimizer_parameters(network))
        self.state = RunState(network, optimizer,
                              build_scheduler(optimizer, config.schedule, self.steps_per_epoch * config.train.epochs),
                              torch.amp.GradScaler(context.device.type, enabled=config.train.amp == "fp16"))
        self.amp_dtype = AMP_DTYPES.get(config.train.amp)
        self.trained = DistributedDataParallel(network) if context.world_size > 1 else network

    def run(self, point: ResumePoint | None, quiet: bool | None) -> RunResult:
        config, setup, state = self.config, self.setup, self.state
        if point is not None:
            self._resume(point)
        elif self.context.is_main:
            # A fresh start, also of a run killed before its first last.pt: no epoch is recorded yet.
            self.log.restart_history([])
            save_config(config, self.run_dir / "config.yaml")
            with atomic_write(self.run_dir / "conversion.txt", "w") as stream:
                stream.write(conversion_text(setup.built, setup.plan))
        self._log_start()
        show_progress = not (quiet if quiet is not None else not sys.stderr.isatty()) and self.context.is_main
        final = None
        for epoch in range(state.next_epoch, config.train.epochs):
            metrics = self._epoch(epoch, show_progress)
            final = metrics if metrics is not None else final
        if final is None:
            final = self._evaluate()
        result = RunResult(self.run_dir, setup.task, final, state.best_epoch, state.best_score, state.losses)
        if self.context.is_main:
            write_outcomes(self.run_dir, self.recorder, setup.eval_set)  # before metrics.json: it marks a run done
            _write_final_metrics(result, config)
        if self.context.world_size > 1:
            # No rank leaves (and tears down its process group) while rank 0 is still writing.
            barrier()
        return result

    def _resume(self, point: ResumePoint) -> None:
        self.state.restore(point.checkpoint, point.path, point.changed)
        self.log.restart_history(self.state.history)
        self.log.info(f"resumed from {point.path} at epoch {self.state.next_epoch}")
        if point.changed and self.context.is_main:
            recorded = record_changes(self.run_dir, self.config, self.state.next_epoch)
            self.log.info(f"changed since the run started: {', '.join(point.changed)}; config from here on: {recorded}")

    def _log_start(self) -> None:
        setup, context = self.setup, self.context
        self.log.info(conversion_text(setup.built, setup.plan))
        self.log.info(f"task {setup.task}, {len(setup.train_set)} training / {len(setup.eval_set)} evaluation "
                      f"samples, backend {setup.backend}, device {context.device}, {context.world_size} process(es)"
                      + (", deterministic algorithms" if self.config.train.deterministic else ""))
        batch_warning = step_batch_warning(self.config.data, context.world_size)
        if batch_warning is not None and context.is_main:
            self.log.info(f"warning: {batch_warning}")
            warnings.warn(batch_warning, Image2PointWarning, stacklevel=3)

    def _epoch(self, epoch: int, show_progress: bool) -> Metrics | None:
        """Train one epoch, evaluate when due, checkpoint; returns the evaluation's metrics, if any."""
        config, state = self.config, self.state
        mean_loss = self._train_epoch(epoch, show_progress)
        # Every rank evaluates (and rank 0 saves) the same BatchNorm statistics.
        broadcast_buffers(state.network)
        state.epoch = epoch
        state.losses.append(mean_loss)
        record = {"epoch": epoch, "train_loss": mean_loss, "lr": state.scheduler.get_last_lr()[0]}
        metrics = None
        if (epoch + 1) % config.train.eval_every == 0 or epoch == config.train.epochs - 1:
            metrics = self._evaluate()
            record.update(overall_accuracy=metrics.overall_accuracy, mean_class_accuracy=metrics.mean_class_accuracy,
                          miou=metrics.miou)
        state.history.append(record)
        if metrics is not None and state.improves(score := headline(metrics, self.setup.task)):
            state.best_score, state.best_epoch = score, epoch
            self._save(BEST_CHECKPOINT)
        self.log.epoch(record)
        self.log.info(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
        self._save(LAST_CHECKPOINT)
        return metrics

    def _train_epoch(self, epoch: int, show_progress: bool) -> float:
        """The epoch's optimisation steps; returns their mean loss across ranks."""
        config, state, device = self.config, self.state, self.context.device
        self.trained.train()
        loader = epoch_loader(self.train_loader, self.train_sampler, self.setup.train_set, config.train.seed, epoch)
        epoch_loss, steps = 0.0, 0
        for batch in progress(loader, self.steps_per_epoch, f"epoch {epoch}", show_progress):
            if steps == self.steps_per_epoch:
                break
            loss = train_step(self.trained, batch.to(device), state.optimizer, state.scheduler, state.scaler,
                              self.amp_dtype)
            epoch_loss += loss
            steps += 1
            if steps % config.train.log_every == 0:
                self.log.info(f"epoch {epoch} step {steps}/{self.steps_per_epoch} loss {loss:.4f} "
                              f"lr {state.scheduler.get_last_lr()[0]:.3g}")
        return _mean_across_ranks(epoch_loss, steps, device)

    def _evaluate(self) -> Metrics:
        class_names = self.setup.class_names
        # Per-sample outcomes only where one process sees every evaluated sample in order.
        self.recorder = None if self.context.world_size > 1 else OutcomeRecorder(
            self.setup.task, len(class_names), self.config.data.voxel_size, len(self.setup.eval_set))
        return evaluate(self.state.network, self.eval_loader, len(class_names), class_names, self.context.device,
                        self.amp_dtype, self.recorder)

    def _save(self, name: str) -> None:
        if self.context.is_main:
            save_training_checkpoint(self.run_dir / name, self.state.checkpoint(
                self.config, self.setup.class_names, self.setup.in_features))


def _resume_point(config: RunConfig, run_dir: Path, resume: bool, with_changes: bool, device: torch.device,
                  network: torch.nn.Module) -> ResumePoint | None:
    """The checked last.pt a resume continues from; None when the run starts fresh."""
    path = run_dir / LAST_CHECKPOINT
    if not (resume and path.exists()):
        return None
    point = read_resume_point(path, config, with_changes, device, check_compatible)
    if is_legacy_config(point.checkpoint.config):
        check_weights(network, point.checkpoint.model, path, legacy=True)
    return point


def _mean_across_ranks(total: float, steps: int, device: torch.device) -> float:
    sums = all_reduce_sum(torch.tensor([total, float(steps)], dtype=torch.float64, device=device))
    return float(sums[0] / max(sums[1].item(), 1.0))


def _write_final_metrics(result: RunResult, config: RunConfig) -> None:
    payload = {
        "task": result.task,
        "dataset": config.data.name,
        "family": config.model.family,
        "backbone": config.model.backbone,
        "pretrained": config.model.pretrained,
        "scheme": config.finetune.scheme,
        "epochs": config.train.epochs,
        "best_epoch": result.best_epoch,
        "best_score": result.best_score,
        "final": result.final.as_dict(),
        "epoch_losses": result.epoch_losses,
    }
    with atomic_write(result.run_dir / "metrics.json", "w") as stream:
        stream.write(json_out.dumps(payload, indent=2))


def evaluate_checkpoint(config: RunConfig, checkpoint_path: str | Path, out_dir: str | Path | None = None) -> Metrics:
    """Rebuild the network of ``config``, load its weights from a checkpoint, evaluate it.

    The strided-shortcut setting and the output-layer widths are part of what the weights were trained
    with, so they come from the checkpoint's stored config (``TRAINED_MODEL_KEYS``; an older checkpoint's
    are those of the version that made it).
    """
    device = resolve_device(config.train.device)
    task = task_of(config.data)
    state = load_training_checkpoint(checkpoint_path, map_location=device)
    require_finite_weights(state.model, checkpoint_path)
    legacy = is_legacy_config(state.config)
    if state.config is not None:
        trained = stored_run_config(dict(state.config), checkpoint_path).model
        config = replace(config, model=replace(config.model, **{key: getattr(trained, key)
                                                                for key in TRAINED_MODEL_KEYS}))
    eval_set = build_dataset(config.data, config.data.eval_split, train=False)
    class_names = class_names_of(eval_set)
    network = build_model(config, network_in_features(config), len(class_names), task).network.to(device)
    if legacy:
        # A misfit of an older checkpoint is its older layout: say so in one line.
        check_weights(network, state.model, checkpoint_path, legacy=True)
    try:
        network.load_state_dict(state.model)
    except RuntimeError as error:
        # torch's first line only names the module class; the next one names the keys that differ.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        if len(detail) > MAX_DETAIL_CHARS:
            detail = detail[:MAX_DETAIL_CHARS] + " ..."
        raise CheckpointError(f"{checkpoint_path}: does not fit this config's network ({detail})") from None
    backend = config.model.backend or default_backend(device)
    collate = build_collate(config, task, len(class_names), backend)
    loader = DataLoader(eval_set, batch_size=config.data.eval_batch_size or config.data.batch_size,
                        collate_fn=collate, num_workers=config.data.num_workers)
    metrics = evaluate(network, loader, len(class_names), class_names, device)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, out_dir / "config.yaml")
        with atomic_write(out_dir / "metrics.json", "w") as stream:
            stream.write(json_out.dumps({"checkpoint": str(checkpoint_path), "task": task, "final": metrics.as_dict()},
                                        indent=2))
    return metrics
